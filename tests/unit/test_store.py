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
        assert (row["remaining"], row["reset_at"], row["consecutive_429"]) == (4, 100.0, 0)
        q.save_breaker(conn, account_id, state="open", failures=3, open_until=50.0, updated_at=1.0)
        q.save_breaker(conn, account_id, state="open", open_until=10.0, probe_owner=None, updated_at=2.0)
        b = q.breaker(conn, account_id)
        assert (b["state"], b["failures"], b["open_until"]) == ("open", 3, 10.0)
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
        assert first["id"] == job_id and first["lease_owner"] == "w1"
    with db.transaction() as conn:
        assert q.claim_job(conn, owner="w2", now=5.0, lease=10.0) is None  # w1 holds it
        assert q.extend_leases(conn, owner="w1", job_ids=[job_id], until=20.0, now=5.0) == 1
        assert q.claim_job(conn, owner="w2", now=15.0, lease=10.0) is None  # the heartbeat kept it
    with db.transaction() as conn:
        again = q.claim_job(conn, owner="w2", now=21.0, lease=10.0)  # w1 died: the lease ran out
        assert again["id"] == job_id and again["attempts"] == 2
        assert not q.release_job(conn, job_id, owner="w1", status="done", run_at=None, now=22.0)
        assert q.release_job(conn, job_id, owner="w2", status="done", run_at=None, now=22.0)
    db.dispose()
