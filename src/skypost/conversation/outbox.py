"""What the site is told, queued in the transaction that changed it (exactly once, durable).

The backfeed calls `interaction_changed` in the transaction that stores or removes an
interaction; the pipeline calls `post_status_changed` where a post's status is stored.
Each call queues one outgoing event per interested target (signed webhooks, Webmention);
the sending happens later, in jobs, after the commit.
"""

from __future__ import annotations

from typing import Literal

from skypost.store.db import Conn

InteractionEvent = Literal["interaction.created", "interaction.removed"]


def interaction_changed(conn: Conn, *, interaction_id: int, event: InteractionEvent, now: float) -> None:
    """Queue the events an interaction's arrival or removal sends (none yet: see the notify work)."""


def post_status_changed(conn: Conn, *, post_seq: int, status: str, now: float) -> None:
    """Queue the `post.status` events of a post whose stored status changed."""
