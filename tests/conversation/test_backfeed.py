"""The backfeed on the full local network (PLC + PDS + AppView): replies, quotes, likes and
reposts of syndicated posts come back once, with the right kind, author, text and parent; the
account's own reactions too; undone ones become removed; gates, faults, races and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

from skypost import Skypost
from skypost.conversation import backfeed as bf
from skypost.conversation import outbox
from skypost.store import queries as q
from skypost.store import queries_conversation as qc
from tests.conftest import TEST_KEY, FakeClock
from tests.support.faultproxy import FaultProxy, error
from tests.support.network import LocalNetwork, NetworkUser

INTERVAL = 300.0
LINK = "https://example.com/a/very/long/path/that/bluesky/shortens?for=display"
SHOWN = "example.com/a/very/long/pa..."


@pytest.fixture
def announced(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, str]]:
    """Every outbox call the backfeed makes (the outbox itself is the notify work's)."""
    calls: list[tuple[int, str]] = []
    lock = threading.Lock()

    def record(conn: Any, *, interaction_id: int, event: str, now: float) -> None:
        assert conn is not None and isinstance(now, float)
        with lock:
            calls.append((interaction_id, event))

    monkeypatch.setattr(outbox, "interaction_changed", record)
    return calls


def rows(app: Skypost) -> list[dict[str, Any]]:
    with app.db.connect() as conn:
        return conn.all("SELECT * FROM interactions ORDER BY id")


def live_by_uri(app: Skypost) -> dict[str, dict[str, Any]]:
    return {r["uri"]: r for r in rows(app) if r["removed_at"] is None}


def syndicate(network: LocalNetwork, app: Skypost, post_id: str, *users: NetworkUser) -> list[dict[str, str]]:
    """Publish one post with skypost to `users`' accounts; their records as {uri, cid}."""
    for user in users:
        if not any(a["handle"] == user.handle for a in app.accounts()):
            app.add_account(user.handle, user.app_password, service=network.pds_url)
    app.submit({"id": post_id, "title": f"Post {post_id}", "url": f"https://blog.example.com/{post_id}",
                "accounts": [u.handle for u in users]})
    app.run_worker(burst=True)
    status = app.status(post_id)
    assert status is not None and status["status"] == "completed", status
    by_handle = {d["account"]: {"uri": d["uri"], "cid": d["cid"]} for d in status["deliveries"]}
    return [by_handle[u.handle] for u in users]


def counts(network: LocalNetwork, uri: str) -> dict[str, int]:
    posts = network.appview("app.bsky.feed.getPosts", uris=[uri])["posts"]  # [] until indexed
    return {k: posts[0][k] for k in ("likeCount", "repostCount", "quoteCount", "replyCount")} if posts else {}


def wait_counts(network: LocalNetwork, uri: str, **expected: int) -> None:
    network.wait_for(lambda: all(counts(network, uri).get(k) == v for k, v in expected.items()),
                     what=f"counts {expected}")


def reply_with_link(network: LocalNetwork, user: NetworkUser, ref: dict[str, str]) -> dict[str, Any]:
    text = f"🎉 read {SHOWN} now"
    start = len("🎉 read ".encode())
    facet = {"index": {"byteStart": start, "byteEnd": start + len(SHOWN.encode())},
             "features": [{"$type": "app.bsky.richtext.facet#link", "uri": LINK}]}
    record = {"text": text, "facets": [facet], "reply": {"root": ref, "parent": ref}}
    return network.create_record(user, "app.bsky.feed.post", record)


# --- pure parts -------------------------------------------------------------------------------------

def test_link_facets_are_spelt_out_at_utf8_byte_offsets() -> None:
    text = f"é🎉 {SHOWN} and [site] ok"
    data = text.encode()
    first = data.index(SHOWN.encode())
    label = data.index(b"[site]")
    facets = [
        {"index": {"byteStart": first, "byteEnd": first + len(SHOWN.encode())},
         "features": [{"$type": "app.bsky.richtext.facet#link", "uri": LINK}]},
        {"index": {"byteStart": label, "byteEnd": label + 6},
         "features": [{"$type": "app.bsky.richtext.facet#link", "uri": "https://site.example/"}]},
        {"index": {"byteStart": 0, "byteEnd": 999}, "features": [{"$type": "app.bsky.richtext.facet#link",
                                                                  "uri": "https://out.of.range/"}]},
        {"index": {"byteStart": 0, "byteEnd": 2}, "features": [{"$type": "app.bsky.richtext.facet#link",
                                                                "uri": "javascript:alert(1)"}]},
        {"index": {"byteStart": 1, "byteEnd": 3}, "features": [{"$type": "app.bsky.richtext.facet#tag",
                                                                "tag": "x"}]},
    ]
    assert bf.expand_links(text, facets) == f"é🎉 {LINK} and [site] (https://site.example/) ok"
    assert bf.expand_links(text, "not a list") == text


def test_a_reaction_attaches_by_the_uri_it_targets() -> None:
    post = "at://did:plc:site/app.bsky.feed.post/3kaaaaaaaaaaa"
    other = "at://did:plc:fan/app.bsky.feed.post/3kbbbbbbbbbbb"
    nested = bf.reaction_from_record("at://did:plc:fan2/app.bsky.feed.post/3kccccccccccc", "c",
                                     {"text": "hi", "reply": {"root": {"uri": post}, "parent": {"uri": other}}},
                                     {"did": "did:plc:fan2", "handle": "fan2.test", "displayName": "Fan"})
    assert nested is not None and nested.candidates == (("reply", other), ("reply", post))
    assert nested.parent_uri == other and nested.author_display_name == "Fan"
    quote = bf.reaction_from_record("at://did:plc:fan/app.bsky.feed.post/3kddddddddddd", None, {
        "text": "look", "embed": {"$type": "app.bsky.embed.recordWithMedia",
                                  "record": {"record": {"uri": post}}, "media": {}}}, None, prefer="quote")
    assert quote is not None and quote.candidates == (("quote", post),) and quote.author_handle is None
    like = bf.reaction_from_record("at://did:plc:fan/app.bsky.feed.like/3keeeeeeeeeee", "c",
                                   {"subject": {"uri": post}}, {"did": "did:plc:someone-else", "handle": "x.test"})
    assert like is not None and like.candidates == (("like", post),) and like.author_handle is None
    assert bf.reaction_from_record("at://did:plc:fan/app.bsky.feed.post/3kf", "c", {"text": "plain"}) is None
    assert bf.reaction_from_record("https://not-an-at-uri", "c", {"subject": {"uri": post}}) is None
    assert bf.reaction_from_record("at://did:plc:fan/app.bsky.feed.like/3kg", "c", {"subject": "junk"}) is None


# --- the store: once, whatever the overlap --------------------------------------------------------

def test_one_waiting_backfeed_job_per_account_and_each_reaction_stored_and_removed_once(db_url: str,
                                                                                        make_app: Any) -> None:
    app = make_app(db_url, backfeed_interval=INTERVAL)
    app.add_account("alice.test", "app-pass-word", service="http://127.0.0.1:9", verify=False)
    app.add_account("bob.test", "app-pass-word", service="http://127.0.0.1:9", verify=False)
    assert bf.ensure_jobs(app) == 0  # add_account scheduled them
    with app.db.transaction() as conn:
        jobs = conn.all("SELECT * FROM jobs WHERE kind = 'backfeed' ORDER BY id")
        assert sorted(j["args"]["account_id"] for j in jobs) == [1, 2]
        assert all(j["run_at"] == app.clock() + INTERVAL for j in jobs)
        conn.execute("UPDATE jobs SET status = 'done' WHERE id = :id", {"id": jobs[0]["id"]})
    assert bf.ensure_jobs(app) == 1 and bf.ensure_jobs(app) == 0

    now = app.clock()
    with app.db.transaction() as conn:
        seq = q.insert_post_if_absent(conn, post_id="p", document={}, status="completed", reason=None,
                                      source="api", now=now)
        assert seq is not None
    values = dict(kind="like", uri="at://did:plc:fan/app.bsky.feed.like/3k", cid="c", post_seq=seq,
                  delivery_id=None, account="alice.test", subject_uri="at://did:plc:a/app.bsky.feed.post/3k",
                  author_did="did:plc:fan", author_handle="fan.test", author_display_name=None,
                  author_avatar=None, text=None, parent_uri=None, created_at=None)
    # two transactions insert the same reaction at once: one stores it, the other finds it there
    first_inserted, second_done = threading.Event(), threading.Event()
    results: dict[str, Any] = {}

    def second() -> None:
        first_inserted.wait(10)
        with app.db.transaction() as conn:
            results["second"] = qc.insert_interaction(conn, now=now, **values)
        second_done.set()

    thread = threading.Thread(target=second)
    thread.start()
    with app.db.transaction() as conn:
        results["first"] = qc.insert_interaction(conn, now=now, **values)
        first_inserted.set()
        assert not second_done.wait(0.3)  # it waits for this transaction
    thread.join(10)
    assert isinstance(results["first"], int) and results["second"] is None
    with app.db.transaction() as conn:
        assert qc.mark_interaction_removed(conn, results["first"], now=now)
    with app.db.transaction() as conn:
        assert not qc.mark_interaction_removed(conn, results["first"], now=now)
    assert [r["removed_at"] for r in rows(app)] == [now]


# --- the whole conversation on the network -----------------------------------------------------------

def test_the_conversation_comes_back_once_and_undone_reactions_become_removed(
        network: LocalNetwork, network_proxy: FaultProxy, make_app: Any, sqlite_url: str, clock: FakeClock,
        announced: list[tuple[int, str]]) -> None:
    site, second = network.create_account("site"), network.create_account("second")
    ann, bob, cat = (network.create_account(n) for n in ("ann", "bob", "cat"))
    network.create_record(ann, "app.bsky.actor.profile", {"displayName": "Ann Example"}, rkey="self")
    app = make_app(sqlite_url, backfeed_interval=INTERVAL)
    d1, d2 = syndicate(network, app, "p1", site, second)
    elsewhere = network.post(site, "not syndicated by skypost")

    ann_reply = reply_with_link(network, ann, d1)
    bob_nested = network.post(bob, "answering ann", reply_to=ann_reply, root=d1)
    cat_quote = network.post(cat, "look at this", quote=d1)
    bob_like = network.like(bob, d1)
    cat_repost = network.repost(cat, d1)
    ann_like_2 = network.like(ann, d2)
    network.like(cat, elsewhere)  # not a syndicated post: ignored
    own_like, own_repost = network.like(site, d1), network.repost(site, d1)
    own_reply = network.post(site, "thanks all", reply_to=d1)
    wait_counts(network, d1["uri"], likeCount=2, repostCount=2, quoteCount=1, replyCount=2)
    wait_counts(network, d2["uri"], likeCount=1)
    network.wait_for(lambda: len(network.thread(d1["uri"])["replies"][0].get("replies", []))
                     + len(network.thread(d1["uri"])["replies"][1].get("replies", [])) == 1)
    network.wait_for(lambda: network.appview("app.bsky.actor.getProfile", actor=ann.did).get("displayName"))

    started = time.perf_counter()
    summary = app.backfeed()
    elapsed = time.perf_counter() - started
    assert summary["new"] == {"reply": 3, "quote": 1, "like": 3, "repost": 2}, summary
    assert summary["removed"] == {"reply": 0, "quote": 0, "like": 0, "repost": 0}
    live = live_by_uri(app)
    assert len(live) == 9 == len(rows(app))
    expected = {  # uri: (kind, subject, author, parent)
        ann_reply["uri"]: ("reply", d1, ann, d1["uri"]),
        bob_nested["uri"]: ("reply", d1, bob, ann_reply["uri"]),
        own_reply["uri"]: ("reply", d1, site, d1["uri"]),
        cat_quote["uri"]: ("quote", d1, cat, None),
        bob_like["uri"]: ("like", d1, bob, None),
        own_like["uri"]: ("like", d1, site, None),
        cat_repost["uri"]: ("repost", d1, cat, None),
        own_repost["uri"]: ("repost", d1, site, None),
        ann_like_2["uri"]: ("like", d2, ann, None),
    }
    assert set(live) == set(expected)
    for uri, (kind, subject, author, parent) in expected.items():
        row = live[uri]
        assert (row["kind"], row["subject_uri"], row["author_did"], row["author_handle"], row["parent_uri"]) == (
            kind, subject["uri"], author.did, author.handle, parent), row
        assert row["account"] == (second.handle if subject is d2 else site.handle)
        assert row["text"] is None if kind in ("like", "repost") else isinstance(row["text"], str)
    assert live[ann_reply["uri"]]["text"] == f"🎉 read {LINK} now"
    assert live[ann_reply["uri"]]["author_display_name"] == "Ann Example"
    assert live[cat_quote["uri"]]["text"] == "look at this"
    assert len({r["post_seq"] for r in live.values()}) == 1
    assert sorted(announced) == sorted((r["id"], "interaction.created") for r in live.values())
    print(f"\nfirst backfeed: 9 reactions on 2 accounts in {elapsed:.2f} s")

    # again, and through the recurring job: nothing twice
    assert app.backfeed()["new"] == dict.fromkeys(bf.KINDS, 0)
    clock.advance(INTERVAL + 1)
    network_proxy.reset_counts()
    assert app.run_worker(burst=True) == 2  # one backfeed job per account
    quiet = network_proxy.calls()
    methods = sorted({s.method for s in network_proxy.seen()})
    print(f"requests of two polls with nothing new: {quiet} ({', '.join(methods)})")
    assert quiet <= 2 * 5, network_proxy.seen()  # per account: notifications, 3 own listings, getPosts
    assert len(rows(app)) == 9 and len(announced) == 9
    with app.db.connect() as conn:
        jobs = conn.all("SELECT * FROM jobs WHERE kind = 'backfeed'")
    assert len(jobs) == 2 and {j["status"] for j in jobs} == {"todo"}
    assert {j["run_at"] for j in jobs} == {clock() + INTERVAL}

    # an unlike, a deleted reply and a new like: the next recurring poll sees all three
    network.delete_record(bob, bob_like["uri"])
    network.delete_record(site, own_reply["uri"])
    late_like = network.like(cat, d1)
    wait_counts(network, d1["uri"], likeCount=2, replyCount=1)
    clock.advance(INTERVAL + 1)
    assert app.run_worker(burst=True) == 2
    live = live_by_uri(app)
    assert late_like["uri"] in live and bob_like["uri"] not in live and own_reply["uri"] not in live
    removed = {r["uri"] for r in rows(app) if r["removed_at"] is not None}
    assert removed == {bob_like["uri"], own_reply["uri"]}
    gone_ids = {r["id"] for r in rows(app) if r["removed_at"] is not None}
    assert sorted(i for i, e in announced if e == "interaction.removed") == sorted(gone_ids)
    assert len([1 for _, e in announced if e == "interaction.created"]) == 10
    # removals are announced once, whatever polls follow
    assert app.backfeed()["removed"] == dict.fromkeys(bf.KINDS, 0)
    assert len(announced) == 12


def test_a_reaction_the_views_do_not_list_yet_is_not_removed(
        network: LocalNetwork, network_proxy: FaultProxy, make_app: Any, sqlite_url: str, clock: FakeClock,
        announced: list[tuple[int, str]]) -> None:
    site = network.create_account("site")
    app = make_app(sqlite_url)
    (d1,) = syndicate(network, app, "g1", site)
    own_like = network.like(site, d1)  # in the repo at once; the AppView indexes it a moment later
    # the AppView has not indexed it yet: getLikes lists nobody
    network_proxy.add_rule("app.bsky.feed.getLikes", error(200, {"likes": []}), times=None)
    assert app.backfeed()["new"]["like"] == 1
    clock.advance(bf.REMOVAL_GRACE - 1)
    assert app.backfeed()["removed"]["like"] == 0  # too recent to be judged by a lagging view
    network_proxy.clear_rules()
    wait_counts(network, d1["uri"], likeCount=1)
    clock.advance(2)
    assert app.backfeed()["removed"]["like"] == 0  # listed now: live
    assert own_like["uri"] in live_by_uri(app)
    network.delete_record(site, own_like["uri"])
    wait_counts(network, d1["uri"], likeCount=0)
    assert app.backfeed()["removed"]["like"] == 1
    assert [e for _, e in announced] == ["interaction.created", "interaction.removed"]


def test_a_failing_poll_loses_nothing_and_never_moves_the_publishing_breaker(
        network: LocalNetwork, network_proxy: FaultProxy, make_app: Any, sqlite_url: str, clock: FakeClock,
        announced: list[tuple[int, str]]) -> None:
    site, fan = network.create_account("site"), network.create_account("fan")
    app = make_app(sqlite_url, backfeed_interval=INTERVAL)
    (d1,) = syndicate(network, app, "f1", site)
    reply = network.post(fan, "a reply", reply_to=d1)
    like = network.like(fan, d1)
    wait_counts(network, d1["uri"], likeCount=1, replyCount=1)
    network_proxy.add_rule("app.bsky.notification.listNotifications", error(503), times=None)
    with app.db.connect() as conn:
        account_id = q.list_accounts(conn)[0]["id"]
    # three failing polls in a row: each waits for the next interval; the breaker, which is
    # publishing's, counts none of them (a failing read must not hold the account's posts)
    for _ in range(3):
        clock.advance(INTERVAL + 1)
        assert app.run_worker(burst=True) == 1
        with app.db.connect() as conn:
            breaker = q.breaker(conn, account_id)
            job = conn.one("SELECT * FROM jobs WHERE kind = 'backfeed'")
        assert breaker is None or (breaker.failures == 0 and breaker.state == "closed")
        assert job is not None and job["status"] == "todo" and job["run_at"] == clock() + INTERVAL
    with app.db.connect() as conn:
        events = [e["kind"] for e in q.list_events(conn, limit=5)]
    assert "backfeed_failed" in events and rows(app) == []
    app.submit({"id": "f2", "title": "Still published", "url": "https://blog.example.com/f2"})
    app.run_worker(burst=True)
    assert app.status("f2")["status"] == "completed"

    # failing publishes open the breaker: polls wait for it too, sending nothing, and leave its
    # probe to publishing
    network_proxy.clear_rules()
    network_proxy.add_rule("com.atproto.repo.createRecord", error(503), times=3)
    app.submit({"id": "f3", "title": "Held", "url": "https://blog.example.com/f3"})
    for delay in (0, 60, 120):
        clock.advance(delay)
        app.run_worker(burst=True)
    with app.db.connect() as conn:
        breaker = q.breaker(conn, account_id)
    assert breaker is not None and breaker.state == "open" and breaker.open_until is not None
    network_proxy.reset_counts()
    assert app.backfeed()["accounts"][0]["outcome"] == "skipped" and network_proxy.calls() == 0
    clock.advance(app.settings.circuit_cooldown + 1)
    app.run_worker(burst=True)  # the publish takes the probe and closes the breaker; the poll follows
    assert app.status("f3")["status"] == "completed"
    assert app.backfeed()["accounts"][0]["outcome"] == "polled"
    assert set(live_by_uri(app)) == {reply["uri"], like["uri"]}
    with app.db.connect() as conn:
        breaker = q.breaker(conn, account_id)
    assert breaker is not None and breaker.state == "closed" and breaker.failures == 0


def test_gates_paused_needs_reauth_and_spent_budget_send_nothing(
        network: LocalNetwork, network_proxy: FaultProxy, make_app: Any, sqlite_url: str, clock: FakeClock) -> None:
    site = network.create_account("site")
    app = make_app(sqlite_url, backfeed_interval=INTERVAL)
    syndicate(network, app, "s1", site)
    network_proxy.reset_counts()
    app.pause()
    clock.advance(INTERVAL + 1)
    assert app.run_worker(burst=True) == 0  # pause holds every job
    result = app.backfeed()["accounts"][0]
    assert (result["outcome"], result["reason"]) == ("skipped", "syndication is paused")
    app.resume()
    from skypost.pipeline import account_keys

    with app.db.transaction() as conn:
        account = q.list_accounts(conn)[0]
        host = account_keys(account["id"], account["service"], app.settings.egress_id)["host"]
        q.observe_budget(conn, host, limit=3000, remaining=1, reset_at=clock() + 120, policy="3000;w=300",
                         now=clock())
    result = app.backfeed()["accounts"][0]
    assert result["outcome"] == "skipped" and "rate limit" in result["reason"]
    with app.db.transaction() as conn:
        q.observe_budget(conn, host, limit=3000, remaining=2900, reset_at=clock() + 120, policy="3000;w=300",
                         now=clock())
        q.mark_needs_reauth(conn, account["id"], error="revoked", now=clock())
    result = app.backfeed()["accounts"][0]
    assert result["outcome"] == "skipped" and "re-enter the app password" in result["reason"]
    assert network_proxy.calls() == 0


def test_a_429_blocks_the_host_budget_without_counting_against_the_breaker_and_headers_are_observed(
        network: LocalNetwork, network_proxy: FaultProxy, make_app: Any, sqlite_url: str, clock: FakeClock) -> None:
    site, fan = network.create_account("site"), network.create_account("fan")
    app = make_app(sqlite_url, backfeed_interval=INTERVAL)
    (d1,) = syndicate(network, app, "r1", site)
    network.like(fan, d1)
    wait_counts(network, d1["uri"], likeCount=1)
    from skypost.pipeline import account_keys

    with app.db.connect() as conn:
        account = q.list_accounts(conn)[0]
    host = account_keys(account["id"], account["service"], app.settings.egress_id)["host"]
    network_proxy.add_rule("com.atproto.repo.listRecords", error(429, {"error": "RateLimitExceeded"},
                                                                 {"Retry-After": "100"}))
    clock.advance(INTERVAL + 1)
    assert app.run_worker(burst=True) == 1
    with app.db.connect() as conn:
        limit = conn.one("SELECT * FROM rate_limits WHERE key = :k", {"k": host})
        breaker = q.breaker(conn, account["id"])
        job = conn.one("SELECT * FROM jobs WHERE kind = 'backfeed'")
    assert limit is not None and limit["blocked_until"] == clock() + 100
    assert breaker is None or breaker.failures == 0
    assert job is not None and job["run_at"] == clock() + 100 and rows(app) == []
    network_proxy.reset_counts()
    assert app.backfeed()["accounts"][0]["outcome"] == "skipped" and network_proxy.calls() == 0

    # after the block: the poll goes, and its answers' RateLimit headers become the host budget
    reset = int(clock()) + 250
    network_proxy.set_response_headers("app.bsky.notification.listNotifications", {
        "RateLimit-Limit": "3000", "RateLimit-Remaining": "2500", "RateLimit-Reset": str(reset),
        "RateLimit-Policy": "3000;w=300"})
    clock.advance(101)
    assert app.run_worker(burst=True) == 2  # the poll, then the outbox job that tells the site about the like
    assert len(rows(app)) == 1
    with app.db.connect() as conn:
        limit = conn.one("SELECT * FROM rate_limits WHERE key = :k", {"k": host})
    assert limit is not None and limit["remaining"] == 2500 and limit["reset_at"] == reset


def test_a_publish_due_now_goes_before_a_poll(
        network: LocalNetwork, network_proxy: FaultProxy, make_app: Any, sqlite_url: str, clock: FakeClock) -> None:
    site = network.create_account("site")
    app = make_app(sqlite_url, backfeed_interval=INTERVAL)
    syndicate(network, app, "o1", site)
    clock.advance(INTERVAL + 1)  # the backfeed job is due, and then a post comes in
    app.submit({"id": "o2", "title": "Second", "url": "https://blog.example.com/o2"})
    network_proxy.reset_counts()
    app.run_worker(burst=True)
    assert (app.status("o2") or {})["status"] == "completed"
    assert network_proxy.calls("app.bsky.notification.listNotifications") == 0
    with app.db.connect() as conn:
        job = conn.one("SELECT * FROM jobs WHERE kind = 'backfeed'")
    assert job is not None and job["status"] == "todo" and job["run_at"] == clock() + bf.STEP_ASIDE
    clock.advance(bf.STEP_ASIDE)
    assert app.run_worker(burst=True) == 1
    assert network_proxy.calls("app.bsky.notification.listNotifications") == 1


def test_backfeed_settings_come_from_the_environment_and_the_config_file(tmp_path: Any) -> None:
    from skypost.config import load_settings

    assert (load_settings(env={}).backfeed_interval, load_settings(env={}).backfeed_days) == (300.0, 14.0)
    env = {"SKYPOST_BACKFEED_INTERVAL": "60", "SKYPOST_BACKFEED_DAYS": "3"}
    assert (load_settings(env=env).backfeed_interval, load_settings(env=env).backfeed_days) == (60.0, 3.0)
    config = tmp_path / "skypost.toml"
    config.write_text("backfeed_interval = 0\nbackfeed_days = 30\n")
    loaded = load_settings(env={}, config_file=config)
    assert (loaded.backfeed_interval, loaded.backfeed_days) == (0.0, 30.0)


def test_concurrent_polls_store_and_announce_each_reaction_once(
        network: LocalNetwork, make_app: Any, db_url: str, announced: list[tuple[int, str]]) -> None:
    site, fan = network.create_account("site"), network.create_account("fan")
    first = make_app(db_url)
    (d1,) = syndicate(network, first, "c1", site)
    made = [network.like(fan, d1), network.repost(fan, d1), network.post(fan, "hello", reply_to=d1),
            network.post(fan, "quoting", quote=d1)]
    wait_counts(network, d1["uri"], likeCount=1, repostCount=1, replyCount=1, quoteCount=1)
    second = make_app(db_url)
    barrier = threading.Barrier(2)
    summaries: list[dict[str, Any]] = []

    def poll(app: Skypost) -> None:
        barrier.wait(10)
        summaries.append(app.backfeed())
        app.db.release_thread()

    threads = [threading.Thread(target=poll, args=(a,)) for a in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(summaries) == 2
    assert sum(sum(s["new"].values()) for s in summaries) == 4
    assert {r["uri"] for r in rows(first)} == {m["uri"] for m in made} and len(rows(first)) == 4
    assert sorted(i for i, _ in announced) == sorted(r["id"] for r in rows(first))


def test_backfeed_speed_on_many_likes(network: LocalNetwork, make_app: Any, sqlite_url: str) -> None:
    """Reactions stored per second of backfeed, measured on 200 likes (40 fans, 5 posts)."""
    site = network.create_account("site")
    app = make_app(sqlite_url)
    posts = [syndicate(network, app, f"m{n}", site)[0] for n in range(5)]
    fans = [network.create_account("m") for _ in range(40)]
    for fan in fans:
        for post in posts:
            network.like(fan, post)
    for post in posts:
        wait_counts(network, post["uri"], likeCount=len(fans))
    total = len(fans) * len(posts)
    with app.db.transaction() as conn:
        account_id = q.list_accounts(conn)[0]["id"]
        # a full reconciliation just ran (it runs hourly): this poll is a recurring job's usual one
        qc.save_backfeed_state(conn, account_id, notifications_until=None, likes_until=None, reposts_until=None,
                               posts_until=None, full_reconciled_at=app.clock(), error=None, now=app.clock())
    started = time.perf_counter()
    result = bf.poll_account(app, account_id)
    elapsed = time.perf_counter() - started
    assert result.new["like"] == total and len(rows(app)) == total and result.reconciled == 0
    print(f"\nbackfeed of {total} likes: {elapsed:.2f} s, {total / elapsed:.0f} reactions/s, "
          f"{result.requests} requests")
    started = time.perf_counter()
    again = app.backfeed()  # the manual poll reconciles every post of the window
    print(f"then a full poll, nothing new: {time.perf_counter() - started:.2f} s, "
          f"{again['accounts'][0]['requests']} requests")
    assert again["new"]["like"] == 0 and again["removed"]["like"] == 0


# --- the command line -------------------------------------------------------------------------------------

def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "skypost.cli", *args], env=env, capture_output=True, text=True,
                          timeout=120)


def test_the_backfeed_command(network: LocalNetwork, make_app: Any, sqlite_url: str) -> None:
    site, fan = network.create_account("site"), network.create_account("fan")
    app = make_app(sqlite_url, use_clock=False)
    (d1,) = syndicate(network, app, "cli1", site)
    network.like(fan, d1)
    network.post(fan, "from the cli test", reply_to=d1)
    wait_counts(network, d1["uri"], likeCount=1, replyCount=1)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKYPOST_")}
    env.update(SKYPOST_DATABASE_URL=sqlite_url, SKYPOST_SECRET_KEY=TEST_KEY, SKYPOST_ALLOW_PRIVATE_URLS="1")
    done = _cli(env, "backfeed")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith(f"@{site.handle}: 1 reply(s), 1 like(s); 0 removed"), done.stdout
    again = _cli(env, "backfeed", "--account", site.handle, "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["new"] == dict.fromkeys(bf.KINDS, 0)
    unknown = _cli(env, "backfeed", "--account", "nobody.test")
    assert unknown.returncode == 2 and "account" in unknown.stderr and "nobody.test" in unknown.stderr
    malformed = _cli(env, "backfeed", "--account", "not a handle!")
    assert malformed.returncode == 2 and "error: account:" in malformed.stderr, malformed.stderr
    assert len(rows(app)) == 2


def test_replies_from_the_site_are_not_echoed_back_and_answers_to_them_attach_to_the_post(
        network: LocalNetwork, make_app: Any, sqlite_url: str, announced: list[tuple[int, str]]) -> None:
    site, ann = network.create_account("echo"), network.create_account("ann")
    app = make_app(sqlite_url)
    (record,) = syndicate(network, app, "echo-1", site)
    ann_reply = network.post(ann, "a question", reply_to=record)
    app.reply("echo-1", "c1", "an answer from the site's comments")  # published by skypost as @site
    app.run_worker(burst=True)
    (published,) = [d for d in app.status("echo-1")["deliveries"] if d["status"] == "completed"]
    site_reply = app.replies("echo-1")[0]["deliveries"][0]
    assert site_reply["status"] == "completed", site_reply
    ann_again = network.post(ann, "thanks!", reply_to={"uri": site_reply["uri"], "cid": site_reply["cid"]},
                             root=record)
    network.wait_for(lambda: counts(network, record["uri"]).get("replyCount") == 2)
    network.wait_for(lambda: any(r["post"]["uri"] == ann_again["uri"] for t in network.thread(record["uri"])["replies"]
                                 for r in t.get("replies", [])))

    summary = app.backfeed()
    live = live_by_uri(app)
    # the site's own comment is not a reaction: telling the site about it would echo it back
    assert site_reply["uri"] not in live
    assert set(live) == {ann_reply["uri"], ann_again["uri"]}, live
    assert live[ann_again["uri"]]["parent_uri"] == site_reply["uri"]
    assert {r["post_seq"] for r in live.values()} == {live[ann_reply["uri"]]["post_seq"]}
    assert live[ann_again["uri"]]["subject_uri"] == published["uri"]
    assert summary["new"]["reply"] == 2 and len(announced) == 2
