"""Timestamp identifiers (TIDs), the record keys of posts.

A TID is 13 base32-sortable characters: 53 bits of microseconds since the
epoch and 10 bits of clock id. Each delivery picks one at submit time and
uses it on every attempt, which makes a repeated create detectable.
"""

from __future__ import annotations

import random
import re
import threading
import time

_ALPHABET = "234567abcdefghijklmnopqrstuvwxyz"
TID_PATTERN = re.compile(r"^[234567abcdefghij][234567a-z]{12}$")

_lock = threading.Lock()
_last = 0


def _encode(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def new_tid(now_us: int | None = None, clock_id: int | None = None) -> str:
    """A fresh TID, strictly increasing within this process."""
    global _last
    with _lock:
        micros = now_us if now_us is not None else time.time_ns() // 1000
        if micros <= _last:
            micros = _last + 1
        _last = micros
    clock = random.randrange(1024) if clock_id is None else clock_id
    return _encode(micros & ((1 << 53) - 1), 11) + _encode(clock & 1023, 2)


def is_tid(value: str) -> bool:
    return bool(TID_PATTERN.match(value))
