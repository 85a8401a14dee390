"""The console's main flows, in a real browser."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from identities.models import Agent, Credential
from tasks.models import TaskEnvelope
from tests.helpers.console import approved, make_credential
from tests.helpers.factories import make_agent, make_envelope, make_instance

# The button's accessible name is "Approve envelope '<intent>'"; an intent may itself say "approve".
APPROVE = re.compile(r"^Approve\b")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def instance(owner):
    return make_instance(make_agent(owner, ceiling=("github:read", "github:write", "payments:approve")))


def test_an_admin_approves_from_the_queue_and_the_row_leaves_without_a_reload(sign_in, live_server, admin, instance):
    envelope = make_envelope(instance, intent="route supplier invoices")
    waiting = make_envelope(instance, intent="another request")
    page = sign_in(admin)
    page.get_by_role("link", name=re.compile("^Approvals")).click()
    expect(page.locator("#inbox-count")).to_have_text("2")
    page.evaluate("window.__noReload = true")
    row = page.locator(f"#env-{envelope.id}")
    row.get_by_label(re.compile("Comment on")).fill("checked the supplier list")
    row.get_by_role("button", name=APPROVE).click()
    expect(page.locator(f"#env-{envelope.id}")).to_have_count(0)
    expect(page.locator(f"#decided-{envelope.id}")).to_contain_text("approved")
    expect(page.locator("#inbox-count")).to_have_text("1")
    expect(page.locator(f"#env-{waiting.id}")).to_be_visible()
    assert page.evaluate("window.__noReload") is True  # the same document: no page load happened
    envelope.refresh_from_db()
    assert envelope.state == TaskEnvelope.State.APPROVED
    assert envelope.approvals.get().comment == "checked the supplier list"


def test_a_second_admin_completes_a_high_risk_quorum(sign_in, live_server, admin, second_admin, instance):
    envelope = make_envelope(instance, intent="approve payment run", scopes=("payments:approve",), duration_seconds=600)
    first = sign_in(admin)
    first.goto(f"{live_server.url}/approvals/")
    row = first.locator(f"#env-{envelope.id}")
    row.get_by_label(re.compile("Comment on")).fill("amounts capped")
    row.get_by_role("button", name=APPROVE).click()
    row = first.locator(f"#env-{envelope.id}")
    expect(row).to_contain_text("1 of 2")
    expect(row.get_by_role("button", name=APPROVE)).to_be_disabled()
    expect(row).to_contain_text("one admin counts once")

    second = sign_in(second_admin)
    second.goto(f"{live_server.url}/approvals/")
    row = second.locator(f"#env-{envelope.id}")
    expect(row).to_contain_text("✓ ada")
    row.get_by_label(re.compile("Comment on")).fill("agreed")
    row.get_by_role("button", name=APPROVE).click()
    expect(second.locator(f"#decided-{envelope.id}")).to_contain_text("approved")
    envelope.refresh_from_db()
    assert envelope.state == "approved" and envelope.approvals.count() == 2


def test_an_owner_sees_only_their_agents_requests_an_envelope_and_watches_a_countdown(
    sign_in, live_server, owner, other_owner, admin, instance
):
    make_instance(make_agent(other_owner, slug="someone-elses"))
    live = approved(make_envelope(instance, intent="live task"), admin)
    credential = make_credential(live, seconds=200)

    page = sign_in(owner)
    page.get_by_role("link", name="Agents", exact=True).click()
    expect(page.get_by_role("link", name="invoice-triage")).to_be_visible()
    expect(page.get_by_text("someone-elses")).to_have_count(0)

    page.get_by_role("link", name="My agents").click()
    countdown = page.locator(f'[data-expires="{credential.expires_at.isoformat()}"]')
    expect(countdown).to_have_text(re.compile(r"\d+ min \d+ s left"))
    before = countdown.text_content()
    page.wait_for_timeout(1500)
    assert countdown.text_content() != before  # it counts down live, in our own few lines of JS

    page.get_by_role("link", name="Request an envelope").click()
    page.get_by_label("Instance").select_option(str(instance.id))
    page.get_by_label(re.compile("^Intent")).fill("summarise open pull requests")
    page.get_by_label(re.compile("^Scopes")).fill("github:read payments:approve-not")
    page.get_by_label(re.compile("^Resources")).fill("repo:acme/app")
    page.get_by_role("button", name="Request envelope").click()
    expect(page.locator(".ferr")).to_contain_text("outside agent invoice-triage")
    page.get_by_label(re.compile("^Scopes")).fill("github:read github:write")
    page.get_by_role("button", name="Request envelope").click()
    page.wait_for_url(re.compile(r"/envelopes/[0-9a-f-]{36}/$"))
    expect(page.locator("h1")).to_contain_text("pending")
    requested = TaskEnvelope.objects.get(intent="summarise open pull requests")
    assert requested.requested_by == owner and requested.scopes == ["github:read", "github:write"]


def test_a_pause_from_the_agent_page_revokes_its_live_credentials(sign_in, live_server, admin, instance):
    envelope = approved(make_envelope(instance), admin)
    credential = make_credential(envelope)
    page = sign_in(admin)
    page.goto(f"{live_server.url}/agents/{instance.agent.slug}/")
    expect(page.get_by_text(credential.jti[:12])).to_be_visible()
    page.get_by_text("Pause…").click()
    page.get_by_label("Reason (recorded in the audit trail)").first.fill("suspicious activity")
    page.get_by_label(re.compile("Yes, pause")).check()
    page.get_by_role("button", name="Confirm pause").click()
    expect(page.locator(".msg-success")).to_contain_text("paused")
    expect(page.locator("h1")).to_contain_text("paused")
    expect(page.get_by_text("No live credentials.")).to_be_visible()
    credential.refresh_from_db()
    assert credential.status == Credential.Status.REVOKED
    assert Agent.objects.get(pk=instance.agent_id).status == "paused"


def test_the_main_pages_render_for_the_screenshots(browser, live_server, tmp_path):
    """Seeds the demo and photographs the main pages; MANDATE_SCREENSHOTS=1 writes docs/screenshots/."""
    import importlib.util
    import io

    from django.core.management import call_command

    docs = Path(__file__).resolve().parents[2] / "docs"
    spec = importlib.util.spec_from_file_location("take_screenshots", docs / "take_screenshots.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    call_command("seed_demo", stdout=io.StringIO())
    out = docs / "screenshots" if os.environ.get("MANDATE_SCREENSHOTS") == "1" else tmp_path
    password = os.environ.get("MANDATE_PASSWORD") or "mandate-demo"
    paths = module.take(live_server.url, password, out=out, browser=browser)
    assert len(paths) >= 8 and all(p.stat().st_size > 10_000 for p in paths)
