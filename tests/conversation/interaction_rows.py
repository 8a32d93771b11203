"""Interactions written straight into the table, as the backfeed would store them: the display
tests need no network to have replies, quotes, likes and reposts to show."""

from __future__ import annotations

from typing import Any

from skypost import Skypost
from skypost.store import queries as q

KIND_COLLECTIONS = {"reply": "app.bsky.feed.post", "quote": "app.bsky.feed.post",
                    "like": "app.bsky.feed.like", "repost": "app.bsky.feed.repost"}


def post_seq(app: Skypost, post_id: str) -> int:
    with app.db.connect() as conn:
        row = q.post_by_id(conn, post_id)
    assert row is not None, post_id
    return int(row["seq"])


def subject_uri(post_id: str) -> str:
    return f"at://did:plc:site/app.bsky.feed.post/{post_id}"


def add_interaction(app: Skypost, post_id: str, kind: str, rkey: str, *, did: str = "did:plc:fan",
                    handle: str | None = "fan.test", display_name: str | None = "A Fan",
                    avatar: str | None = "https://cdn.example/avatar/fan.jpg", text: str | None = None,
                    parent: str | None = None, created_at: float | None = 1_780_000_000.0,
                    removed_at: float | None = None, account: str = "site.test") -> str:
    """Store one interaction of the post; returns its AT-URI. `parent`: the AT-URI a reply answers
    (default: the post itself)."""
    uri = f"at://{did}/{KIND_COLLECTIONS[kind]}/{rkey}"
    values: dict[str, Any] = {
        "kind": kind, "uri": uri, "cid": f"bafy{rkey}", "post_seq": post_seq(app, post_id),
        "account": account, "subject_uri": subject_uri(post_id), "author_did": did,
        "author_handle": handle, "author_display_name": display_name, "author_avatar": avatar,
        "text": text if kind in ("reply", "quote") or text is not None else None,
        "parent_uri": (parent or subject_uri(post_id)) if kind == "reply" else None,
        "created_at": created_at, "indexed_at": 1_780_000_500.0, "removed_at": removed_at,
        "updated_at": 1_780_000_500.0,
    }
    with app.db.transaction() as conn:
        conn.execute(f"INSERT INTO interactions ({', '.join(values)}) "
                     f"VALUES ({', '.join(':' + k for k in values)})", values)
    return uri
