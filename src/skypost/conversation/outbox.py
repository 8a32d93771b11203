"""What the site is told, queued in the transaction that changed it (exactly once, durable).

The backfeed calls `interaction_changed` in the transaction that stores or removes an
interaction; the pipeline calls `post_status_changed` where a post's status is stored.
Each call queues one outgoing event per interested target (signed webhooks, Webmention)
as a row of the `outbox` table; the `notify` job sends them after the commit
(conversation/notify.py). A rolled-back change therefore tells nobody, and a committed
one is told even if every worker stops right after.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import datetime, timezone
from typing import Any, Literal, Mapping

from skypost.models import iso
from skypost.store import queries_outbox as qo
from skypost.conversation.views import interaction_json
from skypost.store.db import Conn, encode_json

InteractionEvent = Literal["interaction.created", "interaction.removed"]
EVENT_TYPES = ("interaction.created", "interaction.removed", "post.status")
WEBHOOK = "webhook"
WEBMENTION = "webmention"


def interaction_changed(conn: Conn, *, interaction_id: int, event: InteractionEvent, now: float) -> None:
    """Queue the events an interaction's arrival or removal sends: one signed webhook per
    target that wants `event`, and a Webmention to the post's URL.

    Calling it twice for the same change queues nothing more (the event ids are derived
    from the change, and the outbox keeps one row per id)."""
    if event not in ("interaction.created", "interaction.removed"):
        raise ValueError(f"unknown interaction event {event!r}")
    row = qo.interaction_with_post(conn, interaction_id)
    if row is None:
        raise ValueError(f"no interaction {interaction_id}")
    post = post_ref(row)
    queued = False
    targets = [t for t in qo.list_targets(conn) if event in t["events"]]
    if targets:
        data = {**interaction_json(row), "post": post}
        for target in targets:
            event_id = _derived_id(event, row["uri"], WEBHOOK, target["url"])
            body = _body(event_id, event, now, data)
            queued |= qo.insert_event(
                conn, event_id=event_id, type=event, channel=WEBHOOK, target=target["url"],
                target_id=target["id"], interaction_id=interaction_id,
                order_key=f"webhook:{target['id']}:i:{interaction_id}", payload=body, now=now)
    if post["url"]:
        # sent only where SKYPOST_PUBLIC_URL is set (the sender's settings decide, at send time)
        event_id = _derived_id(event, row["uri"], WEBMENTION, post["url"])
        payload = encode_json({"interaction_id": interaction_id, "target": post["url"], "post_id": post["id"]})
        queued |= qo.insert_event(
            conn, event_id=event_id, type=event, channel=WEBMENTION, target=post["url"], target_id=None,
            interaction_id=interaction_id, order_key=f"webmention:i:{interaction_id}", payload=payload,
            now=now)
    if queued:
        qo.wake_notify_job(conn, now=now)


def post_status_changed(conn: Conn, *, post_seq: int, status: str, now: float) -> None:
    """Queue the `post.status` events of a post whose stored status changed (for the webhook
    targets that want them; nothing else is read when there are none)."""
    targets = [t for t in qo.list_targets(conn) if "post.status" in t["events"]]
    if not targets:
        return
    # the syndicator calls this module: imported here, not at the top, to break the cycle
    from skypost.syndicator import is_paused, post_state
    from skypost.store import queries as q

    post_row = q.post_by_seq(conn, post_seq)
    if post_row is None:
        return
    if post_row.get("kind") == "reply":
        # a reply from the site: its own status JSON (the site's comment id, "reply_to" the post)
        from skypost.replies import reply_status

        data = reply_status(conn, post_row)
    else:
        data = post_state(conn, post_row, paused=is_paused(conn)).to_json()
    data["status"] = status
    for target in targets:
        event_id = new_event_id()
        qo.insert_event(
            conn, event_id=event_id, type="post.status", channel=WEBHOOK, target=target["url"],
            target_id=target["id"], interaction_id=None, order_key=f"webhook:{target['id']}:p:{post_seq}",
            payload=_body(event_id, "post.status", now, data), now=now)
    qo.wake_notify_job(conn, now=now)


# --- what an event says ------------------------------------------------------------------

def new_event_id() -> str:
    return "evt_" + uuid.uuid4().hex


def _derived_id(*parts: str) -> str:
    """The id of one change told to one target: the same whoever queues it, and however often."""
    return "evt_" + hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:32]


def _body(event_id: str, event: str, now: float, data: Mapping[str, Any]) -> str:
    """The exact bytes (as text) POSTed: stored, so every retry sends the same document."""
    return json.dumps({"id": event_id, "type": event, "created_at": _iso(now), "data": data},
                      ensure_ascii=False, separators=(",", ":"))


def _iso(ts: float | None) -> str | None:
    return iso(datetime.fromtimestamp(ts, timezone.utc)) if ts is not None else None


def post_ref(row: Mapping[str, Any]) -> dict[str, Any]:
    """The site's id and URL (None unless http(s)) of an interaction's post."""
    document = row["post_document"]
    if isinstance(document, (str, bytes)):
        document = json.loads(document)
    url = document.get("url") if isinstance(document, Mapping) else None
    return {"id": row["post_id"], "url": url if isinstance(url, str) and url.startswith(("http://", "https://"))
            else None}
