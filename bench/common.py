"""Shared helpers of the benchmark suite: scratch databases, apps, worker
processes, /proc readings and statistics. Everything stays on loopback."""

from __future__ import annotations

import atexit
import contextlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # `tests.support` is imported from the repository root
    sys.path.insert(0, str(REPO))

from skypost import Skypost  # noqa: E402
from skypost.config import load_settings  # noqa: E402

PY = sys.executable
PG_ADMIN_URL = os.environ.get("SKYPOST_BENCH_PG_URL") or os.environ.get(
    "SKYPOST_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
# the Fernet key of the test suite (tests/conftest.py): nothing secret is stored
TEST_KEY = "YVW3mW6si0qLdWQvFyNBp0gs8OrZ84i4-ec6_uDhOPA="
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def doc_url(n: int) -> str:
    """192.0.2.0/24 is a documentation range: the link-card fetch is refused by policy, no packet leaves."""
    return f"https://192.0.2.1/{n}"


# --- statistics ------------------------------------------------------------------

def percentile(values: Sequence[float], p: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return float("nan")
    xs = sorted(values)
    k = (len(xs) - 1) * p / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def summary(values: Sequence[float]) -> dict[str, Any]:
    return {"n": len(values), "p50": percentile(values, 50), "p99": percentile(values, 99),
            "mean": sum(values) / len(values) if values else float("nan"),
            "min": min(values) if values else float("nan"), "max": max(values) if values else float("nan")}


# --- /proc ---------------------------------------------------------------------------

def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a live process (all its threads)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return float("nan")


def proc_mem(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak RSS) in MiB."""
    out: dict[str, float] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    key, value = line.split(":", 1)
                    out[key] = int(value.split()[0]) / 1024.0
    except OSError:
        pass
    return out


def self_cpu() -> float:
    return time.process_time()


# --- databases --------------------------------------------------------------------------

_scratch_dbs: set[str] = set()


def _drop_pg(name: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    _scratch_dbs.discard(name)


@atexit.register
def _drop_leftovers() -> None:
    for name in list(_scratch_dbs):
        with contextlib.suppress(Exception):
            _drop_pg(name)


def _on_signal(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)  # run the finally blocks and atexit: databases dropped, children stopped


def install_signal_handlers() -> None:
    signal.signal(signal.SIGTERM, _on_signal)


def pg_available() -> bool:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
        return True
    except Exception:  # noqa: BLE001
        return False


def pg_free_connections() -> int:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        used = conn.execute("SELECT count(*) FROM pg_stat_activity").fetchone()[0]
        limit = int(conn.execute("SHOW max_connections").fetchone()[0])
        reserved = int(conn.execute("SHOW superuser_reserved_connections").fetchone()[0])
    return limit - reserved - used


def pg_backend_cpu(dbname: str) -> float:
    """CPU seconds of the server processes serving one database (same machine: /proc)."""
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        pids = [r[0] for r in conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (dbname,))]
    return sum(c for c in (proc_cpu(p) for p in pids) if not math.isnan(c))


def pg_commits(dbname: str) -> int:
    """Committed transactions of one database so far (cumulative statistics, flushed within ~1 s)."""
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        row = conn.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = %s", (dbname,)).fetchone()
    return int(row[0]) if row else 0


class Scratch:
    """A scratch directory and database (SQLite file or a PostgreSQL database, dropped after)."""

    def __init__(self, engine: str, label: str = "bench"):
        self.engine = engine
        self.dir = Path(tempfile.mkdtemp(prefix=f"skypost-{label}-"))
        self.pg_name: str | None = None
        if engine == "sqlite":
            self.url = f"sqlite:///{self.dir}/skypost.db"
        elif engine == "postgresql":
            import psycopg

            self.pg_name = f"skypost_bench_{uuid.uuid4().hex[:12]}"
            with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=10) as conn:
                conn.execute(f'CREATE DATABASE "{self.pg_name}"')
            _scratch_dbs.add(self.pg_name)
            self.url = f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{self.pg_name}"
        else:
            raise ValueError(engine)

    def close(self) -> None:
        if self.pg_name:
            _drop_pg(self.pg_name)
            self.pg_name = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "Scratch":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def make_app(url: str, **overrides: Any) -> Skypost:
    """As tests/conftest.py builds apps, but with private URLs refused: the posts' link-card
    pages (192.0.2.1) must be refused by policy, never connected to."""
    values: dict[str, Any] = {"http_timeout": 10.0, "allow_private_urls": False}
    values.update(overrides)
    settings = load_settings(env={}, config_file=None, database_url=url, secret_key=TEST_KEY, **values)
    app = Skypost(settings)

    def add_account(handle: str, password: str, **kwargs: Any) -> dict[str, Any]:
        # the PDS (or stub) lives on loopback: only adding the account may reach a private address
        with Skypost(settings.replace(allow_private_urls=True)) as admin:
            return admin.add_account(handle, password, **kwargs)

    app.add_account = add_account  # type: ignore[method-assign]
    return app


def sql_scalar(app: Skypost, sql: str, params: dict[str, Any] | None = None) -> Any:
    with app.db.connect() as conn:
        return conn.scalar(sql, params or {})


def rkey_of(app: Skypost, post_id: str) -> tuple[str, str]:
    with app.db.connect() as conn:
        row = conn.one("SELECT d.rkey AS rkey, d.did AS did FROM deliveries d JOIN posts p ON p.seq = d.post_seq "
                       "WHERE p.post_id = :id ORDER BY d.position LIMIT 1", {"id": post_id})
    assert row is not None
    return row["rkey"], row["did"]


# --- worker processes -----------------------------------------------------------------------

def worker_env(url: str, **knobs: Any) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKYPOST_")}
    env.update(SKYPOST_DATABASE_URL=url, SKYPOST_SECRET_KEY=TEST_KEY, SKYPOST_ALLOW_PRIVATE_URLS="0",
               SKYPOST_HTTP_TIMEOUT="10")
    for key, value in knobs.items():
        env[f"SKYPOST_{key.upper()}"] = str(value)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


class Workers:
    """N worker processes; stopped (SIGTERM, then SIGKILL) on exit."""

    def __init__(self, argv: Sequence[str], n: int, env: dict[str, str], log_dir: Path, name: str = "worker"):
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []
        for i in range(n):
            path = log_dir / f"{name}{i}.log"
            self.logs.append(path)
            with open(path, "wb") as err:
                self.procs.append(subprocess.Popen(list(argv), env=env, cwd=log_dir, stdin=subprocess.DEVNULL,
                                                   stdout=subprocess.DEVNULL, stderr=err))

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def cpu(self) -> float:
        return sum(proc_cpu(p) for p in self.pids)

    def mem(self) -> list[dict[str, float]]:
        return [proc_mem(p) for p in self.pids]

    def check_alive(self) -> None:
        for p, path in zip(self.procs, self.logs):
            if p.poll() is not None:
                raise RuntimeError(f"worker {p.pid} exited ({p.returncode}):\n{path.read_text()[-3000:]}")

    def stop(self, timeout: float = 20.0) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for p in self.procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)

    def __enter__(self) -> "Workers":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def cli_worker_argv(concurrency: int = 1) -> list[str]:
    return [PY, "-m", "skypost.cli", "worker", "--concurrency", str(concurrency)]


def wait_until(pred: Callable[[], bool], timeout: float, interval: float = 0.02, what: str = "condition") -> float:
    """Poll `pred` until true; returns the time.monotonic() at which it was seen true."""
    deadline = time.monotonic() + timeout
    while True:
        if pred():
            return time.monotonic()
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def running_workers(app: Skypost) -> int:
    return int(sql_scalar(app, "SELECT COUNT(*) FROM workers WHERE state = 'running'") or 0)


def run_json(argv: Sequence[str], env: dict[str, str] | None = None, timeout: float = 120.0) -> Any:
    out = subprocess.run(list(argv), env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    if out.returncode != 0:
        raise RuntimeError(f"{argv} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


@contextlib.contextmanager
def timer() -> Iterator[dict[str, float]]:
    box: dict[str, float] = {}
    t0 = time.perf_counter()
    try:
        yield box
    finally:
        box["s"] = time.perf_counter() - t0
