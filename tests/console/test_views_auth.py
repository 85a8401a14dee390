import re

import pytest
from django.contrib.auth.models import User
from django.test import Client

pytestmark = pytest.mark.django_db

PAGES = ["/", "/approvals/", "/agents/", "/my-agents/", "/envelopes/new/", "/activity/", "/audit/", "/tokens/"]


@pytest.mark.parametrize("url", PAGES)
def test_every_page_sends_a_stranger_to_sign_in(client, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=")


def test_signing_in_lands_on_the_dashboard_and_shows_the_roles(client, admin):
    response = client.post("/login/", {"username": "ada", "password": "correct horse battery staple"}, follow=True)
    assert response.redirect_chain[-1][0] == "/"
    page = response.content.decode()
    assert "identity-admin" in page and "Sign out" in page


def test_a_wrong_password_is_refused_on_the_form(client, admin):
    response = client.post("/login/", {"username": "ada", "password": "nope"})
    assert response.status_code == 200
    assert "did not match" in response.content.decode()


def test_signing_out_needs_a_post(signed_in, admin):
    client = signed_in(admin)
    assert client.get("/logout/").status_code == 405
    response = client.post("/logout/")
    assert response.status_code == 302
    assert client.get("/").status_code == 302


def test_the_sign_in_form_is_csrf_protected(admin):
    client = Client(enforce_csrf_checks=True)
    response = client.post("/login/", {"username": "ada", "password": "correct horse battery staple"})
    assert response.status_code == 403


def test_a_user_without_a_console_role_gets_a_clear_403(signed_in, gateway):
    response = signed_in(gateway).get("/")
    assert response.status_code == 403
    page = response.content.decode()
    assert "403" in page and "needs the" in page and "role" in page


def test_a_user_with_no_role_at_all_is_told_so(signed_in):
    nobody = User.objects.create_user("nobody", password="x" * 20)
    response = signed_in(nobody).get("/agents/")
    assert response.status_code == 403
    assert "no console role" in response.content.decode()


def test_htmx_is_served_from_our_own_static_files(signed_in, admin):
    page = signed_in(admin).get("/").content.decode()
    assert "/static/vendor/htmx/htmx.min.js" in page
    sources = re.findall(r'<(?:script|link)[^>]+(?:src|href)="([^"]+)"', page)
    assert sources and all(src.startswith("/static/") for src in sources)
