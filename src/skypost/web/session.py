"""Dashboard sessions: log in with an API token, a signed cookie, CSRF tokens.

The cookie (Starlette's SessionMiddleware, signed with itsdangerous) holds the id
of the token used to log in and a per-session CSRF token; the signing key is a
random secret kept encrypted in the settings table, so every server process of
the same database shares it and nobody without the Fernet key can forge a session.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any, Mapping

from starlette.requests import Request

from skypost.app import Skypost
from skypost.store import queries as q
from skypost.web import tokens

SESSION_COOKIE = "skypost_session"
SESSION_KEY_SETTING = "web_session_key"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"


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


def log_in(request: Request, info: tokens.TokenInfo) -> None:
    """A fresh session (and CSRF token) at login: nothing carries over from before."""
    request.session.clear()
    request.session["token_id"] = info.id
    request.session[CSRF_FIELD] = secrets.token_urlsafe(32)


def log_out(request: Request) -> None:
    request.session.clear()


def logged_in(request: Request, skypost: Skypost) -> tokens.TokenInfo | None:
    """The token behind this session, while it is still active (revoking it ends the session)."""
    token_id = request.session.get("token_id")
    if not isinstance(token_id, int):
        return None
    return tokens.token_still_active(skypost.db, token_id)


def flash(request: Request, text: str, kind: str = "ok") -> None:
    request.session.setdefault("flash", [])
    request.session["flash"] = [*request.session["flash"], {"text": text, "kind": kind}]


def take_flashes(request: Request) -> list[dict[str, str]]:
    return request.session.pop("flash", []) if "flash" in request.session else []
