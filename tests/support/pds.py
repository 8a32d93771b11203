"""A real @atproto/pds (plus an in-memory PLC directory) on loopback, for tests.

Typical use from a fixture::

    PDS_DIR = Path(__file__).parent / "pds"
    ensure_pds_installed(PDS_DIR)
    with LocalPDS(PDS_DIR) as pds:
        pds.start(public_port=free_port(), listen_port=free_port())
        account = pds.create_account("alice")

The PDS names ``pds.url`` (http://localhost:PUBLIC) as its address in every DID document
and the SDK switches to that address after login, so a fault proxy belongs at the public
port and forwards to ``pds.listen_url``. Helper calls here go straight to ``listen_url``.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import itertools
import json
import os
import queue
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx

__all__ = [
    "DEFAULT_PDS_DIR",
    "LocalPDS",
    "PDSError",
    "PDSSetupError",
    "TestAccount",
    "ensure_pds_installed",
    "free_port",
    "make_tid",
]

#: tests/pds (package.json, package-lock.json, start.mjs).
DEFAULT_PDS_DIR: Path = Path(__file__).resolve().parent.parent / "pds"

POST_COLLECTION = "app.bsky.feed.post"

# Modules whose presence means a finished install (better-sqlite3 is compiled on install).
_INSTALL_MARKERS = (
    "node_modules/@atproto/pds/package.json",
    "node_modules/@did-plc/server/package.json",
    "node_modules/better-sqlite3/build/Release/better_sqlite3.node",
)
_NPM_TIMEOUT_S = 900.0


class PDSSetupError(RuntimeError):
    """Node/npm missing, the install failed, or the PDS did not start."""


class PDSError(RuntimeError):
    """An XRPC call answered with a non-2xx status."""

    def __init__(self, method: str, status: int, error: str | None, message: str | None, body: Any) -> None:
        super().__init__(f"{method}: HTTP {status} {error or ''}: {message or body!r}")
        self.method = method
        self.status = status
        self.error = error
        self.message = message
        self.body = body


@dataclass(frozen=True)
class TestAccount:
    """An account on the local PDS; ``app_password`` is what a user pastes into skypost."""

    __test__ = False  # not a pytest test class

    handle: str
    did: str
    password: str
    app_password: str
    email: str
    app_password_name: str = "skypost"


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1 (bind to port 0 and release it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_TID_ALPHABET = "234567abcdefghijklmnopqrstuvwxyz"
_tid_lock = threading.Lock()
_tid_last = 0


def make_tid(clock_id: int | None = None) -> str:
    """A fresh, strictly increasing (per process) 13-char TID record key."""
    global _tid_last
    with _tid_lock:
        micros = max(time.time_ns() // 1000, _tid_last + 1)
        _tid_last = micros
    cid = secrets.randbelow(1024) if clock_id is None else clock_id & 0x3FF
    value = (micros << 10) | cid
    return "".join(_TID_ALPHABET[(value >> (5 * i)) & 31] for i in range(12, -1, -1))


def _node_and_npm() -> tuple[str, str]:
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        raise PDSSetupError(
            f"node and npm are required for the local PDS (found node={node!r}, npm={npm!r}); "
            "install Node.js 20 (npm >= 9)"
        )
    return node, npm


def _installed(pds_dir: Path) -> bool:
    return all((pds_dir / m).exists() for m in _INSTALL_MARKERS)


def ensure_pds_installed(pds_dir: Path = DEFAULT_PDS_DIR) -> None:
    """Install tests/pds/node_modules (npm ci, or npm install without a lock) once, under a file lock."""
    pds_dir = Path(pds_dir)
    if _installed(pds_dir):
        return
    _, npm = _node_and_npm()
    lock_path = pds_dir / ".npm-install.lock"
    with open(lock_path, "a+") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)  # another process may be installing: wait for it
        try:
            if _installed(pds_dir):
                return
            cmd = [npm, "ci" if (pds_dir / "package-lock.json").exists() else "install", "--no-audit", "--no-fund"]
            try:
                proc = subprocess.run(
                    cmd, cwd=pds_dir, capture_output=True, text=True, timeout=_NPM_TIMEOUT_S, check=False
                )
            except subprocess.TimeoutExpired as e:
                raise PDSSetupError(f"{' '.join(cmd)} in {pds_dir} took over {_NPM_TIMEOUT_S:.0f} s") from e
            if proc.returncode != 0 or not _installed(pds_dir):
                missing = [m for m in _INSTALL_MARKERS if not (pds_dir / m).exists()]
                raise PDSSetupError(
                    f"{' '.join(cmd)} in {pds_dir} failed (rc={proc.returncode}, missing={missing}):\n"
                    f"{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
                )
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def _prune_old_logs(log_dir: Path, max_age_s: float = 86400.0, max_files: int = 200) -> None:
    """Delete skypost-pds-* logs older than a day (at most max_files per call)."""
    cutoff = time.time() - max_age_s
    for path in itertools.islice(log_dir.glob("skypost-pds-*.log"), max_files):
        with contextlib.suppress(OSError):
            if path.stat().st_mtime < cutoff:
                path.unlink()


def _set_pdeathsig() -> None:  # runs in the child between fork and exec (Linux only)
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass



def child_preexec() -> Any:
    """The preexec_fn of a child that must die with the tests (only from the main thread)."""
    if sys.platform.startswith("linux") and threading.current_thread() is threading.main_thread():
        return _set_pdeathsig
    return None


def pump_lines(proc: subprocess.Popen[str], lines: "queue.Queue[str | None]") -> None:
    """Drain a child's stdout into `lines` (so its pipe never fills); None at its end."""
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.put(line)
    lines.put(None)


def wait_json_line(lines: "queue.Queue[str | None]", key: str, timeout: float, *,
                   exited: Callable[[], str], late: Callable[[], str]) -> dict[str, Any]:
    """The first JSON object line holding `key` that a child prints; PDSSetupError with
    `exited()` when it ends first, with `late()` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=min(left, 0.5))
        except queue.Empty:
            continue
        if line is None:
            raise PDSSetupError(exited())
        with contextlib.suppress(ValueError):
            info = json.loads(line)
            if isinstance(info, dict) and key in info:
                return info
    raise PDSSetupError(late())


def stop_process(proc: subprocess.Popen[Any] | None, timeout: float) -> None:
    """SIGTERM, SIGKILL after `timeout`; closes its stdout pipe."""
    if proc is None:
        return
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
    if proc.stdout is not None:
        proc.stdout.close()


def xrpc_request(http: httpx.Client, url: str, method: str, *, params: dict[str, Any] | None = None,
                 json_body: dict[str, Any] | None = None, token: str | None = None) -> Any:
    """GET (no body) or POST (json_body) {url}/xrpc/<method>; the JSON answer, PDSError on non-2xx."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if json_body is None:
        resp = http.get(f"{url}/xrpc/{method}", params=params, headers=headers)
    else:
        resp = http.post(f"{url}/xrpc/{method}", params=params, json=json_body, headers=headers)
    try:
        body: Any = resp.json() if resp.content else None
    except ValueError:
        body = resp.text
    if not resp.is_success:
        err = body if isinstance(body, dict) else {}
        raise PDSError(method, resp.status_code, err.get("error"), err.get("message"), body)
    return body

class LocalPDS:
    """One PDS + PLC process (``node start.mjs``); use as a context manager or call stop()."""

    _handle_counter = itertools.count(1)

    def __init__(self, pds_dir: Path = DEFAULT_PDS_DIR, log_dir: Path | None = None) -> None:
        self.pds_dir = Path(pds_dir)
        self.log_dir = Path(log_dir) if log_dir else Path(tempfile.gettempdir()) / "skypost-pds-logs"
        self.proc: subprocess.Popen[str] | None = None
        self.public_port: int | None = None
        self.listen_port: int | None = None
        self.plc_port: int | None = None
        self.data_dir: Path | None = None
        self.log_path: Path | None = None  # stderr of node start.mjs
        self.pds_log_path: Path | None = None  # the PDS's own pino log (LOG_ENABLED=true)
        self.info: dict[str, Any] = {}
        self.startup_s: float | None = None
        self._http: httpx.Client | None = None
        self._stdout_lines: queue.Queue[str | None] = queue.Queue()
        self._atexit_registered = False

    # -- lifecycle -------------------------------------------------------------------

    def __enter__(self) -> LocalPDS:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Public URL, as named in DID documents: http://localhost:PUBLIC."""
        return f"http://localhost:{self._require(self.public_port)}"

    @property
    def listen_url(self) -> str:
        """Where the PDS really listens: http://127.0.0.1:LISTEN."""
        return f"http://127.0.0.1:{self._require(self.listen_port)}"

    @property
    def plc_url(self) -> str:
        return f"http://127.0.0.1:{self._require(self.plc_port)}"

    @property
    def admin_password(self) -> str:
        return str(self.info.get("adminPassword", "admin-pass"))

    @staticmethod
    def _require(port: int | None) -> int:
        if port is None:
            raise RuntimeError("LocalPDS is not started")
        return port

    def start(
        self,
        public_port: int | None = None,
        listen_port: int | None = None,
        rate_limits: bool = False,
        extra_env: dict[str, str] | None = None,
        timeout: float = 60.0,
    ) -> LocalPDS:
        """Launch the PDS (public_port: free one if None; listen_port: public_port if None)."""
        if self.proc is not None:
            raise RuntimeError("LocalPDS already started")
        node, _ = _node_and_npm()
        if not _installed(self.pds_dir):
            raise PDSSetupError(f"{self.pds_dir}/node_modules is missing: call ensure_pds_installed() first")
        self.public_port = public_port or free_port()
        self.listen_port = listen_port or self.public_port
        self.plc_port = free_port()
        self.data_dir = Path(tempfile.mkdtemp(prefix="pds-data-"))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        _prune_old_logs(self.log_dir)
        stem = f"skypost-pds-{os.getpid()}-{self.public_port}"
        self.log_path = self.log_dir / f"{stem}.stderr.log"
        self.pds_log_path = self.log_dir / f"{stem}.pds.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PDS_", "PLC_"))}
        env.update(
            PDS_PORT=str(self.public_port),
            PDS_LISTEN_PORT=str(self.listen_port),
            PLC_PORT=str(self.plc_port),
            PDS_DATA_DIRECTORY=str(self.data_dir),
            PDS_RATE_LIMITS_ENABLED="true" if rate_limits else "false",
            LOG_ENABLED="true",
            LOG_LEVEL=os.environ.get("SKYPOST_PDS_LOG_LEVEL", "info"),
            LOG_DESTINATION=str(self.pds_log_path),
        )
        env.update(extra_env or {})
        t0 = time.monotonic()
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [node, "start.mjs"],
                cwd=self.pds_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                preexec_fn=child_preexec(),
            )
        if not self._atexit_registered:
            atexit.register(self.stop)
            self._atexit_registered = True
        threading.Thread(target=self._pump_stdout, args=(self.proc,), daemon=True, name="pds-stdout").start()
        try:
            self.info = self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.monotonic() - t0
        self._http = httpx.Client(base_url=self.listen_url, timeout=30.0)
        return self

    def _pump_stdout(self, proc: subprocess.Popen[str]) -> None:
        pump_lines(proc, self._stdout_lines)

    def _wait_ready(self, timeout: float) -> dict[str, Any]:
        return wait_json_line(
            self._stdout_lines, "pds", timeout,
            exited=lambda: f"PDS exited before it was ready (rc={self.proc and self.proc.wait(5)}):\n{self.log_tail()}",
            late=lambda: f"PDS not ready after {timeout:.0f} s:\n{self.log_tail()}")

    def log_tail(self, chars: int = 4000, pds_log: bool = False) -> str:
        """The end of the stderr log (or, with pds_log, of the PDS's own request/error log)."""
        path = self.pds_log_path if pds_log else self.log_path
        if path is None or not path.exists():
            return "(no log)"
        return path.read_bytes()[-chars:].decode("utf-8", "replace")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (SIGKILL after `timeout`), then remove the data directory. Idempotent."""
        if self._http is not None:
            self._http.close()
            self._http = None
        proc, self.proc = self.proc, None
        stop_process(proc, timeout)
        if self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.data_dir = None

    # -- XRPC helpers (straight to listen_url, never through a proxy) ---------------

    def xrpc(
        self,
        method: str,
        *,
        params: dict[str, Any] | None = None,
        json_body: dict[str, Any] | None = None,
        token: str | None = None,
    ) -> Any:
        """GET (no body) or POST (json_body) /xrpc/<method>; JSON answer, PDSError on non-2xx."""
        if self._http is None:
            raise RuntimeError("LocalPDS is not started")
        return xrpc_request(self._http, "", method, params=params, json_body=json_body, token=token)

    def create_session(self, identifier: str, password: str) -> dict[str, Any]:
        """com.atproto.server.createSession; returns accessJwt, refreshJwt, did, handle..."""
        return dict(self.xrpc("com.atproto.server.createSession", json_body={"identifier": identifier, "password": password}))

    def create_account(self, handle_prefix: str = "user", app_password_name: str = "skypost") -> TestAccount:
        """New account <prefix><n><rand>.test with an app password (xxxx-xxxx-xxxx-xxxx)."""
        label = "".join(c for c in handle_prefix.lower() if c.isascii() and c.isalnum())[:8] or "user"
        label = f"{label}{next(self._handle_counter)}{secrets.token_hex(2)}"[:18]
        handle = f"{label}.test"
        email = f"{label}@example.test"
        password = f"pw-{secrets.token_urlsafe(12)}"
        created = self.xrpc(
            "com.atproto.server.createAccount",
            json_body={"handle": handle, "email": email, "password": password},
        )
        app = self.xrpc(
            "com.atproto.server.createAppPassword",
            json_body={"name": app_password_name},
            token=created["accessJwt"],
        )
        return TestAccount(
            handle=created["handle"],
            did=created["did"],
            password=password,
            app_password=app["password"],
            email=email,
            app_password_name=app_password_name,
        )

    def revoke_app_password(self, account: TestAccount, name: str | None = None) -> None:
        """Revoke an app password (default: the account's own) using a main-password session."""
        session = self.create_session(account.did, account.password)
        self.xrpc(
            "com.atproto.server.revokeAppPassword",
            json_body={"name": name or account.app_password_name},
            token=session["accessJwt"],
        )

    def iter_records(self, did: str, collection: str, page_size: int = 100, max_pages: int = 1000) -> Iterator[dict[str, Any]]:
        """com.atproto.repo.listRecords, following the cursor (bounded by max_pages)."""
        cursor: str | None = None
        for _ in range(max_pages):
            params: dict[str, Any] = {"repo": did, "collection": collection, "limit": page_size}
            if cursor:
                params["cursor"] = cursor
            page = self.xrpc("com.atproto.repo.listRecords", params=params)
            records = page.get("records", [])
            yield from records
            cursor = page.get("cursor")
            if not cursor or not records:
                return
        raise RuntimeError(f"listRecords({did}, {collection}) did not end after {max_pages} pages")

    def list_posts(self, did: str) -> list[dict[str, Any]]:
        """All app.bsky.feed.post records of `did`: [{uri, cid, value}], newest first."""
        return list(self.iter_records(did, POST_COLLECTION))

    def get_record(self, did: str, collection: str, rkey: str) -> dict[str, Any] | None:
        """com.atproto.repo.getRecord ({uri, cid, value}), or None when it does not exist."""
        try:
            return dict(
                self.xrpc(
                    "com.atproto.repo.getRecord",
                    params={"repo": did, "collection": collection, "rkey": rkey},
                )
            )
        except PDSError as e:
            if e.status == 400 and e.error == "RecordNotFound":
                return None
            raise
