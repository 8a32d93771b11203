"""The dashboard in a real browser (Playwright + Debian's Chromium) against `skypost serve`
running as a real process, with a real PDS account behind the fault proxy."""

from __future__ import annotations

import httpx
from playwright.sync_api import expect, sync_playwright

from tests.support.faultproxy import delay, error
from tests.web.conftest import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, CREATE


def test_dashboard_follows_a_post_live_and_retries_a_failed_one(server, proxy, pds):
    base, token, alice = server
    api = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    ARTIFACTS.mkdir(exist_ok=True)
    expect.set_options(timeout=20_000)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(20_000)
            page.goto(base + "/")
            expect(page).to_have_url(base + "/login?next=%2F")
            page.fill("#token", token)
            page.click("button:has-text('Sign in')")
            expect(page).to_have_url(base + "/")
            expect(page.locator("h1")).to_have_text("Posts")

            # a post through the API, slowed down at the PDS so that it is seen while pending
            proxy.add_rule(CREATE, delay(3), times=1)
            r = api.post("/api/v1/posts", json={"id": "hello-1", "title": "Hello from skypost serve",
                                                "url": "https://blog.example.com/hello",
                                                "excerpt": "Syndicated in the background, exactly once."})
            assert r.status_code == 202, r.text
            page.goto(base + r.headers["location"].replace("/api/v1", ""))
            page.evaluate("window.__same_page = true")  # lost if the page reloads
            status = page.locator("#post-status")
            expect(status).to_contain_text("Syndicating to Bluesky…")
            expect(status).to_have_attribute("data-status", "completed")
            expect(status).to_contain_text("Live on Bluesky")
            assert page.evaluate("window.__same_page") is True
            link = page.locator("a", has_text="View on Bluesky")
            assert link.get_attribute("href").startswith(f"https://bsky.app/profile/{alice.did}/post/")

            # a post that Bluesky refuses once: it turns failed live, and Retry publishes it in place
            proxy.add_rule(CREATE, error(400, {"error": "InvalidRequest", "message": "Invalid record (once)"}),
                           times=1)
            assert api.post("/api/v1/posts", json={"id": "second", "title": "A second post, retried",
                                                   "url": "https://blog.example.com/second"}).status_code == 202
            page.goto(base + "/posts/second")
            page.evaluate("window.__same_page = true")
            expect(status).to_have_attribute("data-status", "failed")
            expect(status).to_contain_text("Invalid record (once)")
            page.click("#retry")
            expect(status).to_have_attribute("data-status", "completed")
            assert page.evaluate("window.__same_page") is True
            assert len(pds.list_posts(alice.did)) == 2

            api.post("/api/v1/posts", json={"id": "draft-7", "title": "Kept on the site only",
                                            "url": "https://blog.example.com/draft", "dont_syndicate": True})
            page.goto(base + "/")
            expect(page.locator("table.posts tbody tr")).to_have_count(3)
            page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
            page.goto(base + "/accounts")
            expect(page.locator("h2", has_text=alice.handle)).to_be_visible()
        finally:
            browser.close()
    api.close()
