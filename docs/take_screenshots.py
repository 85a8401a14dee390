"""Take the README's screenshots of the main console pages with Debian's Chromium.

    python docs/take_screenshots.py http://127.0.0.1:8000   # against a server with seed_demo data

Signs in as the demo users (password from MANDATE_PASSWORD or the seed_demo default).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

OUT = Path(__file__).resolve().parent / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

PAGES = {
    "ada": [
        ("dashboard", "/"),
        ("approvals", "/approvals/"),
        ("agent-detail", "/agents/invoice-triage/"),
        ("agents", "/agents/"),
        ("audit", "/audit/"),
        ("activity", "/activity/"),
        ("posture", "/posture/"),
        ("people", "/people/"),
    ],
    "olivia": [("my-agents", "/my-agents/"), ("request-envelope", "/envelopes/new/")],
}


def sign_in(page, base: str, username: str, password: str) -> None:
    page.goto(f"{base}/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")


def take(base: str, password: str, out: Path = OUT, browser=None) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    if browser is None:
        with sync_playwright() as p:
            launched = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            try:
                return take(base, password, out, launched)
            finally:
                launched.close()
    paths = []
    for username, pages in PAGES.items():
        context = browser.new_context(viewport={"width": 1366, "height": 860})
        page = context.new_page()
        sign_in(page, base, username, password)
        for name, path in pages:
            page.goto(base + path)
            page.wait_for_load_state("networkidle")
            if name == "request-envelope":
                # Show the form the way the API would refuse it: the error on its field.
                page.locator("#f-instance").select_option(index=1)
                page.fill("#f-intent", "Summarise open pull requests for the weekly review")
                page.fill("#f-scopes", "github:read payments:approve slack:post")
                page.fill("#f-resources", "repo:acme/*")
                page.click("button.primary")
                page.wait_for_selector(".ferr")
            target = out / f"{name}.png"
            page.screenshot(path=str(target), full_page=True)
            paths.append(target)
        if username == "ada":
            page.goto(base + "/agents/invoice-triage/")
            page.locator("a[href^='/envelopes/']").first.click()
            page.wait_for_load_state("networkidle")
            target = out / "envelope-detail.png"
            page.screenshot(path=str(target), full_page=True)
            paths.append(target)
        context.close()
    # The phone layout (390 px: tables as cards) and the dark theme, as the admin sees them.
    for suffix, options in (
        ("390", {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True}),
        ("dark", {"viewport": {"width": 1366, "height": 860}, "color_scheme": "dark"}),
    ):
        context = browser.new_context(**options)
        page = context.new_page()
        sign_in(page, base, "ada", password)
        for name, path in (("dashboard", "/"), ("approvals", "/approvals/")):
            page.goto(base + path)
            page.wait_for_load_state("networkidle")
            target = out / f"{name}-{suffix}.png"
            page.screenshot(path=str(target), full_page=True)
            paths.append(target)
        context.close()
    return paths


if __name__ == "__main__":
    base = (sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8000").rstrip("/")
    for path in take(base, os.environ.get("MANDATE_PASSWORD") or "mandate-demo"):
        print(path)
