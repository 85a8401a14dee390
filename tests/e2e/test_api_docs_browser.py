"""The interactive API docs render in a real browser under the Content-Security-Policy."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_swagger_ui_renders_the_operations_under_the_policy(sign_in, admin, live_server):
    page = sign_in(admin)
    page.goto(f"{live_server.url}/api/docs/")
    page.wait_for_selector(".swagger-ui .opblock", timeout=20_000)
    assert page.locator(".swagger-ui .opblock").count() > 10


def test_redoc_renders_the_operations_under_its_own_policy(sign_in, admin, live_server):
    page = sign_in(admin)
    page.goto(f"{live_server.url}/api/redoc/")
    page.wait_for_selector("h1", timeout=30_000)
    assert "Mandate API" in page.locator("h1").first.inner_text()
