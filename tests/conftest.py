"""Shared fixtures: a real PDS behind a fault proxy, databases (SQLite and
PostgreSQL), an injectable clock, and skypost apps wired to them."""

from __future__ import annotations

import os
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import pytest

from skypost import Skypost
from skypost.config import load_settings
from tests.support.faultproxy import FaultProxy
from tests.support.pds import DEFAULT_PDS_DIR, LocalPDS, TestAccount, ensure_pds_installed, free_port

if TYPE_CHECKING:
    from tests.support.network import LocalNetwork

PG_ADMIN_URL = os.environ.get("SKYPOST_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
LOG_DIR = Path(__file__).resolve().parent.parent / "test-artifacts"


class FakeClock:
    """A clock that moves only when told to: retries, cooldowns and resets without waiting."""

    def __init__(self, start: float | None = None):
        # whole seconds: (t + 59) + 1 == t + 60 exactly, as a test expects
        self.now = float(int(time.time())) if start is None else start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


# --- the PDS --------------------------------------------------------------------

@pytest.fixture(scope="session")
def pds_stack() -> Iterator[tuple[LocalPDS, FaultProxy]]:
    """One real PDS for the session; the proxy sits at its public URL."""
    ensure_pds_installed(DEFAULT_PDS_DIR)
    LOG_DIR.mkdir(exist_ok=True)
    public, listen = free_port(), free_port()
    with LocalPDS(DEFAULT_PDS_DIR, log_dir=LOG_DIR) as pds:
        pds.start(public_port=public, listen_port=listen)
        with FaultProxy(public, pds.listen_url) as proxy:
            yield pds, proxy


@pytest.fixture
def pds(pds_stack: tuple[LocalPDS, FaultProxy]) -> LocalPDS:
    return pds_stack[0]


@pytest.fixture
def proxy(pds_stack: tuple[LocalPDS, FaultProxy]) -> Iterator[FaultProxy]:
    proxy = pds_stack[1]
    proxy.clear_rules()
    proxy.reset_counts()
    yield proxy
    proxy.clear_rules()


@pytest.fixture
def make_account(pds: LocalPDS) -> Callable[[str], TestAccount]:
    return pds.create_account


# --- databases ---------------------------------------------------------------------

def _pg_create() -> tuple[str, Callable[[], None]]:
    import psycopg

    name = f"skypost_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]

    def drop() -> None:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return f"{base}/{name}", drop


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each engine test runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/skypost.db"
        return
    url, drop = _pg_create()
    try:
        yield url
    finally:
        drop()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/skypost.db"


TEST_KEY = "YVW3mW6si0qLdWQvFyNBp0gs8OrZ84i4-ec6_uDhOPA="


@pytest.fixture
def make_app(clock: FakeClock, tmp_path: Path) -> Iterator[Callable[..., Skypost]]:
    apps: list[Skypost] = []

    def factory(url: str, *, use_clock: bool = True, **overrides: Any) -> Skypost:
        # the recurring backfeed is off unless a test asks for it: its polls would add requests,
        # jobs and events to every test that advances the clock (`app.backfeed()` always works)
        overrides.setdefault("backfeed_interval", 0.0)
        settings = load_settings(
            env={}, config_file=None, database_url=url, secret_key=TEST_KEY, allow_private_urls=True,
            poll_interval=0.05, http_timeout=10.0, **overrides,
        )
        app = Skypost(settings, clock=clock if use_clock else time.time)
        apps.append(app)
        return app

    yield factory
    for app in apps:
        app.close()


# --- the full local Bluesky network (PLC + PDS + AppView) ------------------------------

@pytest.fixture(scope="session")
def network_stack() -> Iterator[tuple["LocalNetwork", FaultProxy]]:
    """One whole network for the session, started by the first test that asks; a fault proxy
    sits at its PDS's public address (the address skypost's accounts use)."""
    from tests.support.network import LocalNetwork, ensure_network_installed

    ensure_network_installed()
    LOG_DIR.mkdir(exist_ok=True)
    public, listen = free_port(), free_port()
    with FaultProxy(public, f"http://127.0.0.1:{listen}") as proxy, LocalNetwork(log_dir=LOG_DIR) as net:
        net.start(pds_port=public, pds_listen_port=listen)
        yield net, proxy


@pytest.fixture
def network(network_stack: tuple["LocalNetwork", FaultProxy]) -> "LocalNetwork":
    return network_stack[0]


@pytest.fixture
def network_proxy(network_stack: tuple["LocalNetwork", FaultProxy]) -> Iterator[FaultProxy]:
    proxy = network_stack[1]
    proxy.clear_rules()
    proxy.reset_counts()
    yield proxy
    proxy.clear_rules()
