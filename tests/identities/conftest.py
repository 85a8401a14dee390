"""Fixtures for the credential endpoints: instances with keys, live envelopes, signed assertions."""

from __future__ import annotations

import pytest

from tests.helpers.factories import make_agent, make_envelope, make_instance
from tests.helpers.oauth import approve, post_token, token_form


@pytest.fixture
def agent(owner):
    return make_agent(owner)


@pytest.fixture
def instance(agent):
    return make_instance(agent)


@pytest.fixture
def envelope(instance, admin):
    """An approved envelope (medium risk, so a person approved it) for ``instance``."""
    return approve(make_envelope(instance), admin)


@pytest.fixture
def issue(client):
    """``issue(instance, envelope, **form)`` → the token response (a Django test response)."""

    def _issue(instance, envelope, **extra):
        return post_token(client, token_form(instance, envelope, **extra))

    return _issue


@pytest.fixture
def access_token(issue, instance, envelope):
    response = issue(instance, envelope)
    assert response.status_code == 200, response.content
    return response.json()["access_token"]
