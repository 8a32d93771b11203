"""Dashboard sessions: log in with an API token, a signed cookie, CSRF tokens.

A login opens a session on the server (a row in web_sessions, keyed by the SHA-256
of a random session id) and the cookie (Starlette's SessionMiddleware, signed with
itsdangerous) holds that id and a per-session CSRF token. Every request looks the
session up, so logging out, revoking the token or reaching the session's lifetime
ends it even for a saved copy of the cookie. The signing key is a random secret kept
encrypted in the settings table, so every server process of the same database shares
it and nobody without the Fernet key can forge a cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any, Mapping

from starlette.requests import Request

from skypost.app import Skypost
from skypost.store import queries as q
from skypost.store import queries_web as qw
from skypost.web import tokens

SESSION_COOKIE = "skypost_session"
SESSION_KEY_SETTING = "web_session_key"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
SESSION_ID = "sid"


def session_secret(skypost: Skypost) -> str:
    """The cookie-signing secret: created once, shared through the database."""
    cipher = skypost.cipher()
    with skypost.db.transaction() as conn:
        q.insert_setting_if_missing(conn, SESSION_KEY_SETTING, cipher.encrypt(secrets.token_urlsafe(48)))
        stored = q.get_setting(conn, SESSION_KEY_SETTING)
    assert stored is not None
    return cipher.decrypt(stored)


def csrf_token(request: Request) -> str:
    """This session's CSRF token (made on first use)."""
    token = request.session.get(CSRF_FIELD)
    if not isinstance(token, str) or not token:
        token = secrets.token_urlsafe(32)
        request.session[CSRF_FIELD] = token
    return token


def csrf_ok(request: Request, form: Mapping[str, Any]) -> bool:
    expected = request.session.get(CSRF_FIELD)
    given = form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER) or ""
    return isinstance(expected, str) and bool(expected) and isinstance(given, str) \
        and hmac.compare_digest(expected.encode(), given.encode())


def _id_hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def open_session(skypost: Skypost, info: tokens.TokenInfo, *, lifetime: float) -> str:
    """Record a new session for `info`, valid for `lifetime` seconds; returns its id."""
    session_id = secrets.token_urlsafe(32)
    now = skypost.clock()
    with skypost.db.transaction() as conn:
        qw.delete_expired_web_sessions(conn, now=now)
        qw.insert_web_session(conn, id_hash=_id_hash(session_id), token_id=info.id, now=now,
                              expires_at=now + lifetime)
    return session_id


def close_session(skypost: Skypost, request: Request) -> None:
    """Delete this request's session on the server (a saved cookie no longer works)."""
    session_id = request.session.get(SESSION_ID)
    if isinstance(session_id, str) and session_id:
        with skypost.db.transaction() as conn:
            qw.delete_web_session(conn, _id_hash(session_id))


def log_in(request: Request, session_id: str) -> None:
    """A fresh cookie (and CSRF token) at login: nothing carries over from before."""
    request.session.clear()
    request.session[SESSION_ID] = session_id
    request.session[CSRF_FIELD] = secrets.token_urlsafe(32)


def log_out(request: Request) -> None:
    request.session.clear()


def logged_in(request: Request, skypost: Skypost) -> tokens.TokenInfo | None:
    """The token behind this request's session, while the session lives and the token is
    active."""
    session_id = request.session.get(SESSION_ID)
    if not isinstance(session_id, str) or not session_id:
        return None
    with skypost.db.connect() as conn:
        row = qw.web_session_token(conn, _id_hash(session_id), now=skypost.clock())
    return tokens.TokenInfo(row["id"], row["name"]) if row else None


def flash(request: Request, text: str, kind: str = "ok") -> None:
    request.session.setdefault("flash", [])
    request.session["flash"] = [*request.session["flash"], {"text": text, "kind": kind}]


def take_flashes(request: Request) -> list[dict[str, str]]:
    return request.session.pop("flash", []) if "flash" in request.session else []
