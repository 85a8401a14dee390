"""Step-up: with MANDATE_STEP_UP_MAX_AGE set, approving a high-risk envelope from the console needs
a sign-in (or a password confirmation) within that many seconds."""

from __future__ import annotations

import time

import pytest
from django.test import Client

from accounts.sessions import AUTH_TIME_KEY
from tests.e2e.conftest import PASSWORD
from tests.helpers.factories import make_agent, make_envelope, make_instance

pytestmark = pytest.mark.django_db
HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def instance(owner):
    return make_instance(make_agent(owner, ceiling=("github:read", "github:write", "payments:approve")))


@pytest.fixture
def step_up(settings):
    settings.MANDATE_STEP_UP_MAX_AGE = 300
    return settings


def _signed_in_long_ago(user, seconds_ago=3600):
    client = Client()
    client.force_login(user)
    session = client.session
    session[AUTH_TIME_KEY] = time.time() - seconds_ago
    session.save()
    return client


def test_a_high_risk_approval_without_a_recent_sign_in_is_refused_with_a_way_to_confirm(step_up, admin, instance):
    envelope = make_envelope(instance, scopes=("payments:approve",), duration_seconds=600)
    client = _signed_in_long_ago(admin)
    html = client.post(f"/approvals/{envelope.id}/approve", {"comment": "ok"}, **HTMX).content.decode()
    assert "needs a sign-in within the last 5 minutes" in html
    assert 'href="/reauthenticate/?next=%2Fapprovals%2F"' in html
    envelope.refresh_from_db()
    assert envelope.state == "pending" and not envelope.approvals.exists()

    plain = client.post(f"/approvals/{envelope.id}/approve", {"comment": "ok"})
    assert plain.status_code == 302 and plain.url.startswith("/reauthenticate/")


def test_confirming_the_password_lets_the_same_approval_through(step_up, admin, instance, django_user_model):
    admin.set_password(PASSWORD)
    admin.save()
    envelope = make_envelope(instance, scopes=("payments:approve",), duration_seconds=600)
    client = _signed_in_long_ago(admin)
    wrong = client.post("/reauthenticate/", {"password": "not it", "next": "/approvals/"})
    assert wrong.status_code == 200 and "not right" in wrong.content.decode()
    right = client.post("/reauthenticate/", {"password": PASSWORD, "next": "/approvals/"})
    assert right.status_code == 302 and right.url == "/approvals/"
    client.post(f"/approvals/{envelope.id}/approve", {"comment": "ok"}, **HTMX)
    assert envelope.approvals.count() == 1


def test_low_and_medium_risk_approvals_need_no_step_up(step_up, admin, instance):
    envelope = make_envelope(instance)  # github:write on one repo: medium
    assert envelope.risk != "high"
    _signed_in_long_ago(admin).post(f"/approvals/{envelope.id}/approve", {"comment": "ok"}, **HTMX)
    envelope.refresh_from_db()
    assert envelope.state == "approved"


def test_step_up_is_off_by_default(admin, instance):
    envelope = make_envelope(instance, scopes=("payments:approve",), duration_seconds=600)
    _signed_in_long_ago(admin).post(f"/approvals/{envelope.id}/approve", {"comment": "ok"}, **HTMX)
    assert envelope.approvals.count() == 1


def test_the_reauthenticate_redirect_never_leaves_the_site(step_up, admin):
    admin.set_password(PASSWORD)
    admin.save()
    client = _signed_in_long_ago(admin)
    response = client.post("/reauthenticate/", {"password": PASSWORD, "next": "https://evil.example/"})
    assert response.status_code == 302 and response.url == "/"


def test_the_queue_says_before_the_click_that_a_confirmation_is_due(step_up, admin, instance):
    make_envelope(instance, scopes=("payments:approve",), duration_seconds=600)
    page = _signed_in_long_ago(admin).get("/approvals/").content.decode()
    assert "step-up-notice" in page and "Confirm it" in page
    client = Client()
    client.force_login(admin)
    session = client.session
    session[AUTH_TIME_KEY] = time.time()
    session.save()
    assert "step-up-notice" not in client.get("/approvals/").content.decode()
