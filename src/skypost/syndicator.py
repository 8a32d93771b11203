"""The submit path: guards, account selection and one transaction that writes
the post, one delivery per account and the job. No network call happens here."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone
from typing import Any, Mapping, Sequence


from skypost.bluesky.tid import new_tid
from skypost.conversation import outbox
from skypost.models import (
    Account,
    AccountState,
    Delivery,
    DeliveryStatus,
    Post,
    PostState,
    PostStatus,
    ValidationError,
    overall_status,
    parse_post_document,
)
from skypost.store import queries as q
from skypost.store.db import Conn as Connection

PUBLISHED_STATES = frozenset({"publish", "published"})
NO_ACCOUNT = "no account configured: add one (skypost account add), then retry"
SYNDICATE_JOB = "syndicate"


def account_from_row(row: Mapping[str, Any]) -> Account:
    return Account(
        id=row["id"],
        handle=row["handle"],
        did=row["did"],
        service=row["service"],
        auto_syndicate=bool(row["auto_syndicate"]),
        include_categories=tuple(row["include_categories"] or ()),
        exclude_categories=tuple(row["exclude_categories"] or ()),
        state=AccountState(row["state"]),
    )


def categories_allow(account: Account, categories: Sequence[str]) -> bool:
    """Rule 3: no rules → yes; an excluded category wins; includes are OR;
    rules set but the post has no category → no."""
    include = {c.casefold() for c in account.include_categories}
    exclude = {c.casefold() for c in account.exclude_categories}
    if not include and not exclude:
        return True
    post_categories = {c.casefold() for c in categories}
    if not post_categories:
        return False
    if post_categories & exclude:
        return False
    if include:
        return bool(post_categories & include)
    return True


@dataclasses.dataclass(frozen=True)
class Selection:
    accounts: list[Account]
    reason: str | None  # why nothing is to be sent, when accounts is empty


def select_accounts(post: Post, candidates: Sequence[Account]) -> Selection:
    """Rule 3: the explicit selection, else every auto_syndicate account; then category rules."""
    if post.accounts:
        by_handle = {a.handle: a for a in candidates}
        unknown = [h for h in post.accounts if h not in by_handle]
        if unknown:
            raise ValidationError({"accounts": f"unknown account @{unknown[0]} (see `skypost account list`)"})
        chosen = [by_handle[h] for h in post.accounts]
        if not chosen:
            return Selection([], "no account selected")
    else:
        if not candidates:
            return Selection([], NO_ACCOUNT)
        chosen = [a for a in candidates if a.auto_syndicate]
        if not chosen:
            return Selection([], "no account selected: none is set to auto-syndicate")
    allowed = [a for a in chosen if categories_allow(a, post.categories)]
    if not allowed:
        return Selection([], "the category rules of every selected account exclude this post")
    return Selection(allowed, None)


def guard_reason(post: Post, *, cutoff: float | None, post_types: Sequence[str]) -> str | None:
    """Rule 2 guards that depend on the post alone."""
    if post.dont_syndicate:
        return "the post is marked dont_syndicate"
    if post.post_type not in post_types:
        return f"posts of type {post.post_type!r} are not syndicated"
    if cutoff is not None and post.published_at is not None and post.published_at.timestamp() < cutoff:
        when = datetime.fromtimestamp(cutoff, timezone.utc).isoformat()
        return f"published before skypost was activated ({when})"
    return None


def delivery_from_row(row: Mapping[str, Any]) -> Delivery:
    return Delivery(
        id=row["id"],
        post_seq=row["post_seq"],
        account_id=row["account_id"],
        account=row["handle"],
        did=row["did"],
        status=DeliveryStatus(row["status"]),
        attempts=row["attempts"],
        next_attempt_at=_dt(row["next_attempt_at"]),
        rkey=row["rkey"],
        uri=row["uri"],
        cid=row["cid"],
        url=row["url"],
        error=row["error"],
    )


def _dt(value: float | None) -> datetime | None:
    return datetime.fromtimestamp(value, timezone.utc) if value is not None else None


def post_state(conn: Connection, post_row: Mapping[str, Any], *, paused: bool) -> PostState:
    rows = q.deliveries_for_posts(conn, [post_row["seq"]])
    return state_from_rows(post_row, rows, paused=paused)


def state_from_rows(post_row: Mapping[str, Any], rows: Sequence[Mapping[str, Any]], *, paused: bool) -> PostState:
    deliveries = [delivery_from_row(r) for r in rows]
    if post_row["status"] == PostStatus.SKIPPED.value:
        return PostState(post_row["post_id"], PostStatus.SKIPPED, post_row["reason"], deliveries)
    status = overall_status(deliveries, paused=paused)
    reason = post_row["reason"]
    if status in (PostStatus.FAILED, PostStatus.PARTIAL) and not reason:
        errors = [f"@{d.account}: {d.error}" for d in deliveries if d.status is DeliveryStatus.FAILED and d.error]
        reason = "; ".join(errors) or None
    if status is PostStatus.PAUSED:
        reason = "syndication is paused (skypost resume)"
    return PostState(post_row["post_id"], status, reason, deliveries)


def is_paused(conn: Connection) -> bool:
    return q.get_setting(conn, "paused") == "1"


def activation_cutoff(conn: Connection) -> float | None:
    value = q.get_setting(conn, "activated_at")
    return float(value) if value else None


def submit(conn: Connection, post: Post, *, now: float, post_types: Sequence[str] = ("post",),
           source: str = "api", check_cutoff: bool = True) -> tuple[PostState, bool]:
    """Record a post in the caller's transaction. Returns (status, created).

    The insert settles a race: when two submits of one id meet (a CMS retrying its webhook),
    one inserts and the other finds the post and returns its status."""
    existing = q.post_by_id(conn, post.id)
    if existing is not None:
        return post_state(conn, existing, paused=is_paused(conn)), False

    candidates = [account_from_row(r) for r in q.list_accounts(conn)]
    selection = select_accounts(post, candidates)  # may raise: nothing written yet
    cutoff = activation_cutoff(conn) if check_cutoff else None
    reason = guard_reason(post, cutoff=cutoff, post_types=post_types) or selection.reason
    status = PostStatus.SKIPPED if reason else PostStatus.PENDING
    seq = q.insert_post_if_absent(conn, post_id=post.id, document=post.to_document(), status=status.value,
                                  reason=reason, source=source, now=now)
    if seq is None:  # another transaction recorded this id since we looked
        existing = q.post_by_id(conn, post.id)
        assert existing is not None
        return post_state(conn, existing, paused=is_paused(conn)), False
    if reason:
        q.add_event(conn, ts=now, kind="skipped", post_id=post.id, message=f"not syndicated: {reason}")
    else:
        enqueue_deliveries(conn, seq, selection.accounts, now=now)
        handles = ", ".join("@" + a.handle for a in selection.accounts)
        q.add_event(conn, ts=now, kind="submitted", post_id=post.id, message=f"queued for {handles}")
    row = q.post_by_seq(conn, seq)
    assert row is not None
    return post_state(conn, row, paused=is_paused(conn) and not reason), True


def enqueue_deliveries(conn: Connection, post_seq: int, accounts: Sequence[Account], *, now: float) -> None:
    """One delivery per account, each with its own record key, and the post's job."""
    for position, account in enumerate(accounts):
        assert account.id is not None
        for _ in range(5):
            # a TID names one record of the account: a clash with another delivery gets a new one
            if q.insert_delivery(conn, post_seq=post_seq, account_id=account.id, handle=account.handle,
                                 did=account.did, position=position, rkey=new_tid(), now=now) is not None:
                break
        else:
            raise RuntimeError(f"no free record key for @{account.handle}")
    q.insert_job(conn, kind=SYNDICATE_JOB, args={"post_seq": post_seq}, run_at=now, now=now, post_seq=post_seq)


def resubmit_skipped(conn: Connection, row: Mapping[str, Any], now: float) -> bool:
    """Deliveries and a job for a skipped post that today's accounts would take, in the caller's
    transaction; False (with the reason updated) when it stays skipped."""
    post = parse_post_document(row["document"])
    cutoff = None if row["source"] == "feed" else activation_cutoff(conn)
    if guard_reason(post, cutoff=cutoff, post_types=("post",)):
        return False  # skipped for what the post is: another try cannot change that
    selection = select_accounts(post, [account_from_row(r) for r in q.list_accounts(conn)])
    if not selection.accounts:
        q.set_post_status(conn, row["seq"], PostStatus.SKIPPED.value, selection.reason, now)
        return False  # skipped before, skipped now: not a change
    enqueue_deliveries(conn, row["seq"], selection.accounts, now=now)
    q.set_post_status(conn, row["seq"], PostStatus.PENDING.value, None, now)
    outbox.post_status_changed(conn, post_seq=row["seq"], status=PostStatus.PENDING.value, now=now)
    handles = ", ".join("@" + a.handle for a in selection.accounts)
    q.add_event(conn, ts=now, kind="retry", post_id=row["post_id"],
                message=f"skipped post judged again on retry: queued for {handles}")
    return True


def requeue_post(conn: Connection, post_seq: int, now: float, *, reset_status: bool = True) -> None:
    """Make the post's syndication job due now (a new one if it had finished)."""
    job = q.job_for_post(conn, post_seq)
    post = q.post_by_seq(conn, post_seq)
    if reset_status and post is not None and post["status"] != "pending":
        q.set_post_status(conn, post_seq, "pending", None, now)
        outbox.post_status_changed(conn, post_seq=post_seq, status="pending", now=now)
    if job is None:
        q.insert_job(conn, kind=SYNDICATE_JOB, args={"post_seq": post_seq}, run_at=now, now=now, post_seq=post_seq)
    elif job["status"] == "doing":
        return  # its worker re-reads the deliveries when it reschedules
    else:
        q.schedule_job_at(conn, job["id"], now, now)


def transient_skip(post: Post, reason: str) -> PostState:
    """A status for a post that is not recorded (a transition that is not a publish)."""
    return PostState(post.id, PostStatus.SKIPPED, reason, [])
