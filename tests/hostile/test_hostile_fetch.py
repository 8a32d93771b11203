"""The fetcher against hostile servers on 127.0.0.1: compression bombs, stacked and
unknown encodings, endless bodies, headers and bodies dripped a byte at a time.

Each fetch runs in a child process under an address-space limit (harness.py), so a
regression fails here instead of exhausting the machine. Every case must end in a
FetchError with a clear reason, within the deadline plus a little, with a small peak RSS.
"""

from __future__ import annotations

from typing import Iterator

import pytest

from tests.hostile.harness import (
    MAX_RSS_MB,
    MiB,
    chunks,
    deflate_bomb,
    double_gzip_bomb,
    gzip_zeros,
    run_child,
    zstd_bomb,
)
from tests.hostile.server import HostileServer, drip, response, serve, stream

CAP = 5_000_000
TIMEOUT = 2.0
TOTAL = 3.0
SLACK = 1.5  # thread wake-up and error handling on a busy machine


def _redirect(to: str):
    def handler(conn, stop):
        conn.sendall(response(302, b"", {"Location": to}))
    return handler


def hostile_server() -> HostileServer:
    gzip2 = double_gzip_bomb()
    zstd = zstd_bomb()
    gz = gzip_zeros(1024 * MiB)
    deflate = deflate_bomb()
    header_drip = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Pad: " + b"a" * 4000
                   + b"\r\n\r\nhi")
    routes = {
        "/gzip2": serve(gzip2, {"Content-Encoding": "gzip, gzip"}),
        "/gzip2-headers": serve(gzip2, {"Content-Encoding": "gzip\r\nContent-Encoding: gzip"}),
        "/zstd": stream(lambda: chunks(zstd), {"Content-Encoding": "zstd"}),
        "/gzip": stream(lambda: chunks(gz), {"Content-Encoding": "gzip"}),
        "/deflate": stream(lambda: chunks(deflate), {"Content-Encoding": "deflate"}),
        "/br": serve(b"\x1b\xff\xff" * 10, {"Content-Encoding": "br"}),
        "/endless": stream(lambda: iter(lambda: bytes(64 * 1024), None),
                           {"Content-Type": "text/plain"}),
        "/header-drip": drip(header_drip, every=0.2),
        "/body-drip": drip(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n", every=0.001,
                           endless=b"x"),
        "/slow-body": drip(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 10,
                           every=0.5),
        "/status-drip": drip(b"HTTP/1.1 200 OK\r\n", every=0.5),
    }
    srv = HostileServer(routes)
    srv.routes["/redirect-to-drip"] = _redirect(srv.url("/header-drip"))
    return srv


@pytest.fixture(scope="module")
def server() -> Iterator[HostileServer]:
    srv = hostile_server()
    yield srv
    srv.close()


def fetch(server: HostileServer, path: str) -> dict:
    return run_child("tests.hostile.actions:fetch", hard_timeout=TOTAL + 30, url=server.url(path),
                     timeout=TIMEOUT, total_timeout=TOTAL, max_bytes=CAP)


def check_refused(result: dict, kind: str, words: str) -> None:
    assert result["outcome"] == "raised", result
    assert (result["type"], result["kind"]) == ("FetchError", kind), result
    assert words in result["reason"], result
    assert result["wall"] <= TOTAL + SLACK, result
    assert result["maxrss_mb"] < MAX_RSS_MB, result


@pytest.mark.parametrize("path", ["/gzip2", "/gzip2-headers"])
def test_a_stacked_encoding_is_refused(server: HostileServer, path: str) -> None:
    check_refused(fetch(server, path), "encoding", "encoded 2 times (gzip, gzip)")


@pytest.mark.parametrize("path", ["/zstd", "/gzip", "/deflate"])
def test_a_compression_bomb_stops_at_the_cap(server: HostileServer, path: str) -> None:
    check_refused(fetch(server, path), "too_large", f"larger than the limit of {CAP:,} bytes")


def test_an_unknown_encoding_is_refused(server: HostileServer) -> None:
    check_refused(fetch(server, "/br"), "encoding", "unsupported content coding 'br'")


def test_an_endless_body_stops_at_the_cap(server: HostileServer) -> None:
    check_refused(fetch(server, "/endless"), "too_large", "larger than the limit")


@pytest.mark.parametrize("path", ["/header-drip", "/status-drip", "/redirect-to-drip"])
def test_dripped_headers_end_at_the_deadline(server: HostileServer, path: str) -> None:
    result = fetch(server, path)
    check_refused(result, "timeout", "timed out")
    assert result["wall"] >= TOTAL - 0.1, result  # the deadline, not an earlier read timeout


@pytest.mark.parametrize("path", ["/body-drip", "/slow-body"])
def test_a_dripped_body_ends_at_the_deadline(server: HostileServer, path: str) -> None:
    check_refused(fetch(server, path), "timeout", "timed out")
