"""The SQL of `skypost serve`: API tokens, webhooks, the dashboard's chart and
the Prometheus metrics. Same conventions as queries.py: plain SQL that SQLite
and PostgreSQL both accept, `:name` placeholders, an open connection passed in."""

from __future__ import annotations

from typing import Any, Sequence

from .db import Conn, encode_json

Row = dict[str, Any]


# --- API tokens ------------------------------------------------------------------

def token_by_name(conn: Conn, name: str) -> Row | None:
    return conn.one("SELECT * FROM tokens WHERE name = :name", {"name": name})


def insert_token(conn: Conn, *, name: str, token_hash: str, now: float) -> int:
    return conn.scalar(
        "INSERT INTO tokens (name, token_hash, created_at) VALUES (:name, :hash, :now) RETURNING id",
        {"name": name, "hash": token_hash, "now": now},
    )


def renew_revoked_token(conn: Conn, token_id: int, *, token_hash: str, now: float) -> bool:
    """Give a revoked token's name a new token (names are unique; revoked rows are kept for the record)."""
    conn.execute(
        "UPDATE tokens SET token_hash = :hash, created_at = :now, last_used_at = NULL, revoked_at = NULL "
        "WHERE id = :id AND revoked_at IS NOT NULL",
        {"id": token_id, "hash": token_hash, "now": now},
    )
    return conn.rowcount == 1


def list_tokens(conn: Conn) -> list[Row]:
    return conn.all("SELECT id, name, created_at, last_used_at, revoked_at FROM tokens ORDER BY name")


def revoke_token(conn: Conn, name: str, now: float) -> bool:
    conn.execute("UPDATE tokens SET revoked_at = :now WHERE name = :name AND revoked_at IS NULL",
                 {"name": name, "now": now})
    return conn.rowcount == 1


def active_token_by_hash(conn: Conn, token_hash: str) -> Row | None:
    return conn.one("SELECT id, name, last_used_at FROM tokens WHERE token_hash = :hash AND revoked_at IS NULL",
                    {"hash": token_hash})


def touch_token(conn: Conn, token_id: int, *, now: float, every: float) -> None:
    """Record the use of a token, at most once per `every` seconds (not a write per request)."""
    conn.execute(
        "UPDATE tokens SET last_used_at = :now WHERE id = :id AND (last_used_at IS NULL OR last_used_at < :stale)",
        {"id": token_id, "now": now, "stale": now - every},
    )


# --- dashboard sessions -------------------------------------------------------------

def insert_web_session(conn: Conn, *, id_hash: str, token_id: int, now: float, expires_at: float) -> None:
    conn.execute(
        "INSERT INTO web_sessions (id_hash, token_id, created_at, expires_at) "
        "VALUES (:hash, :token_id, :now, :expires)",
        {"hash": id_hash, "token_id": token_id, "now": now, "expires": expires_at},
    )


def web_session_token(conn: Conn, id_hash: str, *, now: float) -> Row | None:
    """The active token (id, name) behind a live session, or None."""
    return conn.one(
        "SELECT t.id, t.name FROM web_sessions s JOIN tokens t ON t.id = s.token_id "
        "WHERE s.id_hash = :hash AND s.expires_at > :now AND t.revoked_at IS NULL",
        {"hash": id_hash, "now": now},
    )


def delete_web_session(conn: Conn, id_hash: str) -> None:
    conn.execute("DELETE FROM web_sessions WHERE id_hash = :hash", {"hash": id_hash})


def delete_web_sessions_of_token(conn: Conn, name: str) -> None:
    """End every dashboard session opened with the token called `name`."""
    conn.execute("DELETE FROM web_sessions WHERE token_id IN (SELECT id FROM tokens WHERE name = :name)",
                 {"name": name})


def delete_expired_web_sessions(conn: Conn, *, now: float) -> None:
    conn.execute("DELETE FROM web_sessions WHERE expires_at <= :now", {"now": now})


# --- webhooks ----------------------------------------------------------------------

def insert_hook(conn: Conn, *, name: str, kind: str, secret_enc: str, accounts: Sequence[str], now: float,
                on_unpublish: str = "keep") -> None:
    conn.execute(
        "INSERT INTO hooks (name, kind, secret_enc, accounts, created_at, on_unpublish) "
        "VALUES (:name, :kind, :secret_enc, :accounts, :now, :on_unpublish)",
        {"name": name, "kind": kind, "secret_enc": secret_enc, "accounts": encode_json(list(accounts)),
         "now": now, "on_unpublish": on_unpublish},
    )


def hook_by_name(conn: Conn, name: str) -> Row | None:
    return conn.one("SELECT * FROM hooks WHERE name = :name", {"name": name})


def list_hooks(conn: Conn) -> list[Row]:
    return conn.all("SELECT name, kind, accounts, created_at, on_unpublish FROM hooks ORDER BY name")


def delete_hook(conn: Conn, name: str) -> bool:
    conn.execute("DELETE FROM hooks WHERE name = :name", {"name": name})
    return conn.rowcount == 1


# --- the dashboard ---------------------------------------------------------------------

def outcomes_per_hour(conn: Conn, *, since: float) -> list[Row]:
    """(hour, status, n) of delivery outcomes since `since`, from the activity log: each
    publication ('completed') and each final failure ('failed'), even one retried later.
    hour = UNIX hour number.

    CAST to an integer then integer division works on both databases (PostgreSQL
    rounds the cast where SQLite truncates: at most half a second of difference)."""
    return conn.all(
        "SELECT CAST(ts AS BIGINT) / 3600 AS hour, "
        "CASE WHEN kind = 'published' THEN 'completed' ELSE 'failed' END AS status, COUNT(*) AS n FROM events "
        "WHERE ts >= :since AND kind IN ('published', 'delivery_failed') "
        "GROUP BY CAST(ts AS BIGINT) / 3600, kind ORDER BY 1",
        {"since": since},
    )


def post_row(conn: Conn, post_id: str) -> Row | None:
    return conn.one("SELECT post_id, document, source, created_at, updated_at FROM posts WHERE post_id = :id",
                    {"id": post_id})


# --- metrics ----------------------------------------------------------------------------

def delivery_attempts_total(conn: Conn) -> int:
    return int(conn.scalar("SELECT COALESCE(SUM(attempts), 0) FROM deliveries") or 0)


def publish_latency_histogram(conn: Conn, bounds: Sequence[float]) -> tuple[list[int], int, float]:
    """Cumulative counts per upper bound, the count and the sum of (completed_at - submitted)
    over completed deliveries, computed in the database."""
    latency = "(d.completed_at - p.created_at)"
    params: dict[str, Any] = {}
    cases = []
    for n, bound in enumerate(bounds):
        params[f"b{n}"] = float(bound)
        cases.append(f"COALESCE(SUM(CASE WHEN {latency} <= :b{n} THEN 1 ELSE 0 END), 0) AS le{n}")
    row = conn.one(
        f"SELECT {', '.join(cases + ['COUNT(*) AS n', f'COALESCE(SUM({latency}), 0) AS total'])} "
        "FROM deliveries d JOIN posts p ON p.seq = d.post_seq "
        "WHERE d.status = 'completed' AND d.completed_at IS NOT NULL",
        params,
    )
    assert row is not None
    return [int(row[f"le{n}"]) for n in range(len(bounds))], int(row["n"]), float(row["total"])
