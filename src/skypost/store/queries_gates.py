"""Statements of the gates (who may reply, quotes) and of replies from the site."""

from __future__ import annotations

from typing import Any

from .db import Conn, encode_json

Row = dict[str, Any]


# --- gates ---------------------------------------------------------------------------

def set_account_replies(conn: Conn, account_id: int, replies: str | None, *, now: float) -> None:
    """Who may reply to the account's future posts (None: everyone)."""
    conn.execute("UPDATE accounts SET replies = :r, updated_at = :now WHERE id = :id",
                 {"id": account_id, "r": replies, "now": now})


def set_account_quotes(conn: Conn, account_id: int, quotes: bool, *, now: float) -> None:
    """Whether the account's future posts may be quoted."""
    conn.execute("UPDATE accounts SET quotes = :q, updated_at = :now WHERE id = :id",
                 {"id": account_id, "q": quotes, "now": now})


def deliveries_with_account_gates(conn: Conn, post_seq: int) -> list[Row]:
    """The post's deliveries with their account's gate settings."""
    return conn.all(
        "SELECT d.id, a.replies, a.quotes FROM deliveries d JOIN accounts a ON a.id = d.account_id "
        "WHERE d.post_seq = :s ORDER BY d.position", {"s": post_seq})


def set_delivery_gates(conn: Conn, delivery_id: int, *, threadgate: str | None, postgate: bool) -> None:
    """The gates a delivery writes with its post (fixed before its first attempt)."""
    conn.execute("UPDATE deliveries SET threadgate = :t, postgate = :p WHERE id = :id",
                 {"id": delivery_id, "t": threadgate, "p": postgate})


# --- replies from the site ------------------------------------------------------------

def site_post_by_id(conn: Conn, post_id: str, *, for_update: bool = False) -> Row | None:
    """A post of the site (never a reply) by its id; `for_update` locks its row (PostgreSQL),
    which a delete of the post takes too: a reply is recorded before the delete or not at all."""
    lock = " FOR UPDATE" if for_update and conn.is_postgres else ""
    return conn.one(f"SELECT * FROM posts WHERE post_id = :id AND kind = 'post'{lock}", {"id": post_id})


def reply_by_key(conn: Conn, parent_seq: int, reply_id: str) -> Row | None:
    """A reply from the site by its post and the site's comment id."""
    return conn.one("SELECT * FROM posts WHERE parent_seq = :p AND reply_id = :r AND kind = 'reply'",
                    {"p": parent_seq, "r": reply_id})


def replies_of_post(conn: Conn, parent_seq: int) -> list[Row]:
    """The post's replies from the site, oldest first."""
    return conn.all("SELECT * FROM posts WHERE parent_seq = :p AND kind = 'reply' ORDER BY seq",
                    {"p": parent_seq})


def insert_reply_if_absent(conn: Conn, *, key: str, document: Any, parent_seq: int, reply_id: str,
                           parent_uri: str | None, parent_cid: str | None, now: float) -> int | None:
    """Record a reply; None when it is known already (two submits racing: one wins)."""
    return conn.scalar(
        "INSERT INTO posts (post_id, document, status, reason, source, created_at, updated_at, kind, "
        "parent_seq, reply_id, reply_parent_uri, reply_parent_cid) VALUES (:key, :document, 'pending', "
        "NULL, 'reply', :now, :now, 'reply', :parent, :rid, :puri, :pcid) "
        "ON CONFLICT DO NOTHING RETURNING seq",
        {"key": key, "document": encode_json(document), "now": now, "parent": parent_seq,
         "rid": reply_id, "puri": parent_uri, "pcid": parent_cid})


def interaction_by_uri(conn: Conn, uri: str) -> Row | None:
    """A stored reaction (with its delivery's account) by its record's uri."""
    return conn.one(
        "SELECT i.*, d.account_id AS delivery_account_id FROM interactions i "
        "LEFT JOIN deliveries d ON d.id = i.delivery_id WHERE i.uri = :uri", {"uri": uri})


def delivery_of_account(conn: Conn, post_seq: int, account_id: int) -> Row | None:
    """One account's delivery of a post (a reply's root record)."""
    return conn.one("SELECT * FROM deliveries WHERE post_seq = :s AND account_id = :a",
                    {"s": post_seq, "a": account_id})
