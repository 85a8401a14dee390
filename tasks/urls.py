from django.urls import path

from tasks import views

urlpatterns = [
    path("policy/", views.policy_page, name="policy"),
]
