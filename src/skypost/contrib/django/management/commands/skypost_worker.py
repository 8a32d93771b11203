"""`manage.py skypost_worker [--burst] [--concurrency N]`: `skypost worker`, configured by the
site's settings.SKYPOST."""

from __future__ import annotations

import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from skypost.contrib.django.apps import get_skypost


class Command(BaseCommand):
    help = "Publish the syndicated posts to Bluesky (the skypost worker; stops on SIGTERM)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--burst", action="store_true",
                            help="run until nothing is due, then exit")
        parser.add_argument("--concurrency", type=int, default=1, help="jobs worked on at once")

    def handle(self, *args: Any, burst: bool = False, concurrency: int = 1, **options: Any) -> None:
        worker = get_skypost().make_worker(burst=burst, concurrency=max(1, concurrency))

        def stop(signum: int, _frame: Any) -> None:
            # finish the delivery in hand: a half-sent post is what the stop must avoid
            self.stderr.write(f"received signal {signum}: finishing the delivery in hand")
            worker.stop()

        if threading.current_thread() is threading.main_thread():  # signals need the main thread
            signal.signal(signal.SIGTERM, stop)
            signal.signal(signal.SIGINT, stop)
        done = worker.run()
        self.stdout.write(f"skypost worker stopped after {done} job(s)")
