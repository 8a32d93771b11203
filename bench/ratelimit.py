"""Issues 6/7, item 4: how much of Bluesky's rate budget skypost uses, and how many 429s it meets.

The stub PDS enforces the per-IP limit (3000 requests / 5 min) and the per-account write
limit (5000 points / hour, a create costs 3) on a compressed clock; its RateLimit-Reset
headers are real Unix times (whole seconds, as Bluesky sends them). A fixed-window limiter
allows `limit` per window; what a client achieves is what it got accepted in each complete
window divided by the time from the first window's start to the next one's (a client that
resumes late after a reset starts the next window late and loses that time).
"""

from __future__ import annotations

import time
from typing import Any

from bench.common import (
    PY, Scratch, Workers, cli_worker_argv, doc_url, log, make_app, running_workers, sql_scalar, wait_until, worker_env,
)
from tests.support.stubpds import Limits, StubPDS, did_for


class TracingStub(StubPDS):
    """The stub PDS, recording every window of every limit: start (compressed time) → points used."""

    def __init__(self) -> None:
        super().__init__()
        self.ip_windows: dict[float, int] = {}
        self.account_windows: dict[str, dict[float, int]] = {}
        self.armed_at: float | None = None
        self.series: list[tuple[float, int, int]] = []  # (seconds since armed, accepted so far, 429s so far)
        self._accepted = 0

    def arm(self, limits: Limits) -> None:
        """Turn the limits on now (set-up traffic such as the logins of `account add` is not counted)."""
        with self._lock:
            self.limits = limits
            self._t0 = time.monotonic()
            self._ip_window = None
            self._account_windows = {}
            self.state.rejected_429 = 0
            self.state.calls = {}
            self.armed_at = time.monotonic()
            self.series = [(0.0, 0, 0)]
            self._accepted = 0

    def _check_limits(self, did: str | None, points: int) -> tuple[bool, dict[str, str]]:
        allowed, headers = super()._check_limits(did, points)
        if self.armed_at is not None:
            self._accepted += allowed
            now = time.monotonic() - self.armed_at
            if now - self.series[-1][0] >= 0.1:
                self.series.append((now, self._accepted, self.state.rejected_429 + (not allowed)))
        if self._ip_window is not None:
            self.ip_windows[self._ip_window.started] = self._ip_window.used
        window = self._account_windows.get(did or "")
        if window is not None:
            self.account_windows.setdefault(did or "", {})[window.started] = window.used
        return allowed, headers


def efficiency(windows: dict[float, int], limit: int, seconds: float) -> dict[str, Any] | None:
    """Achieved rate over the complete windows as a fraction of limit/seconds (both compressed time)."""
    starts = sorted(windows)
    if len(starts) < 2:
        return None
    used = sum(windows[s] for s in starts[:-1])
    span = starts[-1] - starts[0]
    return {"complete_windows": len(starts) - 1, "used": used, "allowed": limit * (len(starts) - 1),
            "span_windows": span / seconds, "fill": used / (limit * (len(starts) - 1)),
            "rate_vs_allowed": (used / span) / (limit / seconds)}


def rate_vs_allowed(windows: dict[float, int], limit: int, seconds: float, elapsed: float) -> dict[str, Any]:
    """Over complete windows when there are any; else what was used over the whole run (compressed time)."""
    eff = efficiency(windows, limit, seconds)
    if eff is not None:
        return {**eff, "method": "complete windows"}
    used = sum(windows.values())
    return {"complete_windows": 0, "used": used, "span_windows": elapsed / seconds, "method": "whole run",
            "rate_vs_allowed": (used / elapsed) / (limit / seconds) if elapsed > 0 else 0.0}


def scenario(name: str, *, limits: Limits, accounts: int, posts: int, processes: int, stop_when: Any,
             duration: float, argv: list[str], poll_interval: float = 0.1, engine: str = "sqlite") -> dict[str, Any]:
    """Runs until `stop_when(stub)` (enough complete windows) or `duration` seconds, whichever is first."""
    stub = TracingStub().start()
    try:
        with Scratch(engine, "rate") as scratch:
            app = make_app(scratch.url, poll_interval=poll_interval)
            try:
                handles = [f"acct{i:02d}.test" for i in range(accounts)]
                for handle in handles:
                    app.add_account(handle, "app-pass-word", service=stub.url)
                app.pause()
                for n in range(posts):
                    app.submit({"id": f"r{n:06d}", "title": f"Post {n}", "excerpt": "An excerpt.",
                                "url": doc_url(n), "accounts": [handles[n % accounts]]})
                env = worker_env(scratch.url, poll_interval=poll_interval)
                with Workers(argv, processes, env, scratch.dir) as pool:
                    wait_until(lambda: (pool.check_alive(), running_workers(app) == processes)[1], 90, 0.1,
                               "the workers to start")
                    time.sleep(0.5)
                    cpu0 = pool.cpu()
                    stub.arm(limits)
                    t0 = time.monotonic()
                    app.resume()
                    stopped_early = False
                    while time.monotonic() - t0 < duration:
                        pool.check_alive()
                        if stop_when(stub):
                            stopped_early = True
                            break
                        time.sleep(0.05)
                    seconds = time.monotonic() - t0
                    with stub._lock:  # noqa: SLF001 - a consistent snapshot
                        ip = dict(stub.ip_windows)
                        acc = {k: dict(v) for k, v in stub.account_windows.items()}
                        rejected = stub.state.rejected_429
                        calls = dict(stub.state.calls)
                        series = list(stub.series) + [(time.monotonic() - (stub.armed_at or 0.0),
                                                       stub._accepted, rejected)]  # noqa: SLF001
                    worker_cpu = pool.cpu() - cpu0
                    app.pause()
                    errors = sum(path.read_text(errors="replace").count("Traceback") for path in pool.logs)
                events = {r["kind"]: r["n"] for r in _rows(app, "SELECT kind, COUNT(*) AS n FROM events GROUP BY kind")}
                claims = int(sql_scalar(app, "SELECT SUM(attempts) FROM jobs WHERE kind = 'syndicate'") or 0)
                completed = int(sql_scalar(app, "SELECT COUNT(*) FROM deliveries WHERE status = 'completed'") or 0)
                first_error = _first_traceback(pool.logs)
            finally:
                app.close()
    finally:
        stub.stop()
    creates = calls.get("com.atproto.repo.createRecord", 0)
    out: dict[str, Any] = {
        "name": name, "engine": engine, "speed": limits.speed, "accounts": accounts, "posts_queued": posts,
        "worker_argv": " ".join(argv[1:]), "worker_processes": processes, "poll_interval_s": poll_interval,
        "seconds": seconds, "stopped_on_complete_windows": stopped_early,
        "requests": sum(calls.values()), "calls": calls, "http_429": rejected, "creates": creates,
        "deliveries_completed": completed, "events": events, "job_claims": claims,
        "worker_cpu_s": worker_cpu, "worker_tracebacks": errors, "first_traceback": first_error,
        "series": [(round(t, 3), n, r) for t, n, r in series],
    }
    elapsed_c = seconds * limits.speed
    if limits.per_ip:
        limit, window = limits.per_ip
        out["per_ip"] = rate_vs_allowed(ip, limit, window, elapsed_c)
        out["per_ip_allowed_per_s_real"] = limit / (window / limits.speed)
        out["per_ip_window_s_real"] = window / limits.speed
    if limits.per_account_points:
        points, window = limits.per_account_points
        per_account = [rate_vs_allowed(acc.get(did_for(h), {}), points, window, elapsed_c) for h in handles]
        out["per_account"] = per_account
        out["per_account_rate_vs_allowed_mean"] = sum(e["rate_vs_allowed"] for e in per_account) / len(per_account)
        out["per_account_window_s_real"] = window / limits.speed
        out["per_account_creates_allowed_per_window"] = points // limits.create_cost
    return out


def _first_traceback(paths: list[Any]) -> str | None:
    for path in paths:
        text = path.read_text(errors="replace")
        at = text.find("Traceback")
        if at >= 0:
            lines = text[at:].splitlines()
            end = next((i for i, line in enumerate(lines[1:], 1) if not line.startswith(" ")), len(lines) - 1)
            return "\n".join(lines[: end + 1])[-1500:]
    return None


def _rows(app: Any, sql: str) -> list[dict[str, Any]]:
    with app.db.connect() as conn:
        return conn.all(sql)


PATCHED = [PY, "-m", "bench.worker_proc", "--patch-rate-limit-upsert"]


def _project(result: dict[str, Any], key: str, real_window: float, window_s_real: float) -> None:
    """What the same behaviour would give at Bluesky's real speed: the time lost per window (waiting for a
    whole-second reset, a poll, re-scheduling the backlog) is real time, which the compressed clock magnifies."""
    data = result.get(key)
    if not data or not data.get("complete_windows") or "fill" not in data:
        return
    late = (data["span_windows"] - data["complete_windows"]) * window_s_real / data["complete_windows"]
    data["late_per_window_s_real"] = late
    data["projected_rate_vs_allowed_real_speed"] = data["fill"] * real_window / (real_window + max(0.0, late))


def partial_upsert_bug() -> bool:
    """True when saving a partial rate-limit row (what spend() returns) fails on NOT NULL: the bug this
    benchmark found (fixed in 8e9703e). Then each scenario runs a second time with it worked around."""
    from skypost.store import queries as q

    with Scratch("sqlite", "upsert") as scratch:
        app = make_app(scratch.url)
        try:
            now = time.time()
            with app.db.transaction() as conn:
                q.save_rate_limit(conn, "probe", limit=10, remaining=9, reset_at=now + 60, policy="10;w=60",
                                  consecutive_429=0, updated_at=now)
            try:
                with app.db.transaction() as conn:
                    q.save_rate_limit(conn, "probe", remaining=8, updated_at=now)
            except Exception:  # noqa: BLE001 - sqlite3.IntegrityError / psycopg NotNullViolation
                return True
            return False
        finally:
            app.close()


def run(quick: bool = False) -> dict[str, Any]:
    """Two scenarios with skypost as it is; where the partial-upsert bug is present, each runs again with it
    worked around in the worker process (bench/worker_proc.py), so that the limiter's own logic is judged too."""
    bug = partial_upsert_bug()
    results: dict[str, Any] = {}
    # Both clocks make a window last 30 s: long enough that the real time lost at each reset (whole-second
    # RateLimit-Reset, the poll, re-scheduling the backlog) is not magnified out of proportion, short enough
    # to see complete windows in about a minute.
    ip_speed = 10.0  # 5 min -> 30 s: 3000 requests per 30 s = 100 requests/s (1 h -> 360 s: never binds here)
    ip_window = 300.0 / ip_speed
    complete = 1 if quick else 2
    acct_speed = 120.0  # 1 h -> 30 s: 1666 creates per 30 s per account (5 min -> 2.5 s: 1200 requests/s)
    acct_window = 3600.0 / acct_speed
    variants = [("as_is", cli_worker_argv(1))] + ([("patched", PATCHED)] if bug else [])
    for label, argv in variants:
        log(f"rate limits ({label}): per-IP bound, speed {ip_speed:g}, 30 accounts, 1 worker process")
        ip = results[f"per_ip_{label}"] = scenario(
            f"per-IP limit binds ({label})",
            limits=Limits(per_ip=(3000, 300), per_account_points=(5000, 3600), create_cost=3, speed=ip_speed),
            accounts=30, posts=int(3000 * (complete + 1.3)), processes=1, argv=argv,
            stop_when=lambda s: len(s.ip_windows) >= complete + 1, duration=ip_window * complete + 20)
        _project(ip, "per_ip", 300.0, ip["per_ip_window_s_real"])
        log(f"rate limits ({label}): per-account bound, speed {acct_speed:g}, 2 accounts, 1 worker process")
        acct = results[f"per_account_{label}"] = scenario(
            f"per-account limit binds ({label})",
            limits=Limits(per_ip=(3000, 300), per_account_points=(5000, 3600), create_cost=3, speed=acct_speed),
            accounts=2, posts=2 * 1666 * 2 + 200, processes=1, argv=argv,
            stop_when=lambda s: len(s.account_windows) >= 2 and all(len(w) >= 2 for w in s.account_windows.values()),
            duration=acct_window + 10)
        for entry in acct["per_account"]:
            _project({"x": entry}, "x", 3600.0, acct["per_account_window_s_real"])
        fills = [e for e in acct["per_account"] if "projected_rate_vs_allowed_real_speed" in e]
        if fills:
            acct["per_account_projected_real_speed_mean"] = (
                sum(e["projected_rate_vs_allowed_real_speed"] for e in fills) / len(fills))
    return {"partial_upsert_bug": bug, "scenarios": results}


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
