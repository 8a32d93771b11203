"""Fixtures of the feed tests: a feed server on loopback."""

from __future__ import annotations

from typing import Iterator

import pytest

from tests.feeds.server import FeedServer


@pytest.fixture
def feed_server() -> Iterator[FeedServer]:
    server = FeedServer().start()
    try:
        yield server
    finally:
        server.stop()
