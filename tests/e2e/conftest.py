"""End-to-end tests in Debian's Chromium, driven by Playwright against pytest-django's live server."""

from __future__ import annotations

import os
import shutil

import pytest

# Playwright's sync API runs an event loop in this thread; the ORM calls the tests make are still
# plain synchronous calls between browser steps.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "correct horse battery staple"


# Per module, not per session: Playwright's sync API leaves its event loop marked as running on this
# thread while it is open, and any later test in the same process that calls asyncio.run() (the SDK's
# async tests, the MCP gateway's) would fail with "cannot be called from a running event loop".
@pytest.fixture(scope="module")
def browser():
    if not shutil.which(CHROMIUM) and not os.path.exists(CHROMIUM):
        pytest.skip("Debian's chromium is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def sign_in(browser, live_server):
    """``sign_in(user)`` → a fresh browser page signed in as that user, on the dashboard."""
    contexts = []
    refused: list[str] = []

    def make(user, password=PASSWORD, **context_options):
        context_options.setdefault("viewport", {"width": 1366, "height": 860})
        context = browser.new_context(**context_options)
        contexts.append(context)
        page = context.new_page()
        # Whatever the Content-Security-Policy refuses (an inline style or script, an eval) fails the
        # test; except Redoc's logo from its vendor's CDN, which the policy keeps out on purpose.
        page.on(
            "console",
            lambda m: (
                "Content Security Policy" in m.text
                and "cdn.redoc.ly" not in m.text
                and refused.append(f"{page.url}: {m.text}")
            ),
        )
        page.set_default_timeout(10_000)
        page.goto(f"{live_server.url}/login/")
        page.get_by_label("Username").fill(user.get_username())
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"{live_server.url}/")
        return page

    yield make
    for context in contexts:
        context.close()
    assert not refused, "the Content-Security-Policy refused:\n" + "\n".join(refused)
