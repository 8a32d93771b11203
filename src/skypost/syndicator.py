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
    Intent,
    Post,
    PostState,
    PostStatus,
    EVERYONE,
    ValidationError,
    deletion_status,
    overall_status,
    parse_post_document,
    valid_id,
)
from skypost.conversation.views import interaction_counts
from skypost.gates import record_gates
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
        replies=tuple((row.get("replies") or EVERYONE).split(",")),
        quotes=bool(row.get("quotes", True)),
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
    intent = Intent(row.get("intent") or Intent.PUBLISH.value)
    status = DeliveryStatus(row["status"])
    if intent is Intent.DELETE and status is DeliveryStatus.PENDING:
        status = DeliveryStatus.DELETING  # pending, for a delete: shown as what it waits for
    return Delivery(
        id=row["id"],
        post_seq=row["post_seq"],
        account_id=row["account_id"],
        account=row["handle"],
        did=row["did"],
        status=status,
        intent=intent,
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


def post_state(conn: Connection, post_row: Mapping[str, Any], *, paused: bool, counts: bool = True) -> PostState:
    rows = q.deliveries_for_posts(conn, [post_row["seq"]])
    # `counts=False`: a caller that only wants the status (the pipeline, once per job) reads no counts
    found = interaction_counts(conn, [post_row["seq"]])[post_row["seq"]] if counts else None
    return state_from_rows(post_row, rows, paused=paused, interactions=found)


def state_from_rows(post_row: Mapping[str, Any], rows: Sequence[Mapping[str, Any]], *, paused: bool,
                    interactions: Mapping[str, int] | None = None) -> PostState:
    """`interactions`: the post's live reactions per kind (none when not given)."""
    state = _state_from_rows(post_row, rows, paused=paused)
    if interactions is not None:
        state.interactions = dict(interactions)
    return state


def _state_from_rows(post_row: Mapping[str, Any], rows: Sequence[Mapping[str, Any]], *,
                     paused: bool) -> PostState:
    deliveries = [delivery_from_row(r) for r in rows]
    if post_row.get("delete_requested_at") is not None:
        return deletion_state(post_row, deliveries, paused=paused)
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


def deletion_state(post_row: Mapping[str, Any], deliveries: list[Delivery], *, paused: bool) -> PostState:
    status = deletion_status(deliveries)
    if status is PostStatus.DELETING:
        left = sum(1 for d in deliveries if not d.status.finished)
        reason = f"removing the post from Bluesky: {left} account(s) to go"
        if paused:
            reason += "; syndication is paused (skypost resume)"
    elif status is PostStatus.DELETE_FAILED:
        reason = "; ".join(f"@{d.account}: {d.error}" for d in deliveries
                           if d.status is DeliveryStatus.FAILED and d.error) or "the delete failed"
    else:
        reason = "removed from Bluesky on request; this id is never syndicated again"
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
    if not valid_id(post.id):  # a Post built in code skips the document's checks
        raise ValidationError({"id": "must not contain control characters, lone surrogates, or be only dots"})
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
        record_gates(conn, seq, post)
        handles = ", ".join("@" + a.handle for a in selection.accounts)
        q.add_event(conn, ts=now, kind="submitted", post_id=post.id, message=f"queued for {handles}")
    row = q.post_by_seq(conn, seq)
    assert row is not None
    # a post just recorded has gathered nothing yet: no need to count
    deliveries = q.deliveries_for_posts(conn, [seq])
    return state_from_rows(row, deliveries, paused=is_paused(conn) and not reason), True


def enqueue_deliveries(conn: Connection, post_seq: int, accounts: Sequence[Account], *, now: float,
                       generation: int = 0) -> None:
    """One delivery per account, each with its own record key, and the post's job."""
    for position, account in enumerate(accounts):
        assert account.id is not None
        for _ in range(5):
            # a TID names one record of the account: a clash with another delivery gets a new one
            if q.insert_delivery(conn, post_seq=post_seq, account_id=account.id, handle=account.handle,
                                 did=account.did, position=position, rkey=new_tid(), now=now,
                                 generation=generation) is not None:
                break
        else:
            raise RuntimeError(f"no free record key for @{account.handle}")
    if generation and q.wake_post_job(conn, post_seq, now=now):
        return  # a repost: the post's job runs again
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
    record_gates(conn, row["seq"], post)
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


def request_delete(conn: Connection, post_row: Mapping[str, Any], *, now: float) -> bool:
    """Remove a post from Bluesky, in the caller's transaction; False when it was requested
    already (nothing more to do).

    Row locks in the pipeline's order — deliveries, then the job, then the post — so that a
    worker finishing an attempt of this post either has finished before (its record is then
    deleted) or sees the delete (its create then waits for nothing: the delete follows it)."""
    seq = post_row["seq"]
    q.turn_deliveries_to_delete(conn, seq, now=now)
    rows = q.deliveries_for_posts(conn, [seq])
    to_delete = [r for r in rows if r["intent"] == Intent.DELETE.value
                 and not DeliveryStatus(r["status"]).finished]
    if to_delete:
        if not q.wake_post_job(conn, seq, now=now):
            q.insert_job(conn, kind=SYNDICATE_JOB, args={"post_seq": seq}, run_at=now, now=now, post_seq=seq)
    if not q.request_delete(conn, seq, now=now):
        return False
    post_id = post_row["post_id"]
    handles = ", ".join("@" + r["handle"] for r in to_delete)
    q.add_event(conn, ts=now, kind="delete_requested", post_id=post_id,
                message="delete requested" + (f": removing the record from {handles}" if to_delete
                                              else ": nothing was published"))
    for r in rows:
        if r["status"] == DeliveryStatus.CANCELLED.value:
            q.add_event(conn, ts=now, kind="delivery_cancelled", post_id=post_id, account=r["handle"],
                        message=f"@{r['handle']}: cancelled before it reached Bluesky; never sent")
    if not to_delete:
        q.set_post_status(conn, seq, PostStatus.DELETED.value, None, now)
        q.add_event(conn, ts=now, kind="post_deleted", post_id=post_id,
                    message="removed from Bluesky on every account")
    return True


def repost(conn: Connection, post_row: Mapping[str, Any], *, now: float) -> bool:
    """Publish a deleted post again as new records (new record keys), in the caller's
    transaction; False unless the post is deleted. Its old deliveries are kept as history."""
    if post_state(conn, post_row, paused=False, counts=False).status is not PostStatus.DELETED:
        return False
    generation = q.start_new_generation(conn, post_row["seq"], now=now)
    if generation is None:  # another repost won
        return False
    post = parse_post_document(post_row["document"], allow_extra=True)
    selection = select_accounts(post, [account_from_row(r) for r in q.list_accounts(conn)])
    why = guard_reason(post, cutoff=None, post_types=("post",)) or selection.reason
    if why or not selection.accounts:
        raise ValidationError({"post": f"cannot repost: {why}"})
    enqueue_deliveries(conn, post_row["seq"], selection.accounts, now=now, generation=generation)
    handles = ", ".join("@" + a.handle for a in selection.accounts)
    q.add_event(conn, ts=now, kind="repost", post_id=post_row["post_id"],
                message=f"reposted as new records (likes and replies of the deleted ones stay lost): "
                        f"queued for {handles}")
    return True


def transient_skip(post: Post, reason: str) -> PostState:
    """A status for a post that is not recorded (a transition that is not a publish)."""
    return PostState(post.id, PostStatus.SKIPPED, reason, [])
