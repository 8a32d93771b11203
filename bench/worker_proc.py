"""A worker process like `skypost worker`, with switches the CLI does not have:

--no-listen leaves out the PostgreSQL LISTEN thread, so that the worker only polls
(every SKYPOST_POLL_INTERVAL seconds). Used to measure what NOTIFY buys.

--patch-rate-limit-upsert works around a bug found by the benchmark, in this process only
(src/ is not changed): `resilience.spend()` returns a partial row ({remaining, updated_at}) and
`queries.save_rate_limit()` upserts it with INSERT ... ON CONFLICT, whose candidate row then
violates NOT NULL on rate_limits.consecutive_429 (SQLite and PostgreSQL alike). The patch
updates the existing row instead. Used only for the rate-limit run labelled "patched".

    python -m bench.worker_proc [--concurrency N] [--no-listen] [--patch-rate-limit-upsert]
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any

from skypost.app import Skypost
from skypost.config import load_settings


def patch_rate_limit_upsert() -> None:
    from skypost.store import queries as q

    original = q.save_rate_limit

    def save_rate_limit(conn: Any, key: str, **values: Any) -> None:
        if "consecutive_429" not in values:
            sets = ", ".join(f'"{c}" = :v_{c}' for c in values)
            conn.execute(f"UPDATE rate_limits SET {sets} WHERE key = :k",
                         {**{f"v_{c}": v for c, v in values.items()}, "k": key})
            if conn.rowcount:
                return
            values = {"consecutive_429": 0, **values}
        original(conn, key, **values)

    q.save_rate_limit = save_rate_limit  # pipeline.py calls it as q.save_rate_limit


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--no-listen", action="store_true")
    parser.add_argument("--patch-rate-limit-upsert", action="store_true")
    args = parser.parse_args()
    if args.patch_rate_limit_upsert:
        patch_rate_limit_upsert()
    app = Skypost(load_settings())
    if args.no_listen:
        # Worker.run() starts queue.listen in a thread when not in burst mode: make it return at once
        app.queue.listen = lambda stop: None  # type: ignore[method-assign]
    worker = app.make_worker(concurrency=args.concurrency)

    def stop(_signum: int, _frame: Any) -> None:
        worker.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    done = worker.run()
    app.close()
    print(f"worker stopped after {done} job(s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
