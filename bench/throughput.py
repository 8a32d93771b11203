"""Issues 6/7, items 3, 5 and 6: throughput and CPU per delivery against the fast stub PDS,
by worker count and database; createSession calls per account; worker memory."""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

from bench.common import (
    PY, REPO, Scratch, Workers, cli_worker_argv, doc_url, log, make_app, pg_backend_cpu, pg_free_connections,
    pg_commits, running_workers, sql_scalar, wait_until, worker_env,
)
from tests.support.pds import make_tid
from tests.support.stubpds import StubPDS

ACCOUNTS = 20  # posts go round-robin, one account each: workers do not wait on each other's order


def raw_baseline(procs: int, per_proc: int) -> dict[str, Any]:
    """The stub's own create throughput: `procs` bare httpx loops in their own processes."""
    with StubPDS() as stub:
        start_at = time.time() + 1.5  # every loop has imported httpx and logged in by then
        c0 = time.process_time()
        children = [subprocess.Popen([PY, "-m", "bench.rawclient", stub.url, f"raw{i}.test", str(per_proc),
                                      repr(start_at)], cwd=REPO, stdout=subprocess.PIPE, text=True)
                    for i in range(procs)]
        results = []
        for child in children:
            out, _ = child.communicate(timeout=120)
            results.append(json.loads(out.strip().splitlines()[-1]))
        stub_cpu = time.process_time() - c0
        total = sum(r["n"] for r in results)
        span = max(r["end"] for r in results) - min(r["start"] for r in results)
        return {"clients": procs, "requests": total, "seconds": span, "per_s": total / span,
                "client_cpu_per_request_ms": 1000 * sum(r["cpu_s"] for r in results) / total,
                "stub_cpu_per_request_ms": 1000 * stub_cpu / total,
                "errors": sum(r["errors"] for r in results), "records": stub.total_records()}


def _add_accounts(app: Any, stub: StubPDS, n: int) -> list[str]:
    handles = [f"user{i:02d}.test" for i in range(n)]
    for handle in handles:
        app.add_account(handle, "app-pass-word", service=stub.url)
    return handles


def _submit(app: Any, handles: list[str], first: int, count: int, prefix: str = "p") -> None:
    for n in range(first, first + count):
        app.submit({"id": f"{prefix}{n:06d}", "title": f"Post {n}", "excerpt": "An excerpt of the post.",
                    "url": doc_url(n), "accounts": [handles[n % len(handles)]]})


def skypost_run(engine: str, workers: int, deliveries: int, *, mode: str = "processes") -> dict[str, Any]:
    """`workers` worker processes (`python -m skypost.cli worker --concurrency 1`), or with
    mode="threads" one process with `--concurrency workers`. The queue is paused while the posts are
    submitted and the workers start; the clock runs from resume to the last record at the stub."""
    with StubPDS() as stub, Scratch(engine, "tput") as scratch:
        app = make_app(scratch.url, poll_interval=0.1)
        try:
            handles = _add_accounts(app, stub, ACCOUNTS)
            logins_at_add = sum(stub.state.logins.values())
            procs, conc = (workers, 1) if mode == "processes" else (1, workers)
            env = worker_env(scratch.url, poll_interval=0.1)
            with Workers(cli_worker_argv(conc), procs, env, scratch.dir) as pool:
                wait_until(lambda: (pool.check_alive(), running_workers(app) == procs)[1], 90, 0.1,
                           "the workers to start")
                # warm-up: a few posts per worker so that each has imported the SDK and opened its pools
                warm = 5 * workers
                _submit(app, handles, 0, warm, prefix="w")
                wait_until(lambda: stub.total_records() >= warm, 60, 0.02, "the warm-up posts")
                time.sleep(0.3)
                app.pause()
                time.sleep(0.3)
                t_sub = time.perf_counter()
                _submit(app, handles, 0, deliveries)
                submit_s = time.perf_counter() - t_sub
                idle_mem = pool.mem()
                if scratch.pg_name:
                    time.sleep(1.2)  # let the statistics of the submits be flushed
                    commits0 = pg_commits(scratch.pg_name)
                cpu0, pg0, me0 = pool.cpu(), pg_backend_cpu(scratch.pg_name) if scratch.pg_name else 0.0, time.process_time()
                t0 = time.monotonic()
                app.resume()
                marks: dict[int, float] = {}
                target = warm + deliveries
                deadline = t0 + 300
                while True:
                    done = stub.total_records() - warm
                    now = time.monotonic()
                    for frac in (10, 90):
                        if frac not in marks and done >= deliveries * frac / 100:
                            marks[frac] = now
                    if done >= deliveries:
                        break
                    if now > deadline:
                        raise TimeoutError(f"{engine} x{workers}: {done}/{deliveries} after 300 s")
                    pool.check_alive()
                    time.sleep(0.01)
                t1 = time.monotonic()
                cpu1, pg1, me1 = pool.cpu(), pg_backend_cpu(scratch.pg_name) if scratch.pg_name else 0.0, time.process_time()
                load_mem = pool.mem()
                # the database catches up with the stub (the outcome is recorded after the response)
                wait_until(lambda: app.health()["deliveries"].get("completed", 0) == target, 30, 0.05,
                           "every delivery to be recorded")
            commits = None
            if scratch.pg_name:
                app.close()  # its backend and the workers' have ended: their statistics are flushed
                time.sleep(1.2)
                commits = pg_commits(scratch.pg_name) - commits0
            counts = app.health()["deliveries"]
            claims = int(sql_scalar(app, "SELECT SUM(attempts) FROM jobs WHERE kind = 'syndicate'") or 0)
            jobs = int(sql_scalar(app, "SELECT COUNT(*) FROM jobs WHERE kind = 'syndicate'") or 0)
            seconds = t1 - t0
            result = {
                "engine": engine, "mode": mode, "workers": workers, "processes": procs, "threads_each": conc,
                "deliveries": deliveries, "seconds": seconds, "per_s": deliveries / seconds,
                "per_s_10_90": deliveries * 0.8 / (marks[90] - marks[10]) if marks[90] > marks[10] else None,
                "worker_cpu_per_delivery_ms": 1000 * (cpu1 - cpu0) / deliveries,
                "db_server_cpu_per_delivery_ms": 1000 * (pg1 - pg0) / deliveries if scratch.pg_name else None,
                "stub_cpu_per_delivery_ms": 1000 * (me1 - me0) / deliveries,
                "submit_s": submit_s,
                "idle_rss_mib": [m.get("VmRSS") for m in idle_mem],
                "peak_rss_mib": [m.get("VmHWM") for m in load_mem],
                "creates": stub.count("com.atproto.repo.createRecord"), "duplicates": stub.state.duplicates,
                "requests": stub.count(), "logins_at_account_add": logins_at_add,
                "logins_total": sum(stub.state.logins.values()), "statuses": counts,
                "claims_per_job": claims / jobs if jobs else None,
                "pg_commits_per_delivery": commits / deliveries if commits is not None else None,
            }
            assert stub.total_records() == target and stub.state.duplicates == 0, result
            return result
        finally:
            app.close()


def pg_process_budget(workers: int) -> bool:
    """Each worker process holds about 4 PostgreSQL connections (worker thread, heartbeat, main, LISTEN).
    The server is shared: keep 30 connections free for others."""
    return pg_free_connections() - 4 * workers - 2 >= 30


def logins(posts: int = 1000) -> dict[str, Any]:
    """createSession calls for `posts` posts to one account: skypost (worker) vs the plain script."""
    from bench.sdk_script import post_once

    out: dict[str, Any] = {"posts": posts}
    with StubPDS() as stub, Scratch("sqlite", "logins") as scratch:
        app = make_app(scratch.url)
        try:
            app.add_account("solo.test", "app-pass-word", service=stub.url)
            at_add = stub.state.logins.get("solo.test", 0)
            _submit(app, ["solo.test"], 0, posts)
            t0 = time.perf_counter()
            app.run_worker(burst=True)
            out["skypost_s"] = time.perf_counter() - t0
            out["skypost_records"] = stub.total_records()
            out["skypost_logins_at_add"] = at_add
            out["skypost_logins_total"] = stub.state.logins.get("solo.test", 0)
            out["skypost_refreshes"] = stub.count("com.atproto.server.refreshSession")
        finally:
            app.close()
    with StubPDS() as stub:
        t0 = time.perf_counter()
        for n in range(posts):
            post_once(stub.url, "solo.test", "app-pass-word", f"Post {n} {doc_url(n)}", rkey=make_tid())
        out["script_s"] = time.perf_counter() - t0
        out["script_records"] = stub.total_records()
        out["script_logins_total"] = stub.state.logins.get("solo.test", 0)
    return out


def idle_interpreter_rss(modules: str = "skypost, skypost.app, skypost.cli") -> dict[str, float]:
    """The memory baseline: an interpreter that imported skypost (its app and CLI), doing nothing."""
    code = (f"import json, {modules}\n"
            "mem = {l.split(':')[0]: int(l.split()[1]) / 1024 for l in open('/proc/self/status') "
            "if l.startswith(('VmRSS:', 'VmHWM:'))}\nprint(json.dumps(mem))")
    out = subprocess.run([PY, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60, check=True)
    return json.loads(out.stdout)


def run(quick: bool = False) -> dict[str, Any]:
    """Each skypost run is paired with a raw-baseline run of as many client processes, measured just
    before it (the machine is shared: a baseline measured minutes earlier would not be comparable)."""
    deliveries = 400 if quick else 1500
    results: dict[str, Any] = {"runs": [], "notes": []}
    configs = [(engine, n, "processes") for engine in ("sqlite", "postgresql") for n in (1, 2, 4, 8)]
    configs += [(engine, 4, "threads") for engine in ("sqlite", "postgresql")]
    if quick:
        configs = [c for c in configs if c[1] in (1, 4)]
    for engine, n, mode in configs:
        if engine == "postgresql" and mode == "processes" and not pg_process_budget(n):
            mode = "threads"
            results["notes"].append(f"postgresql x{n}: too few free server connections for {n} processes; "
                                    f"ran one process with {n} threads instead")
        log(f"throughput: raw httpx baseline, {n} client process(es)")
        baseline = raw_baseline(n, max(300, deliveries // n))
        log(f"throughput: {engine}, {n} worker {mode}, {deliveries} deliveries")
        run_result = skypost_run(engine, n, deliveries, mode=mode)
        run_result["baseline"] = baseline
        run_result["per_s_vs_baseline"] = run_result["per_s"] / baseline["per_s"]
        run_result["cpu_vs_baseline"] = run_result["worker_cpu_per_delivery_ms"] / baseline["client_cpu_per_request_ms"]
        results["runs"].append(run_result)
    log(f"logins: {200 if quick else 1000} posts to one account, skypost vs plain script")
    results["logins"] = logins(200 if quick else 1000)
    results["idle_interpreter_rss_mib"] = idle_interpreter_rss()
    # what a worker imports on its first job (the SDK's models are most of it)
    results["worker_modules_rss_mib"] = idle_interpreter_rss(
        "skypost.app, skypost.cli, skypost.worker, skypost.pipeline, skypost.bluesky.client, skypost.bluesky.compose, "
        "skypost.fetch")
    return results


if __name__ == "__main__":
    import sys

    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
