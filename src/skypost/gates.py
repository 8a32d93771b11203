"""Who may reply, and whether quoting is allowed: the threadgate and postgate of a post.

A gate is a record of its own (`app.bsky.feed.threadgate`, `app.bsky.feed.postgate`) under
the post's record key. skypost writes it in the same `com.atproto.repo.applyWrites` call as
the post: the PDS applies the writes atomically, so the post never exists without its gate,
and the exactly-once check (getRecord of the post's key) answers for all of them.

The gates of a delivery are fixed at submit (the post's `replies`/`quotes` win over the
account's settings) and stored on the delivery: every attempt writes the same records, and a
delete knows which records to remove.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from skypost.models import EVERYONE, NOBODY, Post
from skypost.store import queries_gates as qg
from skypost.store.db import Conn

POST = "app.bsky.feed.post"
THREADGATE = "app.bsky.feed.threadgate"
POSTGATE = "app.bsky.feed.postgate"
_RULES = {"following": f"{THREADGATE}#followingRule", "mentioned": f"{THREADGATE}#mentionRule"}
# points a create costs against an account's write budget
CREATE_COST = 3


def gate_value(rules: Sequence[str] | None) -> str | None:
    """The stored form of reply rules: None for everyone (no gate), else "nobody" or
    "following,mentioned"."""
    if rules is None or tuple(rules) == (EVERYONE,):
        return None
    return ",".join(rules)


def delivery_gates(post: Post, account: Mapping[str, Any]) -> tuple[str | None, bool]:
    """(threadgate rules or None, postgate?) for one account's record of the post."""
    rules = post.replies if post.replies is not None else (account.get("replies") or EVERYONE).split(",")
    quotes = post.quotes if post.quotes is not None else bool(account.get("quotes", True))
    return gate_value(rules), not quotes


def record_gates(conn: Conn, post_seq: int, post: Post) -> None:
    """Fix the gates of the post's new deliveries (in the submit's transaction)."""
    for row in qg.deliveries_with_account_gates(conn, post_seq):
        threadgate, postgate = delivery_gates(post, row)
        if threadgate is not None or postgate:
            qg.set_delivery_gates(conn, row["id"], threadgate=threadgate, postgate=postgate)


def gate_records(post_uri: str, *, threadgate: str | None, postgate: bool,
                 created_at: str) -> list[tuple[str, dict[str, Any]]]:
    """(collection, record) of each gate of the post at `post_uri`, in write order."""
    out: list[tuple[str, dict[str, Any]]] = []
    if threadgate is not None:
        allow = [] if threadgate == NOBODY else [{"$type": _RULES[r]} for r in threadgate.split(",")]
        out.append((THREADGATE, {"$type": THREADGATE, "post": post_uri, "allow": allow,
                                 "createdAt": created_at}))
    if postgate:
        out.append((POSTGATE, {"$type": POSTGATE, "post": post_uri, "createdAt": created_at,
                               "detachedEmbeddingUris": [],
                               "embeddingRules": [{"$type": f"{POSTGATE}#disableRule"}]}))
    return out


def post_writes(did: str, rkey: str, record: Mapping[str, Any], *, threadgate: str | None,
                postgate: bool) -> list[dict[str, Any]]:
    """The `writes` of one applyWrites: the post, then its gates, all under the post's rkey."""
    post_uri = f"at://{did}/{POST}/{rkey}"
    created_at = str(record.get("createdAt", ""))
    writes = [{"$type": "com.atproto.repo.applyWrites#create", "collection": POST, "rkey": rkey,
               "value": dict(record)}]
    for collection, value in gate_records(post_uri, threadgate=threadgate, postgate=postgate,
                                          created_at=created_at):
        writes.append({"$type": "com.atproto.repo.applyWrites#create", "collection": collection,
                       "rkey": rkey, "value": value})
    return writes


def creates(threadgate: str | None, postgate: bool) -> int:
    """How many records one attempt creates."""
    return 1 + (threadgate is not None) + bool(postgate)
