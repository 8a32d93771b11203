"""Replies from the site and who may reply, on the full local network (PLC + PDS + AppView).

skypost's accounts use the network's public PDS address, so their traffic goes through the
fault proxy; the AppView's thread view is what people see.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from skypost.replies import UnknownPost
from skypost.models import ValidationError
from tests.support.faultproxy import error, lose_response

CREATE = "com.atproto.repo.createRecord"
APPLY = "com.atproto.repo.applyWrites"
GET = "com.atproto.repo.getRecord"


def _setup(make_app, url, network, prefix="site", **account):
    app = make_app(url)
    user = network.create_account(prefix)
    app.add_account(user.handle, user.app_password, service=network.pds_url, **account)
    return app, user


def _records(network, did: str, collection: str) -> list[dict[str, Any]]:
    return list(network.iter_records(did, collection))


def _replies_in_thread(network, uri: str, min_count: int = 1) -> list[dict[str, Any]]:
    """The direct replies the AppView lists under `uri`, once it lists at least `min_count`."""
    def probe() -> list[dict[str, Any]] | None:
        replies = network.thread(uri).get("replies") or []
        return replies if len(replies) >= min_count else None

    return network.wait_for(probe)


def _publish(app, doc: dict[str, Any]) -> dict[str, Any]:
    app.submit(doc)
    app.run_worker(burst=True)
    status = app.status(doc["id"])
    assert status["status"] == "completed", status
    return status["deliveries"][0]


def test_a_reply_from_the_site_lands_once_through_lost_answers_and_5xx(db_url, make_app, network,
                                                                         network_proxy, clock):
    app, alice = _setup(make_app, db_url, network)
    # a post and a reply to it in the same second: the reply waits for the post's record
    app.submit({"id": "p1", "title": "A post people answer", "url": "https://blog.example.com/p1"})
    first = app.reply("p1", "c0", "Thanks for reading! #skypost https://blog.example.com/p1#c0")
    assert first["id"] == "c0" and first["reply_to"] == "p1" and first["status"] == "pending"
    app.run_worker(burst=True)
    post = app.status("p1")["deliveries"][0]
    assert post["status"] == "completed"
    c0 = app.replies("p1")[0]
    assert c0["status"] == "completed", c0

    # now a reply whose answer is lost, then whose existence check meets a 503
    network_proxy.reset_counts()
    network_proxy.add_rule(CREATE, lose_response(), times=1)
    network_proxy.add_rule(GET, error(503, {"error": "Unavailable", "message": "later"}), times=1)
    queued = app.reply("p1", "c1", "A second answer from the site")
    assert queued["status"] == "pending" and queued["deliveries"][0]["account"] == alice.handle
    app.run_worker(burst=True)
    assert app.replies("p1")[1]["deliveries"][0]["status"] == "retrying"
    clock.advance(60)
    app.run_worker(burst=True)  # the getRecord check fails: retry later
    assert app.replies("p1")[1]["deliveries"][0]["status"] == "retrying"
    clock.advance(120)
    app.run_worker(burst=True)
    c1 = app.replies("p1")[1]
    assert c1["status"] == "completed" and c1["deliveries"][0]["attempts"] == 3, c1
    assert network_proxy.calls(CREATE) == 1  # the record of the lost answer was found, not made again

    # the same comment id again: the known status, nothing new
    again = app.reply("p1", "c1", "A different text")
    assert again == c1
    app.run_worker(burst=True)

    posts = _records(network, alice.did, "app.bsky.feed.post")
    assert len(posts) == 3  # the post and two replies, each once
    replies = _replies_in_thread(network, post["uri"], 2)
    by_uri = {r["post"]["uri"]: r["post"] for r in replies}
    assert set(by_uri) == {c0["deliveries"][0]["uri"], c1["deliveries"][0]["uri"]}
    view = by_uri[c0["deliveries"][0]["uri"]]
    assert view["author"]["did"] == alice.did
    record = view["record"]
    assert record["reply"]["root"] == {"uri": post["uri"], "cid": post["cid"]}
    assert record["reply"]["parent"] == record["reply"]["root"]
    features = [f["features"][0]["$type"] for f in record["facets"]]
    assert features == ["app.bsky.richtext.facet#tag", "app.bsky.richtext.facet#link"]
    # the post's list shows posts only; replies are under their post
    assert [p["id"] for p in app.list_posts()] == ["p1"]


def test_a_reply_to_a_bluesky_reply_lands_under_it(sqlite_url, make_app, network, network_proxy):
    app, alice = _setup(make_app, sqlite_url, network)
    post = _publish(app, {"id": "p2", "title": "Ask me anything", "url": "https://blog.example.com/p2"})
    bob = network.create_account("bob")
    bobs = network.post(bob, "What about the weather?", reply_to=post)
    carols = network.post(network.create_account("carol"), "And the sea?", reply_to=post)
    # bob's reply as the backfeed stores it (with its cid); carol's is not stored
    with app.db.transaction() as conn:
        seq = conn.scalar("SELECT seq FROM posts WHERE post_id = 'p2'")
        delivery = conn.scalar("SELECT id FROM deliveries WHERE post_seq = :s", {"s": seq})
        conn.execute(
            "INSERT INTO interactions (kind, uri, cid, post_seq, delivery_id, account, subject_uri, "
            "author_did, text, parent_uri, indexed_at, updated_at) VALUES ('reply', :uri, :cid, :s, :d, "
            ":account, :subject, :author, 'What about the weather?', :subject, 0, 0)",
            {"uri": bobs["uri"], "cid": bobs["cid"], "s": seq, "d": delivery, "account": alice.handle,
             "subject": post["uri"], "author": bob.did})
    to_bob = app.reply("p2", "c-bob", "Sunny, @" + bob.handle + "!", parent=bobs["uri"])
    to_carol = app.reply("p2", "c-carol", "Calm.", parent=carols["uri"])
    assert to_bob["parent"] == bobs["uri"] and to_carol["parent"] == carols["uri"]
    app.run_worker(burst=True)
    statuses = {r["id"]: r for r in app.replies("p2")}
    assert {k: v["status"] for k, v in statuses.items()} == {"c-bob": "completed", "c-carol": "completed"}
    assert network_proxy.calls(GET) == 1  # only the parent skypost had not stored was looked up

    for parent, reply_id in ((bobs, "c-bob"), (carols, "c-carol")):
        under = _replies_in_thread(network, parent["uri"])
        assert [r["post"]["uri"] for r in under] == [statuses[reply_id]["deliveries"][0]["uri"]]
        record = under[0]["post"]["record"]
        assert record["reply"] == {"root": {"uri": post["uri"], "cid": post["cid"]},
                                   "parent": {"uri": parent["uri"], "cid": parent["cid"]}}
    facets = _replies_in_thread(network, bobs["uri"])[0]["post"]["record"]["facets"]
    assert facets[0]["features"][0] == {"$type": "app.bsky.richtext.facet#mention", "did": bob.did}


def test_a_reply_ignores_category_rules_and_fails_where_the_post_failed(sqlite_url, make_app, network):
    app, alice = _setup(make_app, sqlite_url, network, include_categories=["news"])
    _publish(app, {"id": "p5", "title": "News", "url": "https://blog.example.com/p5", "categories": ["news"]})
    app.reply("p5", "c1", "An answer has no category")
    app.run_worker(burst=True)
    assert app.replies("p5")[0]["status"] == "completed"
    # a post still pending when the reply is submitted, whose delivery then fails for good
    app.submit({"id": "p6", "title": "News", "url": "https://blog.example.com/p6", "categories": ["news"]})
    app.reply("p6", "c1", "Too early")
    app.update_account(alice.handle, include_categories=["other"])
    app.run_worker(burst=True)
    assert app.status("p6")["status"] == "failed"
    reply = app.replies("p6")[0]
    assert reply["status"] == "failed" and "nothing to reply under" in reply["deliveries"][0]["error"]


def test_a_parent_outside_the_thread_is_refused_at_the_attempt(sqlite_url, make_app, network):
    app, alice = _setup(make_app, sqlite_url, network)
    _publish(app, {"id": "p3", "title": "Mine", "url": "https://blog.example.com/p3"})
    elsewhere = network.post(network.create_account("dan"), "an unrelated post")
    status = app.reply("p3", "c1", "Hello", parent=elsewhere["uri"])
    assert status["status"] == "pending"
    app.run_worker(burst=True)
    reply = app.replies("p3")[0]
    assert reply["status"] == "failed"
    assert "is not in the thread of" in reply["deliveries"][0]["error"]
    assert len(_records(network, alice.did, "app.bsky.feed.post")) == 1


def test_reply_input_is_checked_before_anything_is_written(db_url, make_app, network):
    app, alice = _setup(make_app, db_url, network)
    app.submit({"id": "p4", "title": "T", "url": "https://blog.example.com/p4"})
    with pytest.raises(UnknownPost):
        app.reply("nope", "c1", "hi")
    for args, field in ((("p4", "", "hi"), "id"), (("p4", "c1", "  "), "text"),
                        (("p4", "c1", "hi", "https://bsky.app/x"), "parent"),
                        (("p4", "c1", "hi", None, "not a handle"), "account"),
                        (("p4", "c1", "hi", None, "stranger.test"), "account")):
        with pytest.raises(ValidationError) as caught:
            app.reply(*args)
        assert field in caught.value.errors, (args, caught.value.errors)
    app.submit({"id": "skipped", "title": "T", "url": "https://blog.example.com/s", "dont_syndicate": True})
    with pytest.raises(ValidationError) as caught:
        app.reply("skipped", "c1", "hi")
    assert "nothing to reply under" in caught.value.errors["post_id"]
    assert app.replies("p4") == []
    # a text over 300 graphemes is cut like a post's custom text, never refused
    long = app.reply("p4", "c-long", "word " * 100)
    app.run_worker(burst=True)
    done = app.replies("p4")[0]
    assert done["id"] == "c-long" and done["status"] == "completed", long
    record = network.pds("com.atproto.repo.getRecord", repo=alice.did, collection="app.bsky.feed.post",
                         rkey=done["deliveries"][0]["uri"].rsplit("/", 1)[1])["value"]
    assert record["text"].endswith("…") and len(record["text"]) <= 300


def _thread_gate(network, uri: str) -> dict[str, Any]:
    return network.wait_for(lambda: network.appview("app.bsky.feed.getPostThread", uri=uri).get("threadgate"))


def test_who_may_reply_shows_in_the_thread_and_leaves_out_others(sqlite_url, make_app, network):
    app, alice = _setup(make_app, sqlite_url, network, replies=["nobody"])
    friend, named, stranger = (network.create_account(p) for p in ("friend", "named", "stranger"))
    network.create_record(alice, "app.bsky.graph.follow", {"subject": friend.did})
    closed = _publish(app, {"id": "g1", "title": "No replies here", "url": "https://blog.example.com/g1"})
    gated = _publish(app, {"id": "g2", "text": f"Only friends and @{named.handle}",
                           "url": "https://blog.example.com/g2", "replies": ["following", "mentioned"]})
    gate = _thread_gate(network, closed["uri"])
    assert gate["record"]["allow"] == [] and gate["record"]["post"] == closed["uri"]
    gate = _thread_gate(network, gated["uri"])
    assert [r["$type"] for r in gate["record"]["allow"]] == [
        "app.bsky.feed.threadgate#followingRule", "app.bsky.feed.threadgate#mentionRule"]

    answers = {who.handle: network.post(who, "me too", reply_to=gated) for who in (friend, named, stranger)}
    blocked = network.post(stranger, "and me", reply_to=closed)
    # every reply is indexed (visible by itself) ...
    network.wait_for(lambda: len(network.appview("app.bsky.feed.getPosts", uris=[
        *(a["uri"] for a in answers.values()), blocked["uri"]])["posts"]) == 4)
    # ... but the thread lists only those the gate allows
    listed = {r["post"]["author"]["handle"] for r in _replies_in_thread(network, gated["uri"], 2)}
    assert listed == {friend.handle, named.handle}
    assert not network.thread(closed["uri"]).get("replies")
    # the post's own account still answers from the site under a closed thread
    app.reply("g1", "c1", "A note from the author")
    app.run_worker(burst=True)
    own = _replies_in_thread(network, closed["uri"])
    assert [r["post"]["author"]["did"] for r in own] == [alice.did]


def test_a_gated_post_never_exists_without_its_gate(db_url, make_app, network, network_proxy, clock):
    app, alice = _setup(make_app, db_url, network, prefix="gated", quotes=False)
    network_proxy.add_rule(APPLY, error(503), times=1)  # not forwarded: nothing written
    network_proxy.add_rule(APPLY, lose_response(), times=1)  # written, the answer lost
    app.submit({"id": "g3", "title": "Gated", "url": "https://blog.example.com/g3", "replies": "following"})
    collections = ("app.bsky.feed.post", "app.bsky.feed.threadgate", "app.bsky.feed.postgate")

    def counts() -> list[int]:
        return [len(_records(network, alice.did, c)) for c in collections]

    app.run_worker(burst=True)
    assert counts() == [0, 0, 0]
    clock.advance(60)
    app.run_worker(burst=True)
    assert counts() == [1, 1, 1]  # both or neither: here both, the answer lost
    assert app.status("g3")["deliveries"][0]["status"] == "retrying"
    clock.advance(120)
    app.run_worker(burst=True)
    status = app.status("g3")
    assert status["status"] == "completed" and status["deliveries"][0]["attempts"] == 3
    assert counts() == [1, 1, 1]
    assert network_proxy.calls(APPLY) == 2 and network_proxy.calls(CREATE) == 0
    uri = status["deliveries"][0]["uri"]
    rkey = uri.rsplit("/", 1)[1]
    postgate = _records(network, alice.did, "app.bsky.feed.postgate")[0]
    assert postgate["uri"].rsplit("/", 1)[1] == rkey
    assert postgate["value"]["embeddingRules"] == [{"$type": "app.bsky.feed.postgate#disableRule"}]
    assert postgate["value"]["post"] == uri
    view = network.wait_for(lambda: network.appview("app.bsky.feed.getPosts", uris=[uri])["posts"])[0]
    assert view["threadgate"]["record"]["allow"] == [{"$type": "app.bsky.feed.threadgate#followingRule"}]
    assert _thread_gate(network, uri)["uri"].rsplit("/", 1)[1] == rkey
    with app.db.connect() as conn:
        row = conn.one("SELECT threadgate, postgate FROM deliveries")
    assert row["threadgate"] == "following" and bool(row["postgate"]) is True


def test_reply_rules_are_checked(sqlite_url, make_app, network):
    app, alice = _setup(make_app, sqlite_url, network)
    for value in (["anyone"], ["nobody", "following"], ["everyone", "mentioned"], [1]):
        with pytest.raises(ValidationError) as caught:
            app.submit({"id": "x", "title": "T", "url": "https://blog.example.com/x", "replies": value})
        assert "replies" in caught.value.errors
    with pytest.raises(ValidationError):
        app.update_account(alice.handle, replies=["sometimes"])
    assert app.update_account(alice.handle, replies=["mentioned"], quotes=False)["replies"] == ["mentioned"]
    assert app.status("x") is None


def test_deleting_a_post_deletes_the_sites_replies_under_it_and_refuses_new_ones(db_url, make_app, network):
    app, alice = _setup(make_app, db_url, network, replies=["following"])
    post = _publish(app, {"id": "gone", "title": "Taken back", "url": "https://blog.example.com/gone"})
    app.reply("gone", "c1", "A comment from the site")
    app.run_worker(burst=True)
    reply = app.replies("gone")[0]["deliveries"][0]
    assert reply["status"] == "completed"
    posts = {r["uri"] for r in _records(network, alice.did, "app.bsky.feed.post")}
    assert {post["uri"], reply["uri"]} <= posts
    assert _records(network, alice.did, "app.bsky.feed.threadgate")

    assert app.delete("gone")["status"] == "deleting"
    with pytest.raises(ValidationError) as refused:
        app.reply("gone", "c2", "Too late")
    assert "deleted" in str(refused.value.errors["post_id"])
    app.run_worker(burst=True)
    assert app.status("gone")["status"] == "deleted"
    assert app.replies("gone")[0]["status"] == "deleted"
    assert [r["id"] for r in app.replies("gone")] == ["c1"]
    assert not _records(network, alice.did, "app.bsky.feed.post")
    assert not _records(network, alice.did, "app.bsky.feed.threadgate")


def test_a_reply_tells_its_status_to_the_site_with_its_comment_id(sqlite_url, make_app, network):
    app, _ = _setup(make_app, sqlite_url, network)
    app.add_notify("http://127.0.0.1:9/hook", events=["post.status"])
    _publish(app, {"id": "told", "title": "Told", "url": "https://blog.example.com/told"})
    app.reply("told", "c7", "Published from the comments")
    app.run_worker(burst=True)
    with app.db.connect() as conn:
        payloads = [json.loads(r["payload"])["data"] for r in conn.all("SELECT payload FROM outbox ORDER BY id")]
    reply_events = [d for d in payloads if d.get("reply_to") == "told"]
    assert reply_events and {d["id"] for d in reply_events} == {"c7"}
    assert reply_events[-1]["status"] == "completed"
    assert all("\x1f" not in d["id"] for d in payloads)
