"""The SQL of telling the site: webhook targets (`notify_targets`), the outbox of events
to send (`outbox`) and the `notify` job that sends them. Same conventions as queries.py:
plain SQL that SQLite and PostgreSQL both accept, an open connection passed in."""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Mapping, Sequence

from .db import Conn, encode_json
from .queries import notify_jobs

Row = dict[str, Any]

NOTIFY_JOB = "notify"
# a row is unfinished while it may still be sent: later rows of its order key wait for it
UNFINISHED = ("pending", "sending")


@dataclasses.dataclass(frozen=True)
class OutboxRow:
    id: int
    event_id: str
    type: str
    channel: str
    target: str
    target_id: int | None
    interaction_id: int | None
    payload: str
    attempts: int

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "OutboxRow":
        return cls(id=int(row["id"]), event_id=str(row["event_id"]), type=str(row["type"]),
                   channel=str(row["channel"]), target=str(row["target"]), target_id=row["target_id"],
                   interaction_id=row["interaction_id"], payload=str(row["payload"]),
                   attempts=int(row["attempts"]))


def _decode_target(row: Row | None) -> Row | None:
    if row is not None and isinstance(row.get("events"), (str, bytes)):
        row["events"] = json.loads(row["events"])
    return row


# --- webhook targets ------------------------------------------------------------------

def insert_target(conn: Conn, *, url: str, events: Sequence[str], secret_enc: str, now: float) -> int:
    """Add a target; 0 when the URL is there already (decided by the unique index)."""
    conn.execute(
        "INSERT INTO notify_targets (url, events, secret_enc, created_at) "
        "VALUES (:url, :events, :secret, :now) ON CONFLICT (url) DO NOTHING",
        {"url": url, "events": encode_json(list(events)), "secret": secret_enc, "now": now})
    return conn.rowcount


def target_by_url(conn: Conn, url: str) -> Row | None:
    return _decode_target(conn.one("SELECT * FROM notify_targets WHERE url = :url", {"url": url}))


def target_by_id(conn: Conn, target_id: int) -> Row | None:
    return _decode_target(conn.one("SELECT * FROM notify_targets WHERE id = :id", {"id": target_id}))


def list_targets(conn: Conn) -> list[Row]:
    return [r for r in (_decode_target(r) for r in conn.all("SELECT * FROM notify_targets ORDER BY id"))
            if r is not None]


def delete_target(conn: Conn, target_id: int) -> None:
    conn.execute("DELETE FROM notify_targets WHERE id = :id", {"id": target_id})


def target_counts(conn: Conn) -> dict[int, dict[str, int]]:
    """Per target id: outbox rows by status."""
    counts: dict[int, dict[str, int]] = {}
    for r in conn.all("SELECT target_id, status, COUNT(*) AS n FROM outbox WHERE target_id IS NOT NULL "
                      "GROUP BY target_id, status"):
        counts.setdefault(r["target_id"], {})[r["status"]] = r["n"]
    return counts


# --- the outbox --------------------------------------------------------------------------

def insert_event(conn: Conn, *, event_id: str, type: str, channel: str, target: str, target_id: int | None,
                 interaction_id: int | None, order_key: str, payload: str, now: float) -> bool:
    """Queue one event for one target, due now; False when that event id is queued already."""
    conn.execute(
        "INSERT INTO outbox (event_id, type, channel, target, target_id, interaction_id, order_key, payload, "
        "status, attempts, next_attempt_at, created_at, updated_at) VALUES (:event_id, :type, :channel, "
        ":target, :target_id, :interaction_id, :order_key, :payload, 'pending', 0, :now, :now, :now) "
        "ON CONFLICT (event_id) DO NOTHING",
        {"event_id": event_id, "type": type, "channel": channel, "target": target, "target_id": target_id,
         "interaction_id": interaction_id, "order_key": order_key, "payload": payload, "now": now})
    return conn.rowcount == 1


# a pending row that is due, or a claimed row whose worker stopped before recording the outcome
_DUE = ("((o.status = 'pending' AND o.next_attempt_at <= :now) "
        "OR (o.status = 'sending' AND o.lease_until < :now))")
# ...and no earlier row of its order key still waits (a removal goes after its creation)
_IN_ORDER = ("NOT EXISTS (SELECT 1 FROM outbox e WHERE e.order_key = o.order_key AND e.id < o.id "
             "AND e.status IN ('pending', 'sending'))")


def claim_event(conn: Conn, *, owner: str, now: float, lease: float) -> OutboxRow | None:
    """Take the next due row in one statement (SKIP LOCKED on PostgreSQL, the write lock on
    SQLite): two workers never send the same row at the same time."""
    lock = " FOR UPDATE SKIP LOCKED" if conn.is_postgres else ""
    row = conn.one(
        "UPDATE outbox SET status = 'sending', lease_owner = :owner, lease_until = :until, "
        "attempts = attempts + 1, updated_at = :now "
        f"WHERE id = (SELECT o.id FROM outbox o WHERE {_DUE} AND {_IN_ORDER} "
        f"ORDER BY o.next_attempt_at, o.id LIMIT 1{lock}) "
        # the row lock is taken after the subquery's snapshot: look again under it
        "AND (status = 'pending' OR (status = 'sending' AND lease_until < :now)) RETURNING *",
        {"owner": owner, "until": now + lease, "now": now})
    return OutboxRow.from_row(row) if row else None


def finish_event(conn: Conn, row_id: int, *, owner: str, status: str, http_status: int | None,
                 error: str | None, now: float) -> bool:
    """Record a final outcome (sent / failed / skipped); False when the lease was lost."""
    conn.execute(
        "UPDATE outbox SET status = :status, lease_owner = NULL, lease_until = NULL, last_status = :code, "
        "last_error = :error, next_attempt_at = NULL, updated_at = :now, "
        "sent_at = COALESCE(:sent_at, sent_at) WHERE id = :id AND lease_owner = :owner AND status = 'sending'",
        {"status": status, "code": http_status, "error": error, "now": now, "id": row_id, "owner": owner,
         "sent_at": now if status == "sent" else None})
    return conn.rowcount == 1


def retry_event(conn: Conn, row_id: int, *, owner: str, at: float, http_status: int | None, error: str,
                now: float) -> bool:
    conn.execute(
        "UPDATE outbox SET status = 'pending', lease_owner = NULL, lease_until = NULL, last_status = :code, "
        "last_error = :error, next_attempt_at = :at, updated_at = :now "
        "WHERE id = :id AND lease_owner = :owner AND status = 'sending'",
        {"code": http_status, "error": error, "at": at, "now": now, "id": row_id, "owner": owner})
    return conn.rowcount == 1


def next_event_due_at(conn: Conn) -> float | None:
    """When the next unfinished row becomes due (a pending attempt or a claimed row's lease
    end). A row that waits for an earlier one of its order key is not counted: it becomes
    due when that one is done, whose own time is counted."""
    pending = conn.scalar(f"SELECT MIN(o.next_attempt_at) FROM outbox o WHERE o.status = 'pending' AND {_IN_ORDER}")
    leased = conn.scalar("SELECT MIN(lease_until) FROM outbox WHERE status = 'sending'")
    times = [t for t in (pending, leased) if t is not None]
    return min(times) if times else None


def recent_events(conn: Conn, *, limit: int = 50) -> list[Row]:
    return conn.all("SELECT id, event_id, type, channel, target, status, attempts, next_attempt_at, "
                    "last_status, last_error, created_at, sent_at FROM outbox ORDER BY id DESC LIMIT :limit",
                    {"limit": limit})


def events_for_interaction(conn: Conn, interaction_id: int) -> list[Row]:
    return conn.all("SELECT * FROM outbox WHERE interaction_id = :i ORDER BY id", {"i": interaction_id})


# --- what an event says ------------------------------------------------------------------

def interaction_with_post(conn: Conn, interaction_id: int) -> Row | None:
    """An interaction with its post's site id and URL (`post_id`, `post_document`)."""
    return conn.one(
        "SELECT i.*, p.post_id AS post_id, p.document AS post_document FROM interactions i "
        "JOIN posts p ON p.seq = i.post_seq WHERE i.id = :id", {"id": interaction_id})


# --- the notify job -------------------------------------------------------------------------

def wake_notify_job(conn: Conn, *, now: float) -> None:
    """Make a waiting `notify` job due now, or add one when none waits (a running one may be
    about to end: it would not see rows committed after its last look)."""
    conn.execute("UPDATE jobs SET run_at = :now, updated_at = :now "
                 "WHERE kind = :kind AND status = 'todo' AND run_at > :now", {"kind": NOTIFY_JOB, "now": now})
    if conn.scalar("SELECT id FROM jobs WHERE kind = :kind AND status = 'todo' LIMIT 1",
                   {"kind": NOTIFY_JOB}) is None:
        conn.execute("INSERT INTO jobs (kind, args, status, run_at, attempts, created_at, updated_at) "
                     "VALUES (:kind, '{}', 'todo', :now, 0, :now, :now)", {"kind": NOTIFY_JOB, "now": now})
    notify_jobs(conn)


def other_notify_job_waits(conn: Conn, job_id: int) -> bool:
    return conn.scalar("SELECT id FROM jobs WHERE kind = :kind AND status = 'todo' AND id <> :id LIMIT 1",
                       {"kind": NOTIFY_JOB, "id": job_id}) is not None
