"""What a child process runs against a hostile server (see child.py): a bare fetch, the
feed path without a database (fetch + parse) and a whole poll through the worker."""

from __future__ import annotations

import threading
import time
from typing import Any

from cryptography.fernet import Fernet

from skypost import Skypost
from skypost.config import load_settings
from skypost.fetch import SafeFetcher
from skypost.sources import feeds
from skypost.sources.entries import parse_feed
from skypost.store import queries_feeds as qf

INTERVAL = 300.0


def fetch(url: str, *, timeout: float, total_timeout: float, max_bytes: int) -> dict[str, Any]:
    with SafeFetcher(allow_private=True, timeout=timeout, total_timeout=total_timeout) as fetcher:
        result = fetcher.get(url, max_bytes=max_bytes)
    return {"size": len(result.content)}


def feed(url: str, *, timeout: float, total_timeout: float) -> dict[str, Any]:
    """What a poll does with the network and the document, without the database."""
    with SafeFetcher(allow_private=True, timeout=timeout, total_timeout=total_timeout) as fetcher:
        fetched = feeds.fetch_feed(fetcher, url, etag=None, last_modified=None,
                                   max_bytes=feeds.MAX_FEED_BYTES, now=0.0)
    if fetched.error:
        return {"error": fetched.error}
    parsed = parse_feed(fetched.content, base_url=url, content_type=fetched.content_type)
    return {"titles": [e.title for e in parsed.entries]}


class _Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now


def poll(url: str, *, database: str, timeout: float, total_timeout: float) -> dict[str, Any]:
    """Add the feed (its first answer must be a feed), then let a worker poll it once."""
    settings = load_settings(env={}, config_file=None, database_url=database,
                             secret_key=Fernet.generate_key().decode(), allow_private_urls=True,
                             poll_interval=0.05)
    clock = _Clock()
    app = Skypost(settings, clock=clock, fetcher_factory=lambda: SafeFetcher(
        allow_private=True, timeout=timeout, total_timeout=total_timeout))
    try:
        added = feeds.add_feed(app, url, interval=INTERVAL)
        feed_id = added.feed["id"]
        clock.now += INTERVAL
        started = time.monotonic()
        app.run_worker(burst=True)
        poll_wall = round(time.monotonic() - started, 3)
        with app.db.connect() as conn:
            row = qf.feed_by_id(conn, feed_id)
            jobs = qf.live_poll_jobs(conn, feed_id)
        titles = [p["title"] for p in app.list_posts(limit=100)]
        return {"last_error": row["last_error"], "error_count": row["error_count"],
                "enabled": row["enabled"], "poll_jobs": len(jobs), "posts": titles,
                "poll_wall": poll_wall}
    finally:
        app.close()


def nothing() -> dict[str, Any]:
    """A call that holds no memory: what the harness's own measurement is checked with."""
    return {}
