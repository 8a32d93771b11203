"""Chaos: a real PDS behind a fault proxy that injects random faults, and worker processes
SIGKILLed at random and restarted, while posts are submitted. When the chaos stops, every
delivery must complete, and every account must hold exactly one record per post — the
record each delivery owns (its TID record key), none missing, none twice.

Faults (tests/support/faultproxy.py, random_faults): answers lost after the PDS acted (FIN or
RST), 5xx before and after the PDS acted, connection resets, latency spikes, and bursts of
429 carrying Retry-After (seconds or an HTTP date) or RateLimit-* headers.

Bounded: the chaos phase ends when everything is delivered or after CHAOS_MAX_S; the calm
phase (no faults, no kills) then has CALM_MAX_S to finish; either ends early when no delivery
finishes for STALL_S. A summary (faults by kind, kills, recoveries, durations) is printed;
SKYPOST_CHAOS_SEED=N replays the fault and kill draws of a run (not its timing).
"""

from __future__ import annotations

import collections
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from tests.conftest import TEST_KEY
from tests.support.faultproxy import random_faults

ACCOUNTS = 3
POSTS = 200  # x ACCOUNTS = 600 deliveries, 600 records on the PDS
WORKERS = 3
CONCURRENCY = 2
# enough attempts that random faults and kills (a kill mid-attempt uses one) cannot exhaust them
RETRY_DELAYS = "0.2,0.2,0.2,0.3,0.5,0.5,1,1,1,2,2"
CHAOS_MAX_S = 90.0  # the faults keep coming while deliveries are left, so every kind gets its turn
CALM_MAX_S = 80.0
STALL_S = 25.0  # no delivery finished for this long (retries wait 2 s at most): give up, report
KILL_EVERY_S = (3.0, 6.0)  # a SIGKILL mid-attempt also costs a lease (2 s) of waiting
MIN_KILLS = 3
SKYPOST = [sys.executable, "-m", "skypost.cli"]
FINISHED = ("completed", "failed")
CREATE = "com.atproto.repo.createRecord"


def _faults(seed: int):
    return random_faults(
        lose=0.05,  # the PDS acted, the answer is lost (FIN or RST)
        error5xx=0.06,  # half before the PDS acts, half after
        reset=0.04,  # RST before forwarding
        delay=0.06,  # a latency spike of 0.2-2.5 s
        burst429=0.015,  # then every request gets 429 for 0.5-2 s
        delay_range=(0.2, 2.5),
        burst_length=(0.5, 2.0),
        deck=100,  # exact proportions over every 100 requests: each kind happens, in random order
        seed=seed,
    )


class Workers:
    """WORKERS `skypost worker` processes; kill() SIGKILLs one at random and starts a new one."""

    def __init__(self, env: dict[str, str], log_dir: Path, rng: random.Random, app: Any):
        self.env = env
        self.log_dir = log_dir
        self.rng = rng
        self.app = app
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []
        self.kills = 0
        self.kills_with_jobs_in_hand = 0
        self.started = 0

    def _start(self) -> subprocess.Popen[bytes]:
        log = self.log_dir / f"worker-{self.started:03d}.log"
        self.started += 1
        self.logs.append(log)
        with open(log, "wb") as err:
            return subprocess.Popen(SKYPOST + ["worker", "--concurrency", str(CONCURRENCY)], env=self.env,
                                    stdout=subprocess.DEVNULL, stderr=err)

    def start_all(self) -> None:
        self.procs = [self._start() for _ in range(WORKERS)]

    def _jobs_in_hand(self, pid: int) -> int:
        with self.app.db.connect() as conn:
            return int(conn.scalar("SELECT COUNT(*) FROM jobs WHERE status = 'doing' AND lease_owner LIKE :p",
                                   {"p": f"%:{pid}:%"}) or 0)

    def kill_one(self) -> None:
        n = self.rng.randrange(len(self.procs))
        victim = self.procs[n]
        if victim.poll() is None:
            in_hand = self._jobs_in_hand(victim.pid)
            victim.send_signal(signal.SIGKILL)
            victim.wait(timeout=10)
            self.kills += 1
            self.kills_with_jobs_in_hand += in_hand > 0
        self.procs[n] = self._start()

    def revive(self) -> None:
        """Restart any worker that died on its own (it should not: that is reported)."""
        for n, proc in enumerate(self.procs):
            if proc.poll() is not None:
                self.procs[n] = self._start()

    def stop(self) -> list[int | None]:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes = []
        for proc in self.procs:
            try:
                codes.append(proc.wait(timeout=30))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
                codes.append(None)
        return codes

    def log_tail(self, chars: int = 4000) -> str:
        out = []
        for log in self.logs[-WORKERS:]:
            lines = log.read_text(errors="replace").splitlines() if log.exists() else []
            text = "\n".join(line for line in lines if " INFO httpx: " not in line)
            out.append(f"--- {log.name}\n{text[-chars:]}")
        return "\n".join(out)

    def tracebacks(self) -> list[str]:
        """Tracebacks any worker logged (a SIGKILLed worker logs nothing: it just dies)."""
        found = []
        for log in self.logs:
            text = log.read_text(errors="replace") if log.exists() else ""
            if "Traceback" in text:
                found.append(f"--- {log.name}\n{text[-3000:]}")
        return found


def _delivery_counts(app: Any) -> dict[str, int]:
    return dict(app.health()["deliveries"])


class Progress:
    """Watches the deliveries (one cheap query): all finished? nothing finished for a while?"""

    def __init__(self, app: Any):
        self.app = app
        self.finished = -1
        self.changed_at = time.monotonic()

    def all_finished(self) -> bool:
        with self.app.db.connect() as conn:
            finished = int(conn.scalar("SELECT COUNT(*) FROM deliveries WHERE status IN ('completed', 'failed')") or 0)
        if finished != self.finished:
            self.finished, self.changed_at = finished, time.monotonic()
        return finished == ACCOUNTS * POSTS

    def stalled(self, seconds: float) -> bool:
        self.all_finished()
        return time.monotonic() - self.changed_at > seconds


def _unfinished(app: Any) -> str:
    """The unfinished deliveries with their jobs and last events: what a stuck run needs explained."""
    with app.db.connect() as conn:
        rows = conn.all(
            "SELECT d.id, d.post_seq, d.handle, d.status, d.attempts, d.next_attempt_at, j.status AS job, "
            "j.run_at, j.lease_owner, j.lease_expires_at FROM deliveries d LEFT JOIN jobs j "
            "ON j.post_seq = d.post_seq WHERE d.status NOT IN ('completed', 'failed') ORDER BY d.id LIMIT 5")
        now = app.clock()
        lines = [f"now={now:.3f}"] + [repr(r) for r in rows]
        for r in rows[:2]:
            post = conn.one("SELECT post_id FROM posts WHERE seq = :s", {"s": r["post_seq"]})
            events = conn.all("SELECT ts, kind, account, message FROM events WHERE post_id = :p ORDER BY id",
                              {"p": post["post_id"]})
            lines += [f"  {e['ts']:.3f} {e['kind']} {e['account']}: {e['message'][:160]}" for e in events]
    return "\n".join(lines)


def _scalar(app: Any, sql: str, params: dict[str, Any] | None = None) -> Any:
    with app.db.connect() as conn:
        return conn.scalar(sql, params or {})


def test_chaos_every_post_exactly_once(db_url, make_app, make_account, pds, proxy, tmp_path, capsys):
    seed = int(os.environ.get("SKYPOST_CHAOS_SEED") or random.SystemRandom().randrange(1 << 30))
    rng = random.Random(seed)
    t_start = time.monotonic()
    engine = "postgresql" if db_url.startswith("postgresql") else "sqlite"

    app = make_app(db_url, use_clock=False)
    accounts = [make_account(f"chaos{n}") for n in range(ACCOUNTS)]
    for account in accounts:
        app.add_account(account.handle, account.app_password, service=proxy.url)

    env = {k: v for k, v in os.environ.items() if not k.startswith("SKYPOST_")}
    env.update(SKYPOST_DATABASE_URL=db_url, SKYPOST_SECRET_KEY=TEST_KEY, SKYPOST_JOB_LEASE="2",
               SKYPOST_POLL_INTERVAL="0.5", SKYPOST_RETRY_DELAYS=RETRY_DELAYS, SKYPOST_CIRCUIT_COOLDOWN="1",
               SKYPOST_CIRCUIT_THRESHOLD="3", SKYPOST_HTTP_TIMEOUT="15")
    workers = Workers(env, tmp_path, rng, app)

    # posts: a documentation address (192.0.2.1): the card's page fetch is refused at once, offline
    def document(n: int) -> dict[str, Any]:
        return {"id": f"chaos-{n:03d}", "title": f"Chaos post {n} #chaos",
                "excerpt": f"Post number {n}, published through random faults and killed workers.",
                "url": f"https://192.0.2.1/chaos/{n}", "tags": ["chaos"]}

    submit_errors: list[BaseException] = []

    def submitter() -> None:
        try:
            for start in range(0, POSTS, 20):  # in bursts, while the workers run and die
                for n in range(start, min(start + 20, POSTS)):
                    assert app.submit(document(n))["status"] == "pending"
                time.sleep(rng.uniform(0.1, 0.6))
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            submit_errors.append(exc)
        finally:
            app.db.release_thread()

    chaos = _faults(seed)
    proxy.reset_counts()
    proxy.add_rule("*", chaos, times=None)
    # as Bluesky does: every createRecord answer states the account's (hourly) write budget
    proxy.set_response_headers(CREATE, {"RateLimit-Limit": "5000", "RateLimit-Remaining": "4000",
                                        "RateLimit-Reset": str(int(time.time()) + 3600),
                                        "RateLimit-Policy": "5000;w=3600"})
    workers.start_all()
    feeding = threading.Thread(target=submitter, name="chaos-submitter", daemon=True)
    feeding.start()
    t_chaos = time.monotonic()
    try:
        # --- chaos: faults on every request, a worker SIGKILLed every few seconds --------------
        next_kill = time.monotonic() + rng.uniform(*KILL_EVERY_S)
        progress = Progress(app)
        while time.monotonic() - t_chaos < CHAOS_MAX_S and not progress.stalled(STALL_S):
            if not feeding.is_alive() and workers.kills >= MIN_KILLS and progress.all_finished():
                break
            if time.monotonic() >= next_kill:
                workers.kill_one()
                next_kill = time.monotonic() + rng.uniform(*KILL_EVERY_S)
            workers.revive()
            time.sleep(0.2)
        feeding.join(timeout=30)
        chaos_s = time.monotonic() - t_chaos
        chaos_counts = _delivery_counts(app)

        # --- calm: no faults, no kills; the work left must finish (or stop making progress) ----
        proxy.clear_rules()
        t_calm = time.monotonic()
        progress = Progress(app)
        while time.monotonic() - t_calm < CALM_MAX_S and not progress.stalled(STALL_S):
            workers.revive()
            if progress.all_finished():
                break
            time.sleep(0.25)
        calm_s = time.monotonic() - t_calm
    finally:
        proxy.clear_rules()
        proxy.set_response_headers(CREATE, None)
        exit_codes = workers.stop()

    injected = chaos.snapshot()
    faults = {k: v for k, v in injected.items() if k != "forward"}
    summary = {
        "engine": engine,
        "seed": seed,
        "posts": POSTS,
        "accounts": ACCOUNTS,
        "requests_through_proxy": proxy.calls(),
        "requests_by_method": dict(collections.Counter(s.method for s in proxy.seen())),
        "faults_injected": faults,
        "faults_total": sum(v for k, v in faults.items() if k != "burst_429"),
        "kills": workers.kills,
        "kills_with_jobs_in_hand": workers.kills_with_jobs_in_hand,
        "worker_processes_started": workers.started,
        "found_by_getRecord": _scalar(app, "SELECT COUNT(*) FROM events WHERE kind = 'published' "
                                           "AND message LIKE :m", {"m": "%earlier attempt%"}),
        "retries_scheduled": _scalar(app, "SELECT COUNT(*) FROM events WHERE kind = 'retry_scheduled'"),
        "circuit_opened": _scalar(app, "SELECT COUNT(*) FROM events WHERE kind = 'circuit_open'"),
        "rate_limited_waits": _scalar(app, "SELECT COUNT(*) FROM events WHERE kind = 'rate_limited'"),
        "gave_up_then_requeued": _scalar(app, "SELECT COUNT(*) FROM events WHERE message LIKE :m",
                                         {"m": "%gave up after%"}),
        "max_attempts": _scalar(app, "SELECT MAX(attempts) FROM deliveries"),
        "job_claims": _scalar(app, "SELECT SUM(attempts) FROM jobs"),
        "deliveries_after_chaos": chaos_counts,
        "deliveries_at_end": _delivery_counts(app),
        "chaos_s": round(chaos_s, 1),
        "calm_s": round(calm_s, 1),
        "total_s": round(time.monotonic() - t_start, 1),
        "worker_exit_codes": exit_codes,
    }
    with capsys.disabled():
        print(f"\nchaos summary: {json.dumps(summary)}")

    # --- the verdict -------------------------------------------------------------------------------
    assert not submit_errors, submit_errors
    counts = _delivery_counts(app)
    assert counts == {"completed": ACCOUNTS * POSTS}, (
        f"seed={seed}: deliveries {counts} (at the end of the chaos: {chaos_counts})\n"
        + _unfinished(app) + "\n"
        + ("\n".join(workers.tracebacks()[:2]) or workers.log_tail()))

    by_did: dict[str, dict[str, str]] = collections.defaultdict(dict)  # did -> rkey -> post id
    for n in range(POSTS):
        status = app.status(f"chaos-{n:03d}")
        assert status is not None
        assert status["status"] == "completed", (seed, status)
        assert [d["account"] for d in status["deliveries"]] == [a.handle for a in accounts]
        for d in status["deliveries"]:
            assert d["status"] == "completed" and d["error"] is None, (seed, status)
            did, collection, rkey = d["uri"][len("at://"):].split("/")
            assert (did, collection) == (d["did"], "app.bsky.feed.post"), d
            assert d["url"] == f"https://bsky.app/profile/{did}/post/{rkey}", d
            assert rkey not in by_did[did], f"two deliveries share the record {d['uri']}"
            by_did[did][rkey] = status["id"]
    # the stored post status (what GET /api/v1/posts?status= filters on) agrees
    stored = collections.Counter(p["status"] for p in app.list_posts(limit=POSTS + 10))
    assert stored == {"completed": POSTS}, stored
    assert _scalar(app, "SELECT COUNT(*) FROM jobs WHERE status <> 'done' AND kind = 'syndicate'") == 0

    for account in accounts:
        records = pds.list_posts(account.did)
        rkeys = [r["uri"].rsplit("/", 1)[1] for r in records]
        duplicates = [k for k, c in collections.Counter(rkeys).items() if c > 1]
        assert not duplicates, (seed, account.handle, duplicates)
        texts = collections.Counter(r["value"]["text"].split("\n", 1)[0] for r in records)
        twice = [t for t, c in texts.items() if c > 1]
        assert not twice, f"seed={seed}: @{account.handle} holds these posts more than once: {twice[:5]}"
        expected = by_did[account.did]
        missing = sorted(set(expected) - set(rkeys))
        unexpected = sorted(set(rkeys) - set(expected))
        assert not missing and not unexpected, (
            f"seed={seed}: @{account.handle}: {len(records)} records for {POSTS} posts; "
            f"missing {missing[:5]}, not owned by a delivery {unexpected[:5]}")
        assert len(records) == POSTS
        for record in records:  # each record is the post its delivery owns
            post_id = expected[record["uri"].rsplit("/", 1)[1]]
            n = int(post_id.split("-")[1])
            assert record["value"]["text"].startswith(f"Chaos post {n} #chaos"), (post_id, record["value"])
            assert record["value"]["embed"]["external"]["uri"] == f"https://192.0.2.1/chaos/{n}"
        # rule 4: posts to one account go out in submit order (createdAt is set when composed,
        # after the previous post's delivery finished). A delivery that gave up and was queued
        # again when the breaker closed legitimately goes out of order: then it is not checked.
        gave_up = _scalar(app, "SELECT COUNT(*) FROM events WHERE account = :h AND message LIKE :m",
                          {"h": account.handle, "m": "%gave up after%"})
        if not gave_up:
            created = {int(expected[r["uri"].rsplit("/", 1)[1]].split("-")[1]): r["value"]["createdAt"]
                       for r in records}
            in_order = [created[n] for n in range(POSTS)]
            assert in_order == sorted(in_order), f"seed={seed}: @{account.handle}: posts out of submit order"

    # the chaos really happened
    for kind in ("lose_response", "error_5xx", "error_5xx_after_forward", "reset", "delay", "burst_429"):
        assert faults.get(kind, 0) > 0, (kind, summary)
    assert workers.kills >= MIN_KILLS, summary
    assert exit_codes == [0] * WORKERS, (exit_codes, workers.log_tail())
    assert not workers.tracebacks(), "\n".join(workers.tracebacks())[:8000]
