"""Webhooks: the registry (name, kind, secret, accounts) and signature checks.

Every request to /hooks/NAME must be signed with the hook's secret:

    X-Skypost-Signature: sha256=<hex HMAC-SHA256 of the raw body>

or, to make a captured request useless after a few minutes, with a timestamp:

    X-Skypost-Timestamp: <Unix seconds>
    X-Skypost-Signature: sha256=<hex HMAC-SHA256 of timestamp + "." + raw body>

A timestamped request is refused when the timestamp is more than REPLAY_WINDOW
seconds away from now (either way). Ghost signs on its own with
`X-Ghost-Signature: sha256=<hex>, t=<ms>`, an HMAC of the raw body followed by the
timestamp; that form is accepted too, within the same window. The secret is stored
encrypted (Fernet, the same key as the app passwords) and shown once, when the hook
is added.
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
# what a post taken off the site (Ghost's post.unpublished) does to its Bluesky post
ON_UNPUBLISH = ("keep", "delete")
# short enough that "hook:<name>" fits the posts.source column (64)
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,47}$")
SIGNATURE_HEADER = "x-skypost-signature"
TIMESTAMP_HEADER = "x-skypost-timestamp"
GHOST_HEADER = "x-ghost-signature"
REPLAY_WINDOW = 300.0
_HEX = re.compile(r"[0-9a-fA-F]{64}")
# a timestamp is a few digits: anything longer is refused before int() sees it
# (int() of thousands of digits raises, and would be slow long before that)
_TIMESTAMP = re.compile(r"[0-9]{1,16}")


@dataclass(frozen=True)
class Hook:
    name: str
    kind: str
    accounts: tuple[str, ...]
    secret: str = field(repr=False)
    on_unpublish: str = "keep"


def check_name(name: str) -> str:
    if not NAME.match(name or ""):
        raise ValidationError({"name": f"{name!r} is not a valid hook name "
                                       "(1-48 lower-case letters, digits, '-' or '_'; it is part of the URL)"})
    return name


def add_hook(db: Database, cipher: Cipher, *, name: str, kind: str, accounts: Sequence[str] = (),
             now: float, on_unpublish: str = "keep") -> str:
    """Register a hook; returns its new secret (not retrievable later)."""
    check_name(name)
    if kind not in KINDS:
        raise ValidationError({"kind": f"{kind!r} is not one of {', '.join(KINDS)}"})
    if on_unpublish not in ON_UNPUBLISH:
        raise ValidationError({"on_unpublish": f"{on_unpublish!r} is not one of {', '.join(ON_UNPUBLISH)}"})
    handles = list(dict.fromkeys(normalize_handle(h) for h in accounts))
    secret = secrets.token_hex(32)
    with db.transaction() as conn:
        for handle in handles:
            if q.account_by_handle(conn, handle) is None:
                raise ValidationError({"account": f"no account @{handle} (see `skypost account list`)"})
        if qw.hook_by_name(conn, name) is not None:
            raise ValidationError({"name": f"a hook named {name!r} exists (remove it first to change its secret)"})
        qw.insert_hook(conn, name=name, kind=kind, secret_enc=cipher.encrypt(secret), accounts=handles, now=now,
                       on_unpublish=on_unpublish)
        q.add_event(conn, ts=now, kind="hook_added", message=f"webhook {name!r} ({kind}) added")
    return secret


def list_hooks(db: Database) -> list[dict[str, Any]]:
    from skypost.app import iso_ts

    with db.connect() as conn:
        rows = qw.list_hooks(conn)
    return [{"name": r["name"], "kind": r["kind"], "accounts": list(r["accounts"] or []), "path": f"/hooks/{r['name']}",
             "created_at": iso_ts(r["created_at"]), "on_unpublish": r["on_unpublish"]} for r in rows]


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
    return Hook(row["name"], row["kind"], tuple(row["accounts"] or ()), cipher.decrypt(row["secret_enc"]),
                row["on_unpublish"])


# --- signatures -------------------------------------------------------------------------

def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The X-Skypost-Signature value for `body` (sent with X-Skypost-Timestamp when given)."""
    signed = body if timestamp is None else str(timestamp).encode() + b"." + body
    return "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def sign_ghost(secret: str, body: bytes, ts_ms: int) -> str:
    """What Ghost sends in X-Ghost-Signature (used by tests and docs)."""
    digest = hmac.new(secret.encode(), body + str(ts_ms).encode(), hashlib.sha256).hexdigest()
    return f"sha256={digest}, t={ts_ms}"


def _matches(secret: str, signed: bytes, given: str) -> bool:
    expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return bool(_HEX.fullmatch(given)) and hmac.compare_digest(expected, given.lower())


def _stale(timestamp: str, *, per_second: int, now: float) -> bool:
    """True unless `timestamp` is digits within REPLAY_WINDOW of `now`."""
    if not _TIMESTAMP.fullmatch(timestamp):
        return True
    return abs(now - int(timestamp) / per_second) > REPLAY_WINDOW


def signature_problem(secret: str, body: bytes, headers: Mapping[str, str], *,
                      now: float) -> str | None:
    """None when the request carries a valid signature of `body` in one of the accepted
    forms, else why it is refused."""
    own = headers.get(SIGNATURE_HEADER)
    if own is not None:
        scheme, _, given = own.strip().partition("=")
        stamp = headers.get(TIMESTAMP_HEADER)
        if stamp is not None:
            if _stale(stamp, per_second=1, now=now):
                return ("stale or malformed signature timestamp (X-Skypost-Timestamp: Unix "
                        f"seconds, within {REPLAY_WINDOW:.0f} s of the server's clock)")
            signed = stamp.encode() + b"." + body
        else:
            signed = body
        if scheme.lower() == "sha256" and _matches(secret, signed, given.strip()):
            return None
        return ("bad signature (X-Skypost-Signature: sha256=<hex HMAC-SHA256 of the raw body, "
                "or of timestamp + '.' + body with X-Skypost-Timestamp, with the hook's secret>)")
    ghost = headers.get(GHOST_HEADER)
    if ghost is not None:
        parts = dict(p.strip().partition("=")[::2] for p in ghost.split(",") if "=" in p)
        given, ts = parts.get("sha256", ""), parts.get("t", "")
        if _stale(ts, per_second=1000, now=now):
            return ("stale or malformed signature timestamp (X-Ghost-Signature t=: Unix "
                    f"milliseconds, within {REPLAY_WINDOW:.0f} s of the server's clock)")
        if _matches(secret, body + ts.encode(), given):
            return None
        return "bad signature (X-Ghost-Signature)"
    return ("missing signature (X-Skypost-Signature: sha256=<hex HMAC-SHA256 of the raw body "
            "with the hook's secret>)")
