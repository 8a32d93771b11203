"""A post's conversation on the dashboard, in a real browser (Playwright + Debian's Chromium)
against `skypost serve`: the replies as a nested thread with avatars, names and links, hostile
names shown as text, a removed reply struck out, the quotes, who liked and reposted, and the
counts in the posts list; on a phone (390 px) and a desktop, without sideways scrolling."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import expect, sync_playwright

from tests.conversation.interaction_rows import add_interaction
from tests.web.conftest import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS
from tests.web.test_browser_pages import assert_fits, log_in

T = 1_780_000_000.0
EVIL = '<img src=x onerror="window.__pwned=1">Mallory'


@pytest.mark.parametrize("width", [390, 1280])
def test_the_post_page_shows_the_conversation_as_a_thread(server, make_app, tmp_path, width):
    base, token, alice = server
    api = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert api.post("/api/v1/posts", json={"id": "talked-about", "title": "A post people answered",
                                           "url": "https://blog.example.com/talk",
                                           "dont_syndicate": True}).status_code == 202
    app = make_app(f"sqlite:///{tmp_path}/skypost.db", use_clock=False)
    first = add_interaction(app, "talked-about", "reply", "a1", did="did:plc:ann", handle="ann.test",
                            display_name="Ann", text="Great read, see https://example.com/more",
                            created_at=T)
    chain = first
    for n in range(7):  # a long back-and-forth: deep nesting must still fit a phone
        chain = add_interaction(app, "talked-about", "reply", f"c{n}", did=f"did:plc:c{n}",
                                handle=f"c{n}.test", display_name=f"Person {n}",
                                text="Indeed " + "x" * 60, parent=chain, created_at=T + 10 + n)
    add_interaction(app, "talked-about", "reply", "evil", did="did:plc:mallory", handle="mallory.test",
                    display_name=EVIL, avatar="javascript:alert(1)", text="<script>window.__pwned=1</script>",
                    created_at=T + 100)
    add_interaction(app, "talked-about", "reply", "gone", did="did:plc:gone", handle="gone.test",
                    text="I take it back", created_at=T + 200, removed_at=T + 300)
    add_interaction(app, "talked-about", "quote", "q", did="did:plc:quinn", handle="quinn.test",
                    display_name="Quinn", text="Worth quoting", created_at=T + 50)
    for who in ("lee", "lou"):
        add_interaction(app, "talked-about", "like", who, did=f"did:plc:{who}", handle=f"{who}.test")
    add_interaction(app, "talked-about", "repost", "rp", did="did:plc:rex", handle="rex.test")

    ARTIFACTS.mkdir(exist_ok=True)
    expect.set_options(timeout=20_000)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": 844 if width < 600 else 900})
            page.set_default_timeout(20_000)
            log_in(page, base, token)
            row = page.locator("table.posts tbody tr", has_text="A post people answered")
            expect(row.locator("td.reactions")).to_contain_text("9")  # 9 live replies
            expect(row.locator(".count-like")).to_have_attribute("title", "2 likes")
            assert_fits(page)
            page.screenshot(path=str(ARTIFACTS / f"conversation-posts-{width}.png"), full_page=True)

            page.goto(base + "/posts/talked-about")
            talk = page.locator("#conversation")
            expect(page.locator("#interaction-counts")).to_have_text("9 replies, 1 quote, 2 likes, 1 repost")
            replies = talk.locator("ol.thread:not(.quotes) > li.reaction")
            expect(replies).to_have_count(10)
            depths = [int(d) for d in replies.evaluate_all("els => els.map(e => e.dataset.depth)")]
            assert depths == [0, 1, 2, 3, 4, 5, 6, 7, 0, 0]
            indents = replies.evaluate_all("els => els.map(e => e.getBoundingClientRect().left)")
            assert indents[0] < indents[1] < indents[2] < indents[5]  # nested replies sit further in
            ann = replies.first
            expect(ann.locator("a.author")).to_have_attribute("href", "https://bsky.app/profile/did:plc:ann")
            expect(ann.locator("img.avatar")).to_have_attribute("referrerpolicy", "no-referrer")
            expect(ann.locator(".reaction-text a")).to_have_attribute("href", "https://example.com/more")
            expect(ann.locator("a", has_text="View on Bluesky")).to_have_attribute(
                "href", "https://bsky.app/profile/did:plc:ann/post/a1")
            evil = replies.nth(8)
            expect(evil.locator("a.author")).to_contain_text(EVIL)  # shown as text, never run
            expect(evil.locator(".reaction-text")).to_have_text("<script>window.__pwned=1</script>")
            expect(evil.locator("img")).to_have_count(0)
            assert page.evaluate("window.__pwned") is None
            removed = replies.nth(9)
            expect(removed.locator("del")).to_have_text("removed on Bluesky")
            expect(removed).not_to_contain_text("I take it back")
            expect(talk.locator("ol.quotes > li")).to_contain_text("Worth quoting")
            expect(talk.locator("p.who", has_text="Liked by")).to_contain_text("@lee.test, @lou.test")
            expect(talk.locator("p.who", has_text="Reposted by").locator("a")).to_have_attribute(
                "href", "https://bsky.app/profile/did:plc:rex")
            assert_fits(page)
            page.screenshot(path=str(ARTIFACTS / f"conversation-{width}.png"), full_page=True)
        finally:
            browser.close()
    api.close()
