"""Running a call in a child process with an address-space limit and a hard timeout (see
child.py), and bodies that expand enormously, made cheaply."""

from __future__ import annotations

import gzip
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import zstandard

ROOT = Path(__file__).resolve().parents[2]
RLIMIT_AS = 1536 * 1024 * 1024  # a regression dies of MemoryError here, not the machine
MAX_RSS_MB = 250
MiB = 1024 * 1024


def run_child(call: str, *, hard_timeout: float, **args: Any) -> dict[str, Any]:
    """What `call(**args)` did in a child: {"outcome": "returned"|"raised", …, "wall",
    "maxrss_mb"}. Fails the test when the child dies or outlives `hard_timeout`."""
    spec = {"call": call, "args": args, "rlimit_as": RLIMIT_AS}
    env = dict(os.environ)
    # SKYPOST_HOSTILE_SRC runs the child on another source tree (to measure an old version)
    src = os.environ.get("SKYPOST_HOSTILE_SRC") or str(ROOT / "src")
    env["PYTHONPATH"] = os.pathsep.join(
        [src, str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    try:
        proc = subprocess.run([sys.executable, "-m", "tests.hostile.child", json.dumps(spec)],
                              cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=hard_timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"{call}{args} still running after {hard_timeout} s (killed)") \
            from None
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise AssertionError(f"the child died (exit {proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(lines[-1])


def gzip_zeros(size: int) -> bytes:
    """`size` zero bytes (a multiple of 1 MiB) as one gzip member: 1 GiB in about 1 MB,
    in half a second. After a full flush the compressor starts afresh, so every further
    MiB of zeros compresses to the same bytes: they are repeated, not recomputed."""
    block = bytes(MiB)
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    first = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    again = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(size // MiB):
        crc = zlib.crc32(block, crc)
    end = b"\x03\x00"  # an empty final block
    return first + again * (size // MiB - 1) + end + struct.pack("<II", crc, size & 0xFFFFFFFF)


def double_gzip_bomb() -> bytes:
    """gzip of gzip: about 2.5 KB that expand to 1 GiB."""
    return gzip.compress(gzip_zeros(1024 * MiB), 9)


def zstd_bomb(size: int = 2048 * MiB) -> bytes:
    """One zstd frame of `size` zero bytes: 2 GiB in about 65 KB (half a second to make)."""
    compressor = zstandard.ZstdCompressor(level=3).compressobj()
    block = bytes(MiB)
    parts = [compressor.compress(block) for _ in range(size // MiB)]
    parts.append(compressor.flush())
    return b"".join(parts)


def deflate_bomb(size: int = 64 * MiB) -> bytes:
    compressor = zlib.compressobj(9)
    block = bytes(MiB)
    parts = [compressor.compress(block) for _ in range(size // MiB)]
    parts.append(compressor.flush())
    return b"".join(parts)


def chunks(data: bytes, size: int = 16 * 1024) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]
