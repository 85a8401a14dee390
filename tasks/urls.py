from django.urls import path

from tasks import views
from tasks.api import authzen

urlpatterns = [
    path("policy/", views.policy_page, name="policy"),
    # OpenID AuthZEN 1.0: the paths the specification names, at the site root.
    path(".well-known/authzen-configuration", authzen.ConfigurationView.as_view(), name="authzen-configuration"),
    path("access/v1/evaluation", authzen.evaluation_endpoint, name="authzen-evaluation"),
    path("access/v1/evaluations", authzen.evaluations_endpoint, name="authzen-evaluations"),
    path("access/v1/search/action", authzen.action_search_endpoint, name="authzen-search-action"),
]
