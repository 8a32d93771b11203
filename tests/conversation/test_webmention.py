"""Webmention: each interaction's public h-entry page, served by `skypost serve`, is sent to
the endpoint each post page advertises (every way the specification allows); a receiver
on 127.0.0.1 fetches the source as a real one does and parses its h-entry with mf2py; a
removal is a new Webmention once the page answers 410. The SSRF policy and fetch's limits
apply to the target pages."""

from __future__ import annotations

import time
from typing import Any

import httpx
import mf2py
import pytest

from skypost.conversation.webmention import _html_endpoint, _link_header_endpoints
from skypost.store import queries_outbox as qo
from skypost.web.public import render_entry
from tests.conversation.support import (WebmentionSite, insert_interaction, insert_post, outbox_rows,
                                        remove_interaction, run_until_settled, serving)
from tests.hostile.server import HostileServer, drip, stream

HOSTILE_NAME = '<script>alert("name")</script> & "Eve"'
HOSTILE_TEXT = 'Great! <img src=x onerror=alert(1)> see https://example.org/a?b=1&c="2" and </article>'


def test_each_reaction_and_each_removal_is_one_webmention_verified_by_the_receiver(db_url, make_app, clock):
    app = make_app(db_url, notify_timeout=2.0)
    site = WebmentionSite()
    base = site.base
    pages = {
        # the endpoint, advertised each way the specification allows
        "link-absolute": site.page("/p/link-absolute", link_header=f'<{base}/webmention/abs>; rel="webmention"'),
        "link-relative": site.page("/p/link-relative", link_header='</webmention/rel?site=1>; rel=webmention'),
        "link-element": site.page("/p/link-element", html_head='<link rel="webmention" href="/webmention/link">'),
        "a-element": site.page("/p/a-element", html_body='<a href="/webmention/a" rel="nofollow webmention">wm</a>'),
        "empty-href": site.page("/p/empty-href", html_head='<link rel="webmention" href="">'),
        # the Link header wins over the document; the first element in document order wins
        "precedence": site.page("/p/precedence", link_header='</webmention/header>; rel="webmention"',
                                html_head='<link rel="webmention" href="/webmention/element">'),
        "document-order": site.page("/p/document-order",
                                    html_head='<link rel="webmention" href="/webmention/first">',
                                    html_body='<a rel="webmention" href="/webmention/second">x</a>'),
        "none": site.page("/p/none"),
    }
    expected_endpoint = {"link-absolute": "/webmention/abs", "link-relative": "/webmention/rel?site=1",
                         "link-element": "/webmention/link", "a-element": "/webmention/a",
                         "empty-href": "/p/empty-href", "precedence": "/webmention/header",
                         "document-order": "/webmention/first"}
    kinds = ["reply", "like", "repost", "quote", "reply", "like", "reply", "reply"]
    try:
        with serving(app) as public:
            app.settings = app.settings.replace(public_url=public)
            ids: dict[str, int] = {}
            for (name, url), kind in zip(pages.items(), kinds):
                seq = insert_post(app, name, url)
                text = HOSTILE_TEXT if kind in ("reply", "quote") else None
                ids[name] = insert_interaction(app, seq, kind, text=text, name=HOSTILE_NAME,
                                               avatar="https://cdn.example/avatar.jpg")

            run_until_settled(app, clock)

            live = list(site.mentions)
            assert len(live) == len(expected_endpoint)  # one per reaction whose post takes Webmentions
            assert sorted(site.endpoint_hits) == sorted(expected_endpoint.values())
            for name, path in expected_endpoint.items():
                mention = next(m for m in live if m.target == pages[name])
                assert mention.source == f"{public}/i/{ids[name]}"
                assert mention.source_status == 200 and mention.links_to_target, mention
                entry = mention.entry
                assert entry is not None
                author = entry["properties"]["author"][0]
                assert author["properties"]["name"] == [HOSTILE_NAME]
                assert author["properties"]["photo"][0] in ("https://cdn.example/avatar.jpg",
                                                            {"value": "https://cdn.example/avatar.jpg", "alt": ""})
                assert author["properties"]["url"][0].startswith("https://bsky.app/profile/did:plc:")
                assert entry["properties"]["published"]
                assert any(u.startswith("https://bsky.app/profile/") for u in entry["properties"]["url"])
                assert entry["properties"]["syndication"] == entry["properties"]["url"]
            by_kind = {kinds[list(pages).index(m.target.rsplit("/", 1)[-1])]: m.entry for m in live}
            assert by_kind["like"]["properties"]["like-of"] and by_kind["repost"]["properties"]["repost-of"]
            assert by_kind["quote"]["properties"]["in-reply-to"]
            reply = by_kind["reply"]["properties"]["content"][0]
            assert reply["value"] == HOSTILE_TEXT  # the text, as text: nothing in it became markup
            assert '<a href="https://example.org/a?b=1&amp;c=' in reply["html"] and "<img" not in reply["html"]
            no_endpoint = [r for r in outbox_rows(app) if r["target"] == pages["none"]]
            assert [r["status"] for r in no_endpoint] == ["skipped"]
            assert any(e["kind"] == "notify_skipped" and e["level"] == "info" for e in app.events(limit=200))

            # removals: the page answers 410, then one new Webmention each
            for name in ("link-relative", "a-element"):
                remove_interaction(app, ids[name])
            assert httpx.get(f"{public}/i/{ids['link-relative']}").status_code == 410
            run_until_settled(app, clock)
            removed = site.mentions[len(live):]
            assert sorted(m.target for m in removed) == sorted([pages["link-relative"], pages["a-element"]])
            assert all(m.source_status == 410 and m.entry is None for m in removed)
            gone = httpx.get(f"{public}/i/{ids['a-element']}")
            assert gone.status_code == 410 and "h-entry" not in gone.text and HOSTILE_NAME not in gone.text
            assert httpx.get(f"{public}/i/999999").status_code == 404
            assert httpx.get(f"{public}/i/x%00").status_code == 404
            sent = [r for r in outbox_rows(app) if r["channel"] == "webmention" and r["status"] == "sent"]
            assert len(sent) == len(expected_endpoint) + 2
    finally:
        site.close()


def test_a_removal_waits_for_its_creation(db_url, make_app, clock):
    """While a reaction's creation is being sent or waits for a retry, its removal is not taken."""
    app = make_app(db_url)
    interaction = insert_interaction(app, insert_post(app, "p1", "https://blog.example.com/p1"), "reply", text="x")
    remove_interaction(app, interaction)
    now = clock()

    def claim(owner: str) -> Any:
        with app.db.transaction() as conn:
            return qo.claim_event(conn, owner=owner, now=clock(), lease=60)

    creation = claim("w1")
    assert creation is not None and creation.type == "interaction.created"
    assert claim("w2") is None  # the creation is in hand: its removal waits
    with app.db.transaction() as conn:
        assert qo.retry_event(conn, creation.id, owner="w1", at=now + 60, http_status=503, error="HTTP 503", now=now)
    assert claim("w2") is None  # the creation waits for its retry: so does the removal
    clock.advance(60)
    again = claim("w2")
    assert again is not None and again.id == creation.id and again.attempts == 2
    with app.db.transaction() as conn:
        assert qo.finish_event(conn, creation.id, owner="w2", status="sent", http_status=202, error=None, now=now)
        assert not qo.finish_event(conn, creation.id, owner="w1", status="sent", http_status=202, error=None, now=now)
    removal = claim("w1")
    assert removal is not None and removal.type == "interaction.removed"


def test_the_page_escapes_hostile_values_and_parses_as_an_h_entry():
    row = {"kind": "reply", "uri": "at://did:plc:x/app.bsky.feed.post/3kabc", "cid": "c", "account": "a.test",
           "author_did": "did:plc:x", "author_handle": "x.test", "author_display_name": HOSTILE_NAME,
           "author_avatar": 'javascript:alert(1)', "text": HOSTILE_TEXT, "parent_uri": None,
           "created_at": 1_700_000_000.0, "removed_at": None}
    html = render_entry(row, 'https://blog.example.com/p?a=1&b="2"')
    assert "<script>" not in html and "<img src=x" not in html and "javascript:" not in html
    parsed = mf2py.parse(doc=html, url="https://skypost.example/i/1")
    entry = parsed["items"][0]
    assert entry["type"] == ["h-entry"]
    assert entry["properties"]["in-reply-to"] == ['https://blog.example.com/p?a=1&b="2"']
    assert entry["properties"]["author"][0]["properties"]["name"] == [HOSTILE_NAME]
    assert entry["properties"]["url"] == ["https://bsky.app/profile/did:plc:x/post/3kabc"]
    assert entry["properties"]["published"] == ["2023-11-14T22:13:20Z"]


@pytest.mark.parametrize("header, expected", [
    ('<https://a.example/wm>; rel="webmention"', ["https://a.example/wm"]),
    ('<https://a.example/wm>; rel=webmention', ["https://a.example/wm"]),
    ('<https://a.example/wm?a=1,2>; rel="other webmention"', ["https://a.example/wm?a=1,2"]),
    ('<https://a.example/x>; rel="webmention-not", <https://a.example/y>; rel="webmention"',
     ["https://a.example/y"]),
    ('<https://a.example/x>; title="rel=webmention, really"; rel="me"', []),
    ('<https://a.example/x>; REL="WebMention"', ["https://a.example/x"]),
    ("<>; rel=webmention", [""]),
])
def test_link_header_parsing(header, expected):
    assert _link_header_endpoints([header]) == expected


@pytest.mark.parametrize("html, expected", [
    ('<link rel="webmention" href="/a"><a rel="webmention" href="/b">', "/a"),
    ('<a rel="webmention" href="/b"></a><link rel="webmention" href="/a">', "/b"),
    ('<!-- <link rel="webmention" href="/commented"> --><a rel="webmention" href="/b">', "/b"),
    ('<link rel="webmention"><a rel="webmention" href="/has-href">', "/has-href"),
    ('<link rel="webmention" href="">', ""),
    ('<link rel="stylesheet" href="/s.css">', None),
])
def test_html_endpoint_parsing(html, expected):
    assert _html_endpoint(html.encode()) == expected


def test_a_target_on_a_private_address_is_refused(sqlite_url, make_app, clock):
    app = make_app(sqlite_url)
    app.settings = app.settings.replace(allow_private_urls=False, public_url="https://skypost.example")
    site = WebmentionSite()
    try:
        url = site.page("/p/1", link_header='</webmention>; rel="webmention"')
        seq = insert_post(app, "p1", url)
        insert_interaction(app, seq, "like")
        run_until_settled(app, clock)
        rows = [r for r in outbox_rows(app) if r["channel"] == "webmention"]
        assert [r["status"] for r in rows] == ["failed"] and rows[0]["attempts"] == 1
        assert "127.0.0.1 is a loopback address" in rows[0]["last_error"]
        assert site.mentions == [] and site.endpoint_hits == []
        assert any(e["kind"] == "notify_failed" for e in app.events())
    finally:
        site.close()


def test_hostile_target_pages_stay_bounded(sqlite_url, make_app, clock):
    """A page that never ends and one that drips its headers: each attempt stops at fetch's
    size cap or deadline, and the worker moves on."""
    app = make_app(sqlite_url, notify_timeout=0.5)
    app.settings = app.settings.replace(public_url="https://skypost.example")

    def endless() -> Any:
        while True:
            yield b"<p>" + b"x" * 65536 + b"</p>"

    server = HostileServer({"/huge": stream(endless, {"Content-Type": "text/html"}),
                            "/slow": drip(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n", every=0.2)})
    try:
        for path in ("/huge", "/slow"):
            insert_interaction(app, insert_post(app, path.strip("/"), server.url(path)), "like")
        started = time.monotonic()
        app.run_worker(burst=True)
        elapsed = time.monotonic() - started
        rows = {r["target"]: r for r in outbox_rows(app) if r["channel"] == "webmention"}
        huge, slow = rows[server.url("/huge")], rows[server.url("/slow")]
        assert huge["status"] == "failed" and "larger than the limit" in huge["last_error"]  # final: it will not shrink
        assert slow["status"] == "pending" and "timed out" in slow["last_error"]  # retried later
        assert elapsed < 5, elapsed  # two attempts, each within its deadline (2 × 0.5 s)
    finally:
        server.close()
