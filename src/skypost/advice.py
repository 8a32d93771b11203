"""Advice for people, shared by the CLI and the dashboard: what to do next after a refusal,
a retry that found nothing, or a password that is probably not an app password.

Plain functions over plain values; no imports beyond the standard library, because the
CLI's submit path loads this module."""

from __future__ import annotations

import re
from typing import Any, Mapping

# Bluesky shows app passwords as four groups of four lower-case letters and digits
_APP_PASSWORD = re.compile(r"[a-z0-9]{4}(-[a-z0-9]{4}){3}")
ALLOW_PRIVATE = "SKYPOST_ALLOW_PRIVATE_URLS=1"
APP_PASSWORD_WARNING = (
    "this does not look like an app password (xxxx-xxxx-xxxx-xxxx); create one "
    "in Bluesky under Settings → Privacy and security → App passwords, and "
    "never give skypost your main password"
)


def looks_like_app_password(password: str) -> bool:
    return _APP_PASSWORD.fullmatch(password.strip()) is not None


def with_private_hint(message: str) -> str:
    """A refusal of a private/loopback/link-local address, with how to allow such addresses."""
    if "refused:" in message and "address" in message and ALLOW_PRIVATE not in message:
        return f"{message}; set {ALLOW_PRIVATE} to allow private addresses"
    return message


def _progress(status: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    return [
        (d.get("account"), d.get("status"), d.get("attempts"), d.get("next_attempt_at"))
        for d in status.get("deliveries", [])
    ]


def nothing_retried(before: Mapping[str, Any], after: Mapping[str, Any]) -> str | None:
    """Why a retry changed nothing (a sentence), or None when it queued something."""
    if before.get("status") != after.get("status") or _progress(before) != _progress(after):
        return None
    status = after.get("status")
    post_id = after.get("id")
    if status == "skipped":
        why = after.get("reason") or "a guard said no"
        return f"nothing to retry: post {post_id} stays skipped ({why})"
    if status == "completed":
        return f"nothing to retry: post {post_id} is already live on every account"
    if status == "needs_reauth":
        return (
            f"nothing to retry: post {post_id} waits for a new app password "
            "(skypost account update HANDLE --password-stdin); it goes out then"
        )
    if status in ("pending", "paused"):
        return f"nothing to retry: post {post_id} is already queued"
    return f"nothing to retry: no delivery of post {post_id} failed or is waiting"
