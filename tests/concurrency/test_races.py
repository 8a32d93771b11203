"""Many processes on one database: races settled by the database, on PostgreSQL (and
SQLite where it applies). Each child is a real interpreter with its own connections."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from skypost import Skypost
from skypost.config import load_settings
from skypost.models import iso
from skypost.store import queries as q
from tests.conftest import TEST_KEY, _pg_create
from tests.support.faultproxy import delay, error

CREATE = "com.atproto.repo.createRecord"
ROOT = Path(__file__).resolve().parents[2]


def start(name: str, **args: Any) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "tests.concurrency.procs", name, json.dumps(args)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def results(procs: list[subprocess.Popen[str]], timeout: float = 120) -> list[dict[str, Any]]:
    out = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=timeout)
        assert proc.returncode == 0, stderr[-3000:]
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


@pytest.fixture
def pg_url():
    url, drop = _pg_create()
    try:
        yield url
    finally:
        drop()


def settings(url: str, **overrides: Any):
    return load_settings(env={}, config_file=None, database_url=url, secret_key=TEST_KEY,
                         allow_private_urls=True, poll_interval=0.05, **overrides)


def test_processes_submitting_the_same_ids_at_once_get_one_post_each(db_url, tmp_path, make_account, proxy, pds):
    app = Skypost(settings(db_url))
    alice = make_account("race")
    app.add_account(alice.handle, alice.app_password, service=proxy.url)
    ids = [f"r{n}" for n in range(40)]
    barrier = tmp_path / "go"
    procs = [start("submit_ids", url=db_url, key=TEST_KEY, barrier=str(barrier), ids=ids) for _ in range(4)]
    time.sleep(1.0)  # let the interpreters import and connect
    barrier.touch()
    outs = results(procs)
    assert [o["errors"] for o in outs] == [[], [], [], []]
    assert all(len(o["statuses"]) == len(ids) for o in outs)
    with app.db.connect() as conn:
        assert conn.scalar("SELECT COUNT(*) FROM posts") == len(ids)
        assert conn.scalar("SELECT COUNT(*) FROM deliveries") == len(ids)
        assert conn.scalar("SELECT COUNT(*) FROM jobs WHERE kind = 'syndicate'") == len(ids)
    app.run_worker(burst=True)
    assert len(pds.list_posts(alice.did)) == len(ids)  # one record per post on the real PDS
    app.close()


def test_workers_spending_one_budget_never_lose_a_spend(db_url, tmp_path):
    app = Skypost(settings(db_url))
    with app.db.transaction() as conn:
        q.observe_budget(conn, "host:shared", limit=1000, remaining=301, reset_at=time.time() + 600,
                         policy="1000;w=300", now=time.time())
    barrier = tmp_path / "go"
    procs = [start("spend", url=db_url, key="host:shared", barrier=str(barrier), rounds=100) for _ in range(4)]
    time.sleep(1.0)
    barrier.touch()
    spent = sum(o["spent"] for o in results(procs))
    with app.db.connect() as conn:
        remaining = q.rate_limit_rows(conn, ["host:shared"])[0].remaining
    # 400 tries against 300 spendable (one kept in reserve): exactly 300 succeed, none lost
    assert (spent, remaining) == (300, 1)
    app.close()


def test_a_host_whose_clock_runs_ahead_does_not_steal_a_live_lease(pg_url):
    app = Skypost(settings(pg_url, job_lease=60.0))
    with app.db.transaction() as conn:
        job_id = q.insert_job(conn, kind="syndicate", args={"post_seq": 1}, run_at=0.0, now=app.clock())
    with app.db.transaction() as conn:
        claimed = q.claim_job(conn, owner="alive-elsewhere", now=app.clock(), lease=60.0)
        assert claimed is not None and claimed.id == job_id
    # ten minutes ahead: by its own clock the lease ran out long ago
    outs = results([start("worker", url=pg_url, key=TEST_KEY, skew=600.0, lease=60.0)])
    with app.db.connect() as conn:
        job = conn.one("SELECT lease_owner, status FROM jobs WHERE id = :id", {"id": job_id})
    assert job == {"lease_owner": "alive-elsewhere", "status": "doing"}, outs
    app.close()


def test_the_database_clock_corrects_a_skewed_host(pg_url):
    app = Skypost(settings(pg_url), host_clock=lambda: time.time() - 300)
    assert abs(app.clock() - time.time()) < 2.0
    app.close()


def test_a_lease_lost_mid_attempt_still_publishes_once(db_url, make_account, proxy, pds, tmp_path):
    """Worker A's create is slow; its lease is taken over; worker B finds A's record."""
    app = Skypost(settings(db_url, job_lease=30.0))
    alice = make_account("lostlease")
    app.add_account(alice.handle, alice.app_password, service=proxy.url)
    proxy.add_rule(CREATE, delay(2.0))
    app.submit({"id": "1", "title": "Slow", "url": "https://blog.example.com/1"})
    first = threading.Thread(target=app.run_worker, kwargs={"burst": True})
    first.start()
    deadline = time.monotonic() + 20
    while proxy.calls(CREATE) == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    with app.db.transaction() as conn:  # the lease runs out while the create is in flight
        conn.execute("UPDATE jobs SET lease_expires_at = 0 WHERE status = 'doing'")
    other = Skypost(settings(db_url, job_lease=30.0))
    other.run_worker(burst=True)
    first.join(timeout=30)
    assert not first.is_alive()
    status = app.status("1")
    assert status["status"] == "completed", status
    assert len(pds.list_posts(alice.did)) == 1
    other.close()
    app.close()


def test_a_breaker_opened_by_one_worker_holds_the_account_for_all(db_url, make_account, proxy, pds, tmp_path):
    conf = settings(db_url, circuit_cooldown=3600.0, retry_delays=(0.2, 0.2, 0.2))
    app = Skypost(conf)
    alice = make_account("breakerall")
    app.add_account(alice.handle, alice.app_password, service=proxy.url)
    proxy.add_rule(CREATE, error(503, {"error": "Unavailable"}), times=None)
    for n in range(12):
        app.submit({"id": f"b{n}", "title": f"Post {n}", "url": f"https://blog.example.com/{n}"})
    apps = [Skypost(conf) for _ in range(3)]
    workers = [a.make_worker(concurrency=2) for a in apps]
    threads = [threading.Thread(target=w.run) for w in workers]
    for t in threads:
        t.start()
    account_id = app_account_id(app)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with app.db.connect() as conn:
                breaker = q.breaker(conn, account_id)
            if breaker is not None and breaker.state == "open":
                break
            time.sleep(0.05)
        time.sleep(1.0)  # six threads keep looking: none may call the account now
    finally:
        for w in workers:
            w.stop()
        for t in threads:
            t.join(timeout=30)
    # three failures open it; no worker hammers the account after that
    assert proxy.calls(CREATE) == 3
    assert breaker is not None and breaker.state == "open" and breaker.open_until is not None
    until = iso(datetime.fromtimestamp(breaker.open_until, timezone.utc))
    for n in range(12):
        status = app.status(f"b{n}")
        assert status["status"] == "circuit_open", status
        # every delivery of the account says when the cooldown ends, not "retrying in 1 s"
        assert status["deliveries"][0]["next_attempt_at"] == until, status
    events = [e["message"] for e in app.events(limit=20)]
    assert not any("retrying in" in m for m in events if "circuit" in m)
    for a in apps:
        a.close()
    app.close()


def app_account_id(app: Skypost) -> int:
    with app.db.connect() as conn:
        return int(q.list_accounts(conn)[0]["id"])


def test_wakeups_and_listeners_wait_for_the_outermost_commit(db_url):
    app = Skypost(settings(db_url))
    app.add_account("alice.test", "app-pass-word", service="http://127.0.0.1:9", verify=False)
    seen: list[str] = []
    app.on_post_status(lambda state: seen.append(state.id))
    app.queue.wakeup.clear()
    with app.db.transaction():  # a caller's transaction, as a feed poll holds one
        app.submit_state({"id": "inner", "title": "T", "url": "https://blog.example.com/t"})
        assert seen == [] and not app.queue.wakeup.is_set()  # nothing committed yet
    assert seen == ["inner"] and app.queue.wakeup.is_set()
    app.queue.wakeup.clear()
    with pytest.raises(RuntimeError):
        with app.db.transaction():
            app.submit_state({"id": "rolled-back", "title": "T", "url": "https://blog.example.com/r"})
            raise RuntimeError("the caller fails")
    assert seen == ["inner"] and not app.queue.wakeup.is_set()  # a rollback fires nothing
    assert app.status("rolled-back") is None
    app.close()


class NoNetwork:
    """A client factory for gate tests: any Bluesky call is a failure of the test."""

    calls = 0

    def __call__(self, **kwargs: Any) -> Any:
        NoNetwork.calls += 1
        raise AssertionError("the gate should not have let an attempt through")


def test_a_worker_that_lost_its_lease_does_not_take_the_probe(db_url, make_app, clock):
    app = make_app(db_url)
    app.client_factory = NoNetwork()
    app.add_account("alice.test", "app-pass-word", service="http://127.0.0.1:9", verify=False)
    app.submit({"id": "p", "title": "T", "url": "https://blog.example.com/p"})
    account_id = app_account_id(app)
    with app.db.transaction() as conn:
        q.save_breaker(conn, account_id, state="open", failures=3, opened_at=clock() - 100,
                       open_until=clock() - 1, updated_at=clock())
        job = q.claim_job(conn, owner="stale", now=clock(), lease=60.0)
        assert job is not None
        # the lease ran out while this worker was elsewhere (another may claim the job now)
        conn.execute("UPDATE jobs SET lease_expires_at = :t WHERE id = :id", {"t": clock() - 1, "id": job.id})
    app.pipeline.process_syndication(job.id, job.args["post_seq"], owner="stale")
    with app.db.connect() as conn:
        breaker = q.breaker(conn, account_id)
    assert breaker is not None and breaker.state == "open" and breaker.probe_owner is None
    assert NoNetwork.calls == 0


def test_a_spent_budget_holds_the_queue_in_one_statement(db_url, make_app, clock):
    app = make_app(db_url)
    app.client_factory = NoNetwork()
    app.add_account("alice.test", "app-pass-word", service="http://127.0.0.1:9", verify=False)
    account_id = app_account_id(app)
    reset = clock() + 600
    with app.db.transaction() as conn:
        q.observe_budget(conn, f"account:{account_id}", limit=5000, remaining=2, reset_at=reset,
                         policy="5000;w=3600", now=clock())
    for n in range(20):
        app.submit({"id": f"h{n}", "title": "T", "url": f"https://blog.example.com/{n}"})
    app.run_worker(burst=True)
    with app.db.connect() as conn:
        claims = conn.scalar("SELECT SUM(attempts) FROM jobs WHERE kind = 'syndicate'")
        due = conn.scalar("SELECT COUNT(*) FROM jobs WHERE status = 'todo' AND run_at < :r", {"r": reset})
    # the first claim met the spent budget and moved every waiting post; nobody claimed the rest
    assert claims == 1 and due == 0
    for n in range(20):
        d = app.status(f"h{n}")["deliveries"][0]
        assert d["status"] == "rate_limited" and d["next_attempt_at"] == iso(datetime.fromtimestamp(reset, timezone.utc))
    assert NoNetwork.calls == 0


def test_two_workers_holding_one_service_at_once_never_deadlock(pg_url, make_app, clock):
    """Two workers each meet a 429 at the same moment: each has touched its own delivery and
    then holds every delivery of the service. Waiting for each other's row was a deadlock on
    PostgreSQL (seen in the chaos run); rows another worker has locked are now left to it."""
    app = make_app(pg_url)
    app.add_account("alice.test", "app-pass-word", service="http://127.0.0.1:9", verify=False)
    for n in range(30):
        app.submit({"id": f"d{n}", "title": "T", "url": f"https://blog.example.com/{n}"})
    with app.db.transaction() as conn:
        conn.execute("UPDATE deliveries SET attempts = 1")  # each is in an attempt
        ids = [r["id"] for r in conn.all("SELECT id FROM deliveries ORDER BY id")]
    barrier = threading.Barrier(2, timeout=20)
    errors: list[BaseException] = []

    def worker(own: int) -> None:
        try:
            with app.db.transaction() as conn:
                q.unspend_attempt(conn, own, clock())  # the 429's outcome touches its own delivery first
                barrier.wait()
                q.hold_deliveries(conn, status="rate_limited", until=clock() + 300, now=clock(),
                                  service="http://127.0.0.1:9")
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
        finally:
            app.db.release_thread()

    # the two rows each worker holds lie at both ends of the other's scan
    threads = [threading.Thread(target=worker, args=(own,)) for own in (ids[0], ids[-1])]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    with app.db.connect() as conn:
        held = conn.scalar("SELECT COUNT(*) FROM deliveries WHERE status = 'rate_limited'")
    assert held == 30
