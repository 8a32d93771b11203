"""Running `skypost serve`: uvicorn, plus a worker in a background thread.

Shutdown is graceful: on SIGTERM/SIGINT uvicorn stops accepting requests and
finishes those in flight, then the lifespan stops the worker, which finishes the
delivery in hand and puts the rest of its post back in the queue.
"""

from __future__ import annotations

import ipaddress
import logging
import signal
import threading
from typing import Any

import uvicorn

from skypost.app import Skypost
from skypost.cli import exit_now

log = logging.getLogger("skypost.web.serve")


class EmbeddedWorker:
    """app.make_worker(...).run() in a thread, stopped with the server."""

    def __init__(self, skypost: Skypost, *, concurrency: int = 1, join_timeout: float | None = None):
        self.skypost = skypost
        self.concurrency = concurrency
        # a delivery in hand may take a network timeout or two to finish
        self.join_timeout = join_timeout if join_timeout is not None else skypost.settings.http_timeout * 2 + 5
        self._worker: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._worker = self.skypost.make_worker(concurrency=self.concurrency)
        self._thread = threading.Thread(target=self._run, name="skypost-embedded-worker", daemon=True)
        self._thread.start()
        log.info("embedded worker started")

    def _run(self) -> None:
        try:
            done = self._worker.run()
            log.info("embedded worker stopped after %d job(s)", done)
        except Exception:  # noqa: BLE001 - logged; the server keeps answering
            log.exception("the embedded worker crashed")

    def stop(self) -> None:
        if self._worker is None or self._thread is None:
            return
        self._worker.stop()
        self._thread.join(self.join_timeout)
        if self._thread.is_alive():
            log.warning("the embedded worker did not stop within %.0f s; its job's lease will expire",
                        self.join_timeout)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def serve(skypost: Skypost, *, host: str = "127.0.0.1", port: int = 8000, worker: bool = True,
          log_level: str = "info") -> None:
    """Run until SIGTERM / SIGINT; returns after a graceful shutdown (a second SIGINT: at once)."""
    from skypost.web.app import create_app

    services = [EmbeddedWorker(skypost)] if worker else []
    app = create_app(skypost, services=services)
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, lifespan="on", server_header=False,
                            proxy_headers=False, timeout_graceful_shutdown=10)
    server = _Server(config)
    # uvicorn re-raises the signal it handled once it has shut down; with these handlers
    # that is a no-op and `skypost serve` exits 0 after a clean shutdown
    previous = {sig: signal.signal(sig, _ignore) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run()
    except SystemExit as exc:  # uvicorn exits when it cannot bind
        if exc.code not in (0, None):
            raise ServeError(f"could not serve on {host}:{port} (see the log above)") from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for service in services:  # already stopped after a clean shutdown; not after a failed start
            service.stop()
    if not server.started:
        raise ServeError(f"could not serve on {host}:{port} (see the log above)")


class _Server(uvicorn.Server):
    """uvicorn's server, but a second Ctrl-C leaves at once instead of waiting for the
    embedded worker to finish the delivery in hand."""

    def handle_exit(self, sig: int, frame: Any) -> None:
        if sig == signal.SIGINT and self.should_exit:
            exit_now()
        if sig == signal.SIGINT:
            log.info("Ctrl-C: shutting down gracefully (Ctrl-C again to exit at once)")
        super().handle_exit(sig, frame)


class ServeError(RuntimeError):
    pass


def _ignore(signum: int, _frame: Any) -> None:
    log.info("received signal %d after shutdown", signum)
