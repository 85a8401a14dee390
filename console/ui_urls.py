"""The browser console's pages. Names are prefixed or distinct so they never meet the API's."""

from django.urls import path

from console.views import activity, agents, approvals, audit, auth, dashboard, envelopes, lockouts, people, tokens
from console.views import lifecycle as lifecycle_pages

urlpatterns = [
    path("", dashboard.dashboard, name="dashboard"),
    path("login/", auth.SignInView.as_view(), name="login"),
    path("logout/", auth.SignOutView.as_view(), name="logout"),
    path("reauthenticate/", auth.reauthenticate, name="reauthenticate"),
    path("approvals/", approvals.queue, name="approval-queue"),
    path("approvals/bulk", approvals.bulk_decide, name="approval-bulk"),
    path("approvals/ceilings/<slug:slug>/<str:verb>", approvals.decide_ceiling, name="ceiling-decide"),
    path("approvals/<uuid:pk>/approve", approvals.approve, name="approval-approve"),
    path("approvals/<uuid:pk>/deny", approvals.deny, name="approval-deny"),
    path("agents/", agents.agent_list, name="agents"),
    path("register-agent/", lifecycle_pages.agent_register, name="agent-register"),
    path("agents/<slug:slug>/instances/new", lifecycle_pages.instance_register, name="instance-register"),
    path("instances/<uuid:pk>/change", lifecycle_pages.instance_lifecycle, name="instance-lifecycle"),
    path("credentials/<str:jti>/revoke", lifecycle_pages.credential_revoke, name="credential-revoke"),
    path("agents/<slug:slug>/", agents.agent_detail, name="agent-page"),
    path("agents/<slug:slug>/<str:verb>", agents.agent_lifecycle, name="agent-lifecycle"),
    path("my-agents/", agents.my_agents, name="my-agents"),
    path("envelopes/new/", envelopes.envelope_new, name="envelope-new"),
    path("envelopes/<uuid:pk>/", envelopes.envelope_detail, name="envelope-page"),
    path("envelopes/<uuid:pk>/revoke", envelopes.envelope_revoke, name="envelope-revoke"),
    path("envelopes/<uuid:pk>/complete", envelopes.envelope_complete, name="envelope-complete"),
    path("envelopes/<uuid:pk>/retask", envelopes.envelope_retask, name="envelope-retask"),
    path("activity/", activity.activity_list, name="activity"),
    path("audit/", audit.audit_list, name="audit"),
    path("audit/chain-status", audit.audit_chain_status, name="audit-chain"),
    path("people/", people.people_list, name="people"),
    path("people/<int:pk>/", people.person_detail, name="person-page"),
    path("people/<int:pk>/roles", people.person_roles, name="person-roles"),
    path("people/<int:pk>/admin-grant", people.person_admin_grant, name="person-admin-grant"),
    path("people/<int:pk>/sign-out", people.person_sign_out, name="person-sign-out"),
    path("people/<int:pk>/deactivate", people.person_deactivate, name="person-deactivate"),
    path("people/<int:pk>/tokens/<uuid:token>/revoke", people.person_token_revoke, name="person-token-revoke"),
    path("tokens/", tokens.token_list, name="tokens"),
    path("tokens/<uuid:pk>/revoke", tokens.token_revoke, name="token-revoke"),
    path("sign-in-lockouts/", lockouts.lockout_list, name="sign-in-lockouts"),
    path("sign-in-lockouts/unlock", lockouts.lockout_unlock, name="sign-in-lockouts-unlock"),
]
