"""Sources of posts other than direct submits: feeds (RSS/Atom/JSON Feed) and their commands.

A source sees skypost through `SourceHost`, the little it needs (submit, the database, the
queue, a fetcher, the clock and the settings), not the whole application object.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol

if TYPE_CHECKING:
    from skypost.config import Settings
    from skypost.models import Post, PostState
    from skypost.queue import JobQueue
    from skypost.store.db import Database


class SourceHost(Protocol):
    db: "Database"
    queue: "JobQueue"
    settings: "Settings"
    clock: Callable[[], float]

    def submit_state(self, post: "Post | Mapping[str, Any]", *, sync: bool | None = None,
                     source: str = "api", check_cutoff: bool = True) -> "PostState": ...

    def fetcher(self) -> Any: ...
