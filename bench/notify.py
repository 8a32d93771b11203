"""Webhook events sent per second to a local receiver (one worker thread), on SQLite and
PostgreSQL, against a bare httpx loop POSTing the same bodies to the same receiver.

    .venv/bin/python -m bench.notify [--events N]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from typing import Any

import httpx

from skypost import Skypost
from skypost.config import load_settings
from tests.conftest import TEST_KEY, _pg_create
from tests.conversation.support import WebhookReceiver, insert_interaction, insert_post, outbox_rows


def _app(url: str) -> Skypost:
    settings = load_settings(env={}, config_file=None, database_url=url, secret_key=TEST_KEY,
                             allow_private_urls=True, poll_interval=0.05)
    return Skypost(settings)


def measure(url: str, events: int) -> dict[str, Any]:
    app = _app(url)
    receiver = WebhookReceiver(time.time)
    try:
        receiver.secret = app.add_notify(receiver.url, events=["interaction.created"])
        seq = insert_post(app, "p1", "")  # no URL: webhooks only, no Webmention rows
        for _ in range(events):
            insert_interaction(app, seq, "like")
        started = time.perf_counter()
        app.run_worker(burst=True)
        elapsed = time.perf_counter() - started
        rows = outbox_rows(app)
        assert len(rows) == events and {r["status"] for r in rows} == {"sent"}
        assert len(receiver.unique()) == events
        bodies = [r["payload"].encode() for r in rows]
        # the baseline: the same POSTs, nothing recorded, a new connection each (as skypost's
        # fetcher makes: it pins each request to the address it checked)
        with httpx.Client(limits=httpx.Limits(max_keepalive_connections=0)) as client:
            started = time.perf_counter()
            for body in bodies:
                client.post(receiver.url, content=body, headers={"Content-Type": "application/json"})
            baseline = time.perf_counter() - started
        return {"events": events, "seconds": elapsed, "per_second": events / elapsed,
                "baseline_per_second": events / baseline}
    finally:
        receiver.close()
        app.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = {"sqlite": measure(f"sqlite:///{tmp}/bench.db", args.events)}
    pg_url, drop = _pg_create()
    try:
        results["postgresql"] = measure(pg_url, args.events)
    finally:
        drop()
    for name, r in results.items():
        print(f"{name}: {r['events']} webhooks in {r['seconds']:.2f} s = {r['per_second']:.0f} events/s "
              f"(a bare httpx loop, nothing stored: {r['baseline_per_second']:.0f} POSTs/s)")


if __name__ == "__main__":
    main()
