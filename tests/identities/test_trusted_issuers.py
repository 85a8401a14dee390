"""Trusted workload issuers: admin-managed, audited, validated; readable by auditors over REST."""

from __future__ import annotations

import pytest

from audit.models import AuditEvent
from core.errors import PermissionDenied, ValidationFailed
from identities import oidc
from identities.models_oidc import TrustedIssuer
from tests.helpers.factories import make_agent
from tests.helpers.oidc import LocalIssuer

pytestmark = pytest.mark.django_db

URL = "/api/v1/issuers/"


@pytest.fixture
def agent(owner):
    return make_agent(owner)


def body(**overrides):
    data = {
        "name": "cluster-1",
        "issuer": "https://oidc.cluster-1.example",
        "audience": "mandate",
        "rules": [{"agent": "invoice-triage", "claims": {"sub": "system:serviceaccount:billing:*"}}],
    }
    data.update(overrides)
    return data


@pytest.fixture
def issuer(admin, agent):
    return oidc.create_issuer(actor=admin, **body())


# --- services ------------------------------------------------------------------------------------------


def test_an_admin_creates_an_issuer_and_it_is_audited(issuer, admin):
    assert issuer.enabled and issuer.created_by == admin
    assert issuer.effective_discovery_url == "https://oidc.cluster-1.example/.well-known/openid-configuration"
    event = AuditEvent.objects.get(verb="issuer.created")
    assert event.after["issuer"] == "https://oidc.cluster-1.example" and event.actor == admin.username


def test_only_admins_manage_issuers(owner, auditor, agent):
    for actor in (owner, auditor):
        with pytest.raises(PermissionDenied):
            oidc.create_issuer(actor=actor, **body())
    assert not TrustedIssuer.objects.exists()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("issuer", "http://oidc.example"),  # plain http off loopback
        ("issuer", "https://user:pw@oidc.example"),
        ("issuer", 12),
        ("audience", ""),
        ("rules", []),
        ("rules", [{"agent": "no-such-agent", "claims": {"sub": "x"}}]),
        ("rules", [{"agent": "invoice-triage", "claims": {}}]),
        ("rules", [{"agent": "invoice-triage", "claims": {"sub": 5}}]),
        ("rules", [{"agent": "invoice-triage", "claims": {"sub": "x"}, "admin": True}]),
        ("jwks", {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}),
        ("jwks", {"keys": [{"kty": "EC", "crv": "P-256", "x": "bad", "y": "bad"}]}),
        ("jwks", {"keys": []}),
        ("discovery_url", "ftp://oidc.example/x"),
    ],
)
def test_bad_issuer_settings_are_refused_naming_the_field(admin, agent, field, value):
    with pytest.raises(ValidationFailed) as caught:
        oidc.create_issuer(actor=admin, **body(**{field: value}))
    assert caught.value.field == field


def test_a_second_issuer_with_the_same_url_is_refused(issuer, admin):
    with pytest.raises(ValidationFailed):
        oidc.create_issuer(actor=admin, **body(name="again"))


def test_updates_are_audited_with_before_and_after_and_a_no_op_writes_nothing(issuer, admin):
    oidc.update_issuer(issuer=issuer, actor=admin, changes={"audience": "mandate-prod"})
    event = AuditEvent.objects.get(verb="issuer.updated")
    assert event.before["audience"] == "mandate" and event.after["audience"] == "mandate-prod"
    oidc.update_issuer(issuer=issuer, actor=admin, changes={"audience": "mandate-prod"})
    assert AuditEvent.objects.filter(verb="issuer.updated").count() == 1


def test_disabling_is_its_own_audited_verb(issuer, admin):
    oidc.disable_issuer(issuer=issuer, actor=admin)
    issuer.refresh_from_db()
    assert not issuer.enabled
    assert AuditEvent.objects.filter(verb="issuer.disabled").exists()


def test_saving_fetches_the_keys_and_only_a_new_key_source_refetches_them(admin, agent):
    local = LocalIssuer("ES256")
    try:
        row = oidc.create_issuer(actor=admin, **body(issuer=local.url, name="local"))
        assert local.jwks_fetches == 1 and set(oidc._keys_of(row, want_kid=None)) == {local.current_kid}
        row = oidc.update_issuer(issuer=row, actor=admin, changes={"audience": "other"})
        assert local.jwks_fetches == 1
        local.rotate()
        row = oidc.update_issuer(
            issuer=row, actor=admin, changes={"discovery_url": local.url + "/.well-known/openid-configuration"}
        )
        assert local.jwks_fetches == 2 and set(oidc._keys_of(row, want_kid=None)) == {local.current_kid}
    finally:
        local.close()


def test_a_discovery_document_naming_another_issuer_yields_no_keys(admin, agent, monkeypatch):
    local = LocalIssuer("ES256")
    try:
        row = oidc.create_issuer(
            actor=admin,
            **body(
                issuer=local.url + "/tenant",
                name="mismatch",
                discovery_url=local.url + "/.well-known/openid-configuration",
            ),
        )
        assert oidc._keys_of(row, want_kid=None) == {}
        assert local.jwks_fetches == 0
        assert "another issuer" in row.keys_error
    finally:
        local.close()


# --- REST ------------------------------------------------------------------------------------------------


def test_an_admin_creates_reads_updates_and_disables_an_issuer_over_rest(api_client, admin, agent):
    client = api_client.as_user(admin)
    created = client.post(URL, body(), format="json")
    assert created.status_code == 201, created.content
    issuer_id = created.json()["id"]
    assert created.json()["created_by"] == admin.username
    assert client.get(URL).json()["results"][0]["id"] == issuer_id
    patched = client.patch(f"{URL}{issuer_id}/", {"audience": "mandate-prod"}, format="json")
    assert patched.status_code == 200 and patched.json()["audience"] == "mandate-prod"
    disabled = client.post(f"{URL}{issuer_id}/disable")
    assert disabled.status_code == 200 and disabled.json()["enabled"] is False
    assert client.post(f"{URL}{issuer_id}/enable").json()["enabled"] is True


def test_an_auditor_reads_but_cannot_change_issuers(api_client, auditor, issuer):
    client = api_client.as_user(auditor)
    assert client.get(URL).status_code == 200
    assert client.get(f"{URL}{issuer.id}/").json()["issuer"] == issuer.issuer
    assert client.post(URL, body(name="x", issuer="https://x.example"), format="json").status_code == 403
    assert client.post(f"{URL}{issuer.id}/disable").status_code == 403


def test_owners_and_strangers_see_no_issuers(api_client, owner, issuer):
    assert api_client.as_user(owner).get(URL).status_code == 403
    assert api_client.get(URL).status_code == 401


def test_bad_input_is_a_400_naming_the_field_never_a_500(api_client, admin, agent):
    client = api_client.as_user(admin)
    for bad, field in (
        (body(rules="nope"), "rules"),
        (body(issuer=None), "issuer"),
        (body(colour="red"), "colour"),
        (body(enabled="yes"), "enabled"),
    ):
        response = client.post(URL, bad, format="json")
        assert response.status_code == 400 and field in response.json(), response.content
    assert client.post(URL, [1, 2], format="json").status_code == 400


def test_listing_issuers_takes_a_fixed_number_of_queries(api_client, admin, agent, django_assert_max_num_queries):
    for n in range(5):
        oidc.create_issuer(actor=admin, **body(name=f"c{n}", issuer=f"https://c{n}.example"))
    client = api_client.as_user(admin)
    with django_assert_max_num_queries(6):
        assert client.get(URL).json()["count"] == 5
