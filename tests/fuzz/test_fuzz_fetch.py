"""Fuzz: the fetcher (skypost.fetch) against a raw server on 127.0.0.1 that answers with
whatever an example says: random Content-Encoding stacks (known, unknown, repeated, in
one header or several), bodies encoded as declared or not, truncated, repeated, small
bombs, extra headers of any size, Content-Length right, wrong or missing, chunked, and
now and then a stall longer than the whole deadline.

Whatever the answer: `get` returns at most `max_bytes` bytes or raises FetchError with a
reason — never another exception — within the deadline; and a well-formed answer (one
known coding, the body encoded as declared, within the cap) gives back exactly the body.
The decoder alone is also fuzzed against the standard library's one-shot decoders.
"""

from __future__ import annotations

import gzip
import time
import zlib
from dataclasses import dataclass
from typing import Iterator

import pytest
import zstandard
from hypothesis import given
from hypothesis import strategies as st

from skypost.content_coding import ContentCodingError, decoded, parse_content_encoding
from skypost.fetch import FetchError, SafeFetcher
from tests.fuzz.strategies import fuzz_settings
from tests.hostile.server import HostileServer

FUZZ = fuzz_settings(200)
CAP = 50_000
TIMEOUT = 1.0
TOTAL = 1.5
SLACK = 1.0
STALL = TOTAL + 0.5
KINDS = {"network", "timeout", "too_large", "encoding"}
KNOWN = ("gzip", "x-gzip", "deflate", "zstd", "identity")
CODINGS = list(KNOWN) + ["br", "compress", "GZIP", "Zstd", "", "bogus", "gzip;q=1", "*"]


def encode(coding: str, data: bytes, raw_deflate: bool = False) -> bytes:
    name = coding.strip().lower()
    if name in ("gzip", "x-gzip"):
        return gzip.compress(data, 6)
    if name == "deflate":
        if raw_deflate:
            compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
            return compressor.compress(data) + compressor.flush()
        return zlib.compress(data)
    if name == "zstd":
        return zstandard.ZstdCompressor().compress(data)
    return data  # identity, unknown: as they are


@dataclass(frozen=True)
class Answer:
    codings: tuple[str, ...]
    payload: bytes
    wire: bytes  # the whole HTTP response
    well_formed: bool  # one known coding (or none), encoded as declared, Content-Length right
    split: int  # where the server stops for `stall` seconds
    stall: float


payloads = st.one_of(
    st.binary(max_size=3000),
    st.builds(lambda b, n: b * n, st.binary(min_size=1, max_size=50), st.integers(1, 3000)),
    st.integers(0, 4_000_000).map(bytes),  # zeros: a small bomb for the codings
)


@st.composite
def answers(draw: st.DrawFn) -> Answer:
    codings = tuple(draw(st.lists(st.sampled_from(CODINGS), max_size=3)))
    payload = draw(payloads)
    raw_deflate = draw(st.booleans())
    body = payload
    encoded_as_declared = draw(st.integers(0, 9)) > 0
    if encoded_as_declared:
        for coding in codings:  # in the order they were applied
            body = encode(coding, body, raw_deflate)
    mangle = draw(st.sampled_from(["none"] * 6 + ["truncate", "repeat", "flip", "junk"]))
    if mangle == "truncate" and body:
        body = body[: draw(st.integers(0, len(body) - 1))]
    elif mangle == "repeat":
        body = body * draw(st.integers(2, 4))
    elif mangle == "flip" and body:
        i = draw(st.integers(0, len(body) - 1))
        body = body[:i] + bytes([body[i] ^ draw(st.integers(1, 255))]) + body[i + 1:]
    elif mangle == "junk":
        body = draw(st.binary(max_size=200)) + body
    headers = [("Content-Type", "application/octet-stream")]
    if codings:
        if draw(st.booleans()):
            headers.append(("Content-Encoding", ", ".join(codings)))
        else:
            headers += [("Content-Encoding", c) for c in codings]
    length = draw(st.sampled_from(["right", "right", "none", "chunked", "less", "more"]))
    if length == "right":
        headers.append(("Content-Length", str(len(body))))
    elif length == "less":
        headers.append(("Content-Length", str(max(0, len(body) - draw(st.integers(1, 100))))))
    elif length == "more":
        headers.append(("Content-Length", str(len(body) + draw(st.integers(1, 100)))))
    elif length == "chunked":
        headers.append(("Transfer-Encoding", "chunked"))
        body = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 997]), body[i:i + 997])
                        for i in range(0, len(body), 997)) + b"0\r\n\r\n"
    extra = draw(st.sampled_from([0, 0, 0, 10, 8000, 70_000, 200_000]))
    if extra:
        headers.append(("X-Extra", "h" * extra))
    head = "HTTP/1.1 200 OK\r\nConnection: close\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers)
    named = [c.strip().lower() for c in codings if c.strip().lower() not in ("", "identity")]
    wire = head.encode("latin-1") + b"\r\n" + body
    stall = draw(st.sampled_from([0.0] * 30 + [0.05] * 5 + [STALL]))
    well_formed = (encoded_as_declared and mangle == "none" and length in ("right", "chunked")
                   and len(named) <= 1 and all(c in KNOWN for c in named) and extra < 8000
                   and stall < TOTAL)
    return Answer(codings, payload, wire, well_formed, draw(st.integers(0, len(wire))), stall)


class Stage:
    """What the server answers to the current example."""

    answer = Answer((), b"", b"", False, 0, 0.0)

    def handler(self, conn, stop) -> None:
        answer = self.answer
        conn.sendall(answer.wire[:answer.split])
        if answer.stall and stop.wait(answer.stall):
            return
        conn.sendall(answer.wire[answer.split:])


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[HostileServer, Stage, SafeFetcher]]:
    stage = Stage()
    server = HostileServer({"/x": stage.handler})
    fetcher = SafeFetcher(allow_private=True, timeout=TIMEOUT, total_timeout=TOTAL)
    yield server, stage, fetcher
    fetcher.close()
    server.close()


@FUZZ
@given(answer=answers())
def test_the_fetcher_returns_at_most_the_cap_or_a_fetch_error(served, answer: Answer) -> None:
    server, stage, fetcher = served
    stage.answer = answer
    started = time.monotonic()
    try:
        result = fetcher.get(server.url("/x"), max_bytes=CAP)
    except FetchError as exc:
        assert exc.reason and exc.kind in KINDS, (exc.kind, exc.reason)
        assert not (answer.well_formed and len(answer.payload) <= CAP), (answer.codings, exc.reason)
    else:
        assert len(result.content) <= CAP
        if answer.well_formed:
            assert result.content == answer.payload
    assert time.monotonic() - started <= TOTAL + SLACK


def _pieces(data: bytes, sizes: list[int]) -> Iterator[bytes]:
    i = 0
    for size in sizes * (len(data) // max(1, sum(sizes)) + 1):
        if i >= len(data):
            return
        yield data[i:i + size]
        i += size
    if i < len(data):
        yield data[i:]


small_payloads = st.binary(max_size=3000) | st.integers(0, 200_000).map(bytes)


@FUZZ
@given(coding=st.sampled_from(["gzip", "deflate", "zstd"]), payload=small_payloads,
       raw_deflate=st.booleans(), sizes=st.lists(st.integers(1, 70_000), min_size=1, max_size=5),
       piece=st.integers(1, 100_000), members=st.integers(1, 3))
def test_the_decoder_gives_the_body_in_bounded_pieces(coding, payload, raw_deflate, sizes, piece,
                                                      members) -> None:
    wire = encode(coding, payload, raw_deflate)
    if coding in ("gzip", "zstd"):  # several gzip members, several zstd frames
        wire *= members
    else:
        members = 1
    out = bytearray()
    for chunk in decoded(_pieces(wire, sizes), coding, piece=piece):
        assert 0 < len(chunk) <= piece
        out += chunk
    assert bytes(out) == payload * members


@FUZZ
@given(data=st.binary(max_size=2000), coding=st.sampled_from(["gzip", "deflate", "zstd"]))
def test_the_decoder_refuses_garbage_with_a_reason(data: bytes, coding: str) -> None:
    try:
        for _ in decoded([data], coding, piece=1000):
            pass
    except ContentCodingError as exc:
        assert exc.reason


@FUZZ
@given(header=st.lists(st.sampled_from(CODINGS) | st.text(max_size=8), max_size=4).map(", ".join))
def test_a_content_encoding_header_names_one_known_coding_or_is_refused(header: str) -> None:
    try:
        coding = parse_content_encoding(header)
    except ContentCodingError as exc:
        assert exc.reason.startswith("refused: ")
    else:
        assert coding in ("identity", "gzip", "deflate", "zstd")
