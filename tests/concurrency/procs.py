"""Child processes for the concurrency tests: each is a real interpreter with its own
connections, started together at a barrier (a file that appears)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def wait_for(barrier: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not barrier.exists():
        if time.monotonic() > deadline:
            raise TimeoutError("the barrier never opened")
        time.sleep(0.001)


def submit_ids(url: str, key: str, barrier: str, ids: list[str]) -> dict:
    from skypost import Skypost
    from skypost.config import load_settings

    app = Skypost(load_settings(env={}, config_file=None, database_url=url, secret_key=key,
                                allow_private_urls=True))
    wait_for(Path(barrier))
    statuses, errors = [], []
    for post_id in ids:
        try:
            statuses.append(app.submit({"id": post_id, "title": f"Post {post_id}",
                                        "url": f"https://blog.example.com/{post_id}"})["status"])
        except Exception as exc:  # noqa: BLE001 - the test counts them
            errors.append(f"{type(exc).__name__}: {exc}")
    app.close()
    return {"statuses": statuses, "errors": errors}


def spend(url: str, key: str, barrier: str, rounds: int) -> dict:
    from skypost.store import queries as q
    from skypost.store.db import Database

    db = Database(url)
    wait_for(Path(barrier))
    spent = 0
    for _ in range(rounds):
        with db.transaction() as conn:
            if q.spend_budget(conn, key, cost=1, reserve=1, now=time.time()) is None:
                spent += 1
    db.dispose()
    return {"spent": spent}


def worker(url: str, key: str, skew: float, lease: float) -> dict:
    """A burst worker on a host whose clock is `skew` seconds off."""
    from skypost import Skypost
    from skypost.config import load_settings

    app = Skypost(load_settings(env={}, config_file=None, database_url=url, secret_key=key,
                                allow_private_urls=True, job_lease=lease, poll_interval=0.05),
                  host_clock=lambda: time.time() + skew)
    done = app.run_worker(burst=True)
    app.close()
    return {"jobs": done}


if __name__ == "__main__":
    name, args = sys.argv[1], json.loads(sys.argv[2])
    print(json.dumps(globals()[name](**args)))
