"""Account lifecycle: add (after verifying the credentials), update, remove.

Adding or re-entering a password logs in once to prove it works; the session
obtained is stored (encrypted) so that the worker does not log in again.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Sequence

from skypost.crypto import Cipher
from skypost.models import (
    Account,
    AccountError,
    DeliveryStatus,
    DeliveryFailure,
    ValidationError,
    check_http_url,
    normalize_handle,
    reply_rules,
)
from skypost.gates import gate_value
from skypost.resilience import FailureKind, classify
from skypost.store import queries as q
from skypost.store import queries_gates as qg
from skypost.store.db import Database
from skypost.syndicator import account_from_row, requeue_post

DEFAULT_SERVICE = "https://bsky.social"


def _categories(values: Sequence[str] | None) -> list[str]:
    return list(dict.fromkeys(v.strip() for v in (values or ()) if v and v.strip()))


def verify_credentials(client_factory: Callable[..., Any], *, service: str, handle: str, password: str,
                       timeout: float) -> tuple[str, str]:
    """Log in once; returns (did, session string). Raises AccountError with a clear reason.

    The reason carries the status and error code only, never the server's text: the
    service may be any host, and its answer is not ours to show."""
    from skypost.bluesky.client import CallError

    sessions: list[str] = []
    client = client_factory(service=service, handle=handle, password=password, session_string=None,
                            on_session=sessions.append, on_response=None, timeout=timeout)
    try:
        did = client.login()
    except CallError as exc:
        failure = classify(exc.status, exc.error, exc.message, exc.headers)
        answer = _answer(exc)
        if failure.kind is FailureKind.AUTH or exc.status == 400:
            raise AccountError(
                f"Bluesky refused the login for @{handle} ({answer}). Check the handle and use an app "
                "password (Settings → Privacy and security → App passwords)."
            ) from None
        if failure.kind is FailureKind.RATE_LIMITED:
            raise AccountError(f"too many logins for @{handle} right now; try again later ({answer})") from None
        raise AccountError(f"could not reach {service} to verify @{handle} ({answer})") from None
    finally:
        client.close()
    if not sessions:
        raise AccountError(f"the login for @{handle} returned no session")
    return did, sessions[-1]


_ERROR_CODE = re.compile(r"[A-Za-z][A-Za-z0-9_.]{0,63}")
_NETWORK = re.compile(r"network error \((\w+)\)")


def _answer(exc: Any) -> str:
    """"HTTP 401 AuthenticationRequired" or "no response (ConnectError)": no text of the server."""
    if exc.status is None:
        kind = _NETWORK.match(exc.message or "")
        return f"no response ({kind.group(1)})" if kind else "no response"
    code = exc.error if isinstance(exc.error, str) and _ERROR_CODE.fullmatch(exc.error) else None
    return f"HTTP {exc.status}" + (f" {code}" if code else "")


def validate_service(service: str, *, allow_private: bool = False,
                     resolver: Callable[[str, int], Sequence[str]] | None = None) -> str:
    """The service URL without a trailing slash. Refused (ValidationError naming `service`) when it
    is not an http(s) URL or, unless allowed, when its host resolves to any private, loopback,
    link-local or otherwise non-public address: skypost sends passwords there."""
    problem = check_http_url(service)
    if problem:
        raise ValidationError({"service": problem})
    service = service.rstrip("/")
    if allow_private:
        return service
    from skypost.fetch import FetchError, check_url, host_refusal

    try:
        url = check_url(service)
    except FetchError as exc:
        raise ValidationError({"service": exc.reason}) from None
    why = host_refusal(url, resolver)
    if why:
        raise ValidationError({"service": f"{why}; set SKYPOST_ALLOW_PRIVATE_URLS=1 to allow private addresses"})
    return service


def add_account(db: Database, cipher: Cipher, client_factory: Callable[..., Any], *, handle: str, password: str,
                service: str = DEFAULT_SERVICE, auto_syndicate: bool = True,
                include_categories: Sequence[str] | None = None,
                exclude_categories: Sequence[str] | None = None, verify: bool = True,
                now: float, timeout: float = 30.0, did: str | None = None,
                allow_private: bool = False, replies: Sequence[str] | None = None,
                quotes: bool | None = None) -> Account:
    handle = normalize_handle(handle)
    rules = reply_rules(replies) if replies is not None else None
    service = validate_service(service, allow_private=allow_private)
    if not password or not password.strip():
        raise ValidationError({"password": "is required (pass it on standard input)"})
    password = password.strip()
    with db.connect() as conn:
        if q.account_by_handle(conn, handle) is not None:
            raise ValidationError({"handle": f"@{handle} is already configured (use `account update`)"})
    session = None
    if verify:
        did, session = verify_credentials(client_factory, service=service, handle=handle, password=password,
                                          timeout=timeout)
    with db.transaction() as conn:
        if q.account_by_handle(conn, handle) is not None:
            raise ValidationError({"handle": f"@{handle} is already configured"})
        account_id = q.insert_account(
            conn, handle=handle, did=did or "", service=service, auto_syndicate=auto_syndicate,
            include_categories=_categories(include_categories), exclude_categories=_categories(exclude_categories),
            password_enc=cipher.encrypt(password), session_enc=cipher.encrypt(session) if session else None,
            now=now,
        )
        if rules is not None:
            qg.set_account_replies(conn, account_id, gate_value(rules), now=now)
        if quotes is not None:
            qg.set_account_quotes(conn, account_id, quotes, now=now)
        q.add_event(conn, ts=now, kind="account_added", account=handle, message=f"account @{handle} added ({did})")
        row = q.account_by_id(conn, account_id)
    assert row is not None
    return account_from_row(row)


def update_account(db: Database, cipher: Cipher, client_factory: Callable[..., Any], *, handle: str,
                   password: str | None = None, service: str | None = None, auto_syndicate: bool | None = None,
                   include_categories: Sequence[str] | None = None,
                   exclude_categories: Sequence[str] | None = None, now: float,
                   timeout: float = 30.0, allow_private: bool = False,
                   replies: Sequence[str] | None = None, quotes: bool | None = None) -> tuple[Account, int]:
    """Returns the account and how many deliveries were queued again (after new credentials).

    A new service is a new login: the app password must come with it, and is checked there.
    `replies`/`quotes` apply to posts submitted from now on."""
    handle = normalize_handle(handle)
    rules = reply_rules(replies) if replies is not None else None
    with db.connect() as conn:
        row = q.account_by_handle(conn, handle)
    if row is None:
        raise ValidationError({"handle": f"no account @{handle}"})
    moved_to: str | None = None
    if service is not None:
        new_service = validate_service(service, allow_private=allow_private)
        if new_service != row["service"]:
            if password is None:
                raise ValidationError({"password": "is required when the service changes (the login "
                                                   "is checked again at the new service)"})
            moved_to = new_service
    login: tuple[str, str] | None = None
    if password is not None:
        if not password.strip():
            raise ValidationError({"password": "must not be empty"})
        login = verify_credentials(client_factory, service=moved_to or row["service"], handle=handle,
                                   password=password.strip(), timeout=timeout)
    requeued = 0
    with db.transaction() as conn:
        q.update_account_rules(
            conn, row["id"], auto_syndicate=auto_syndicate,
            include_categories=_categories(include_categories) if include_categories is not None else None,
            exclude_categories=_categories(exclude_categories) if exclude_categories is not None else None,
            now=now)
        if rules is not None:
            qg.set_account_replies(conn, row["id"], gate_value(rules), now=now)
        if quotes is not None:
            qg.set_account_quotes(conn, row["id"], quotes, now=now)
        if password is not None and login is not None:
            did, session = login
            q.set_account_login(conn, row["id"], service=moved_to or row["service"], did=did,
                                password_enc=cipher.encrypt(password.strip()),
                                session_enc=cipher.encrypt(session), now=now)
            requeued = _requeue_reauth_failures(conn, row["id"], handle, now)
            q.add_event(conn, ts=now, kind="account_reauth", account=handle,
                        message=f"new app password for @{handle}; {requeued} delivery(ies) queued again")
        if moved_to is not None:
            q.add_event(conn, ts=now, kind="account_service_changed", account=handle,
                        message=f"@{handle} moved from {row['service']} to {moved_to} "
                                "(logged in again there)")
        row = q.account_by_id(conn, row["id"])
    assert row is not None
    return account_from_row(row), requeued


def _requeue_reauth_failures(conn: Any, account_id: int, handle: str, now: float) -> int:
    waiting = q.deliveries_stopped(conn, account_id, status=DeliveryStatus.NEEDS_REAUTH.value,
                                   kind=DeliveryFailure.AUTH.value)
    for delivery in waiting:
        q.reset_delivery(conn, delivery.id, now)
        requeue_post(conn, delivery.post_seq, now)
    return len(waiting)


def remove_account(db: Database, *, handle: str, now: float) -> int:
    """Remove an account; its unfinished deliveries fail (nothing is silently dropped)."""
    handle = normalize_handle(handle)
    with db.transaction() as conn:
        row = q.account_by_handle(conn, handle)
        if row is None:
            raise ValidationError({"handle": f"no account @{handle}"})
        unfinished = q.unfinished_deliveries_of_account(conn, row["id"])
        for delivery in unfinished:
            q.fail_delivery(conn, delivery["id"], kind=DeliveryFailure.REMOVED.value,
                            error=f"the account @{handle} was removed", now=now)
            requeue_post(conn, delivery["post_seq"], now, reset_status=False)
        q.delete_account(conn, row["id"])
        q.add_event(conn, ts=now, kind="account_removed", account=handle,
                    message=f"account @{handle} removed; {len(unfinished)} unfinished delivery(ies) failed")
    return len(unfinished)


def list_accounts(db: Database) -> list[Account]:
    with db.connect() as conn:
        return [account_from_row(r) for r in q.list_accounts(conn)]
