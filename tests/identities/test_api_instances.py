"""/api/v1/instances/ and registration under an agent: keys, SPIFFE IDs, clones, lifecycle."""

from __future__ import annotations

import pytest

from audit.models import AuditEvent
from identities import services
from identities.models import Agent, Instance
from tasks import lifecycle
from tests.helpers.api import ROLES, client_for, state_of, written_rows
from tests.helpers.factories import make_agent, make_instance, new_ed25519_key, new_p256_key

pytestmark = pytest.mark.django_db

INSTANCE_FIELDS = {
    "id",
    "agent",
    "spiffe_id",
    "status",
    "origin",
    "parent",
    "public_jwk",
    "label",
    "created_at",
    "last_seen_at",
    "stale",
}


def test_registering_an_instance_gives_it_a_spiffe_id_under_its_agent(api_client, owner, settings):
    settings.MANDATE_TRUST_DOMAIN = "example.org"
    agent = make_agent(owner)
    _, jwk = new_ed25519_key()
    response = api_client.as_user(owner).post(
        f"/api/v1/agents/{agent.slug}/instances/", {"public_jwk": jwk, "label": "worker-7"}, format="json"
    )
    assert response.status_code == 201, response.json()
    data = response.json()
    assert set(data) == INSTANCE_FIELDS
    assert data["spiffe_id"] == f"spiffe://example.org/agent/{agent.slug}/instance/{data['id']}"
    assert data["agent"] == agent.slug
    assert data["origin"] == "registered" and data["parent"] is None and data["stale"] is False
    assert data["public_jwk"] == {"kty": "OKP", "crv": "Ed25519", "x": jwk["x"]}
    assert AuditEvent.objects.filter(verb="instance.registered", target_id=data["id"]).exists()


def test_a_p256_public_key_is_accepted(api_client, owner):
    agent = make_agent(owner)
    _, jwk = new_p256_key()
    response = api_client.as_user(owner).post(
        f"/api/v1/agents/{agent.slug}/instances/", {"public_jwk": jwk}, format="json"
    )
    assert response.status_code == 201
    assert response.json()["public_jwk"]["crv"] == "P-256"


def _private_okp_jwk():
    from cryptography.hazmat.primitives.asymmetric import ed25519
    from jwt.algorithms import OKPAlgorithm

    return OKPAlgorithm.to_jwk(ed25519.Ed25519PrivateKey.generate(), as_dict=True)


BAD_KEYS = [
    ("private key", _private_okp_jwk),
    ("RSA", lambda: {"kty": "RSA", "n": "abc", "e": "AQAB"}),
    ("symmetric", lambda: {"kty": "oct", "k": "c2VjcmV0"}),
    ("P-384", lambda: {"kty": "EC", "crv": "P-384", "x": "a", "y": "b"}),
    ("X25519", lambda: {"kty": "OKP", "crv": "X25519", "x": "abc"}),
    ("garbage x", lambda: {"kty": "OKP", "crv": "Ed25519", "x": "not base64 at all!"}),
    ("missing x", lambda: {"kty": "OKP", "crv": "Ed25519"}),
    ("string", lambda: "ssh-ed25519 AAAA"),
    ("list", lambda: [1, 2]),
    ("null", lambda: None),
    ("nul byte", lambda: {"kty": "OKP", "crv": "Ed25519", "x": "a\x00b"}),
]


@pytest.mark.parametrize(("name", "make_key"), BAD_KEYS, ids=[n for n, _ in BAD_KEYS])
def test_a_key_that_is_not_a_public_ed25519_or_p256_jwk_is_400_naming_public_jwk(api_client, owner, name, make_key):
    agent = make_agent(owner)
    before = written_rows()
    response = api_client.as_user(owner).post(
        f"/api/v1/agents/{agent.slug}/instances/", {"public_jwk": make_key()}, format="json"
    )
    assert response.status_code == 400, response.content
    assert "public_jwk" in response.json()
    assert written_rows() == before


def test_a_private_key_is_refused_without_echoing_it(api_client, owner):
    agent = make_agent(owner)
    jwk = _private_okp_jwk()
    response = api_client.as_user(owner).post(
        f"/api/v1/agents/{agent.slug}/instances/", {"public_jwk": jwk}, format="json"
    )
    assert response.status_code == 400
    assert jwk["d"] not in response.content.decode()


def test_one_key_never_serves_two_instances(api_client, owner):
    agent = make_agent(owner)
    _, jwk = new_ed25519_key()
    client = api_client.as_user(owner)
    assert client.post(f"/api/v1/agents/{agent.slug}/instances/", {"public_jwk": jwk}, format="json").status_code == 201
    response = client.post(f"/api/v1/agents/{agent.slug}/instances/", {"public_jwk": jwk}, format="json")
    assert response.status_code == 400 and "public_jwk" in response.json()


@pytest.mark.parametrize(
    ("field", "extra"),
    [
        ("label", {"label": "l" * 201}),
        ("label", {"label": 7}),
        ("role", {"role": "admin"}),
        ("public_jwk", {"public_jwk": None}),
    ],
)
def test_other_bad_registration_input_is_named(api_client, owner, field, extra):
    agent = make_agent(owner)
    body = {"public_jwk": new_ed25519_key()[1], **extra}
    response = api_client.as_user(owner).post(f"/api/v1/agents/{agent.slug}/instances/", body, format="json")
    assert response.status_code == 400 and field in response.json()


def test_a_paused_agent_takes_no_new_instances(api_client, owner):
    agent = make_agent(owner)
    lifecycle.pause_agent(agent=agent, actor=owner)
    response = api_client.as_user(owner).post(
        f"/api/v1/agents/{agent.slug}/instances/", {"public_jwk": new_ed25519_key()[1]}, format="json"
    )
    assert response.status_code == 400 and "agent" in response.json()


def test_a_clone_is_a_new_identity_with_its_parent_named(api_client, owner):
    parent = make_instance(make_agent(owner))
    response = api_client.as_user(owner).post(
        f"/api/v1/instances/{parent.id}/clone", {"public_jwk": new_p256_key()[1], "label": "copy"}, format="json"
    )
    assert response.status_code == 201, response.json()
    data = response.json()
    assert data["origin"] == "clone" and data["parent"] == str(parent.id)
    assert data["id"] != str(parent.id) and data["spiffe_id"] != parent.spiffe_id
    assert AuditEvent.objects.filter(verb="instance.cloned", target_id=data["id"]).exists()


def test_a_retired_instance_cannot_be_cloned(api_client, owner):
    parent = make_instance(make_agent(owner))
    lifecycle.retire_instance(instance=parent, actor=owner)
    response = api_client.as_user(owner).post(
        f"/api/v1/instances/{parent.id}/clone", {"public_jwk": new_ed25519_key()[1]}, format="json"
    )
    assert response.status_code == 400


def test_the_list_filters_by_agent_slug_and_status(api_client, owner):
    first, second = make_agent(owner, slug="first"), make_agent(owner, slug="second")
    a = make_instance(first)
    b = make_instance(second)
    lifecycle.pause_instance(instance=b, actor=owner)
    client = api_client.as_user(owner)
    ids = lambda url: {i["id"] for i in client.get(url).json()["results"]}  # noqa: E731
    assert ids("/api/v1/instances/?agent=first") == {str(a.id)}
    assert ids("/api/v1/instances/?status=paused") == {str(b.id)}
    assert ids("/api/v1/instances/?agent=second&status=active") == set()
    assert client.get("/api/v1/instances/?status=sleeping").status_code == 400


def test_an_owner_sees_only_instances_of_their_own_agents(api_client, owner, other_owner):
    mine = make_instance(make_agent(owner, slug="mine"))
    theirs = make_instance(make_agent(other_owner, slug="theirs"))
    client = api_client.as_user(owner)
    assert [i["id"] for i in client.get("/api/v1/instances/").json()["results"]] == [str(mine.id)]
    assert client.get(f"/api/v1/instances/{theirs.id}/").status_code == 404


@pytest.mark.parametrize(
    ("verb", "from_status", "expected_code", "expected_status"),
    [
        ("pause", "active", 200, "paused"),
        ("pause", "paused", 200, "paused"),
        ("pause", "retired", 409, "retired"),
        ("resume", "paused", 200, "active"),
        ("resume", "active", 200, "active"),
        ("resume", "retired", 409, "retired"),
        ("retire", "active", 200, "retired"),
        ("retire", "paused", 200, "retired"),
        ("retire", "retired", 200, "retired"),
    ],
)
def test_lifecycle_verbs_move_the_instance_or_answer_409(
    api_client, owner, verb, from_status, expected_code, expected_status
):
    instance = make_instance(make_agent(owner))
    Instance.objects.filter(pk=instance.pk).update(status=from_status)
    response = api_client.as_user(owner).post(f"/api/v1/instances/{instance.id}/{verb}", {"reason": "r"}, format="json")
    assert response.status_code == expected_code, response.json()
    assert state_of(Instance, instance.pk) == expected_status


def test_an_instance_of_a_paused_agent_cannot_resume_on_its_own(api_client, owner):
    agent = make_agent(owner)
    instance = make_instance(agent)
    lifecycle.pause_agent(agent=agent, actor=owner)
    response = api_client.as_user(owner).post(f"/api/v1/instances/{instance.id}/resume", format="json")
    assert response.status_code == 409
    assert state_of(Instance, instance.pk) == "paused"
    assert state_of(Agent, agent.pk) == "paused"


def test_a_malformed_instance_id_is_404(api_client, owner):
    assert api_client.as_user(owner).get("/api/v1/instances/not-a-uuid/").status_code == 404


# --- the permission matrix ------------------------------------------------------------------------

MATRIX = {
    "list": {"owner": 200, "other_owner": 200, "admin": 200, "auditor": 200, "gateway": 403, "anonymous": 401},
    "retrieve": {"owner": 200, "other_owner": 404, "admin": 200, "auditor": 200, "gateway": 403, "anonymous": 401},
    "clone": {"owner": 201, "other_owner": 404, "admin": 201, "auditor": 403, "gateway": 403, "anonymous": 401},
    "pause": {"owner": 200, "other_owner": 404, "admin": 200, "auditor": 403, "gateway": 403, "anonymous": 401},
    "resume": {"owner": 200, "other_owner": 404, "admin": 200, "auditor": 403, "gateway": 403, "anonymous": 401},
    "retire": {"owner": 200, "other_owner": 404, "admin": 200, "auditor": 403, "gateway": 403, "anonymous": 401},
}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("endpoint", list(MATRIX))
def test_permission_matrix(request, api_client, owner, role, endpoint):
    instance = make_instance(make_agent(owner))
    if endpoint == "resume":
        Instance.objects.filter(pk=instance.pk).update(status="paused")
    client = client_for(role, request, api_client)
    before = written_rows()
    base = f"/api/v1/instances/{instance.id}"
    if endpoint == "list":
        response = client.get("/api/v1/instances/")
    elif endpoint == "retrieve":
        response = client.get(f"{base}/")
    elif endpoint == "clone":
        response = client.post(f"{base}/clone", {"public_jwk": new_ed25519_key()[1]}, format="json")
    else:
        response = client.post(f"{base}/{endpoint}", {}, format="json")
    assert response.status_code == MATRIX[endpoint][role], response.content
    if response.status_code >= 400:
        assert written_rows() == before


# --- query counts ---------------------------------------------------------------------------------


@pytest.mark.parametrize("rows", [2, 20])
def test_the_list_query_count_does_not_grow_with_rows(api_client, owner, rows, django_assert_max_num_queries):
    agent = make_agent(owner)
    parent = make_instance(agent)
    for n in range(rows - 1):
        services.clone_instance(parent=parent, actor=owner, public_jwk=new_ed25519_key()[1], label=f"c{n}")
    client = api_client.as_user(owner)
    # token, last_used_at, roles, count, page
    with django_assert_max_num_queries(5):
        response = client.get("/api/v1/instances/")
    assert response.json()["count"] == rows
