"""What the chaos run found, each pinned down by a small deterministic test (regression tests:
all three were fixed in src/ after they were reported).

0. Partial upserts violate NOT NULL: `rz.spend()` (a request counted against a known budget)
   and `rz.breaker_release_probe()` return some columns only, and queries._upsert writes them
   with INSERT ... ON CONFLICT DO UPDATE — the INSERT row lacks rate_limits.consecutive_429 /
   breakers.failures (NOT NULL, no server default), so SQLite and PostgreSQL refuse it before
   the conflict is even looked at. The job then failed with IntegrityError and was retried
   every 30 s. (a) Once any response carried RateLimit-* headers (Bluesky sends them on every
   createRecord), every later delivery to that account crashed until the window reset —
   an hour for the write budget. (b) A 429 or an auth failure met by the half-open probe
   crashed instead of releasing the probe (and, for auth, the account was never marked
   needs_reauth; the probe was tried again and again).
1. A 429 whose RateLimit-Reset names a moment just past (integer-second headers, a server
   clock a second behind) was treated as a 429 *without* headers: the 60/120/300 s fallback.
   In the chaos run that froze every account for ~5 minutes (the host budget is shared).
   DESIGN rule 8 keeps the fallback for "a 429 [that] has no headers".
2. Every finished delivery woke the jobs of *all* later posts waiting on the same account
   (store/queries.py wake_jobs_waiting_on_account), and each woken job was claimed only to
   find the next post still ahead of it: job claims grew with the square of the queue length
   (about 24,000 claims for the 600 deliveries of the chaos test without any fault), which
   is what made a backlog slow to drain.
"""

from __future__ import annotations

import threading
import time

from skypost import Skypost
from skypost.config import load_settings
from tests.conftest import TEST_KEY
from tests.support.faultproxy import error
from tests.support.stubpds import StubPDS

CREATE = "com.atproto.repo.createRecord"
RATE_LIMITED = {"error": "RateLimitExceeded", "message": "Rate Limit Exceeded"}


def job_errors(app) -> list[str]:
    with app.db.connect() as conn:
        return [r["last_error"] for r in conn.all("SELECT last_error FROM jobs WHERE last_error IS NOT NULL")]


def test_a_known_budget_does_not_crash_the_next_delivery(db_url, make_app, make_account, pds, proxy, clock):
    app = make_app(db_url)
    alice = make_account("budget")
    app.add_account(alice.handle, alice.app_password, service=proxy.url)
    # what Bluesky sends on every createRecord: plenty left in the hourly write budget
    proxy.set_response_headers(CREATE, {"RateLimit-Limit": "5000", "RateLimit-Remaining": "4000",
                                        "RateLimit-Reset": str(int(clock()) + 3600),
                                        "RateLimit-Policy": "5000;w=3600"})
    try:
        for n in range(3):
            app.submit({"id": str(n), "title": f"Budget {n}", "url": f"https://blog.example.com/{n}"})
        app.run_worker(burst=True)
    finally:
        proxy.set_response_headers(CREATE, None)  # the proxy outlives the test
    assert job_errors(app) == []
    assert [app.status(str(n))["status"] for n in range(3)] == ["completed"] * 3
    assert len(pds.list_posts(alice.did)) == 3


def _open_the_breaker(app, proxy, clock):
    """One transient failure opens the breaker (threshold 1); the cooldown (10 s) then passes."""
    proxy.add_rule(CREATE, error(503), times=1)
    app.submit({"id": "1", "title": "Probe", "url": "https://blog.example.com/1"})
    app.run_worker(burst=True)
    assert app.health()["accounts"][0]["breaker"] == "open"
    clock.advance(11)


def test_a_429_met_by_the_probe_releases_it(sqlite_url, make_app, make_account, pds, proxy, clock):
    app = make_app(sqlite_url, retry_delays=(1, 1, 1), circuit_threshold=1, circuit_cooldown=10)
    alice = make_account("probe429")
    app.add_account(alice.handle, alice.app_password, service=proxy.url)
    _open_the_breaker(app, proxy, clock)
    proxy.add_rule(CREATE, error(429, RATE_LIMITED, {"Retry-After": "5"}), times=1)
    app.run_worker(burst=True)  # the probe meets the 429
    assert job_errors(app) == []
    d = app.status("1")["deliveries"][0]
    assert d["status"] == "rate_limited" and d["attempts"] == 1  # the 429 used no attempt
    clock.advance(6)
    app.run_worker(burst=True)
    assert app.status("1")["status"] == "completed"
    assert len(pds.list_posts(alice.did)) == 1


def test_an_auth_failure_met_by_the_probe_marks_needs_reauth(sqlite_url, make_app, make_account, pds, proxy,
                                                             clock):
    app = make_app(sqlite_url, retry_delays=(1, 1, 1), circuit_threshold=1, circuit_cooldown=10)
    alice = make_account("probeauth")
    app.add_account(alice.handle, alice.app_password, service=proxy.url)
    _open_the_breaker(app, proxy, clock)
    proxy.add_rule(CREATE, error(401, {"error": "AuthenticationRequired", "message": "Token has been revoked"}),
                   times=1)
    app.run_worker(burst=True)  # the probe meets the 401
    assert job_errors(app) == []
    d = app.status("1")["deliveries"][0]
    assert d["status"] == "needs_reauth" and "re-enter the app password" in (d["error"] or "")
    assert app.accounts()[0]["state"] == "needs_reauth"


def test_429_with_a_reset_just_past_is_not_treated_as_headerless(sqlite_url, make_app, make_account, pds,
                                                                 proxy, clock):
    app = make_app(sqlite_url)
    alice = make_account("pastreset")
    app.add_account(alice.handle, alice.app_password, service=proxy.url)
    # the window ended a second ago (whole seconds, as Bluesky sends them)
    proxy.add_rule(CREATE, error(429, RATE_LIMITED, {
        "RateLimit-Limit": "3000", "RateLimit-Remaining": "0", "RateLimit-Reset": str(int(clock()) - 1),
        "RateLimit-Policy": "3000;w=300"}), times=1)
    app.submit({"id": "1", "title": "Past reset", "url": "https://blog.example.com/1"})
    app.run_worker(burst=True)
    d = app.status("1")["deliveries"][0]
    assert d["status"] == "rate_limited" and d["attempts"] == 0
    with app.db.connect() as conn:
        blocked = conn.scalar("SELECT MAX(blocked_until) FROM rate_limits")
    # the headers say the budget is already back: a short wait, not the 60-300 s headerless fallback
    assert blocked - clock() <= 5, f"held back {blocked - clock():.0f} s by a 429 whose reset had passed"


def test_job_claims_stay_linear_when_posts_queue_behind_one_account(sqlite_url):
    posts = 100
    # private addresses refused (unlike make_app's apps): the card fetch of 192.0.2.1 fails at once
    settings = load_settings(env={}, config_file=None, database_url=sqlite_url, secret_key=TEST_KEY,
                             poll_interval=0.05, http_timeout=10.0)
    with StubPDS(latency=0.02) as stub, Skypost(settings) as app:
        # the stub is on loopback: only adding the account may reach a private address
        with Skypost(settings.replace(allow_private_urls=True)) as admin:
            admin.add_account("solo.test", "app-pass-word", service=stub.url)
        for n in range(posts):
            app.submit({"id": f"p{n:03d}", "title": f"Post {n}", "url": f"https://192.0.2.1/{n}"})
        worker = app.make_worker(concurrency=3)
        runner = threading.Thread(target=worker.run, name="churn-worker")
        runner.start()
        try:
            deadline = time.monotonic() + 60
            while app.health()["deliveries"].get("completed", 0) < posts and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            worker.stop()
            runner.join(30)
        assert app.health()["deliveries"] == {"completed": posts}
        assert stub.total_records() == posts
        with app.db.connect() as conn:
            claims = conn.scalar("SELECT SUM(attempts) FROM jobs WHERE kind = 'syndicate'")
        # each post's job is claimed a few times at most (woken when its turn comes), not once
        # for every post ahead of it
        assert claims <= 4 * posts, f"{claims} job claims for {posts} posts to one account"
