"""A feed syndicated end to end: feed server → poll job → syndication job → the real PDS."""

from __future__ import annotations

import pytest

from skypost.sources import feeds
from skypost.sources.entries import entry_post_id
from tests.feeds.builders import CONTENT_TYPES, E, atom, entries, json_feed, ts

INTERVAL = 120
PATH = "/feed"


def tick(app, clock, seconds=INTERVAL):
    clock.advance(seconds)
    app.run_worker(burst=True)
    app.db.dispose()  # see test_poll.run_worker


@pytest.mark.parametrize("kind", [atom, json_feed])
def test_new_entries_reach_bluesky_once_across_many_polls(db_url, make_app, make_account, pds, proxy, clock,
                                                         feed_server, kind):
    app = make_app(db_url)
    alice = make_account("feedy")
    app.add_account(alice.handle, alice.app_password, service=proxy.url)
    backlog = entries(3, start=clock(), base=feed_server.base)  # card pages on loopback
    feed_server.set(PATH, kind(backlog), content_type=CONTENT_TYPES[kind])
    added = feeds.add_feed(app, feed_server.url(PATH), interval=INTERVAL, backfill=1)
    assert [o.title for o in added.backfilled] == ["Post number 3"]

    app.run_worker(burst=True)  # the backfilled post goes out; the poll is not due yet
    tick(app, clock)
    tick(app, clock)
    texts = [r["value"]["text"] for r in pds.list_posts(alice.did)]
    assert len(texts) == 1 and "Post number 3" in texts[0]

    page = feed_server.url("/post/4")  # the card's page, on loopback too
    feed_server.set("/post/4", "<html><head><title>New</title></head><body>Hi</body></html>",
                    content_type="text/html")
    fresh = E(guid="urn:post:4", title="A brand new post", link=page,
              published=ts(clock()), summary="Fresh from the feed.", categories=("news",))
    feed_server.set(PATH, kind([fresh] + backlog), content_type=CONTENT_TYPES[kind])
    for _ in range(5):
        tick(app, clock)
    records = pds.list_posts(alice.did)
    assert len(records) == 2
    new = [r for r in records if "A brand new post" in r["value"]["text"]]
    assert len(new) == 1
    assert new[0]["value"]["embed"]["external"]["uri"] == page
    assert new[0]["value"]["langs"] == ["en"]

    status = app.status(entry_post_id(added.feed["id"], "id:urn:post:4"))
    assert status["status"] == "completed" and status["deliveries"][0]["account"] == alice.handle
    info = feeds.list_feeds(app)[0]
    assert info["entries_submitted"] == 2 and info["last_error"] is None
