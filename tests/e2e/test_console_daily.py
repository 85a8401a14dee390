"""The console for daily work, in a real browser: times in the viewer's zone, small screens, dark."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from playwright.sync_api import expect

from tests.helpers.console import approved, make_activity
from tests.helpers.factories import make_agent, make_envelope, make_instance

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_times_read_in_the_viewers_zone_with_the_zone_said(sign_in, live_server, admin, owner):
    envelope = approved(make_envelope(make_instance(make_agent(owner, slug="zoned"))), admin)
    make_activity(envelope, 1, occurred_at=datetime(2025, 7, 4, 15, 30, tzinfo=UTC))
    page = sign_in(admin, timezone_id="America/New_York")
    page.goto(f"{live_server.url}/activity/")
    stamp = page.locator('time[datetime="2025-07-04T15:30:00Z"]')
    expect(stamp).to_have_text("4 Jul 2025, 11:30 EDT")
    # A zone chosen in the header's menu wins over the browser's, and is kept.
    page.select_option("#tz-choice", "Asia/Tokyo")
    expect(stamp).to_have_text(re.compile(r"5 Jul 2025, 00:30 (GMT\+9|JST)"))
    page.reload()
    expect(page.locator('time[datetime="2025-07-04T15:30:00Z"]')).to_have_text(
        re.compile(r"5 Jul 2025, 00:30 (GMT\+9|JST)")
    )


@pytest.mark.parametrize("path", ["/", "/approvals/"])
def test_a_phone_sees_the_queue_and_dashboard_without_sideways_scrolling(sign_in, live_server, admin, owner, path):
    instance = make_instance(make_agent(owner, slug="a-rather-long-agent-slug-for-phones"))
    for i in range(3):
        make_envelope(
            instance,
            intent=f"Label this week's invoices and reconcile the ledger, batch {i}",
            resources=("repo:acme/a-very-long-repository-name-that-would-overflow", "repo:acme/*"),
        )
    page = sign_in(admin, viewport={"width": 390, "height": 844}, is_mobile=True)
    page.goto(f"{live_server.url}{path}")
    widths = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert widths[0] <= widths[1], f"{path} is {widths[0]} px wide in a {widths[1]} px window"
    if path == "/approvals/":
        # The decision is on screen, not off to the right.
        approve = page.get_by_role("button", name=re.compile(r"^Approve envelope .*batch 0")).first
        box = approve.bounding_box()
        assert box and box["x"] + box["width"] <= 390


def test_the_dark_theme_follows_the_system_and_the_toggle(sign_in, live_server, admin):
    page = sign_in(admin, color_scheme="dark")
    background = "getComputedStyle(document.body).backgroundColor"
    html_bg = "getComputedStyle(document.documentElement).backgroundColor"
    assert page.evaluate(html_bg) == "rgb(18, 22, 29)"
    toggle = page.locator("[data-theme-toggle]")
    expect(toggle).to_have_text("Theme: auto")
    toggle.click()  # auto → dark → light
    toggle.click()
    expect(toggle).to_have_text("Theme: light")
    assert page.evaluate(html_bg) == "rgb(245, 246, 248)"
    page.reload()
    assert page.evaluate(html_bg) == "rgb(245, 246, 248)"  # the choice is kept
    assert page.evaluate(background) is not None


def test_an_admin_registers_an_agent_and_an_instance_from_the_browser(sign_in, live_server, admin, owner):
    import json

    from identities.models import Agent, Instance
    from tests.helpers.factories import new_ed25519_key

    page = sign_in(admin)
    page.goto(f"{live_server.url}/agents/")
    page.get_by_role("link", name="Register an agent").click()
    page.get_by_label("Slug", exact=False).first.fill("browser-bot")
    page.get_by_role("textbox", name="Name", exact=True).fill("Registered from the browser")
    page.get_by_label("Ceiling").fill("github:read")
    page.get_by_label("Longest envelope (seconds)").fill("1800")
    page.get_by_role("textbox", name=re.compile(r"^Owner")).fill(owner.username)
    page.get_by_role("button", name="Register agent").click()
    page.wait_for_url(f"{live_server.url}/agents/browser-bot/")
    expect(page.locator(".messages")).to_contain_text("Agent browser-bot registered.")
    agent = Agent.objects.get(slug="browser-bot")
    assert agent.owner == owner
    _, jwk = new_ed25519_key()
    page.get_by_role("link", name="Register an instance").click()
    page.get_by_role("textbox", name="Label", exact=True).fill("browser-1")
    page.get_by_label("Public key (JWK)").fill(json.dumps(jwk))
    page.get_by_role("button", name="Register instance").click()
    page.wait_for_url(f"{live_server.url}/agents/browser-bot/")
    instance = Instance.objects.get(agent=agent, label="browser-1")
    expect(page.locator(".messages")).to_contain_text(instance.spiffe_id)


def test_revoking_one_credential_in_the_browser_makes_introspection_say_inactive(
    sign_in, live_server, admin, owner, gateway, api_client
):
    from django.test import Client

    from tests.helpers.console import approved
    from tests.helpers.oauth import form_post, post_token, token_form

    instance = make_instance(make_agent(owner, slug="revocable"))
    envelope = approved(make_envelope(instance), admin)
    minted = post_token(Client(), token_form(instance, envelope))
    assert minted.status_code == 200, minted.content
    token = minted.json()["access_token"]
    gw = api_client.as_user(gateway)

    def active():
        return form_post(gw, "/oauth/introspect", {"token": token}).json()["active"]

    assert active() is True
    page = sign_in(owner)
    page.goto(f"{live_server.url}/agents/revocable/")
    page.get_by_role("button", name=re.compile(r"^Revoke credential ")).first.click()
    expect(page.locator(".messages")).to_contain_text("revoked")
    assert active() is False


def test_bulk_approval_of_three_reports_the_one_refused_by_separation_of_duties(sign_in, live_server, admin, owner):
    from tasks.models import TaskEnvelope

    instance = make_instance(make_agent(owner, slug="bulk-agent"))
    for n in range(2):
        make_envelope(instance, intent=f"bulk job {n}")
    make_envelope(instance, actor=admin, intent="bulk job asked by the admin")
    page = sign_in(admin)
    page.goto(f"{live_server.url}/approvals/")
    page.get_by_label("Select all shown").check()
    page.get_by_label("Comment for all").fill("weekly batch")
    page.get_by_role("button", name="Approve selected").click()
    messages = page.locator(".messages")
    expect(messages).to_contain_text("Approved 2 of 3")
    expect(messages).to_contain_text("Not approved: “bulk job asked by the admin” — nobody approves an envelope")
    states = dict(TaskEnvelope.objects.values_list("intent", "state"))
    assert states["bulk job 0"] == states["bulk job 1"] == TaskEnvelope.State.APPROVED
    assert states["bulk job asked by the admin"] == TaskEnvelope.State.PENDING


def test_the_agents_list_sorts_and_searches_in_the_browser(sign_in, live_server, admin, owner, other_owner):
    for slug, who in (("alpha-bot", owner), ("beta-bot", other_owner), ("gamma-helper", owner)):
        make_agent(who, slug=slug)
    page = sign_in(admin)
    page.goto(f"{live_server.url}/agents/")
    page.get_by_role("link", name="Agent", exact=True).click()  # already by slug: now descending
    expect(page.locator("table.agents tbody strong").first).to_have_text("gamma-helper")
    expect(page.locator("th[aria-sort]")).to_have_attribute("aria-sort", "descending")
    page.get_by_role("searchbox", name="Search").fill("bot")
    expect(page.locator(".filter-banner")).to_contain_text("slug or name contains “bot”")
    expect(page.locator("table.agents tbody strong")).to_have_text(["beta-bot", "alpha-bot"])
