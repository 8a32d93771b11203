"""The SQL of feed syndication (tables `feeds` and `feed_entries`, and the feed_poll
jobs), in SQL that SQLite and PostgreSQL both accept. Each function takes an open
connection, so callers decide what shares a transaction."""

from __future__ import annotations

import json
from typing import Any, Iterable, Sequence

from .db import Conn, encode_json
from .queries import in_list

Row = dict[str, Any]

POLL_JOB = "feed_poll"
# the list-valued JSON columns of `feeds`; encoded here because db.JSON_COLUMNS may not name them all
_FEED_JSON = ("accounts", "include_categories")
_FEED_COLUMNS = frozenset({
    "url", "accounts", "include_categories", "interval", "backfill", "cutoff", "etag", "last_modified",
    "title", "enabled", "last_polled_at", "next_poll_at", "last_status", "last_error", "error_count",
    "created_at", "updated_at",
})
_CHUNK = 500  # IN-list size: well under SQLite's bound-parameter limit


def _encode_feed(values: dict[str, Any]) -> dict[str, Any]:
    unknown = set(values) - _FEED_COLUMNS
    if unknown:
        raise ValueError(f"unknown feed column(s): {', '.join(sorted(unknown))}")
    return {k: encode_json(list(v)) if k in _FEED_JSON else v for k, v in values.items()}


def _decode_feed(row: Row | None) -> Row | None:
    if row is None:
        return None
    for key in _FEED_JSON:
        value = row.get(key)
        if isinstance(value, (str, bytes)):
            row[key] = json.loads(value)
        elif value is None:
            row[key] = []
    row["enabled"] = bool(row["enabled"])
    return row


# --- feeds ---------------------------------------------------------------------------

def insert_feed(conn: Conn, **values: Any) -> int:
    encoded = _encode_feed(values)
    cols = list(encoded)
    quoted = ", ".join(f'"{c}"' for c in cols)
    return conn.scalar(
        f"INSERT INTO feeds ({quoted}) VALUES ({', '.join(':' + c for c in cols)}) RETURNING id", encoded)


def update_feed(conn: Conn, feed_id: int, **values: Any) -> int:
    if not values:
        return 0
    encoded = _encode_feed(values)
    sets = ", ".join(f'"{c}" = :v_{c}' for c in encoded)
    params = {f"v_{c}": v for c, v in encoded.items()}
    params["id"] = feed_id
    conn.execute(f"UPDATE feeds SET {sets} WHERE id = :id", params)
    return conn.rowcount


def delete_feed(conn: Conn, feed_id: int) -> int:
    # feed_entries go with it (ON DELETE CASCADE); deleted explicitly too, for SQLite
    # connections opened without foreign keys
    conn.execute("DELETE FROM feed_entries WHERE feed_id = :id", {"id": feed_id})
    conn.execute("DELETE FROM feeds WHERE id = :id", {"id": feed_id})
    return conn.rowcount


def feed_by_id(conn: Conn, feed_id: int) -> Row | None:
    return _decode_feed(conn.one("SELECT * FROM feeds WHERE id = :id", {"id": feed_id}))


def feed_by_url(conn: Conn, url: str) -> Row | None:
    return _decode_feed(conn.one("SELECT * FROM feeds WHERE url = :url", {"url": url}))


def list_feeds(conn: Conn, *, enabled_only: bool = False) -> list[Row]:
    where = " WHERE enabled = :on" if enabled_only else ""
    params = {"on": True} if enabled_only else {}
    rows = conn.all(f"SELECT * FROM feeds{where} ORDER BY id", params)
    return [r for r in (_decode_feed(row) for row in rows) if r is not None]


def entry_counts(conn: Conn) -> dict[int, dict[str, int]]:
    """Per feed: keys seen (an entry has one or two: id and link) and posts submitted."""
    rows = conn.all("SELECT feed_id, COUNT(*) AS keys_seen, COUNT(DISTINCT post_id) AS submitted "
                    "FROM feed_entries GROUP BY feed_id")
    return {r["feed_id"]: {"keys_seen": r["keys_seen"], "submitted": r["submitted"]} for r in rows}


def existing_account_handles(conn: Conn, handles: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(handles), _CHUNK):
        params: dict[str, Any] = {}
        placeholders = in_list("h", handles[start:start + _CHUNK], params)
        rows = conn.all(f"SELECT handle FROM accounts WHERE handle IN {placeholders}", params)
        found.update(r["handle"] for r in rows)
    return found


# --- entries -------------------------------------------------------------------------

def insert_entry_if_absent(conn: Conn, feed_id: int, entry_key: str, *, post_id: str | None, now: float) -> bool:
    """Mark an entry key as seen; True only for the one caller that inserted it.

    Atomic on both databases (the unique (feed_id, entry_key) constraint decides): two
    pollers of one feed can never both win the same entry."""
    conn.execute(
        "INSERT INTO feed_entries (feed_id, entry_key, post_id, seen_at) VALUES (:f, :k, :p, :now) "
        "ON CONFLICT (feed_id, entry_key) DO NOTHING",
        {"f": feed_id, "k": entry_key, "p": post_id, "now": now},
    )
    return conn.rowcount == 1


def set_entry_post(conn: Conn, feed_id: int, entry_key: str, post_id: str | None) -> None:
    conn.execute("UPDATE feed_entries SET post_id = :p WHERE feed_id = :f AND entry_key = :k",
                 {"p": post_id, "f": feed_id, "k": entry_key})


def seen_keys(conn: Conn, feed_id: int, keys: Iterable[str]) -> set[str]:
    """Which of `keys` this feed has seen (a cheap pre-filter; the insert above decides)."""
    wanted = list(dict.fromkeys(keys))
    found: set[str] = set()
    for start in range(0, len(wanted), _CHUNK):
        params: dict[str, Any] = {"f": feed_id}
        placeholders = in_list("k", wanted[start:start + _CHUNK], params)
        found.update(r["entry_key"] for r in conn.all(
            f"SELECT entry_key FROM feed_entries WHERE feed_id = :f AND entry_key IN {placeholders}", params))
    return found


def list_entries(conn: Conn, feed_id: int) -> list[Row]:
    return conn.all("SELECT * FROM feed_entries WHERE feed_id = :f ORDER BY id", {"f": feed_id})


# --- the poll jobs ---------------------------------------------------------------------

def live_poll_jobs(conn: Conn, feed_id: int) -> list[Row]:
    """The feed_poll jobs of a feed that are waiting or running, oldest first.

    `args` is JSON (text on SQLite, json on PostgreSQL, where json has no equality
    operator), so the feed id is matched after decoding; there are few such jobs."""
    rows = conn.all(
        "SELECT * FROM jobs WHERE kind = :kind AND status IN ('todo', 'doing') ORDER BY id",
        {"kind": POLL_JOB},
    )
    return [r for r in rows if isinstance(r["args"], dict) and r["args"].get("feed_id") == feed_id]


def move_waiting_job(conn: Conn, job_id: int, run_at: float, now: float) -> int:
    """Run a waiting poll job at `run_at`; a running one is left to its worker."""
    conn.execute("UPDATE jobs SET run_at = :run_at, updated_at = :now WHERE id = :id AND status = 'todo'",
                 {"id": job_id, "run_at": run_at, "now": now})
    return conn.rowcount


def finish_waiting_job(conn: Conn, job_id: int, now: float) -> int:
    """Retire a waiting poll job (its feed was removed or disabled)."""
    conn.execute("UPDATE jobs SET status = 'done', updated_at = :now WHERE id = :id AND status = 'todo'",
                 {"id": job_id, "now": now})
    return conn.rowcount


