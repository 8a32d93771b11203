"""Decoding of HTTP content codings (gzip, deflate, zstd) with bounded memory.

A compressed body can expand a thousandfold (gzip) or more (zstd): decoding it in one
call, as HTTP clients do, lets a few kilobytes on the wire fill gigabytes of memory
before any size cap is checked. Here each step yields at most ``piece`` bytes, so the
caller's cap stops the decoding while memory stays small. Only one coding is accepted:
a stack ("gzip, gzip") has no use but to multiply the expansion.
"""

from __future__ import annotations

import zlib
from typing import Iterable, Iterator

try:  # optional: installed with the HTTP stack, absent in minimal installs
    import zstandard
except ImportError:  # pragma: no cover - depends on the installation
    zstandard = None  # type: ignore[assignment]

__all__ = ["ContentCodingError", "accept_encoding", "decoded", "parse_content_encoding"]

PIECE = 64 * 1024
# decoders of the zstd content coding need no larger window (RFC 9659); a frame that
# asks for more is refused rather than given hundreds of megabytes
ZSTD_MAX_WINDOW = 8 * 1024 * 1024
_ALIASES = {"x-gzip": "gzip"}
_GZIP_MAGIC = b"\x1f\x8b"


class ContentCodingError(ValueError):
    """A body whose coding is refused or broken; ``reason`` says which and why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def supported() -> tuple[str, ...]:
    return ("gzip", "deflate", "zstd") if zstandard is not None else ("gzip", "deflate")


def accept_encoding() -> str:
    """The Accept-Encoding request header: the codings this module decodes."""
    return ", ".join(supported())


def parse_content_encoding(header: str | None) -> str:
    """The single coding named by a Content-Encoding header ("identity" when none)."""
    names = [n.strip().lower() for n in (header or "").split(",")]
    names = [_ALIASES.get(n, n) for n in names if n and n != "identity"]
    if not names:
        return "identity"
    if len(names) > 1:
        raise ContentCodingError(
            f"refused: the body is encoded {len(names)} times ({', '.join(names)}); "
            "one content coding at most is accepted")
    if names[0] not in supported():
        raise ContentCodingError(
            f"refused: unsupported content coding {names[0][:40]!r} "
            f"(accepted: {', '.join(supported())})")
    return names[0]


def decoded(raw: Iterable[bytes], coding: str, *, piece: int = PIECE) -> Iterator[bytes]:
    """The decoded body, in pieces of at most ``piece`` bytes (``raw`` pieces as they are
    for "identity"). Raises ContentCodingError when the data is not valid for its coding."""
    if coding == "identity":
        return iter(raw)
    if coding == "gzip":
        return _zlib(raw, zlib.MAX_WBITS | 16, piece, members=True)
    if coding == "deflate":
        return _deflate(raw, piece)
    if coding == "zstd" and zstandard is not None:
        return _zstd(raw, piece)
    raise ContentCodingError(f"refused: unsupported content coding {coding[:40]!r}")


def _zlib(raw: Iterable[bytes], wbits: int, piece: int, *, members: bool) -> Iterator[bytes]:
    decoder = zlib.decompressobj(wbits)
    pending = b""  # the start of a next gzip member, too short to recognise yet
    try:
        for chunk in raw:
            data, pending = pending + chunk, b""
            more = False  # zlib may hold decoded bytes beyond a cut output, with no input left
            while data or more:
                if decoder.eof:
                    # gzip allows several members one after the other; anything else
                    # after the end of the stream is ignored, as other clients do
                    if not members or not _GZIP_MAGIC.startswith(data[:2]):
                        return
                    if len(data) < len(_GZIP_MAGIC):
                        pending = data
                        break
                    decoder = zlib.decompressobj(wbits)
                out = decoder.decompress(data, piece)
                more = len(out) == piece and not decoder.eof
                data = decoder.unused_data if decoder.eof else decoder.unconsumed_tail
                if out:
                    yield out
    except zlib.error as exc:
        raise ContentCodingError(f"the body is not valid {_name(wbits)} data ({exc})") from None


def _name(wbits: int) -> str:
    return "gzip" if wbits > zlib.MAX_WBITS else "deflate"


def _deflate(raw: Iterable[bytes], piece: int) -> Iterator[bytes]:
    """"deflate" is meant to be zlib-wrapped, but some servers send a raw stream."""
    chunks = iter(raw)
    head = b""
    for chunk in chunks:
        head += chunk
        if len(head) >= 2:
            break
    zlib_wrapped = len(head) >= 2 and head[0] & 0x0F == 8 and (head[0] << 8 | head[1]) % 31 == 0
    wbits = zlib.MAX_WBITS if zlib_wrapped else -zlib.MAX_WBITS
    yield from _zlib(_prepend(head, chunks), wbits, piece, members=False)


def _prepend(head: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    if head:
        yield head
    yield from rest


class _Reader:
    """A file-like view of an iterator of byte strings, for zstandard's stream reader."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._buffer = b""

    def read(self, size: int = -1) -> bytes:
        while not self._buffer:
            chunk = next(self._chunks, None)
            if chunk is None:
                return b""
            self._buffer = chunk
        if size < 0:
            size = len(self._buffer)
        out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out


def _zstd(raw: Iterable[bytes], piece: int) -> Iterator[bytes]:
    decoder = zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW)
    try:
        reader = decoder.stream_reader(_Reader(raw), read_size=16 * 1024, read_across_frames=True)
        while True:
            out = reader.read(piece)
            if not out:
                return
            yield out
    except zstandard.ZstdError as exc:
        raise ContentCodingError(f"the body is not valid zstd data ({exc})") from None
