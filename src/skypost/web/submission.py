"""Accepting a post document over HTTP (the API and the webhooks share it)."""

from __future__ import annotations

from typing import Any, Mapping

from skypost.app import Skypost
from skypost.models import parse_post_document


def submit_document(skypost: Skypost, document: Mapping[str, Any], *, source: str) -> tuple[int, dict[str, Any]]:
    """(HTTP status, status JSON): 202 when the post is new, 200 when its id is already known.

    Raises ValidationError (nothing written) for a bad document or an unknown account."""
    post = parse_post_document(document)
    known = skypost.status(post.id)
    if known is not None:
        return 200, known
    # a concurrent request may record the same id first: submit then returns that post,
    # still exactly once; only the 202/200 distinction can be off for the loser
    return 202, skypost.submit(post, source=source)
