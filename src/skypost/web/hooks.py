"""Webhooks: the registry (name, kind, secret, accounts) and signature checks.

Every request to /hooks/NAME must be signed with the hook's secret:

    X-Skypost-Signature: sha256=<hex HMAC-SHA256 of the raw body>

Ghost signs on its own with `X-Ghost-Signature: sha256=<hex>, t=<ms>`, an HMAC
of the raw body followed by the timestamp; that form is accepted too, within
GHOST_TOLERANCE seconds of the timestamp. The secret is stored encrypted
(Fernet, the same key as the app passwords) and shown once, when the hook is added.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from skypost.crypto import Cipher
from skypost.models import ValidationError, normalize_handle
from skypost.store import queries as q
from skypost.store import queries_web as qw
from skypost.store.db import Database

KINDS = ("generic", "ghost", "wordpress")
# short enough that "hook:<name>" fits the posts.source column (64)
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,47}$")
SIGNATURE_HEADER = "x-skypost-signature"
GHOST_HEADER = "x-ghost-signature"
GHOST_TOLERANCE = 300.0
_HEX = re.compile(r"^[0-9a-fA-F]{64}$")


@dataclass(frozen=True)
class Hook:
    name: str
    kind: str
    accounts: tuple[str, ...]
    secret: str = field(repr=False)


def check_name(name: str) -> str:
    if not NAME.match(name or ""):
        raise ValidationError({"name": f"{name!r} is not a valid hook name "
                                       "(1-48 lower-case letters, digits, '-' or '_'; it is part of the URL)"})
    return name


def add_hook(db: Database, cipher: Cipher, *, name: str, kind: str, accounts: Sequence[str] = (),
             now: float) -> str:
    """Register a hook; returns its new secret (not retrievable later)."""
    check_name(name)
    if kind not in KINDS:
        raise ValidationError({"kind": f"{kind!r} is not one of {', '.join(KINDS)}"})
    handles = list(dict.fromkeys(normalize_handle(h) for h in accounts))
    secret = secrets.token_hex(32)
    with db.transaction() as conn:
        for handle in handles:
            if q.account_by_handle(conn, handle) is None:
                raise ValidationError({"account": f"no account @{handle} (see `skypost account list`)"})
        if qw.hook_by_name(conn, name) is not None:
            raise ValidationError({"name": f"a hook named {name!r} exists (remove it first to change its secret)"})
        qw.insert_hook(conn, name=name, kind=kind, secret_enc=cipher.encrypt(secret), accounts=handles, now=now)
        q.add_event(conn, ts=now, kind="hook_added", message=f"webhook {name!r} ({kind}) added")
    return secret


def list_hooks(db: Database) -> list[dict[str, Any]]:
    from skypost.app import iso_ts

    with db.connect() as conn:
        rows = qw.list_hooks(conn)
    return [{"name": r["name"], "kind": r["kind"], "accounts": list(r["accounts"] or []), "path": f"/hooks/{r['name']}",
             "created_at": iso_ts(r["created_at"])} for r in rows]


def remove_hook(db: Database, name: str, *, now: float) -> None:
    with db.transaction() as conn:
        if not qw.delete_hook(conn, name):
            raise ValidationError({"name": f"no hook named {name!r}"})
        q.add_event(conn, ts=now, kind="hook_removed", message=f"webhook {name!r} removed")


def load_hook(db: Database, cipher: Cipher, name: str) -> Hook | None:
    from skypost.models import valid_id

    if not valid_id(name):
        return None  # a name no hook can have (NUL, control characters): PostgreSQL would refuse the query
    with db.connect() as conn:
        row = qw.hook_by_name(conn, name)
    if row is None:
        return None
    return Hook(row["name"], row["kind"], tuple(row["accounts"] or ()), cipher.decrypt(row["secret_enc"]))


# --- signatures -------------------------------------------------------------------------

def sign(secret: str, body: bytes) -> str:
    """The X-Skypost-Signature value for `body`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def sign_ghost(secret: str, body: bytes, ts_ms: int) -> str:
    """What Ghost sends in X-Ghost-Signature (used by tests and docs)."""
    digest = hmac.new(secret.encode(), body + str(ts_ms).encode(), hashlib.sha256).hexdigest()
    return f"sha256={digest}, t={ts_ms}"


def _matches(expected_hex: str, given: str) -> bool:
    return bool(_HEX.match(given)) and hmac.compare_digest(expected_hex, given.lower())


def verify(secret: str, body: bytes, headers: Mapping[str, str], *, now: float) -> bool:
    """True when the request carries a valid signature of `body` in either form."""
    own = headers.get(SIGNATURE_HEADER)
    if own is not None:
        scheme, _, given = own.strip().partition("=")
        expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        return scheme.lower() == "sha256" and _matches(expected, given.strip())
    ghost = headers.get(GHOST_HEADER)
    if ghost is not None:
        parts = dict(p.strip().partition("=")[::2] for p in ghost.split(",") if "=" in p)
        given, ts = parts.get("sha256", ""), parts.get("t", "")
        if not (ts.isascii() and ts.isdigit()) or abs(now * 1000 - int(ts)) > GHOST_TOLERANCE * 1000:
            return False
        expected = hmac.new(secret.encode(), body + ts.encode(), hashlib.sha256).hexdigest()
        return _matches(expected, given)
    return False
