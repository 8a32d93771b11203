"""Many worker processes share the queue: every delivery exactly once, per-account
order kept, and the jobs of a SIGKILLed worker recovered after its lease."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from skypost import Skypost
from skypost.config import load_settings
from tests.conftest import TEST_KEY
from tests.support.stubpds import StubPDS

ACCOUNTS = 20
POSTS = 100  # x ACCOUNTS = 2000 deliveries


def test_four_workers_2000_deliveries_exactly_once_in_order(db_url, tmp_path):
    with StubPDS() as stub:
        settings = load_settings(env={}, config_file=None, database_url=db_url, secret_key=TEST_KEY)
        app = Skypost(settings)
        handles = [f"user{n:02d}.test" for n in range(ACCOUNTS)]
        # the stub is on loopback: only adding the accounts may reach a private address
        with Skypost(settings.replace(allow_private_urls=True)) as admin:
            for handle in handles:
                admin.add_account(handle, "app-pass-word", service=stub.url)
        # a documentation address: the card's page fetch is refused at once (no DNS, no peer but the stub)
        for n in range(POSTS):
            app.submit({"id": f"p{n:04d}", "title": f"Post {n}", "excerpt": "An excerpt.",
                        "url": f"https://192.0.2.1/{n}"})
        app.close()
        env = {k: v for k, v in os.environ.items() if not k.startswith("SKYPOST_")}
        env.update(SKYPOST_DATABASE_URL=db_url, SKYPOST_SECRET_KEY=TEST_KEY, SKYPOST_JOB_LEASE="3",
                   SKYPOST_POLL_INTERVAL="0.2", SKYPOST_RETRY_DELAYS="1,1,1")
        workers = [subprocess.Popen([sys.executable, "-m", "skypost.cli", "worker", "--concurrency", "2"],
                                    env=env, stdout=subprocess.DEVNULL, stderr=open(tmp_path / f"w{n}.log", "w"))
                   for n in range(4)]
        try:
            deadline = time.monotonic() + 60
            while stub.total_records() < 300 and time.monotonic() < deadline:
                time.sleep(0.1)
            workers[0].send_signal(signal.SIGKILL)  # mid-run, with deliveries in hand
            workers[0].wait(timeout=10)
            deadline = time.monotonic() + 240
            app = Skypost(settings)
            while time.monotonic() < deadline:
                counts = app.health()["deliveries"]
                if counts.get("completed", 0) + counts.get("failed", 0) == ACCOUNTS * POSTS:
                    break
                time.sleep(0.5)
        finally:
            for w in workers:
                if w.poll() is None:
                    w.send_signal(signal.SIGTERM)
            for w in workers:
                try:
                    w.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    w.kill()
        counts = app.health()["deliveries"]
        assert counts == {"completed": ACCOUNTS * POSTS}, (counts, (tmp_path / "w1.log").read_text()[-3000:])
        assert stub.total_records() == ACCOUNTS * POSTS  # nothing published twice
        for handle in handles:
            did = app.accounts()[handles.index(handle)]["did"]
            created = stub.records_of(did)
            assert len(created) == POSTS
            assert created == sorted(created), f"@{handle}: posts out of submit order"
        # every delivery's result names the record the stub holds
        status = app.status("p0042")
        assert all(d["uri"] and d["uri"].endswith(d["url"].rsplit("/", 1)[1]) for d in status["deliveries"])
        assert stub.count("com.atproto.server.createSession") == ACCOUNTS  # one login each, at account add
        app.close()
