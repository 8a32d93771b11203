"""Fixtures for the web tests: the Starlette app over a Skypost from make_app, a TestClient, a token."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

with warnings.catch_warnings():  # Starlette suggests httpx2; httpx (a project dependency) works the same
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from skypost import Skypost
from skypost.web import create_app
from skypost.web.tokens import create_token
from tests.conftest import TEST_KEY
from tests.support.pds import free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CREATE = "com.atproto.repo.createRecord"
SKYPOST = [sys.executable, "-m", "skypost.cli"]


@dataclass
class Web:
    app: Skypost
    client: TestClient
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.client.get(path, headers={**self.auth, **kwargs.pop("headers", {})}, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.client.post(path, headers={**self.auth, **kwargs.pop("headers", {})}, **kwargs)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.client.request(method, path, headers={**self.auth, **kwargs.pop("headers", {})}, **kwargs)


@pytest.fixture
def web(db_url: str, make_app: Any) -> Iterator[Web]:
    """The app on SQLite and on PostgreSQL, with one API token."""
    app = make_app(db_url)
    token = create_token(app.db, "tests", now=app.clock())
    with TestClient(create_app(app), follow_redirects=False) as client:
        yield Web(app, client, token)


@pytest.fixture
def sqlite_web(sqlite_url: str, make_app: Any) -> Iterator[Web]:
    """The same on SQLite only (for the slower, engine-independent tests)."""
    app = make_app(sqlite_url)
    token = create_token(app.db, "tests", now=app.clock())
    with TestClient(create_app(app), follow_redirects=False) as client:
        yield Web(app, client, token)


def run(env, *args, stdin=None):
    result = subprocess.run(SKYPOST + list(args), env=env, input=stdin, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


@contextlib.contextmanager
def serving(env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """`skypost serve` as a process on a free loopback port (its log in tmp_path/serve.log);
    yields its base URL once /healthz answers, and checks that SIGTERM stops it cleanly."""
    port = free_port()
    log = open(tmp_path / "serve.log", "w")
    proc = subprocess.Popen(SKYPOST + ["serve", "--port", str(port)], env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, \
                (tmp_path / "serve.log").read_text()
            time.sleep(0.1)
        yield base
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
            log.close()
        assert code == 0, (tmp_path / "serve.log").read_text()  # a graceful shutdown


@pytest.fixture
def server(tmp_path, make_account, proxy):
    """`skypost serve` on a free loopback port, with one account and one token."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKYPOST_")}
    env.update(SKYPOST_DATABASE_URL=f"sqlite:///{tmp_path}/skypost.db", SKYPOST_SECRET_KEY=TEST_KEY,
               SKYPOST_ALLOW_PRIVATE_URLS="1", SKYPOST_POLL_INTERVAL="0.1", SKYPOST_JOB_LEASE="5",
               SKYPOST_RETRY_DELAYS="1,1,1")
    alice = make_account("web")
    run(env, "init")
    run(env, "account", "add", alice.handle, "--password-stdin", "--service", proxy.url,
        stdin=alice.app_password)
    token = run(env, "token", "create", "browser").strip()
    with serving(env, tmp_path) as base:
        yield base, token, alice
