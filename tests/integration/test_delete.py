"""Deleting a post from Bluesky: every account, every failure, never a record left behind."""

from __future__ import annotations

import threading

import pytest

from skypost.models import ValidationError
from tests.support.faultproxy import delay, error, lose_response

DELETE = "com.atproto.repo.deleteRecord"
CREATE = "com.atproto.repo.createRecord"
POST = "app.bsky.feed.post"


def add(app, account, service):
    return app.add_account(account.handle, account.app_password, service=service)


def doc(post_id="1"):
    return {"id": post_id, "title": f"Post {post_id}", "url": f"https://blog.example.com/{post_id}"}


def rkey_of(d):
    return d["uri"].rsplit("/", 1)[1]


def test_delete_after_publish_removes_every_record(db_url, make_app, make_account, pds, proxy):
    app = make_app(db_url)
    alice, bob = make_account("dela"), make_account("delb")
    add(app, alice, proxy.url)
    add(app, bob, proxy.url)
    app.submit(doc())
    app.run_worker(burst=True)
    published = app.status("1")
    assert published["status"] == "completed"
    status = app.delete("1")
    assert status["status"] == "deleting"
    assert [d["status"] for d in status["deliveries"]] == ["deleting", "deleting"]
    app.run_worker(burst=True)
    status = app.status("1")
    assert status["status"] == "deleted", status
    assert [d["status"] for d in status["deliveries"]] == ["deleted", "deleted"]
    for account, d in zip((alice, bob), published["deliveries"]):
        assert pds.get_record(account.did, POST, rkey_of(d)) is None
        assert pds.list_posts(account.did) == []
    kinds = [e["kind"] for e in app.events(post_id="1")]
    assert kinds.count("record_deleted") == 2 and "delete_requested" in kinds and "post_deleted" in kinds
    # post + threadgate + postgate per account, nothing else
    assert proxy.calls(DELETE) == 6
    # known for ever: submitting it again never syndicates again
    again = app.submit(doc())
    assert again["status"] == "deleted"
    app.run_worker(burst=True)
    assert pds.list_posts(alice.did) == [] and pds.list_posts(bob.did) == []


def test_double_delete_is_a_no_op(db_url, make_app, make_account, pds, proxy):
    app = make_app(db_url)
    alice = make_account("deltwice")
    add(app, alice, proxy.url)
    app.submit(doc())
    app.run_worker(burst=True)
    first = app.delete("1")
    jobs_before = _jobs(app)
    second = app.delete("1")
    assert second == first and _jobs(app) == jobs_before
    app.run_worker(burst=True)
    assert app.delete("1")["status"] == "deleted"
    assert [e["kind"] for e in app.events(post_id="1")].count("delete_requested") == 1
    assert app.delete("unknown") is None


def _jobs(app):
    with app.db.connect() as conn:
        return conn.all("SELECT id, status, run_at FROM jobs ORDER BY id")


def test_delete_of_a_pending_post_cancels_it(db_url, make_app, make_account, pds, proxy):
    app = make_app(db_url)
    alice, bob = make_account("cana"), make_account("canb")
    add(app, alice, proxy.url)
    add(app, bob, proxy.url)
    app.submit(doc())
    status = app.delete("1")
    assert status["status"] == "deleted"
    assert [d["status"] for d in status["deliveries"]] == ["cancelled", "cancelled"]
    app.run_worker(burst=True)
    assert app.status("1")["status"] == "deleted"
    assert proxy.calls(CREATE) == 0 and proxy.calls(DELETE) == 0
    assert pds.list_posts(alice.did) == [] and pds.list_posts(bob.did) == []
    with pytest.raises(ValidationError):
        app.retry("1")


def test_lost_delete_answer_and_5xx_retry_on_schedule(db_url, make_app, make_account, pds, proxy, clock):
    app = make_app(db_url)
    alice = make_account("dellost")
    add(app, alice, proxy.url)
    app.submit(doc())
    app.run_worker(burst=True)
    rkey = rkey_of(app.status("1")["deliveries"][0])
    proxy.add_rule(DELETE, lose_response(), times=1)  # the PDS deletes, the answer is lost
    app.delete("1")
    app.run_worker(burst=True)
    d = app.status("1")["deliveries"][0]
    assert d["status"] == "retrying" and d["attempts"] == 1
    assert pds.get_record(alice.did, POST, rkey) is None  # gone already
    proxy.add_rule(DELETE, error(503, {"error": "Unavailable", "message": "try later"}), times=1)
    clock.advance(59)
    app.run_worker(burst=True)
    assert app.status("1")["deliveries"][0]["attempts"] == 1  # not due before +60 s
    clock.advance(1)
    app.run_worker(burst=True)
    d = app.status("1")["deliveries"][0]
    assert d["status"] == "retrying" and d["attempts"] == 2
    clock.advance(120)
    app.run_worker(burst=True)
    status = app.status("1")
    assert status["status"] == "deleted", status
    assert status["deliveries"][0]["attempts"] == 3
    assert pds.list_posts(alice.did) == []


def test_paused_skypost_holds_the_delete(db_url, make_app, make_account, pds, proxy):
    app = make_app(db_url)
    alice = make_account("delpause")
    add(app, alice, proxy.url)
    app.submit(doc())
    app.run_worker(burst=True)
    app.pause()
    status = app.delete("1")
    assert status["status"] == "deleting" and "paused" in status["reason"]
    app.run_worker(burst=True)
    assert proxy.calls(DELETE) == 0
    assert len(pds.list_posts(alice.did)) == 1
    app.resume()
    app.run_worker(burst=True)
    assert app.status("1")["status"] == "deleted"
    assert pds.list_posts(alice.did) == []


def test_delete_waits_for_the_create_in_flight(db_url, make_app, make_account, pds, proxy):
    """A worker is inside the create (the proxy holds the request) when the delete comes: the
    delete goes after the attempt ends, and no record is left, nor created after."""
    app = make_app(db_url)
    alice = make_account("delrace")
    add(app, alice, proxy.url)
    proxy.add_rule(CREATE, delay(1.5), times=1)
    app.submit(doc())
    worker = threading.Thread(target=app.run_worker, kwargs={"burst": True})
    worker.start()
    try:
        assert proxy.wait_for_calls(CREATE, 1, timeout=20)
        status = app.delete("1")
        assert status["status"] == "deleting"
        assert status["deliveries"][0]["status"] == "deleting"  # it may have reached the PDS
    finally:
        worker.join(timeout=60)
    assert not worker.is_alive()
    app.run_worker(burst=True)
    status = app.status("1")
    assert status["status"] == "deleted", status
    assert pds.list_posts(alice.did) == []
    assert proxy.calls(CREATE) == 1
    # the delete went after the create's answer: the record was created, then removed
    seen = [r.method for r in proxy.seen() if r.method in (CREATE, DELETE)]
    assert seen[0] == CREATE and seen.count(DELETE) == 3
    kinds = [e["kind"] for e in reversed(app.events(post_id="1"))]
    assert kinds.index("published") < kinds.index("record_deleted")


def test_delete_waits_for_needs_reauth_and_the_breaker(db_url, make_app, make_account, pds, proxy, clock):
    app = make_app(db_url)
    alice = make_account("delbrk")
    add(app, alice, proxy.url)
    app.submit(doc())
    app.run_worker(burst=True)
    proxy.add_rule(DELETE, error(503), times=3)
    app.delete("1")
    app.run_worker(burst=True)
    clock.advance(60)
    app.run_worker(burst=True)
    clock.advance(120)
    app.run_worker(burst=True)  # the third failure opens the breaker
    d = app.status("1")["deliveries"][0]
    assert d["status"] == "circuit_open", d
    assert app.health()["accounts"][0]["breaker"] == "open"
    assert len(pds.list_posts(alice.did)) == 1
    clock.advance(900)
    app.run_worker(burst=True)  # the probe is the delete
    assert app.status("1")["status"] == "deleted"
    assert pds.list_posts(alice.did) == []
