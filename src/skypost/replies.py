"""Replies from the site: a comment of the site published under a syndicated post.

A reply is stored as a row of `posts` (kind "reply", `parent_seq` = the post it answers,
`reply_id` = the site's comment id), with one delivery per account, so that the whole
pipeline — queue, retries, breaker, rate limits, the exactly-once record key, statuses —
applies to it unchanged. Its `post_id` is an internal key that no site id can take (site
ids never contain control characters); people name a reply by its post's id and its own.

Its record is composed like a post's (the custom-text path: cut to 300 graphemes with "…",
facets for links, mentions and hashtags) plus `reply.root` / `reply.parent` strong refs:
the root is the account's own record of the post, known once that delivery completed (a
reply's delivery waits for it, like any later post of the account); the parent is the
post itself, or a record in its thread (a stored Bluesky reply, or any post whose root is
this account's record, resolved with getRecord at the attempt).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Mapping

from skypost.bluesky.text import clean_text
from skypost.models import (
    DeliveryStatus,
    Post,
    PostState,
    ValidationError,
    normalize_handle,
    printable,
    valid_id,
)
from skypost.store import queries as q
from skypost.store import queries_gates as qg
from skypost.store.db import Conn
from skypost.store.rows import DeliveryRow
from skypost.syndicator import account_from_row, enqueue_deliveries, is_paused, state_from_rows

MAX_REPLY_ID = 200
MAX_TEXT = 100_000  # the record is cut to 300 graphemes; this only bounds what is stored
AT_POST_URI = re.compile(r"^at://(did:[a-z]+:[a-zA-Z0-9._:%-]{1,2000})/app\.bsky\.feed\.post/"
                         r"([a-zA-Z0-9._~:-]{1,512})$")
_SEP = "\x1f"  # a control character: never in a site's id (models.valid_id)


class UnknownPost(LookupError):
    """No site post with this id."""


@dataclasses.dataclass(frozen=True)
class ReplyPost(Post):
    """The Post the pipeline composes for a reply (custom text, no link card)."""

    reply_to: str = ""  # the site's id of the post answered
    parent_seq: int = 0
    parent_uri: str | None = None  # None: the post's own record
    parent_cid: str | None = None


@dataclasses.dataclass(frozen=True)
class ReplyRefs:
    root_uri: str
    root_cid: str
    parent_uri: str
    parent_cid: str | None  # None: resolved with getRecord at the attempt


@dataclasses.dataclass(frozen=True)
class WritePlan:
    """What one attempt writes besides the composed record."""

    reply: ReplyRefs | None = None
    threadgate: str | None = None
    postgate: bool = False

    @property
    def gated(self) -> bool:
        return self.threadgate is not None or self.postgate


def reply_key(parent_seq: int, reply_id: str) -> str:
    return f"{_SEP}reply{_SEP}{parent_seq}{_SEP}{reply_id}"


def display_id(post_row: Mapping[str, Any]) -> str:
    """How people and the activity log name a stored row: a post's id, or ID/replies/RID."""
    if post_row.get("kind") == "reply":
        return str(post_row["document"].get("id") or post_row["post_id"])
    return str(post_row["post_id"])


def parse_reply(post_id: Any, reply_id: Any, text: Any, parent: Any = None,
                account: Any = None) -> tuple[str, str, str, str | None, str | None]:
    """Validated (post_id, reply_id, text, parent, account); ValidationError names each bad field."""
    errors: dict[str, str] = {}
    if isinstance(reply_id, int) and not isinstance(reply_id, bool):
        reply_id = str(reply_id)  # numeric comment ids (WordPress) as text
    if not isinstance(post_id, str) or not valid_id(post_id.strip()):
        errors["post_id"] = "is required and must be a valid post id"
    if not isinstance(reply_id, str) or not reply_id.strip():
        errors["id"] = "is required: the site's id of the comment (--reply-id)"
    elif len(reply_id.strip()) > MAX_REPLY_ID or not valid_id(reply_id.strip()):
        errors["id"] = (f"must be at most {MAX_REPLY_ID} characters, without control characters "
                        "or lone surrogates")
    if not isinstance(text, str):
        errors["text"] = "is required and must be a string"
    elif len(text) > MAX_TEXT:
        errors["text"] = f"must be at most {MAX_TEXT} characters (the record keeps 300 graphemes)"
    elif not clean_text(text):
        errors["text"] = "must not be empty"
    if parent is not None and (not isinstance(parent, str) or not AT_POST_URI.match(parent.strip())):
        shown = printable(parent)[:80] if isinstance(parent, str) else type(parent).__name__
        errors["parent"] = (f"{shown!r} is not the AT-URI of a post "
                            "(at://did:.../app.bsky.feed.post/RKEY)")
    handle = None
    if account is not None:
        if not isinstance(account, str):
            errors["account"] = "must be a string"
        else:
            try:
                handle = normalize_handle(account)
            except ValidationError as exc:
                errors["account"] = exc.errors["handle"]
    if errors:
        raise ValidationError(errors)
    assert isinstance(post_id, str) and isinstance(reply_id, str) and isinstance(text, str)
    return (post_id.strip(), reply_id.strip(), text,
            parent.strip() if isinstance(parent, str) else None, handle)


def submit_reply(conn: Conn, *, post_id: str, reply_id: str, text: str, parent: str | None,
                 account: str | None, now: float) -> tuple[dict[str, Any], bool]:
    """Record a reply, its deliveries and its job in the caller's transaction, or find it.
    Returns (status JSON, created). Raises UnknownPost, or ValidationError (nothing written)."""
    post_row = qg.site_post_by_id(conn, post_id, for_update=True)
    if post_row is None:
        raise UnknownPost(post_id)
    existing = qg.reply_by_key(conn, post_row["seq"], reply_id)
    if existing is not None:
        return reply_status(conn, existing), False
    if post_row["delete_requested_at"] is not None:
        raise ValidationError({"post_id": f"post {post_id} was deleted from Bluesky: nothing to reply under"})
    deliveries = [DeliveryRow.from_row(d) for d in q.deliveries_for_posts(conn, [post_row["seq"]])]
    # an account's record of the post exists, or may still come (a reply waits for it)
    live = [d for d in deliveries if d.account_id is not None and d.status != DeliveryStatus.FAILED.value]
    if not live:
        why = post_row["reason"] or "none of its deliveries succeeded"
        raise ValidationError({"post_id": f"post {post_id} is not on Bluesky ({why}): nothing to reply under"})
    parent_uri = parent_cid = None
    if account is not None:
        live = [d for d in live if d.handle == account]
        if not live:
            raise ValidationError({"account": f"post {post_id} was not published to @{account}"})
    if parent is not None:
        live, parent_uri, parent_cid = _parent_target(conn, post_row, deliveries, live, parent)
    accounts = []
    for d in live:
        row = q.account_by_id(conn, d.account_id) if d.account_id is not None else None
        if row is not None:
            accounts.append(account_from_row(row))
    if not accounts:
        raise ValidationError({"account": f"the accounts of post {post_id} were removed"})
    document = {"id": f"{post_id}/replies/{reply_id}"[:255], "text": text, "reply_to": post_id,
                "reply_id": reply_id}
    seq = qg.insert_reply_if_absent(conn, key=reply_key(post_row["seq"], reply_id), document=document,
                                    parent_seq=post_row["seq"], reply_id=reply_id, parent_uri=parent_uri,
                                    parent_cid=parent_cid, now=now)
    if seq is None:  # another transaction recorded it since we looked
        existing = qg.reply_by_key(conn, post_row["seq"], reply_id)
        assert existing is not None
        return reply_status(conn, existing), False
    enqueue_deliveries(conn, seq, accounts, now=now)
    handles = ", ".join("@" + a.handle for a in accounts)
    q.add_event(conn, ts=now, kind="reply_submitted", post_id=post_id,
                message=f"reply {reply_id} queued for {handles}" + (f" under {parent}" if parent else ""))
    row = q.post_by_seq(conn, seq)
    assert row is not None
    return reply_status(conn, row), True


def _parent_target(conn: Conn, post_row: Mapping[str, Any], deliveries: list[DeliveryRow],
                   live: list[DeliveryRow], parent: str) -> tuple[list[DeliveryRow], str | None, str | None]:
    """(the one delivery whose thread holds `parent`, parent uri or None for the root, its cid)."""
    post_id = post_row["post_id"]
    own = next((d for d in deliveries if d.uri == parent), None)
    if own is not None:  # the post's own record: a reply to the post
        chosen = [d for d in live if d.id == own.id]
        if not chosen:
            raise ValidationError({"parent": f"is the record of @{own.handle}, not of the account named"})
        return chosen, None, None
    stored = qg.interaction_by_uri(conn, parent)
    if stored is not None:
        if stored["post_seq"] != post_row["seq"]:
            raise ValidationError({"parent": f"is not in the thread of post {post_id}"})
        if stored["kind"] != "reply":
            raise ValidationError({"parent": f"is a {stored['kind']}, not a reply in the thread of "
                                             f"post {post_id}"})
        chosen = [d for d in live if d.account_id == stored["delivery_account_id"]]
        if not chosen:
            raise ValidationError({"parent": f"is in the thread of @{stored['account']}, not of the account "
                                             "named (or that record is gone)"})
        return chosen, parent, stored["cid"]
    # not stored: the attempt checks with getRecord that its root is the account's record
    if len(live) != 1:
        raise ValidationError({"account": "name the account whose thread holds this parent (skypost has "
                                          "not stored it; the post is on several accounts)"})
    return live, parent, None


def reply_status(conn: Conn, row: Mapping[str, Any]) -> dict[str, Any]:
    """The status JSON of a reply: a post's shape, named by the comment id, plus `reply_to`."""
    return _status_json(row, q.deliveries_for_posts(conn, [row["seq"]]), paused=is_paused(conn))


def _status_json(row: Mapping[str, Any], deliveries: list[Any], *, paused: bool) -> dict[str, Any]:
    state: PostState = state_from_rows(row, deliveries, paused=paused)
    data = state.to_json()
    data["id"] = row["reply_id"]
    data["reply_to"] = row["document"].get("reply_to")
    if row["reply_parent_uri"]:
        data["parent"] = row["reply_parent_uri"]
    return data


def replies_of(conn: Conn, post_id: str) -> list[dict[str, Any]]:
    """The status JSON of each reply from the site to a post, oldest first."""
    post_row = qg.site_post_by_id(conn, post_id)
    if post_row is None:
        raise UnknownPost(post_id)
    rows = qg.replies_of_post(conn, post_row["seq"])
    by_reply: dict[int, list[Any]] = {}
    for d in q.deliveries_for_posts(conn, [r["seq"] for r in rows]):
        by_reply.setdefault(d["post_seq"], []).append(d)
    paused = is_paused(conn)
    return [_status_json(r, by_reply.get(r["seq"], []), paused=paused) for r in rows]


# --- the worker side -------------------------------------------------------------------

def load_post(post_row: Mapping[str, Any]) -> Post | None:
    """The Post the pipeline composes for a reply row; None for a site post."""
    if post_row.get("kind") != "reply":
        return None
    doc = post_row["document"]
    return ReplyPost(id=str(doc.get("id") or post_row["post_id"]), text=str(doc.get("text", "")),
                     reply_to=str(doc.get("reply_to", "")), parent_seq=int(post_row["parent_seq"]),
                     parent_uri=post_row["reply_parent_uri"], parent_cid=post_row["reply_parent_cid"])


def is_reply(post: Post) -> bool:
    return isinstance(post, ReplyPost)


def write_plan(conn: Conn, post: Post, row: DeliveryRow) -> WritePlan | str:
    """What an attempt of this delivery writes, read in the gate's transaction; a string is
    why it can never be written (the delivery gives up)."""
    if not isinstance(post, ReplyPost):
        return WritePlan(threadgate=row.threadgate, postgate=row.postgate)
    root = qg.delivery_of_account(conn, post.parent_seq, row.account_id) if row.account_id else None
    if root is None or root["status"] != DeliveryStatus.COMPLETED.value or not root["uri"] or not root["cid"]:
        state = root["status"] if root is not None else "no delivery"
        return f"post {post.reply_to} is not on Bluesky as @{row.handle} ({state}): nothing to reply under"
    parent_uri = post.parent_uri or root["uri"]
    parent_cid = post.parent_cid if post.parent_uri else root["cid"]
    return WritePlan(reply=ReplyRefs(root["uri"], root["cid"], parent_uri, parent_cid))


def not_in_thread(parent_uri: str, value: Mapping[str, Any], root_uri: str) -> str | None:
    """Why a fetched parent record cannot be answered in the thread of `root_uri`, or None."""
    reply = value.get("reply") if isinstance(value, Mapping) else None
    root = reply.get("root") if isinstance(reply, Mapping) else None
    found = root.get("uri") if isinstance(root, Mapping) else None
    if parent_uri == root_uri or found == root_uri:
        return None
    return f"the parent {parent_uri} is not in the thread of {root_uri}"
