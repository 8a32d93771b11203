"""Store-level behaviour that every worker relies on, on SQLite and PostgreSQL."""

from __future__ import annotations

from skypost.store import queries as q
from skypost.store.db import SCHEMA_HEAD, Database


def test_schema_head_constant_matches_migrations(sqlite_url):
    db = Database(sqlite_url)
    assert db.head_revision() == SCHEMA_HEAD
    db.migrate()
    assert db.schema_revision() == SCHEMA_HEAD
    db.dispose()


def _db(url):
    db = Database(url)
    db.migrate()
    with db.transaction() as conn:
        conn.execute("INSERT INTO accounts (handle, did, service, auto_syndicate, include_categories, "
                     "exclude_categories, state, password_enc, created_at, updated_at) VALUES "
                     "('a.test', 'did:x', 'http://x', 1 = 1, '[]', '[]', 'active', 'x', 0, 0)")
    return db


def test_partial_updates_of_limiter_and_breaker_rows(db_url):
    db = _db(db_url)
    with db.transaction() as conn:
        account_id = q.account_by_handle(conn, "a.test")["id"]
        q.save_rate_limit(conn, "account:1", remaining=5, reset_at=100.0, updated_at=1.0)  # new row
        q.save_rate_limit(conn, "account:1", remaining=4, updated_at=2.0)  # partial: other columns kept
        row = q.rate_limit_rows(conn, ["account:1"])[0]
        assert (row.remaining, row.reset_at, row.consecutive_429) == (4, 100.0, 0)
        q.save_breaker(conn, account_id, state="open", failures=3, open_until=50.0, updated_at=1.0)
        q.save_breaker(conn, account_id, state="open", open_until=10.0, probe_owner=None, updated_at=2.0)
        b = q.breaker(conn, account_id)
        assert (b.state, b.failures, b.open_until) == ("open", 3, 10.0)
    db.dispose()


def test_only_one_caller_wins_the_probe(db_url):
    db = _db(db_url)
    with db.transaction() as conn:
        account_id = q.account_by_handle(conn, "a.test")["id"]
        q.save_breaker(conn, account_id, state="open", failures=3, open_until=10.0, updated_at=0.0)
    wins = []
    for owner in ("w1", "w2", "w3"):
        with db.transaction() as conn:
            wins.append(q.take_probe(conn, account_id, owner=owner, now=11.0, until=20.0))
    assert wins == [True, False, False]
    with db.transaction() as conn:  # an abandoned probe can be taken over after its lease
        assert q.take_probe(conn, account_id, owner="w4", now=21.0, until=30.0)
    db.dispose()


def test_claim_is_atomic_and_expired_leases_are_reclaimed(db_url):
    db = _db(db_url)
    with db.transaction() as conn:
        job_id = q.insert_job(conn, kind="syndicate", args={"post_seq": 1}, run_at=0.0, now=0.0)
    with db.transaction() as conn:
        first = q.claim_job(conn, owner="w1", now=1.0, lease=10.0)
        assert first.id == job_id and first.lease_owner == "w1"
    with db.transaction() as conn:
        assert q.claim_job(conn, owner="w2", now=5.0, lease=10.0) is None  # w1 holds it
        assert q.extend_leases(conn, owner="w1", job_ids=[job_id], until=20.0, now=5.0) == 1
        assert q.claim_job(conn, owner="w2", now=15.0, lease=10.0) is None  # the heartbeat kept it
    with db.transaction() as conn:
        again = q.claim_job(conn, owner="w2", now=21.0, lease=10.0)  # w1 died: the lease ran out
        assert again.id == job_id and again.attempts == 2
        assert not q.release_job(conn, job_id, owner="w1", status="done", run_at=None, now=22.0)
        assert q.release_job(conn, job_id, owner="w2", status="done", run_at=None, now=22.0)
    db.dispose()


def test_spending_keeps_the_reserve_and_says_until_when(db_url):
    db = _db(db_url)
    with db.transaction() as conn:
        q.observe_budget(conn, "host:h", limit=10, remaining=3, reset_at=100.0, policy="10;w=300", now=1.0)
        assert q.spend_budget(conn, "host:h", cost=1, reserve=1, now=2.0) is None  # 3 → 2
        assert q.spend_budget(conn, "host:h", cost=1, reserve=1, now=2.0) is None  # 2 → 1
        assert q.spend_budget(conn, "host:h", cost=1, reserve=1, now=2.0) == 100.0  # the reserve stays
        assert q.spend_budget(conn, "host:h", cost=1, reserve=1, now=101.0) is None  # reset: unknown budget
        assert q.spend_budget(conn, "unknown", cost=1, reserve=1, now=2.0) is None
        assert q.rate_limit_rows(conn, ["host:h"])[0].remaining == 1
    db.dispose()


def test_an_answer_never_erases_spends_made_since_within_its_window(db_url):
    db = _db(db_url)
    with db.transaction() as conn:
        q.observe_budget(conn, "k", limit=100, remaining=50, reset_at=300.0, policy=None, now=1.0)
        for _ in range(10):  # calls in flight on other workers
            q.spend_budget(conn, "k", cost=1, reserve=1, now=2.0)
        # an answer to a call that the server counted before those: Remaining 49, same window
        q.observe_budget(conn, "k", limit=100, remaining=49, reset_at=300.0, policy=None, now=3.0)
        assert q.rate_limit_rows(conn, ["k"])[0].remaining == 40
        # a lower count from the server wins
        q.observe_budget(conn, "k", limit=100, remaining=20, reset_at=300.0, policy=None, now=4.0)
        assert q.rate_limit_rows(conn, ["k"])[0].remaining == 20
        # a late answer from the previous window changes nothing
        q.observe_budget(conn, "k", limit=100, remaining=90, reset_at=0.0, policy=None, now=5.0)
        row = q.rate_limit_rows(conn, ["k"])[0]
        assert (row.remaining, row.reset_at) == (20, 300.0)
        # a new window replaces the count
        q.observe_budget(conn, "k", limit=100, remaining=99, reset_at=600.0, policy=None, now=301.0)
        row = q.rate_limit_rows(conn, ["k"])[0]
        assert (row.remaining, row.reset_at) == (99, 600.0)
    db.dispose()


def test_a_record_key_names_one_record_of_an_account(db_url):
    db = _db(db_url)
    with db.transaction() as conn:
        account_id = q.account_by_handle(conn, "a.test")["id"]
        seqs = [q.insert_post_if_absent(conn, post_id=f"p{n}", document={}, status="pending", reason=None,
                                        source="api", now=0.0) for n in range(2)]
        first = q.insert_delivery(conn, post_seq=seqs[0], account_id=account_id, handle="a.test", did="did:x",
                                  position=0, rkey="3kaaaaaaaaaaa", now=0.0)
        clash = q.insert_delivery(conn, post_seq=seqs[1], account_id=account_id, handle="a.test", did="did:x",
                                  position=0, rkey="3kaaaaaaaaaaa", now=0.0)
        assert first is not None and clash is None
        assert q.insert_post_if_absent(conn, post_id="p0", document={}, status="pending", reason=None,
                                       source="api", now=0.0) is None
    db.dispose()


def test_pruning_deletes_only_old_finished_jobs_and_events(db_url):
    db = _db(db_url)
    with db.transaction() as conn:
        old = q.insert_job(conn, kind="x", args={}, run_at=0.0, now=0.0)
        q.release_job(conn, old, owner=None, status="done", run_at=None, now=10.0)
        waiting = q.insert_job(conn, kind="x", args={}, run_at=0.0, now=0.0)
        recent = q.insert_job(conn, kind="x", args={}, run_at=0.0, now=0.0)
        q.release_job(conn, recent, owner=None, status="done", run_at=None, now=500.0)
        q.add_event(conn, ts=10.0, kind="k", message="old")
        q.add_event(conn, ts=500.0, kind="k", message="new")
        assert q.prune(conn, before=100.0) == (1, 1)
        left = {r["id"] for r in conn.all("SELECT id FROM jobs")}
        assert left == {waiting, recent}
    db.dispose()


def test_one_recurring_job_however_many_workers_start(db_url):
    db = _db(db_url)
    with db.transaction() as conn:
        assert q.insert_recurring_job(conn, kind="prune", run_at=0.0, now=0.0)
        assert not q.insert_recurring_job(conn, kind="prune", run_at=0.0, now=0.0)
        assert conn.scalar("SELECT COUNT(*) FROM jobs WHERE kind = 'prune'") == 1
    db.dispose()


def test_probing_a_sqlite_file_keeps_its_wal_for_the_other_processes(tmp_path):
    """Closing any descriptor of the database file drops this process's SQLite locks; another
    process that writes and exits then thinks it was the last and deletes the WAL."""
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path}/skypost.db"
    db = Database(url)
    db.migrate()
    with db.transaction() as conn:
        q.set_setting(conn, "probe", "1")
    for _ in range(3):
        db.probe()
    writer = ("import sqlite3, sys; c = sqlite3.connect(sys.argv[1], isolation_level=None); "
              "c.execute(\"INSERT INTO settings (key, value) VALUES ('other', 'x')\"); c.close()")
    subprocess.run([sys.executable, "-c", writer, str(tmp_path / "skypost.db")], check=True, timeout=30)
    assert (tmp_path / "skypost.db-wal").exists()  # our connection still holds it
    with db.connect() as conn:
        assert q.get_setting(conn, "other") == "x" and conn.scalar("PRAGMA integrity_check") == "ok"
    db.dispose()
