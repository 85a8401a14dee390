"""The accessibility gate: axe-core over every console page, failing on any serious or critical
violation, at desktop and phone widths, light and dark; and a keyboard-only approval."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

AXE = Path(__file__).resolve().parent / "vendor" / "axe-core" / "axe.min.js"
SERIOUS = ("serious", "critical")

ADMIN_PAGES = [
    "/",
    "/approvals/",
    "/agents/",
    "/agents/invoice-triage/",
    "/activity/",
    "/audit/",
    "/posture/",
    "/policy/",
    "/people/",
    "/tokens/",
    "/my-agents/",
    "/envelopes/new/",
    "/sign-in-lockouts/",
    "/register-agent/",
    "/agents/invoice-triage/instances/new",
]


def violations(page) -> list[dict]:
    page.add_script_tag(path=str(AXE))
    result = page.evaluate(
        "async () => { const r = await axe.run(document, {resultTypes: ['violations']});"
        " return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,"
        " nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))})); }"
    )
    return [v for v in result if v["impact"] in SERIOUS]


@pytest.fixture
def demo(django_user_model):
    from django.core.management import call_command

    call_command("seed_demo", stdout=io.StringIO())
    return django_user_model.objects.get(username="ada")


def _ada_signed_in(browser, live_server, **context_options):
    """A page signed in as the demo's identity admin. bypass_csp: axe is injected by the test, never
    served; the pages keep their CSP otherwise."""
    page = browser.new_context(bypass_csp=True, **context_options).new_page()
    page.set_default_timeout(15_000)
    page.goto(f"{live_server.url}/login/")
    page.fill("#id_username", "ada")
    page.fill("#id_password", "mandate-demo")
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")
    return page


@pytest.mark.parametrize(("width", "scheme"), [(1440, "light"), (390, "light"), (1440, "dark"), (390, "dark")], ids=str)
def test_every_console_page_is_free_of_serious_axe_violations(browser, live_server, demo, width, scheme):
    page = _ada_signed_in(browser, live_server, viewport={"width": width, "height": 900}, color_scheme=scheme)
    from tasks.models import TaskEnvelope

    envelope = TaskEnvelope.objects.order_by("created_at").first()
    found = {}
    for path in [*ADMIN_PAGES, f"/envelopes/{envelope.id}/"]:
        page.goto(live_server.url + path)
        page.wait_for_load_state("networkidle")
        if bad := violations(page):
            found[path] = bad
    page.context.close()
    assert not found, json.dumps(found, indent=1)


def test_an_admin_approves_an_envelope_with_the_keyboard_alone(sign_in, live_server, admin, owner):
    from tasks.models import TaskEnvelope
    from tests.helpers.factories import make_agent, make_envelope, make_instance

    envelope = make_envelope(make_instance(make_agent(owner)), intent="Label this week's invoices")
    page = sign_in(admin)
    page.goto(f"{live_server.url}/approvals/")
    target = "Approve envelope \u2018Label this week's invoices\u2019"
    for _ in range(60):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.getAttribute('aria-label')") == target:
            break
    else:
        pytest.fail("the Approve button is not reachable with Tab")
    page.keyboard.press("Enter")
    page.wait_for_selector(f"#decided-{envelope.id}")
    envelope.refresh_from_db()
    assert envelope.state == TaskEnvelope.State.APPROVED


def test_the_audit_trail_sorts_oldest_first_by_its_header_and_stays_axe_clean(browser, live_server, demo):
    """Click "When": the trail reads oldest first, the header says so to assistive technology, the
    next page carries on in that order without repeating a row, and the sorted page passes axe."""
    page = _ada_signed_in(browser, live_server, viewport={"width": 1440, "height": 900})
    page.goto(f"{live_server.url}/audit/")
    page.get_by_role("link", name="When").click()
    page.wait_for_url("**/audit/?sort=when")
    header = page.locator("th[aria-sort]")
    assert header.count() == 1 and header.get_attribute("aria-sort") == "ascending"
    assert "when" in header.inner_text().lower()

    def shown() -> list[tuple[str, str]]:
        return page.eval_on_selector_all(
            "tr[data-event]",
            "rows => rows.map(r => [r.dataset.event, r.querySelector('time').getAttribute('datetime')])",
        )

    first = shown()
    assert first and [at for _, at in first] == sorted(at for _, at in first)
    assert not violations(page), "the sorted audit page has serious axe violations"
    page.get_by_role("link", name="Next →").click()  # the demo's trail is longer than a page
    page.wait_for_load_state("networkidle")
    assert "sort=when" in page.url and page.locator("th[aria-sort=ascending]").count() == 1
    second = shown()
    assert second and second[0][1] >= first[-1][1]
    assert not {i for i, _ in first} & {i for i, _ in second}
    page.context.close()
