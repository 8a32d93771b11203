"""API tokens: created once (only their SHA-256 is stored), listed, revoked, checked.

A token is shown to its owner exactly once, by `skypost token create`; the database
holds its hash, so a copy of the database does not hand out API access.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Any

from skypost.models import ValidationError
from skypost.store import queries_web as qw
from skypost.store.db import Database

TOKEN_PREFIX = "skp_"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# last_used_at is written at most this often per token (reads stay cheap)
TOUCH_EVERY = 60.0


@dataclass(frozen=True)
class TokenInfo:
    id: int
    name: str


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def check_name(name: str) -> str:
    if not NAME.match(name or ""):
        raise ValidationError({"name": f"{name!r} is not a valid token name "
                                       "(1-64 letters, digits, '.', '_' or '-', starting with a letter or digit)"})
    return name


def create_token(db: Database, name: str, *, now: float) -> str:
    """A new token for `name`; returns the token itself, which is not kept anywhere."""
    check_name(name)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    digest = hash_token(token)
    with db.transaction() as conn:
        existing = qw.token_by_name(conn, name)
        if existing is None:
            qw.insert_token(conn, name=name, token_hash=digest, now=now)
        elif existing["revoked_at"] is None:
            raise ValidationError({"name": f"a token named {name!r} exists; "
                                           f"revoke it first (skypost token revoke {name})"})
        else:
            # the row (and its id) is reused: sessions of the old token must not come back
            qw.delete_web_sessions_of_token(conn, name)
            qw.renew_revoked_token(conn, existing["id"], token_hash=digest, now=now)
    return token


def list_tokens(db: Database) -> list[dict[str, Any]]:
    from skypost.app import iso_ts

    with db.connect() as conn:
        rows = qw.list_tokens(conn)
    return [{"name": r["name"], "created_at": iso_ts(r["created_at"]), "last_used_at": iso_ts(r["last_used_at"]),
             "revoked_at": iso_ts(r["revoked_at"]), "active": r["revoked_at"] is None} for r in rows]


def revoke_token(db: Database, name: str, *, now: float) -> None:
    with db.transaction() as conn:
        if not qw.revoke_token(conn, name, now):
            raise ValidationError({"name": f"no active token named {name!r}"})
        qw.delete_web_sessions_of_token(conn, name)


def authenticate(db: Database, token: str | None, *, now: float) -> TokenInfo | None:
    """The active token that `token` is, or None; records its use."""
    if not token:
        return None
    with db.transaction() as conn:
        row = qw.active_token_by_hash(conn, hash_token(token))
        if row is None:
            return None
        qw.touch_token(conn, row["id"], now=now, every=TOUCH_EVERY)
    return TokenInfo(row["id"], row["name"])


def bearer_token(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer TOKEN` header."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()
