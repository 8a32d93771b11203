"""The core engine against a real PDS, on SQLite and PostgreSQL.

The fault proxy sits at the PDS's public URL; an account whose service is the
PDS's own listen URL bypasses it (the test PDS returns no DID document, so the
SDK keeps the URL it was given), which lets one account fail while another works.
"""

from __future__ import annotations

import pytest

from tests.support.faultproxy import error, lose_response, reset

CREATE = "com.atproto.repo.createRecord"
GET = "com.atproto.repo.getRecord"
LOGIN = "com.atproto.server.createSession"
REFRESH = "com.atproto.server.refreshSession"


def rkeys(pds, did):
    return sorted(r["uri"].rsplit("/", 1)[1] for r in pds.list_posts(did))


def add(app, account, service):
    return app.add_account(account.handle, account.app_password, service=service)


def test_two_accounts_receive_a_post(db_url, make_app, make_account, pds, proxy):
    app = make_app(db_url)
    alice, bob = make_account("alice"), make_account("bob")
    add(app, alice, proxy.url)
    add(app, bob, proxy.url)
    proxy.reset_counts()
    status = app.submit({"id": "42", "title": "Hello Bluesky", "url": "https://blog.example.com/hello"})
    assert status["status"] == "pending"
    assert [d["account"] for d in status["deliveries"]] == [alice.handle, bob.handle]
    assert proxy.calls() == 0  # submit made no network call

    app.run_worker(burst=True)
    status = app.status("42")
    assert status["status"] == "completed", status
    for account, d in zip((alice, bob), status["deliveries"]):
        assert d["status"] == "completed" and d["attempts"] == 1
        records = pds.list_posts(account.did)
        assert len(records) == 1 and records[0]["uri"] == d["uri"] and records[0]["cid"] == d["cid"]
        assert d["url"] == f"https://bsky.app/profile/{account.did}/post/{d['uri'].rsplit('/', 1)[1]}"
        text = records[0]["value"]["text"]
        assert "Hello Bluesky" in text
    # submitting the same id again never syndicates again
    again = app.submit({"id": "42", "title": "Hello again", "url": "https://blog.example.com/hello"})
    assert again["status"] == "completed"
    app.run_worker(burst=True)
    assert len(pds.list_posts(alice.did)) == 1


def test_lost_response_then_retry_publishes_exactly_once(db_url, make_app, make_account, pds, proxy, clock):
    app = make_app(db_url)
    alice = make_account("lost")
    add(app, alice, proxy.url)
    proxy.add_rule(CREATE, lose_response(), times=1)
    app.submit({"id": "1", "title": "Lost answer", "url": "https://blog.example.com/1"})
    app.run_worker(burst=True)
    status = app.status("1")
    d = status["deliveries"][0]
    assert d["status"] == "retrying" and d["attempts"] == 1
    assert len(pds.list_posts(alice.did)) == 1  # the PDS did store it
    clock.advance(60)
    app.run_worker(burst=True)
    d = app.status("1")["deliveries"][0]
    assert d["status"] == "completed", d
    assert len(pds.list_posts(alice.did)) == 1
    assert proxy.calls(CREATE) == 1  # the retry found the record instead of creating it again
    assert proxy.calls(GET) == 1


def test_duplicate_key_on_create_counts_as_published(db_url, make_app, make_account, pds, proxy, clock):
    """The answer is lost but the getRecord check is skipped: the create with the same rkey fails with 500."""
    app = make_app(db_url)
    alice = make_account("dup")
    add(app, alice, proxy.url)
    proxy.add_rule(CREATE, lose_response(), times=1)
    proxy.add_rule(GET, error(503), times=1)  # the existence check fails once...
    app.submit({"id": "1", "title": "Dup", "url": "https://blog.example.com/1"})
    app.run_worker(burst=True)
    clock.advance(60)
    app.run_worker(burst=True)  # ...so the check fails (transient) and we retry again
    clock.advance(120)
    app.run_worker(burst=True)
    d = app.status("1")["deliveries"][0]
    assert d["status"] == "completed", d
    assert len(pds.list_posts(alice.did)) == 1


def test_transient_5xx_is_retried_on_schedule(db_url, make_app, make_account, pds, proxy, clock):
    app = make_app(db_url)
    alice = make_account("flaky")
    add(app, alice, proxy.url)
    proxy.add_rule(CREATE, error(503, {"error": "Unavailable", "message": "try later"}), times=2)
    app.submit({"id": "1", "title": "Flaky", "url": "https://blog.example.com/1"})
    start = clock()
    app.run_worker(burst=True)
    d = app.status("1")["deliveries"][0]
    assert d["status"] == "retrying" and d["attempts"] == 1
    assert app.status("1")["status"] == "retrying"
    clock.advance(59)
    app.run_worker(burst=True)
    assert app.status("1")["deliveries"][0]["attempts"] == 1  # not due before +60 s
    clock.advance(1)
    app.run_worker(burst=True)
    d = app.status("1")["deliveries"][0]
    assert d["status"] == "retrying" and d["attempts"] == 2
    clock.advance(120)
    app.run_worker(burst=True)
    d = app.status("1")["deliveries"][0]
    assert d["status"] == "completed" and d["attempts"] == 3
    assert clock() - start == 180
    assert len(pds.list_posts(alice.did)) == 1


def test_four_failures_then_failed_with_reason(db_url, make_app, make_account, proxy, clock):
    app = make_app(db_url, circuit_threshold=10)
    alice = make_account("down")
    add(app, alice, proxy.url)
    proxy.add_rule(CREATE, error(502), times=None)
    app.submit({"id": "1", "title": "Down", "url": "https://blog.example.com/1"})
    for step in (0, 60, 120, 300):
        clock.advance(step)
        app.run_worker(burst=True)
    status = app.status("1")
    d = status["deliveries"][0]
    assert status["status"] == "failed" and d["status"] == "failed" and d["attempts"] == 4
    assert "gave up after 4 attempts" in d["error"]
    assert proxy.calls(CREATE) == 4


def test_invalid_record_fails_at_once(db_url, make_app, make_account, proxy, clock):
    app = make_app(db_url)
    alice = make_account("bad")
    add(app, alice, proxy.url)
    proxy.add_rule(CREATE, error(400, {"error": "InvalidRequest", "message": "Invalid app.bsky.feed.post record"}))
    app.submit({"id": "1", "title": "Bad", "url": "https://blog.example.com/1"})
    app.run_worker(burst=True)
    d = app.status("1")["deliveries"][0]
    assert d["status"] == "failed" and d["attempts"] == 1
    assert "Invalid app.bsky.feed.post record" in d["error"]


def test_429_waits_for_reset_without_using_an_attempt(db_url, make_app, make_account, pds, proxy, clock):
    app = make_app(db_url)
    alice = make_account("limited")
    add(app, alice, proxy.url)
    reset_at = int(clock()) + 30
    proxy.add_rule(CREATE, error(
        429, {"error": "RateLimitExceeded", "message": "Rate Limit Exceeded"},
        {"RateLimit-Limit": "30", "RateLimit-Remaining": "0", "RateLimit-Reset": str(reset_at),
         "RateLimit-Policy": "30;w=300"}), times=1)
    app.submit({"id": "1", "title": "Limited", "url": "https://blog.example.com/1"})
    app.run_worker(burst=True)
    status = app.status("1")
    d = status["deliveries"][0]
    assert status["status"] == "rate_limited" and d["status"] == "rate_limited"
    assert d["attempts"] == 0
    app.submit({"id": "2", "title": "Also limited", "url": "https://blog.example.com/2"})
    app.run_worker(burst=True)
    assert proxy.calls(CREATE) == 1  # held back before hitting the limit again
    clock.advance(31)
    app.run_worker(burst=True)
    for post_id in ("1", "2"):
        d = app.status(post_id)["deliveries"][0]
        assert d["status"] == "completed" and d["attempts"] == 1
    assert len(pds.list_posts(alice.did)) == 2


def test_spent_budget_is_respected_before_a_429(db_url, make_app, make_account, pds, proxy, clock):
    app = make_app(db_url)
    alice = make_account("budget")
    add(app, alice, proxy.url)
    proxy.set_response_headers(CREATE, {"RateLimit-Limit": "5000", "RateLimit-Remaining": "0",
                                        "RateLimit-Reset": str(int(clock()) + 100),
                                        "RateLimit-Policy": "5000;w=3600"})
    app.submit({"id": "1", "title": "One", "url": "https://blog.example.com/1"})
    app.submit({"id": "2", "title": "Two", "url": "https://blog.example.com/2"})
    app.run_worker(burst=True)
    assert app.status("1")["status"] == "completed"
    assert app.status("2")["status"] == "rate_limited"  # held back: the budget said 0 left
    assert proxy.calls(CREATE) == 1
    proxy.set_response_headers(CREATE, {})
    clock.advance(101)
    app.run_worker(burst=True)
    assert app.status("2")["status"] == "completed"


def test_breaker_opens_others_unaffected_single_probe_closes(db_url, make_app, make_account, pds, proxy, clock):
    app = make_app(db_url)
    alice, bob = make_account("brk"), make_account("fine")
    add(app, alice, proxy.url)  # behind the faulty proxy
    add(app, bob, pds.listen_url)  # straight to the PDS
    proxy.add_rule(CREATE, error(503), times=None)
    app.submit({"id": "1", "title": "One", "url": "https://blog.example.com/1"})
    for step in (0, 60, 120):
        clock.advance(step)
        app.run_worker(burst=True)
    health = {a["handle"]: a for a in app.health()["accounts"]}
    assert health[alice.handle]["breaker"] == "open"
    assert health[bob.handle]["breaker"] == "closed"
    status = app.status("1")
    assert status["deliveries"][1]["status"] == "completed"
    assert proxy.calls(CREATE) == 3
    # the retry at +300 meets the open breaker: rescheduled for the remaining 600 s, no attempt used
    clock.advance(300)
    app.run_worker(burst=True)
    d = app.status("1")["deliveries"][0]
    assert d["status"] == "circuit_open" and d["attempts"] == 3
    assert app.status("1")["status"] == "circuit_open"
    assert proxy.calls(CREATE) == 3
    # other accounts are unaffected meanwhile
    app.submit({"id": "2", "title": "Two", "url": "https://blog.example.com/2", "accounts": [bob.handle]})
    app.run_worker(burst=True)
    assert app.status("2")["status"] == "completed"
    # after the cooldown exactly one probe runs; it succeeds and closes the breaker
    proxy.clear_rules()
    clock.advance(600)
    app.run_worker(burst=True)
    d = app.status("1")["deliveries"][0]
    assert d["status"] == "completed" and d["attempts"] == 4
    assert proxy.calls(CREATE) == 4
    health = {a["handle"]: a for a in app.health()["accounts"]}
    assert health[alice.handle]["breaker"] == "closed"
    kinds = [e["kind"] for e in app.events(limit=100)]
    assert "circuit_open" in kinds and "circuit_closed" in kinds


def test_failed_probe_reopens_for_a_full_cooldown(db_url, make_app, make_account, proxy, clock):
    app = make_app(db_url, retry_delays=(1, 1, 1, 1, 1, 1))
    alice = make_account("reopen")
    add(app, alice, proxy.url)
    proxy.add_rule(CREATE, error(503), times=None)
    app.submit({"id": "1", "title": "One", "url": "https://blog.example.com/1"})
    for _ in range(3):
        app.run_worker(burst=True)
        clock.advance(1)
    assert proxy.calls(CREATE) == 3
    clock.advance(900)
    app.run_worker(burst=True)  # the probe fails
    assert proxy.calls(CREATE) == 4
    clock.advance(1)
    app.run_worker(burst=True)
    assert proxy.calls(CREATE) == 4  # open again for 900 s
    assert app.status("1")["deliveries"][0]["status"] == "circuit_open"


def test_expired_token_is_refreshed_and_repeated(db_url, make_app, make_account, pds, proxy):
    app = make_app(db_url)
    alice = make_account("expired")
    add(app, alice, proxy.url)
    proxy.reset_counts()
    proxy.add_rule(CREATE, error(400, {"error": "ExpiredToken", "message": "Token has expired"}), times=1)
    app.submit({"id": "1", "title": "Expired", "url": "https://blog.example.com/1"})
    app.run_worker(burst=True)
    d = app.status("1")["deliveries"][0]
    assert d["status"] == "completed" and d["attempts"] == 1
    assert proxy.calls(REFRESH) == 1 and proxy.calls(LOGIN) == 0
    assert len(pds.list_posts(alice.did)) == 1


def test_sessions_are_reused_across_worker_runs(db_url, make_app, make_account, pds, proxy):
    alice = make_account("reuse")
    first = make_app(db_url)
    add(first, alice, proxy.url)
    assert proxy.calls(LOGIN) == 1  # account add verifies the app password once
    for n in range(3):
        app = make_app(db_url)  # a new process would start just like this
        app.submit({"id": f"p{n}", "title": f"Post {n}", "url": f"https://blog.example.com/{n}"})
        app.run_worker(burst=True)
        assert app.status(f"p{n}")["status"] == "completed"
    assert proxy.calls(LOGIN) == 1
    assert len(pds.list_posts(alice.did)) == 3


def test_wrong_app_password_is_refused_and_nothing_stored(db_url, make_app, make_account, proxy):
    from skypost.models import AccountError

    app = make_app(db_url)
    alice = make_account("wrong")
    with pytest.raises(AccountError, match="refused the login"):
        app.add_account(alice.handle, "aaaa-bbbb-cccc-dddd", service=proxy.url)
    assert app.accounts() == []


def test_revoked_credentials_mark_needs_reauth_and_new_password_retries(db_url, make_app, make_account, pds, proxy):
    app = make_app(db_url)
    alice = make_account("revoked")
    add(app, alice, proxy.url)
    proxy.add_rule(CREATE, error(401, {"error": "AuthenticationRequired", "message": "Token has been revoked"}))
    app.submit({"id": "1", "title": "One", "url": "https://blog.example.com/1"})
    app.run_worker(burst=True)
    d = app.status("1")["deliveries"][0]
    # waiting for a person, visibly: not failed, and no job keeps polling it
    assert d["status"] == "needs_reauth" and f"re-enter the app password for @{alice.handle}" in d["error"]
    assert app.status("1")["status"] == "needs_reauth"
    assert app.accounts()[0]["state"] == "needs_reauth"
    assert app.health()["jobs"].get("todo", 0) == 0
    # another post for this account fails the same way, without a login attempt
    calls = proxy.calls()
    app.submit({"id": "2", "title": "Two", "url": "https://blog.example.com/2"})
    app.run_worker(burst=True)
    assert app.status("2")["deliveries"][0]["status"] == "needs_reauth"
    assert proxy.calls() == calls
    # new credentials: both are queued again and published
    updated = app.update_account(alice.handle, password=alice.app_password)
    assert updated["state"] == "active" and updated["requeued"] == 2
    app.run_worker(burst=True)
    assert app.status("1")["status"] == "completed" and app.status("2")["status"] == "completed"
    assert len(pds.list_posts(alice.did)) == 2


def test_pause_holds_and_resume_publishes(db_url, make_app, make_account, pds, proxy):
    app = make_app(db_url)
    alice = make_account("pause")
    add(app, alice, proxy.url)
    app.pause()
    app.submit({"id": "1", "title": "Held", "url": "https://blog.example.com/1"})
    assert app.status("1")["status"] == "paused"
    app.run_worker(burst=True)
    assert proxy.calls(CREATE) == 0 and pds.list_posts(alice.did) == []
    assert app.status("1")["status"] == "paused"
    app.resume()
    assert app.status("1")["status"] == "pending"
    app.run_worker(burst=True)
    assert app.status("1")["status"] == "completed"
    assert len(pds.list_posts(alice.did)) == 1


def test_posts_to_one_account_keep_submit_order(db_url, make_app, make_account, pds, proxy, clock):
    app = make_app(db_url)
    alice = make_account("order")
    add(app, alice, proxy.url)
    proxy.add_rule(CREATE, error(503), times=1)  # the first post needs a retry
    for n in range(4):
        app.submit({"id": f"o{n}", "title": f"Post {n}", "url": f"https://blog.example.com/{n}"})
    app.make_worker(burst=True, concurrency=3).run()
    assert [app.status(f"o{n}")["status"] for n in range(4)] == ["retrying", "pending", "pending", "pending"]
    clock.advance(60)
    for _ in range(5):
        app.make_worker(burst=True, concurrency=3).run()
    statuses = [app.status(f"o{n}") for n in range(4)]
    assert all(s["status"] == "completed" for s in statuses), statuses
    created = [s["deliveries"][0]["uri"].rsplit("/", 1)[1] for s in statuses]
    # the records were created in submit order: their CIDs appear in the repo in that order
    records = pds.list_posts(alice.did)  # newest first
    assert [r["uri"].rsplit("/", 1)[1] for r in reversed(records)] == sorted(created)
    texts = [r["value"]["text"] for r in reversed(records)]
    assert [t.split("\n")[0] for t in texts] == [f"Post {n}" for n in range(4)]


def test_inline_sync_runs_one_pass(db_url, make_app, make_account, pds, proxy):
    app = make_app(db_url)
    alice = make_account("inline")
    add(app, alice, proxy.url)
    status = app.submit({"id": "1", "title": "Now", "url": "https://blog.example.com/1"}, sync=True)
    assert status["status"] == "completed"
    assert len(pds.list_posts(alice.did)) == 1
    proxy.add_rule(CREATE, reset(), times=1)
    status = app.submit({"id": "2", "title": "Later", "url": "https://blog.example.com/2"}, sync=True)
    assert status["status"] == "retrying"  # same statuses as the worker; a worker finishes it


def test_on_status_change_only_on_publish(db_url, make_app, make_account, proxy):
    app = make_app(db_url)
    add(app, make_account("trans"), proxy.url)
    post = {"id": "9", "title": "Draft", "url": "https://blog.example.com/9"}
    assert app.on_status_change(post, "draft", "draft")["status"] == "skipped"
    assert app.status("9") is None  # nothing recorded for a non-publish
    assert app.on_status_change(post, "draft", "published")["status"] == "pending"
    assert app.on_status_change(post, "published", "published")["status"] == "pending"  # an edit: no new job
    app.run_worker(burst=True)
    assert app.status("9")["status"] == "completed"


def test_guards_record_skipped_with_reason(db_url, make_app, make_account, proxy):
    app = make_app(db_url)
    add(app, make_account("guard"), proxy.url)
    s = app.submit({"id": "a", "title": "No", "url": "https://e.com/a", "dont_syndicate": True})
    assert s["status"] == "skipped" and "dont_syndicate" in s["reason"]
    s = app.submit({"id": "b", "title": "Old", "url": "https://e.com/b", "published_at": "2001-01-01T00:00:00Z"})
    assert s["status"] == "skipped" and "activated" in s["reason"]
    app.run_worker(burst=True)
    assert proxy.calls(CREATE) == 0


def test_manual_retry_of_a_failed_post(db_url, make_app, make_account, pds, proxy, clock):
    app = make_app(db_url, retry_delays=())
    alice = make_account("retry")
    add(app, alice, proxy.url)
    proxy.add_rule(CREATE, error(503), times=1)
    app.submit({"id": "1", "title": "Retry me", "url": "https://blog.example.com/1"})
    app.run_worker(burst=True)
    assert app.status("1")["status"] == "failed"
    assert app.retry("1")["status"] == "pending"
    app.run_worker(burst=True)
    assert app.status("1")["status"] == "completed"
    assert len(pds.list_posts(alice.did)) == 1
    assert app.retry("nope") is None


def test_an_hour_long_outage_loses_nothing(db_url, make_app, make_account, pds, proxy, clock):
    """Bluesky unreachable for an hour: deliveries wait behind the breaker, the one that ran out of
    attempts is queued again when the service is back, and everything is published exactly once."""
    app = make_app(db_url)
    alice = make_account("outage")
    add(app, alice, proxy.url)
    proxy.add_rule("*", error(503), times=None)
    for n in range(3):
        app.submit({"id": f"o{n}", "title": f"During the outage {n}", "url": f"https://blog.example.com/o{n}"})
    elapsed = 0
    while elapsed < 3600:
        app.run_worker(burst=True)
        clock.advance(30)
        elapsed += 30
    statuses = [app.status(f"o{n}")["status"] for n in range(3)]
    assert statuses[0] == "failed"  # the schedule ran out: 4 attempts
    assert app.status("o0")["deliveries"][0]["attempts"] == 4
    creates_during_outage = proxy.calls(CREATE)
    assert creates_during_outage <= 10  # the breaker kept us from hammering the account
    proxy.clear_rules()
    for _ in range(40):
        app.run_worker(burst=True)
        clock.advance(30)
    assert [app.status(f"o{n}")["status"] for n in range(3)] == ["completed"] * 3
    records = pds.list_posts(alice.did)
    assert len(records) == 3
    texts = [r["value"]["text"].split("\n")[0] for r in reversed(records)]
    assert texts == [f"During the outage {n}" for n in range(3)]  # submit order kept
