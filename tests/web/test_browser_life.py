"""A post's life on the dashboard, in a real browser (Playwright + Debian's Chromium) against
`skypost serve` (its embedded worker publishes) on the full local network (PLC + PDS + AppView):
a reply from the form lands in getPostThread under the post exactly once (the same form posted
again changes nothing), a reply to a Bluesky reply that the backfeed stored lands under it,
"Who may reply: following" set on the accounts page shows as the thread's gate, and Delete asks,
then removes the records from the PDS. On a phone (390 px): no sideways scrolling."""

from __future__ import annotations

import os
import re
import time
from typing import Any, Iterator

import httpx
import pytest
from playwright.sync_api import Page, expect, sync_playwright

from tests.conftest import TEST_KEY
from tests.web.conftest import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, run, serving
from tests.web.test_browser_pages import assert_fits, log_in

POST = "app.bsky.feed.post"
THREADGATE = "app.bsky.feed.threadgate"


@pytest.fixture
def net_server(tmp_path, network) -> Iterator[tuple[str, str, Any, str]]:
    """`skypost serve` (with its worker) whose account posts to the full network's PDS."""
    db = f"sqlite:///{tmp_path}/skypost.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKYPOST_")}
    env.update(SKYPOST_DATABASE_URL=db, SKYPOST_SECRET_KEY=TEST_KEY, SKYPOST_ALLOW_PRIVATE_URLS="1",
               SKYPOST_POLL_INTERVAL="0.1", SKYPOST_JOB_LEASE="5", SKYPOST_RETRY_DELAYS="1,1,1",
               SKYPOST_BACKFEED_INTERVAL="0")
    alice = network.create_account("dash")
    run(env, "init")
    run(env, "account", "add", alice.handle, "--password-stdin", "--service", network.pds_url,
        stdin=alice.app_password)
    token = run(env, "token", "create", "browser").strip()
    with serving(env, tmp_path) as base:
        yield base, token, alice, db


def published(api: httpx.Client, post_id: str, title: str) -> dict[str, Any]:
    """Submit through the API; the embedded worker publishes it: its delivery."""
    assert api.post("/api/v1/posts", json={"id": post_id, "title": title,
                                           "url": f"https://blog.example.com/{post_id}"}).status_code == 202
    deadline = time.monotonic() + 30
    while True:
        status = api.get(f"/api/v1/posts/{post_id}").json()
        if status["status"] == "completed":
            return dict(status["deliveries"][0])
        assert time.monotonic() < deadline, status
        time.sleep(0.1)


def wait_reply_status(page: Page, reply_id: str, want: str) -> None:
    """Reload the post page until the reply from the site shows `want` (the worker runs apart)."""
    item = page.locator(f'li.site-reply[data-reply-id="{reply_id}"]')
    deadline = time.monotonic() + 30
    while item.get_attribute("data-status") != want:
        assert time.monotonic() < deadline, item.inner_text()
        time.sleep(0.2)
        page.reload()


def send_reply(page: Page, text: str) -> dict[str, str]:
    """Fill and send the reply form; returns the form's fields as they were sent."""
    form = page.locator("#reply-form")
    page.fill("#reply-text", text)
    fields = {name: form.locator(f'input[name="{name}"]').get_attribute("value") or ""
              for name in ("csrf", "reply_id")}
    parent = form.locator('input[name="parent"]')
    if parent.count():
        fields["parent"] = parent.get_attribute("value") or ""
    page.click("#send-reply")
    expect(page.locator(".flash")).to_contain_text("Reply queued")
    return {**fields, "text": text}


def thread_replies(network, uri: str, count: int) -> list[dict[str, Any]]:
    def probe() -> list[dict[str, Any]] | None:
        replies = network.thread(uri).get("replies") or []
        return replies if len(replies) >= count else None

    return network.wait_for(probe)


def test_reply_gate_and_delete_from_the_dashboard(net_server, network, make_app):
    base, token, alice, db = net_server
    api = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    post = published(api, "life-1", "A post to answer from the site")
    ARTIFACTS.mkdir(exist_ok=True)
    expect.set_options(timeout=20_000)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 390, "height": 844})
            page.set_default_timeout(20_000)
            log_in(page, base, token)

            # a reply from the form, then the same form posted again: one reply on Bluesky
            page.goto(base + "/posts/life-1")
            assert_fits(page)
            sent = send_reply(page, "Thanks for reading, from the dashboard")
            again = page.request.post(base + "/posts/life-1/replies", form=sent, max_redirects=0)
            assert again.status == 303
            page.goto(base + "/posts/life-1")
            wait_reply_status(page, sent["reply_id"], "completed")
            item = page.locator(f'li.site-reply[data-reply-id="{sent["reply_id"]}"]')
            expect(item).to_contain_text("Thanks for reading, from the dashboard")
            link = item.locator("a", has_text=f"@{alice.handle}").get_attribute("href")
            assert link.startswith(f"https://bsky.app/profile/{alice.did}/post/")
            assert_fits(page)
            page.screenshot(path=str(ARTIFACTS / "life-reply-390.png"), full_page=True)
            replies = thread_replies(network, post["uri"], 1)
            mine = [r for r in replies if r["post"]["author"]["did"] == alice.did]
            assert len(mine) == 1 and mine[0]["post"]["record"]["text"] == sent["text"]
            assert [r["id"] for r in api.get("/api/v1/posts/life-1/replies").json()["items"]] == [sent["reply_id"]]

            # a Bluesky reply, stored by the backfeed; "Reply" on it answers it, under it
            bob = network.create_account("bob")
            bobs = network.post(bob, "What about the weather?", reply_to={"uri": post["uri"], "cid": post["cid"]})
            thread_replies(network, post["uri"], 2)
            app = make_app(db, use_clock=False)
            app.backfeed()
            assert any(i["uri"] == bobs["uri"] for i in app.interactions("life-1")["interactions"])
            page.goto(base + "/posts/life-1")
            bob_item = page.locator("#conversation li.reaction", has_text="What about the weather?")
            bob_item.locator("a.reply-link").click()
            expect(page.locator("#reply-parent")).to_contain_text("What about the weather?")
            to_bob = send_reply(page, "Sunny all week")
            assert to_bob["parent"] == bobs["uri"]
            wait_reply_status(page, to_bob["reply_id"], "completed")
            expect(page.locator(f'li.site-reply[data-reply-id="{to_bob["reply_id"]}"]')).to_contain_text("under")
            assert_fits(page)

            def under_bob() -> list[dict[str, Any]] | None:
                view = network.thread(bobs["uri"])
                return view.get("replies") or None

            answers = network.wait_for(under_bob)
            assert [a["post"]["record"]["text"] for a in answers] == ["Sunny all week"]
            assert answers[0]["post"]["record"]["reply"]["root"]["uri"] == post["uri"]
            thread = network.thread(post["uri"])
            assert sum(r["post"]["author"]["did"] == alice.did for r in thread["replies"]) == 1

            # who may reply: following, set on the accounts page, written with the next post
            page.goto(base + "/accounts")
            account = page.locator("article.account", has_text=alice.handle)
            expect(account.locator(".gate-words")).to_have_text("replies: everyone; quotes on")
            editor = page.locator(f'details.gates-edit[data-account="{alice.handle}"]')
            editor.locator("summary").click()
            editor.locator('input[name="who"][value="some"]').check()
            editor.locator('input[name="rules"][value="following"]').check()
            editor.locator("button", has_text="Save for new posts").click()
            expect(page.locator(".flash")).to_contain_text("replies: following; quotes on")
            expect(page.locator("article.account", has_text=alice.handle).locator(".gate-words")).to_have_text(
                "replies: following; quotes on")
            assert_fits(page)
            gated = published(api, "life-2", "Only people I follow may answer")
            page.goto(base + "/posts/life-2")
            expect(page.locator("#gates")).to_contain_text(f"@{alice.handle}: replies: following; quotes on")
            view = network.wait_for(
                lambda: network.appview("app.bsky.feed.getPostThread", uri=gated["uri"]).get("threadgate"))
            assert view["record"]["allow"] == [{"$type": "app.bsky.feed.threadgate#followingRule"}]

            # Delete: asks first, then removes the post and its gate from the PDS
            page.click("#delete")
            expect(page.locator("h1")).to_contain_text("from Bluesky?")
            page.click("#confirm-delete")
            expect(page).to_have_url(base + "/posts/life-2")
            expect(page.locator(".flash")).to_contain_text(re.compile("[Rr]emoved from Bluesky"))
            expect(page.locator("#post-status")).to_have_attribute("data-status", "deleted")
            expect(page.locator("#post-status")).to_contain_text("Removed from Bluesky")
            expect(page.locator("#delete")).to_have_count(0)
            expect(page.locator("#reply-form")).to_have_count(0)
            rkey = gated["uri"].rsplit("/", 1)[1]
            assert all(r["uri"] != gated["uri"] for r in network.iter_records(alice.did, POST))
            assert not any(r["uri"].endswith("/" + rkey) for r in network.iter_records(alice.did, THREADGATE))
            assert any(r["uri"] == post["uri"] for r in network.iter_records(alice.did, POST))
            assert_fits(page)
        finally:
            browser.close()
    api.close()
