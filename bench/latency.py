"""Issues 6/7, items 1 and 2, against the real @atproto/pds on loopback:
submit latency (library, CLI, synchronous path, plain SDK script) and
publish→live latency with an idle worker (SQLite polling, PostgreSQL NOTIFY vs polling)."""

from __future__ import annotations

import random
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable

from bench.common import (
    PY, REPO, Scratch, Workers, cli_worker_argv, doc_url, log, make_app, rkey_of, running_workers, summary,
    wait_until, worker_env,
)
from bench.sdk_script import post_once
from tests.support.pds import DEFAULT_PDS_DIR, LocalPDS, ensure_pds_installed

COLLECTION = "app.bsky.feed.post"


def start_pds(log_dir: Path) -> LocalPDS:
    ensure_pds_installed(DEFAULT_PDS_DIR)
    pds = LocalPDS(DEFAULT_PDS_DIR, log_dir=log_dir)
    pds.start()  # no proxy: the public URL is where it listens
    return pds


def _post(prefix: str, n: int) -> dict[str, Any]:
    return {"id": f"{prefix}{n:05d}", "title": f"Benchmark post {n}", "excerpt": "An excerpt of the post.",
            "url": doc_url(n)}


def _timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


# --- item 1: submit latency ---------------------------------------------------------------

def submit_latency(pds: LocalPDS, account: Any, quick: bool) -> dict[str, Any]:
    n_lib, n_cli, n_sync, n_sdk, n_script = (60, 6, 10, 4, 3) if quick else (300, 20, 30, 12, 8)
    out: dict[str, Any] = {}

    for engine, n in (("sqlite", n_lib), ("postgresql", n_lib // 2)):
        log(f"submit: library app.submit on {engine} x{n}")
        with Scratch(engine, "submit") as scratch:
            app = make_app(scratch.url)
            try:
                app.add_account(account.handle, account.app_password, service=pds.url)
                for i in range(5):  # warm-up: first connection, statement caches
                    app.submit(_post("warm", i))
                out[f"library_{engine}"] = summary([_timed(lambda i=i: app.submit(_post("lib", i))) for i in range(n)])
            finally:
                app.close()

    log(f"submit: CLI `skypost submit` x{n_cli} and `python -c pass` x{n_cli}")
    with Scratch("sqlite", "cli") as scratch:
        app = make_app(scratch.url)
        app.add_account(account.handle, account.app_password, service=pds.url)
        app.close()
        exe = Path(PY).parent / "skypost"
        argv0 = [str(exe)] if exe.exists() else [PY, "-m", "skypost.cli"]
        env = worker_env(scratch.url)

        def cli(i: int) -> None:
            doc = _post("cli", i)
            subprocess.run([*argv0, "submit", "--id", doc["id"], "--title", doc["title"], "--url", doc["url"],
                            "--excerpt", doc["excerpt"]], env=env, cwd=scratch.dir, check=True,
                           stdout=subprocess.DEVNULL)

        def bare(_i: int) -> None:
            subprocess.run([PY, "-c", "pass"], env=env, cwd=scratch.dir, check=True)

        cli(10_000), bare(0)  # warm the page cache
        cli_times, bare_times = [], []
        for i in range(n_cli):  # interleaved: both see the same machine load
            cli_times.append(_timed(lambda i=i: cli(i)))
            bare_times.append(_timed(lambda i=i: bare(i)))
        out["cli"] = summary(cli_times)
        out["python_c_pass"] = summary(bare_times)

    log(f"submit: synchronous path app.submit(sync=True) x{n_sync} against the real PDS")
    with Scratch("sqlite", "sync") as scratch:
        app = make_app(scratch.url)
        try:
            app.add_account(account.handle, account.app_password, service=pds.url)
            out["sync_first_call_s"] = _timed(lambda: _check_completed(app.submit(_post("syncw", 0), sync=True)))
            _check_completed(app.submit(_post("syncw", 1), sync=True))
            out["sync"] = summary([_timed(lambda i=i: _check_completed(app.submit(_post("sync", i), sync=True)))
                                   for i in range(n_sync)])
        finally:
            app.close()

    log(f"submit: plain SDK login+create per post, in-process x{n_sdk}, one process per post x{n_script}")
    post_once(pds.url, account.handle, account.app_password, "warm-up")
    sdk = [post_once(pds.url, account.handle, account.app_password, f"SDK post {i} {doc_url(i)}")
           for i in range(n_sdk)]
    out["sdk_inprocess"] = summary([r["login_s"] + r["create_s"] for r in sdk])
    out["sdk_inprocess_login"] = summary([r["login_s"] for r in sdk])
    out["sdk_inprocess_create"] = summary([r["create_s"] for r in sdk])

    def script(i: int) -> None:
        subprocess.run([PY, "-m", "bench.sdk_script", pds.url, account.handle, account.app_password,
                        f"script post {i} {doc_url(i)}"], cwd=REPO, check=True, stdout=subprocess.DEVNULL)

    out["sdk_script"] = summary([_timed(lambda i=i: script(i)) for i in range(n_script)])
    out["cli_beyond_startup_s"] = out["cli"]["p50"] - out["python_c_pass"]["p50"]
    out["sdk_script_beyond_startup_s"] = out["sdk_script"]["p50"] - out["python_c_pass"]["p50"]
    return out


def _check_completed(status: dict[str, Any]) -> None:
    if status["status"] != "completed":
        raise RuntimeError(f"sync submit did not complete: {status}")


# --- item 2: publish → live ------------------------------------------------------------------

def _wait_live(pds: LocalPDS, did: str, rkey: str, timeout: float = 15.0) -> float:
    """Poll the PDS (getRecord, every 5 ms) until the record exists; returns time.perf_counter() then."""
    deadline = time.perf_counter() + timeout
    while True:
        if pds.get_record(did, COLLECTION, rkey) is not None:
            return time.perf_counter()
        if time.perf_counter() > deadline:
            raise TimeoutError(f"record {rkey} not live after {timeout} s")
        time.sleep(0.005)


def _measure_live(pds: LocalPDS, app: Any, n: int, prefix: str, rng: random.Random) -> list[float]:
    lat = []
    for i in range(n):
        time.sleep(rng.uniform(0.0, 1.0))  # a random phase against the worker's 1 s poll
        doc = _post(prefix, i)
        t0 = time.perf_counter()
        app.submit(doc)
        rkey, did = rkey_of(app, doc["id"])
        lat.append(_wait_live(pds, did, rkey) - t0)
    return lat


def publish_to_live(pds: LocalPDS, account: Any, quick: bool) -> dict[str, Any]:
    n = 5 if quick else 20
    rng = random.Random(7)
    out: dict[str, Any] = {"poll_interval_s": 1.0}

    log(f"live: direct createRecord with a logged-in SDK client x{n}")
    from atproto import Client

    client = Client(base_url=pds.url)
    client.login(account.handle, account.app_password, fetch_bsky_profile=False)
    did = client._session.did  # noqa: SLF001

    def create(i: int) -> None:
        client.com.atproto.repo.create_record(data={"repo": did, "collection": COLLECTION, "record": {
            "$type": COLLECTION, "text": f"direct {i}", "createdAt": "2026-01-01T00:00:00Z"}})

    create(-1)
    out["direct_create"] = summary([_timed(lambda i=i: create(i)) for i in range(n)])
    client.request.close()

    # a: a worker thread in the submitting process (the in-process wake-up event)
    log(f"live: SQLite, worker thread in the submitting process x{n}")
    with Scratch("sqlite", "live-thread") as scratch:
        app = make_app(scratch.url, poll_interval=1.0)
        try:
            app.add_account(account.handle, account.app_password, service=pds.url)
            worker = app.make_worker(concurrency=1)
            thread = threading.Thread(target=worker.run, name="bench-worker", daemon=True)
            thread.start()
            _measure_live(pds, app, 2, "warm", rng)
            out["sqlite_thread"] = summary(_measure_live(pds, app, n, "t", rng))
            worker.stop()
            thread.join(30)
        finally:
            app.close()

    # b-d: worker processes; the submitting app is another process, so only polling or NOTIFY wake them
    cases = [("sqlite_process_poll", "sqlite", cli_worker_argv(1)),
             ("postgresql_process_notify", "postgresql", cli_worker_argv(1)),
             ("postgresql_process_poll_only", "postgresql", [PY, "-m", "bench.worker_proc", "--no-listen"])]
    for name, engine, argv in cases:
        log(f"live: {name} x{n}")
        with Scratch(engine, "live") as scratch:
            app = make_app(scratch.url, poll_interval=1.0)
            try:
                app.add_account(account.handle, account.app_password, service=pds.url)
                with Workers(argv, 1, worker_env(scratch.url, poll_interval=1.0), scratch.dir) as pool:
                    wait_until(lambda: (pool.check_alive(), running_workers(app) == 1)[1], 60, 0.1, "the worker")
                    _measure_live(pds, app, 2, "warm", rng)
                    out[name] = summary(_measure_live(pds, app, n, "p", rng))
            finally:
                app.close()
    return out


def run(log_dir: Path, quick: bool = False) -> dict[str, Any]:
    t0 = time.perf_counter()
    pds = start_pds(log_dir)
    try:
        log(f"real PDS up in {pds.startup_s:.1f} s at {pds.url}")
        account = pds.create_account("bench")
        result = {"pds_startup_s": pds.startup_s,
                  "submit": submit_latency(pds, account, quick),
                  "live": publish_to_live(pds, account, quick)}
    finally:
        pds.stop()
    result["seconds"] = time.perf_counter() - t0
    return result


if __name__ == "__main__":
    import json
    import sys
    import tempfile

    print(json.dumps(run(Path(tempfile.mkdtemp()), quick="--quick" in sys.argv), indent=2))
