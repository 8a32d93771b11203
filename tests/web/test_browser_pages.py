"""Every dashboard page on a phone (390 px) and a desktop (1280 px), in a real browser against
`skypost serve` and the real PDS: nothing scrolls sideways, a first-time user can add an account
and re-enter an app password, the activity log links, the post page's history follows the
status live, the rate-budget tile explains "—", there is a favicon, and it all reads without
JavaScript. Screenshots go to test-artifacts/."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import Page, expect, sync_playwright

from tests.support.faultproxy import delay
from tests.web.conftest import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, CREATE


def assert_fits(page: Page) -> None:
    width, inner = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width <= inner, f"{page.url} scrolls sideways: {width} > {inner}"


def shot(page: Page, name: str, width: int) -> None:
    assert_fits(page)
    page.screenshot(path=str(ARTIFACTS / f"{name}-{width}.png"), full_page=True)


def log_in(page: Page, base: str, token: str) -> None:
    page.goto(base + "/")
    expect(page).to_have_url(base + "/login?next=%2F")
    page.fill("#token", token)
    page.click("button:has-text('Sign in')")
    expect(page).to_have_url(base + "/")


LONG_ID = "2026/11/a-rather-long-post-identifier-from-a-cms-" + "x" * 40
LONG_TITLE = "Why we moved our blog to Bluesky, and what we learnt about " + "syndication " * 6


@pytest.mark.parametrize("width", [390, 1280])
def test_every_page_fits_and_a_first_time_user_gets_going(server, proxy, pds, make_account, width):
    base, token, alice = server
    bob = make_account("newcomer")
    api = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    ARTIFACTS.mkdir(exist_ok=True)
    expect.set_options(timeout=20_000)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(
                viewport={"width": width, "height": 844 if width < 600 else 900}
            )
            page.set_default_timeout(20_000)
            page.goto(base + "/login")
            shot(page, "login", width)
            assert page.locator("link[rel=icon]").get_attribute("href") == "/static/favicon.svg"
            log_in(page, base, token)

            # the post page: the status and its history follow the work live, without a reload
            proxy.add_rule(CREATE, delay(2), times=1)
            r = api.post(
                "/api/v1/posts",
                json={
                    "id": LONG_ID,
                    "title": LONG_TITLE,
                    "url": "https://blog.example.com/" + "long-path/" * 12,
                    "excerpt": "Syndicated in the background, exactly once.",
                },
            )
            assert r.status_code == 202, r.text
            page.goto(base + r.headers["location"].replace("/api/v1", ""))
            page.evaluate("window.__same_page = true")
            status = page.locator("#post-status")
            expect(status).to_contain_text("Syndicating to Bluesky…")
            history = page.locator("#post-history")
            expect(history).not_to_contain_text("published to")
            expect(status).to_have_attribute("data-status", "completed")
            link = history.locator("a[href^='https://bsky.app/profile/']")
            expect(link).to_have_count(1)  # the new event arrived, and its address is a link
            assert page.evaluate("window.__same_page") is True
            shot(page, "post", width)

            # a skipped post offers Retry, which says why nothing was queued
            api.post(
                "/api/v1/posts",
                json={
                    "id": "kept",
                    "title": "Kept on the site only",
                    "url": "https://blog.example.com/kept",
                    "dont_syndicate": True,
                },
            )
            page.goto(base + "/posts/kept")
            page.click("#retry")
            expect(page.locator("#post-status")).to_contain_text(
                "nothing to retry: post kept stays skipped"
            )

            page.goto(base + "/")
            rows = page.locator("table.posts tbody tr")
            expect(rows).to_have_count(2)
            # on a phone each post is a card: rows are blocks, the header row is hidden
            display = rows.first.evaluate("row => getComputedStyle(row).display")
            assert display == ("block" if width < 600 else "table-row")
            shot(page, "posts", width)

            # a first-time user adds an account from the dashboard; a wrong password is never echoed
            page.goto(base + "/accounts")
            page.fill("#add-handle", bob.handle)
            page.fill("#add-password", "wrong-pass-word-here")
            page.fill("#add-service", proxy.url)
            page.click("#add-account-button")
            expect(page.locator("#add-account .flash-error")).to_contain_text("refused the login")
            expect(page.locator(".flash-warning")).to_contain_text("App passwords")
            assert "wrong-pass-word-here" not in page.content()
            expect(page.locator("#add-handle")).to_have_value(bob.handle)
            page.fill("#add-password", bob.app_password)
            page.click("#add-account-button")
            expect(page.locator(".flash-ok")).to_contain_text(f"Added @{bob.handle}")
            assert bob.app_password not in page.content()
            card = page.locator("article.account", has=page.locator("h2", has_text=bob.handle))
            expect(card).to_contain_text("not known yet: Bluesky reports it on the first call")
            shot(page, "accounts", width)

            # re-enter the app password (the same check as the CLI)
            card.locator("summary").click()
            card.locator("input[name=app_password]").fill(bob.app_password)
            card.locator("button", has_text="Save and retry").click()
            expect(page.locator(".flash-ok")).to_contain_text(
                f"New app password saved for @{bob.handle}"
            )

            page.goto(base + "/activity")
            expect(page.locator("table.events a[href^='https://bsky.app/profile/']")).to_have_count(
                1
            )
            shot(page, "activity", width)
            page.goto(base + "/posts/no-such-post")
            shot(page, "not-found", width)
        finally:
            browser.close()
    favicon = httpx.get(base + "/favicon.ico", follow_redirects=True)
    assert favicon.status_code == 200 and favicon.headers["content-type"].startswith(
        "image/svg+xml"
    )
    assert len(pds.list_posts(alice.did)) == 1
    api.close()


def test_the_dashboard_reads_and_works_without_javascript(server, make_account, proxy):
    base, token, alice = server
    carol = make_account("nojs")
    api = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    ARTIFACTS.mkdir(exist_ok=True)
    expect.set_options(timeout=20_000)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(
                java_script_enabled=False, viewport={"width": 390, "height": 844}
            )
            page = context.new_page()
            page.set_default_timeout(20_000)
            log_in(page, base, token)
            api.post(
                "/api/v1/posts",
                json={
                    "id": "plain",
                    "title": "Read without scripts",
                    "url": "https://blog.example.com/plain",
                    "dont_syndicate": True,
                },
            )
            page.goto(base + "/")
            expect(page.locator("table.posts")).to_contain_text("Read without scripts")
            page.goto(base + "/posts/plain")
            page.click("#retry")  # a plain form post and a redirect
            expect(page.locator(".flash-warning")).to_contain_text(
                "Nothing to retry: post plain stays skipped"
            )
            page.goto(base + "/accounts")
            page.fill("#add-handle", carol.handle)
            page.fill("#add-password", carol.app_password)
            page.fill("#add-service", proxy.url)
            page.click("#add-account-button")
            expect(page.locator(".flash-ok")).to_contain_text(f"Added @{carol.handle}")
            shot(page, "accounts-nojs", 390)
        finally:
            browser.close()
    accounts = api.get("/api/v1/accounts").json()["items"]
    assert {a["handle"] for a in accounts} == {alice.handle, carol.handle}
    api.close()
