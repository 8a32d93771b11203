"""The SQL of the backfeed (tables `interactions` and `backfeed_state`, and the backfeed
jobs), in SQL that SQLite and PostgreSQL both accept. Each function takes an open
connection, so callers decide what shares a transaction."""

from __future__ import annotations

from typing import Any, Iterable, Sequence

from .db import Conn, encode_json
from .queries import in_list, notify_jobs

Row = dict[str, Any]

BACKFEED_JOB = "backfeed"
_CHUNK = 500  # IN-list size: well under SQLite's bound-parameter limit
_INTERACTION_COLUMNS = ("kind", "uri", "cid", "post_seq", "delivery_id", "account", "subject_uri", "author_did",
                        "author_handle", "author_display_name", "author_avatar", "text", "parent_uri",
                        "created_at")


def _chunks(values: Iterable[Any]) -> Iterable[list[Any]]:
    items = list(dict.fromkeys(values))
    for start in range(0, len(items), _CHUNK):
        yield items[start:start + _CHUNK]


# --- the backfeed jobs -------------------------------------------------------------------

def insert_backfeed_job(conn: Conn, *, account_id: int, run_at: float, now: float) -> bool:
    """Schedule an account's backfeed job unless one waits or runs already (the unique partial
    index uq_jobs_backfeed decides when two workers try at once). True when this one inserted."""
    conn.execute(
        "INSERT INTO jobs (kind, args, status, run_at, attempts, created_at, updated_at) "
        "VALUES (:kind, :args, 'todo', :run_at, 0, :now, :now) ON CONFLICT DO NOTHING",
        {"kind": BACKFEED_JOB, "args": encode_json({"account_id": account_id}), "run_at": run_at, "now": now})
    inserted = conn.rowcount == 1
    if inserted and run_at <= now:
        notify_jobs(conn)
    return inserted


def syndication_due(conn: Conn, now: float) -> bool:
    """Whether a publish is waiting for a worker now (a poll steps aside for it)."""
    return conn.scalar("SELECT id FROM jobs WHERE kind = 'syndicate' AND status = 'todo' AND run_at <= :now "
                       "LIMIT 1", {"now": now}) is not None


def account_ids(conn: Conn) -> list[int]:
    return [r["id"] for r in conn.all("SELECT id FROM accounts ORDER BY id")]


# --- per-account state -----------------------------------------------------------------------

def backfeed_state(conn: Conn, account_id: int) -> Row | None:
    return conn.one("SELECT * FROM backfeed_state WHERE account_id = :a", {"a": account_id})


def save_backfeed_state(conn: Conn, account_id: int, *, notifications_until: float | None,
                        likes_until: float | None, reposts_until: float | None, posts_until: float | None,
                        full_reconciled_at: float | None, error: str | None, now: float) -> None:
    """Record a poll. Watermarks only move forward (two polls racing: the further one wins)."""
    greatest = "GREATEST" if conn.is_postgres else "MAX"

    def forward(col: str) -> str:
        # NULL-safe on both databases: SQLite's MAX() of a NULL is NULL
        return (f"{col} = {greatest}(COALESCE(backfeed_state.{col}, excluded.{col}), "
                f"COALESCE(excluded.{col}, backfeed_state.{col}))")

    cols = ("notifications_until", "likes_until", "reposts_until", "posts_until", "full_reconciled_at")
    conn.execute(
        "INSERT INTO backfeed_state (account_id, notifications_until, likes_until, reposts_until, posts_until, "
        "polls, last_poll_at, full_reconciled_at, last_error, updated_at) VALUES (:a, :n, :l, :r, :p, 1, :now, "
        ":full, :error, :now) ON CONFLICT (account_id) DO UPDATE SET "
        + ", ".join(forward(c) for c in cols)
        + ", polls = backfeed_state.polls + 1, last_poll_at = excluded.last_poll_at, "
        "last_error = excluded.last_error, updated_at = excluded.updated_at",
        {"a": account_id, "n": notifications_until, "l": likes_until, "r": reposts_until, "p": posts_until,
         "full": full_reconciled_at, "error": error, "now": now})


def note_backfeed_error(conn: Conn, account_id: int, *, error: str, now: float) -> None:
    """A poll that failed: its error is kept, nothing else moves."""
    conn.execute(
        "INSERT INTO backfeed_state (account_id, polls, last_error, updated_at) VALUES (:a, 0, :error, :now) "
        "ON CONFLICT (account_id) DO UPDATE SET last_error = excluded.last_error, "
        "updated_at = excluded.updated_at", {"a": account_id, "error": error, "now": now})


# --- syndicated records --------------------------------------------------------------------

def syndicated_since(conn: Conn, account_id: int, since: float) -> list[Row]:
    """The account's published records of posts syndicated since `since`, newest first."""
    return conn.all(
        "SELECT id, post_seq, account_id, handle, uri, cid, completed_at FROM deliveries "
        "WHERE account_id = :a AND status = 'completed' AND uri IS NOT NULL AND completed_at >= :since "
        "ORDER BY completed_at DESC, id DESC", {"a": account_id, "since": since})


def deliveries_by_uri(conn: Conn, uris: Iterable[str]) -> dict[str, Row]:
    """The published deliveries of site posts whose record is one of `uris` (one query per 500
    URIs). Replies from the site are deliveries too, but a reaction to one belongs to the post
    at its thread's root, which its `reply.root` names."""
    found: dict[str, Row] = {}
    for chunk in _chunks(uris):
        params: dict[str, Any] = {}
        rows = conn.all(
            "SELECT d.id, d.post_seq, d.account_id, d.handle, d.uri FROM deliveries d "
            "JOIN posts p ON p.seq = d.post_seq "
            f"WHERE d.uri IN {in_list('u', chunk, params)} AND d.status = 'completed' AND p.kind = 'post'",
            params)
        found.update((r["uri"], r) for r in rows)
    return found


def published_uris(conn: Conn, uris: Iterable[str]) -> set[str]:
    """Which of `uris` are skypost's own records (posts and replies from the site): never
    reactions, or the site would be told about its own comments."""
    found: set[str] = set()
    for chunk in _chunks(uris):
        params: dict[str, Any] = {}
        found.update(r["uri"] for r in conn.all(
            f"SELECT uri FROM deliveries WHERE uri IN {in_list('u', chunk, params)}", params))
    return found


# --- interactions ----------------------------------------------------------------------------

def known_interaction_uris(conn: Conn, uris: Iterable[str]) -> set[str]:
    """Which of `uris` are stored already, live or removed (a cheap pre-filter; the insert decides)."""
    found: set[str] = set()
    for chunk in _chunks(uris):
        params: dict[str, Any] = {}
        found.update(r["uri"] for r in conn.all(
            f"SELECT uri FROM interactions WHERE uri IN {in_list('u', chunk, params)}", params))
    return found


def insert_interaction(conn: Conn, *, now: float, **values: Any) -> int | None:
    """Store a reaction once; its id, or None when its URI is stored already (by anyone)."""
    unknown = set(values) - set(_INTERACTION_COLUMNS)
    if unknown:
        raise ValueError(f"unknown interaction column(s): {', '.join(sorted(unknown))}")
    params = {c: values.get(c) for c in _INTERACTION_COLUMNS}
    params["now"] = now
    return conn.scalar(
        f"INSERT INTO interactions ({', '.join(_INTERACTION_COLUMNS)}, indexed_at, removed_at, updated_at) "
        f"VALUES ({', '.join(':' + c for c in _INTERACTION_COLUMNS)}, :now, NULL, :now) "
        "ON CONFLICT (uri) DO NOTHING RETURNING id", params)


def live_interactions(conn: Conn, delivery_ids: Sequence[int]) -> list[Row]:
    """The reactions not removed of some deliveries."""
    rows: list[Row] = []
    for chunk in _chunks(delivery_ids):
        params: dict[str, Any] = {}
        rows.extend(conn.all(
            "SELECT id, kind, uri, delivery_id, subject_uri, author_did, parent_uri, indexed_at FROM interactions "
            f"WHERE delivery_id IN {in_list('d', chunk, params)} AND removed_at IS NULL ORDER BY id", params))
    return rows


def mark_interaction_removed(conn: Conn, interaction_id: int, *, now: float) -> bool:
    """Mark a reaction removed; True only for the one caller whose statement did it."""
    conn.execute("UPDATE interactions SET removed_at = :now, updated_at = :now "
                 "WHERE id = :id AND removed_at IS NULL", {"id": interaction_id, "now": now})
    return conn.rowcount == 1


def interactions_of_post(conn: Conn, post_seq: int) -> list[Row]:
    """Every stored reaction of a post, oldest first (tests and tools)."""
    return conn.all("SELECT * FROM interactions WHERE post_seq = :s ORDER BY id", {"s": post_seq})
