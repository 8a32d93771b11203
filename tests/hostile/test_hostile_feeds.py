"""Feeds served by hostile servers, polled by a worker in a child process (harness.py):
each poll ends as a visible error on the feed (last_error, error_count), its poll job
is rescheduled, nothing is submitted, within the deadline and with a small peak RSS.

The feed's first answer (when it is added) is a real feed; the hostile body comes at
the first poll."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import pytest

from tests.feeds.builders import E, rss
from tests.hostile.harness import MAX_RSS_MB, chunks, double_gzip_bomb, run_child, zstd_bomb
from tests.hostile.server import HostileServer, drip, first_then, serve, stream

TIMEOUT = 2.0
TOTAL = 3.0
SLACK = 1.5
FEED = {"Content-Type": "application/rss+xml"}
LATER = datetime(2030, 1, 1, tzinfo=timezone.utc)  # after the feed is added: submitted


def feed(*titles: str) -> bytes:
    return rss([E(guid=f"urn:h:{t}", title=t, published=LATER,
                  link=f"https://blog.example.com/{t.replace(' ', '-')}") for t in titles])


@pytest.fixture(scope="module")
def local_feed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("local") / "secret.xml"
    path.write_bytes(feed("Local secret"))
    return path


@pytest.fixture(scope="module")
def server(local_feed: Path) -> Iterator[HostileServer]:
    first = serve(feed("Old"), FEED)
    header_drip = (b"HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\nX-Pad: "
                   + b"a" * 4000 + b"\r\n\r\n")
    srv = HostileServer({
        "/path": first_then(first, serve(str(local_feed).encode(), FEED)),
        "/dev-zero": first_then(first, serve(b"/dev/zero", FEED)),
        "/gzip2": first_then(first, serve(double_gzip_bomb(),
                                          {**FEED, "Content-Encoding": "gzip, gzip"})),
        "/zstd": first_then(first, stream(lambda: chunks(zstd_bomb()),
                                          {**FEED, "Content-Encoding": "zstd"})),
        "/header-drip": first_then(first, drip(header_drip, every=0.2)),
        "/whitespace": first_then(first, serve(b"\n\n  " + feed("New", "Old"), FEED)),
    })
    yield srv
    srv.close()


def poll(server: HostileServer, path: str, tmp_path: Path) -> dict:
    result = run_child("tests.hostile.actions:poll", hard_timeout=TOTAL + 60, url=server.url(path),
                       database=f"sqlite:///{tmp_path}/skypost.db", timeout=TIMEOUT,
                       total_timeout=TOTAL)
    assert result["outcome"] == "returned", result
    assert result["maxrss_mb"] < MAX_RSS_MB, result
    return result


def check_feed_error(result: dict, words: str) -> None:
    assert words in (result["last_error"] or ""), result
    assert result["error_count"] == 1 and result["enabled"] is True, result
    assert result["poll_jobs"] == 1, result  # rescheduled, with backoff
    assert result["posts"] == [], result


@pytest.mark.parametrize("path", ["/path", "/dev-zero"])
def test_a_body_naming_a_local_file_is_not_read(server: HostileServer, tmp_path: Path,
                                                path: str) -> None:
    result = poll(server, path, tmp_path)
    check_feed_error(result, "not an RSS or Atom feed")
    assert "Local secret" not in str(result)


def test_a_stacked_gzip_bomb_is_a_feed_error(server: HostileServer, tmp_path: Path) -> None:
    check_feed_error(poll(server, "/gzip2", tmp_path), "encoded 2 times (gzip, gzip)")


def test_a_zstd_bomb_is_a_feed_error(server: HostileServer, tmp_path: Path) -> None:
    check_feed_error(poll(server, "/zstd", tmp_path), "larger than the limit of 5,000,000 bytes")


def test_dripped_headers_are_a_feed_timeout(server: HostileServer, tmp_path: Path) -> None:
    result = poll(server, "/header-drip", tmp_path)
    check_feed_error(result, "timed out")
    assert result["poll_wall"] <= TOTAL + SLACK, result


def test_whitespace_before_the_xml_declaration_is_polled(server: HostileServer,
                                                         tmp_path: Path) -> None:
    result = poll(server, "/whitespace", tmp_path)
    assert result["last_error"] is None and result["error_count"] == 0, result
    assert result["posts"] == ["New"], result
