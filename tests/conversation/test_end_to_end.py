"""The whole loop on the full local network: a post syndicated by skypost gathers replies,
likes and reposts on Bluesky; within one backfeed interval each reaches a Webmention-enabled
site (which fetches and parses skypost's public h-entry page) and a signed webhook receiver
(through injected failures), exactly once; a deleted reply and an undone like disappear the
same way (410 page, a new Webmention, an `interaction.removed` event)."""

from __future__ import annotations

import threading
from typing import Any

import httpx

from skypost import Skypost
from tests.conftest import FakeClock
from tests.conversation.support import WebhookReceiver, WebmentionSite, run_until_settled, serving
from tests.conversation.test_backfeed import syndicate, wait_counts
from tests.support.network import LocalNetwork

INTERVAL = 300.0


def interactions(app: Skypost, post_id: str) -> dict[str, dict[str, Any]]:
    data = app.interactions(post_id)
    assert data is not None
    return {i["uri"]: i for i in data["interactions"]}


def test_a_reply_on_bluesky_reaches_the_site_once_and_leaves_when_deleted(
        network: LocalNetwork, make_app: Any, sqlite_url: str, clock: FakeClock) -> None:
    app = make_app(sqlite_url, backfeed_interval=INTERVAL, notify_timeout=2.0)
    site = WebmentionSite()
    post_url = site.page("/2026/hello", link_header='</webmention>; rel="webmention"')
    tried: set[str] = set()
    lock = threading.Lock()

    def first_attempt_fails(event: dict[str, Any]) -> str:
        with lock:  # every event's first delivery fails: the second must carry the same id
            if event["id"] in tried:
                return "ok"
            tried.add(event["id"])
            return "500" if len(tried) % 2 else "drop"

    receiver = WebhookReceiver(clock, first_attempt_fails)
    author, fan, other = (network.create_account(n) for n in ("author", "fan", "other"))
    try:
        receiver.secret = app.add_notify(receiver.url, events=["interaction.created", "interaction.removed"])
        with serving(app) as public:
            app.settings = app.settings.replace(public_url=public)
            app.add_account(author.handle, author.app_password, service=network.pds_url)
            app.submit({"id": "hello", "title": "Hello", "url": post_url, "accounts": [author.handle]})
            app.run_worker(burst=True)
            (record,) = syndicate(network, app, "hello", author)

            reply = network.post(fan, "Lovely post!", reply_to=record)
            nested = network.post(other, "Agreed", reply_to=reply, root=record)
            like = network.like(other, record)
            repost = network.repost(fan, record)
            wait_counts(network, record["uri"], likeCount=1, repostCount=1, replyCount=1)  # direct replies
            network.wait_for(lambda: network.thread(record["uri"])["replies"][0].get("replies"))

            # one backfeed interval later, the recurring job has read them; the outbox tells the site
            clock.advance(INTERVAL + 1)
            run_until_settled(app, clock)
            stored = interactions(app, "hello")
            assert set(stored) == {reply["uri"], nested["uri"], like["uri"], repost["uri"]}
            assert stored[nested["uri"]]["parent_uri"] == reply["uri"]
            mentions = list(site.mentions)
            assert len(mentions) == 4 and {m.target for m in mentions} == {post_url}
            assert all(m.source_status == 200 and m.links_to_target for m in mentions), mentions
            sources = {m.source for m in mentions}
            assert len(sources) == 4 and all(s.startswith(f"{public}/i/") for s in sources)
            events = receiver.unique()
            assert all(d.signature_problem is None for d in receiver.deliveries)
            created = [d for d in events.values() if d.event_type == "interaction.created"]
            assert len(created) == 4 and len(receiver.deliveries) == 8  # each sent twice: failed, then ok
            assert {httpx.get(s).status_code for s in sources} == {200}

            # again: nothing new reaches anyone
            clock.advance(INTERVAL + 1)
            run_until_settled(app, clock)
            assert len(site.mentions) == 4 and len(receiver.unique()) == 4

            # the reply is deleted and the like undone on Bluesky
            network.delete_record(fan, reply["uri"])
            network.delete_record(other, like["uri"])
            wait_counts(network, record["uri"], likeCount=0)
            clock.advance(INTERVAL + 1)
            run_until_settled(app, clock)
            stored = interactions(app, "hello")
            assert stored[reply["uri"]]["removed"] and stored[like["uri"]]["removed"]
            assert not stored[repost["uri"]]["removed"]
            # a full reconciliation (what `skypost backfeed` does): the answer to the deleted reply
            # has dropped out of the thread, yet it still exists on Bluesky, so it stays
            app.backfeed()
            stored = interactions(app, "hello")
            assert not stored[nested["uri"]]["removed"]
            assert {u for u, i in stored.items() if i["removed"]} == {reply["uri"], like["uri"]}
            run_until_settled(app, clock)
            assert app.status("hello")["interactions"]["like"] == 0
            removals = site.mentions[4:]
            assert len(removals) == 2 and all(m.source_status == 410 for m in removals)
            gone_pages = {m.source for m in removals}
            assert {httpx.get(s).status_code for s in gone_pages} == {410}
            removed_events = [d for d in receiver.unique().values() if d.event_type == "interaction.removed"]
            removed_uris = {httpx.Response(200, content=d.body).json()["data"]["uri"] for d in removed_events}
            assert removed_uris == {reply["uri"], like["uri"]}
            # each removal once, whatever ran after
            clock.advance(INTERVAL + 1)
            run_until_settled(app, clock)
            assert len(site.mentions) == 4 + len(removals)
            assert len([d for d in receiver.unique().values() if d.event_type == "interaction.removed"]) == len(
                removed_events)
    finally:
        site.close()
        receiver.close()
