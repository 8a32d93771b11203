"""The time every worker agrees on: the database's.

Leases, breaker cooldowns and rate-limit resets are compared by workers on many
hosts. A host whose clock runs ahead would steal jobs whose lease has not run
out, so "now" is the database server's time, read through an offset that is
measured again every `resync` seconds (no round trip per reading).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

log = logging.getLogger("skypost.clock")

Clock = Callable[[], float]

# a skew worth telling the operator about (it is corrected either way)
NOTABLE_SKEW = 2.0


class DatabaseClock:
    def __init__(self, server_time: Clock, *, local: Clock = time.time, resync: float = 60.0):
        self._server_time = server_time
        self._local = local
        self._resync = resync
        self._lock = threading.Lock()
        self._offset = 0.0
        self._synced_at: float | None = None

    @property
    def offset(self) -> float:
        """Seconds to add to this host's clock to get the database's."""
        return self._offset

    def __call__(self) -> float:
        now = self._local()
        synced = self._synced_at
        if synced is None or not 0 <= now - synced < self._resync:
            self.sync()
            now = self._local()
        return now + self._offset

    def sync(self) -> None:
        with self._lock:
            before = self._local()
            try:
                server = self._server_time()
            except Exception:  # noqa: BLE001 - keep the last offset; the next reading tries again
                log.warning("could not read the database's time; keeping the last offset", exc_info=True)
                self._synced_at = before
                return
            after = self._local()
            offset = server - (before + after) / 2
            if abs(offset) > NOTABLE_SKEW and (self._synced_at is None or abs(offset - self._offset) > 1):
                log.warning("this host's clock differs from the database's by %+.1f s; "
                            "using the database's time", offset)
            self._offset = offset
            self._synced_at = after
