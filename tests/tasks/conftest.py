"""Shared set-up for decisions and activity: an approved envelope and a way to mint its tokens."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from identities.credential_jwt import mint_credential
from tasks import decisions, services
from tests.helpers.factories import make_agent, make_envelope, make_instance


@pytest.fixture(autouse=True)
def _fresh_verification_cache():
    from tasks.api import authentication

    decisions.clear_verification_cache()
    authentication.clear_cache()
    yield
    decisions.clear_verification_cache()
    authentication.clear_cache()


@pytest.fixture
def live_envelope(owner, admin):
    instance = make_instance(make_agent(owner))
    envelope = make_envelope(
        instance, scopes=("github:write", "github:read"), resources=("repo:acme/*",), max_actions=50
    )
    services.approve_envelope(envelope=envelope, actor=admin)
    envelope.refresh_from_db()
    return envelope


@pytest.fixture
def mint():
    def _mint(envelope, *, scopes=None, minutes=5, now=None, audience="mandate"):
        now = now or timezone.now()
        return mint_credential(
            instance=envelope.instance,
            envelope=envelope,
            scopes=list(scopes or envelope.scopes),
            audience=audience,
            expires_at=now + timedelta(minutes=minutes),
            now=now,
        )

    return _mint
