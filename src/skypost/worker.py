"""The worker loop: claim a due job, run it, keep its lease alive, stop cleanly.

`stop()` (SIGTERM in the CLI) lets each thread finish the delivery in hand;
the rest of that post's work is put back in the queue at once.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
import dataclasses
from typing import Any, Callable, Mapping

from skypost.queue import JobQueue, Loader
from skypost.store import queries as q
from skypost.store.db import Database
from skypost.store.rows import JobRow

log = logging.getLogger("skypost.worker")


@dataclasses.dataclass(frozen=True)
class JobKind:
    """How a worker runs one kind of job: `run(job, owner, should_stop, loaded)`, where
    `loaded` is what `load(conn, job)` read in the claim's transaction (None without one)."""

    run: Callable[[JobRow, str, Callable[[], bool], Any], None]
    load: Loader | None = None


class Worker:
    def __init__(
        self,
        *,
        db: Database,
        queue: JobQueue,
        handlers: Mapping[str, JobKind],
        concurrency: int = 1,
        burst: bool = False,
        poll_interval: float = 1.0,
        worker_id: str | None = None,
    ):
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.db = db
        self.queue = queue
        self.handlers = dict(handlers)
        self._loaders = {kind: h.load for kind, h in self.handlers.items() if h.load is not None}
        self.concurrency = concurrency
        self.burst = burst
        self.poll_interval = poll_interval
        self.id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._stop = threading.Event()
        self._in_hand: dict[int, str] = {}  # job id -> thread's lease owner
        self._lock = threading.Lock()
        self.jobs_done = 0

    def stop(self) -> None:
        self._stop.set()
        self.queue.notify()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self) -> int:
        """Run until stop() (or, in burst mode, until nothing is due). Returns jobs run."""
        started = self.queue.clock()
        self._beat(state="running", started=started)
        beater = threading.Thread(target=self._heartbeat_loop, name="skypost-heartbeat", daemon=True)
        beater.start()
        if not self.burst:
            # idle workers on PostgreSQL wake on NOTIFY; SQLite relies on the in-process event and the poll
            threading.Thread(target=self.queue.listen, args=(self._stop,), name="skypost-listen",
                             daemon=True).start()
        threads = [threading.Thread(target=self._loop, args=(n,), name=f"skypost-worker-{n}")
                   for n in range(self.concurrency)]
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                while thread.is_alive():
                    thread.join(0.2)
        except KeyboardInterrupt:
            self.stop()
            for thread in threads:
                thread.join()
        finally:
            self._stop.set()
            beater.join(timeout=5)
            self._beat(state="stopped")
        return self.jobs_done

    def _loop(self, n: int) -> None:
        try:
            self._claim_loop(n)
        finally:
            self.db.release_thread()

    def _claim_loop(self, n: int) -> None:
        owner = f"{self.id}/{n}"
        while not self._stop.is_set():
            try:
                claimed = self.queue.claim(owner, loaders=self._loaders)
            except Exception:  # noqa: BLE001 - a database hiccup must not kill the worker
                log.exception("claiming a job failed")
                self._stop.wait(self.poll_interval)
                continue
            if claimed is None:
                if self.burst:
                    return
                self.queue.wait(self.poll_interval)
                continue
            self._run_job(*claimed, owner=owner)

    def _run_job(self, job: JobRow, loaded: Any, *, owner: str) -> None:
        with self._lock:
            self._in_hand[job.id] = owner
        try:
            handler = self.handlers.get(job.kind)
            if handler is None:
                self.queue.fail(job.id, owner, f"no handler for job kind {job.kind!r}")
                return
            handler.run(job, owner, self._stop.is_set, loaded)
            with self._lock:
                self.jobs_done += 1
        except Exception as exc:  # noqa: BLE001 - the job is retried after a pause, never lost
            log.exception("job %s (%s) failed", job.id, job.kind)
            self.queue.reschedule(job.id, owner, self.queue.clock() + 30.0,
                                  error=f"{type(exc).__name__}: {exc}")
        finally:
            with self._lock:
                self._in_hand.pop(job.id, None)

    def _heartbeat_loop(self) -> None:
        interval = max(0.05, min(self.queue.lease / 3.0, 10.0))
        while not self._stop.wait(interval):
            try:
                self._beat(state="running")
                with self._lock:
                    in_hand = dict(self._in_hand)
                for owner in set(in_hand.values()):
                    self.queue.heartbeat(owner, [j for j, o in in_hand.items() if o == owner])
            except Exception:  # noqa: BLE001
                log.exception("heartbeat failed")
        self.db.release_thread()

    def _beat(self, *, state: str, started: float | None = None) -> None:
        now = self.queue.clock()
        values: dict[str, Any] = {"host": socket.gethostname(), "pid": os.getpid(), "heartbeat_at": now,
                                  "state": state, "jobs_done": self.jobs_done}
        if started is not None:
            values["started_at"] = started
        else:
            with self.db.connect() as conn:
                values["started_at"] = q.worker_started_at(conn, self.id) or now
        with self.db.transaction() as conn:
            q.save_worker(conn, self.id, **values)
