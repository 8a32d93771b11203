"""What a post gathered on Bluesky, as the CLI, the API and the dashboard show it.

`post_interactions` is the interactions JSON of one post:

    {"id": ID, "interactions": [{"kind", "uri", "cid", "account",
      "author": {"did", "handle", "display_name", "avatar"}, "text", "parent_uri",
      "created_at", "url", "removed"}]}

oldest first, removed reactions included (`"removed": true`) so that a site can take
them down; `interaction_counts` are the live ones per kind, for many posts in one query;
`conversation` arranges the JSON for people: replies as a thread, then quotes, likes and
reposts.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping
from urllib.parse import quote

from skypost.models import INTERACTION_KINDS, iso, no_interactions, valid_id
from skypost.store import queries as q
from skypost.store import queries_views as qv
from skypost.store.db import Conn

BSKY_APP = "https://bsky.app"
# at://<did>/<collection>/<rkey>: the parts a bsky.app link is made of
_AT_URI = re.compile(r"^at://([^/]+)/([^/]+)/([^/]+)$")


def profile_url(did: str) -> str:
    return f"{BSKY_APP}/profile/{quote(did, safe=':')}"


def reaction_url(kind: str, uri: str, author_did: str) -> str:
    """The bsky.app page of a reaction: the post itself for a reply or a quote; a like or a
    repost has no page of its own, so it is its author's profile."""
    match = _AT_URI.match(uri)
    if kind in ("reply", "quote") and match:
        return f"{profile_url(author_did)}/post/{quote(match.group(3), safe='')}"
    return profile_url(author_did)


def _iso(value: float | None) -> str | None:
    return iso(datetime.fromtimestamp(value, timezone.utc)) if value is not None else None


def interaction_json(row: Mapping[str, Any]) -> dict[str, Any]:
    """One stored interaction as the JSON shows it."""
    kind = str(row["kind"])
    post_like = kind in ("reply", "quote")
    return {
        "kind": kind,
        "uri": row["uri"],
        "cid": row["cid"],
        "account": row["account"],
        "author": {
            "did": row["author_did"],
            "handle": row["author_handle"],
            "display_name": row["author_display_name"],
            "avatar": row["author_avatar"],
        },
        "text": row["text"] if post_like else None,
        "parent_uri": row["parent_uri"],
        "created_at": _iso(row["created_at"]),
        "url": reaction_url(kind, str(row["uri"]), str(row["author_did"])),
        "removed": row["removed_at"] is not None,
    }


def post_interactions(conn: Conn, post_id: str) -> dict[str, Any] | None:
    """The interactions JSON of a post; None for an unknown id."""
    if not valid_id(post_id):
        return None
    post = q.post_by_id(conn, post_id)
    if post is None:
        return None
    rows = qv.interactions_of_post(conn, int(post["seq"]))
    return {"id": post["post_id"], "interactions": [interaction_json(r) for r in rows]}


def interaction_counts(conn: Conn, post_seqs: Iterable[int]) -> dict[int, dict[str, int]]:
    """Live interactions per kind for each post (every kind present, zero when none)."""
    seqs = list(post_seqs)
    found = qv.live_interaction_counts(conn, seqs)
    out = {}
    for seq in seqs:
        counts = no_interactions()
        for kind, n in found.get(seq, {}).items():
            if kind in counts:  # a kind this version does not know is not shown
                counts[kind] = n
        out[seq] = counts
    return out


# --- for people ------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Conversation:
    """The interactions JSON arranged for reading."""

    # replies in reading order: (depth, reply); a reply sits under the one it answers
    thread: list[tuple[int, dict[str, Any]]]
    quotes: list[dict[str, Any]]
    likes: list[dict[str, Any]]  # live ones
    reposts: list[dict[str, Any]]  # live ones
    counts: dict[str, int]  # live ones

    @property
    def empty(self) -> bool:
        return not (self.thread or self.quotes or self.likes or self.reposts)


def conversation(document: Mapping[str, Any]) -> Conversation:
    """Replies nested by `parent_uri` (a reply whose parent is unknown — the post itself,
    or a reply skypost never saw — starts a branch), in the JSON's order within a level."""
    items = list(document.get("interactions", []))
    replies = [i for i in items if i["kind"] == "reply"]
    known = {r["uri"] for r in replies}
    children: dict[str, list[dict[str, Any]]] = {}
    roots = []
    for reply in replies:
        parent = reply.get("parent_uri")
        if parent in known and parent != reply["uri"]:
            children.setdefault(parent, []).append(reply)
        else:
            roots.append(reply)
    thread: list[tuple[int, dict[str, Any]]] = []
    seen: set[str] = set()

    def walk(reply: dict[str, Any], depth: int) -> None:
        # iterative, so that a very long chain of answers cannot exhaust the stack
        stack = [(reply, depth)]
        while stack:
            node, level = stack.pop()
            if node["uri"] in seen:
                continue
            seen.add(node["uri"])
            thread.append((level, node))
            stack.extend((child, level + 1) for child in reversed(children.get(node["uri"], [])))

    for root in roots:
        walk(root, 0)
    for reply in replies:  # parents that point at each other: shown, not lost
        walk(reply, 0)
    live = [i for i in items if not i["removed"]]
    counts = no_interactions()
    for item in live:
        if item["kind"] in counts:
            counts[item["kind"]] += 1
    return Conversation(
        thread=thread,
        quotes=[i for i in items if i["kind"] == "quote"],
        likes=[i for i in live if i["kind"] == "like"],
        reposts=[i for i in live if i["kind"] == "repost"],
        counts=counts,
    )


def who(item: Mapping[str, Any]) -> str:
    """An author as people know them: '@handle', else the DID."""
    author = item["author"]
    return f"@{author['handle']}" if author.get("handle") else str(author["did"])


def plural(n: int, kind: str) -> str:
    word = {"reply": "replies" if n != 1 else "reply"}.get(kind, kind + ("s" if n != 1 else ""))
    return f"{n} {word}"


def summary(counts: Mapping[str, int]) -> str:
    """'2 replies, 1 like' (the kinds with any), or 'no reactions yet'."""
    parts = [plural(counts.get(kind, 0), kind) for kind in INTERACTION_KINDS if counts.get(kind)]
    return ", ".join(parts) or "no reactions yet"
