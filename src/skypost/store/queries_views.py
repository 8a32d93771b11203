"""The SQL that shows a post's conversation: its interactions, and how many of each kind.

Same conventions as queries.py: plain SQL that SQLite and PostgreSQL both accept, `:name`
placeholders, an open connection passed in. The backfeed writes the rows (its own module);
this one only reads them."""

from __future__ import annotations

from typing import Any, Iterable

from .db import Conn
from .queries import in_list

Row = dict[str, Any]

# the columns the interactions JSON is made of (never the internal ids of other tables)
_COLUMNS = ("id, kind, uri, cid, post_seq, account, subject_uri, author_did, author_handle, "
            "author_display_name, author_avatar, text, parent_uri, created_at, indexed_at, removed_at")


def interactions_of_post(conn: Conn, post_seq: int) -> list[Row]:
    """Every interaction of a post, removed ones too, oldest first.

    A record without a createdAt is placed at the time skypost stored it; the id breaks
    ties, so that the order is the same on every engine and every call."""
    return conn.all(
        f"SELECT {_COLUMNS} FROM interactions WHERE post_seq = :seq "
        "ORDER BY COALESCE(created_at, indexed_at), id",
        {"seq": post_seq},
    )


def live_interaction_counts(conn: Conn, post_seqs: Iterable[int]) -> dict[int, dict[str, int]]:
    """For each of many posts at once (one statement): live interactions per kind.

    Posts without any are absent from the result."""
    params: dict[str, Any] = {}
    placeholders = in_list("s", post_seqs, params)
    if not params:
        return {}
    rows = conn.all(
        f"SELECT post_seq, kind, COUNT(*) AS n FROM interactions "
        f"WHERE post_seq IN {placeholders} AND removed_at IS NULL GROUP BY post_seq, kind",
        params,
    )
    counts: dict[int, dict[str, int]] = {}
    for row in rows:
        counts.setdefault(int(row["post_seq"]), {})[str(row["kind"])] = int(row["n"])
    return counts
