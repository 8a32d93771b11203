"""The durable job scheduler: claim with a lease, heartbeat, release.

Jobs live in the database (like Action Scheduler's actions): a worker that
dies simply stops renewing its lease, and the job is claimed again once the
lease expires.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Mapping, Sequence

from skypost.store import queries as q
from skypost.store.db import Conn, Database
from skypost.store.rows import JobRow

Clock = Callable[[], float]
# reads a job's handler wants, done in the claim's own transaction (one commit fewer)
Loader = Callable[[Conn, JobRow], Any]


class JobQueue:
    def __init__(self, db: Database, *, clock: Clock, lease: float):
        self.db = db
        self.clock = clock
        self.lease = lease
        # in-process wake-up: submit() sets it so an idle worker does not wait for its poll
        self.wakeup = threading.Event()

    def schedule(self, kind: str, args: dict[str, Any], *, run_at: float | None = None,
                 post_seq: int | None = None) -> int:
        now = self.clock()
        with self.db.transaction() as conn:
            job_id = q.insert_job(conn, kind=kind, args=args, run_at=run_at if run_at is not None else now,
                                  now=now, post_seq=post_seq)
            conn.after_commit(self.notify)
        return job_id

    def schedule_recurring(self, kind: str, *, run_at: float) -> bool:
        """The one job of a recurring kind, unless it is waiting or running already."""
        with self.db.transaction() as conn:
            return q.insert_recurring_job(conn, kind=kind, run_at=run_at, now=self.clock())

    def notify(self) -> None:
        self.wakeup.set()

    def wait(self, timeout: float) -> None:
        """Idle until woken or `timeout`. On SQLite another process's commit also wakes us:
        PRAGMA data_version is checked every 50 ms (no lock taken), so a separate worker
        process picks up a submit in tens of milliseconds instead of a whole poll."""
        if self.db.is_sqlite:
            deadline = time.monotonic() + timeout
            start = self.db.data_version()
            while (left := deadline - time.monotonic()) > 0:
                if self.wakeup.wait(min(0.05, left)) or self.db.data_version() != start:
                    break
        else:
            self.wakeup.wait(timeout)
        self.wakeup.clear()

    def listen(self, stop: threading.Event) -> None:
        """PostgreSQL: set `wakeup` on every NOTIFY until `stop` (run it in a thread)."""
        if not self.db.is_postgres:
            return
        import psycopg

        while not stop.is_set():
            try:
                with psycopg.connect(self.db.conninfo(), autocommit=True) as conn:
                    conn.execute(f"LISTEN {q.JOBS_CHANNEL}")
                    while not stop.is_set():
                        for _ in conn.notifies(timeout=1.0):
                            self.wakeup.set()
            except psycopg.Error:
                stop.wait(1.0)  # the database went away: reconnect, polling covers the gap

    def claim(self, owner: str, kinds: Sequence[str] | None = None,
              loaders: Mapping[str, Loader] | None = None) -> tuple[JobRow, Any] | None:
        """The next due job and what its kind's loader read, in one transaction; None when
        nothing is due or syndication is paused (pause holds everything)."""
        now = self.clock()
        with self.db.transaction() as conn:
            if q.get_setting(conn, "paused") == "1":
                return None
            job = q.claim_job(conn, owner=owner, now=now, lease=self.lease, kinds=kinds)
            if job is None:
                return None
            loader = (loaders or {}).get(job.kind)
            return job, loader(conn, job) if loader else None

    def heartbeat(self, owner: str, job_ids: Sequence[int]) -> int:
        now = self.clock()
        with self.db.transaction() as conn:
            return q.extend_leases(conn, owner=owner, job_ids=job_ids, until=now + self.lease, now=now)

    def complete(self, job_id: int, owner: str) -> bool:
        with self.db.transaction() as conn:
            return q.release_job(conn, job_id, owner=owner, status="done", run_at=None, now=self.clock())

    def reschedule(self, job_id: int, owner: str, run_at: float, error: str | None = None) -> bool:
        with self.db.transaction() as conn:
            return q.release_job(conn, job_id, owner=owner, status="todo", run_at=run_at, now=self.clock(),
                                 error=error)

    def fail(self, job_id: int, owner: str, error: str) -> bool:
        with self.db.transaction() as conn:
            return q.release_job(conn, job_id, owner=owner, status="failed", run_at=None, now=self.clock(),
                                 error=error)

    def next_due_at(self) -> float | None:
        with self.db.connect() as conn:
            return q.next_due_at(conn)
