"""A fast, in-memory stand-in for a PDS: the few XRPC methods skypost calls.

For load and multi-process tests where the real PDS would be the bottleneck;
correctness tests use the real PDS. It keeps every record with its creation
order, refuses a second create of the same record key the way the real PDS
does (HTTP 500), and can enforce Bluesky's rate limits with a compressed clock.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def make_jwt(did: str, scope: str, lifetime: float) -> str:
    now = int(time.time())
    payload = {"sub": did, "scope": scope, "iat": now, "exp": now + int(lifetime), "jti": hashlib.md5(
        f"{did}{time.time_ns()}".encode()).hexdigest()}
    return f"{_b64({'alg': 'HS256', 'typ': 'JWT'})}.{_b64(payload)}.c2ln"


def did_for(handle: str) -> str:
    return "did:plc:" + hashlib.sha256(handle.encode()).hexdigest()[:24]


@dataclass
class Window:
    """A fixed-window budget: `limit` points per `seconds`."""

    limit: int
    seconds: float
    used: int = 0
    started: float = 0.0

    def take(self, points: int, now: float) -> tuple[bool, int, float]:
        if now - self.started >= self.seconds:
            self.started, self.used = now, 0
        reset = self.started + self.seconds
        if self.used + points > self.limit:
            return False, max(0, self.limit - self.used), reset
        self.used += points
        return True, self.limit - self.used, reset


@dataclass
class Limits:
    """Bluesky's limits, optionally time-compressed by `speed` (10 = ten times faster)."""

    per_ip: tuple[int, float] | None = None  # (requests, seconds), Bluesky: 3000 / 300 s
    per_account_points: tuple[int, float] | None = None  # (points, seconds), Bluesky: 5000 / 3600 s
    create_cost: int = 3
    speed: float = 1.0


@dataclass
class StubState:
    records: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    order: dict[str, list[str]] = field(default_factory=dict)  # did -> rkeys in creation order
    calls: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    rejected_429: int = 0
    logins: dict[str, int] = field(default_factory=dict)


class StubPDS:
    def __init__(self, *, limits: Limits | None = None, password: str | None = None, latency: float = 0.0):
        self.state = StubState()
        self.limits = limits or Limits()
        self.password = password  # None: any password logs in
        self.latency = latency
        self._lock = threading.Lock()
        self._cid = itertools.count(1)
        self._ip_window: Window | None = None
        self._account_windows: dict[str, Window] = {}
        self._t0 = time.monotonic()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -----------------------------------------------------------------

    def start(self, port: int = 0) -> "StubPDS":
        stub = self

        class Handler(_Handler):
            pds = stub

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="stub-pds")
        self._thread.start()
        return self

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "StubPDS":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # --- inspection -------------------------------------------------------------------

    def count(self, method: str | None = None) -> int:
        with self._lock:
            if method is None:
                return sum(self.state.calls.values())
            return self.state.calls.get(method, 0)

    def records_of(self, did: str) -> list[str]:
        with self._lock:
            return list(self.state.order.get(did, []))

    def total_records(self) -> int:
        with self._lock:
            return len(self.state.records)

    # --- rate limits ----------------------------------------------------------------------

    def _now(self) -> float:
        return (time.monotonic() - self._t0) * self.limits.speed

    def _check_limits(self, did: str | None, points: int) -> tuple[bool, dict[str, str]]:
        """Take budget; returns (allowed, RateLimit-* headers in real time)."""
        now = self._now()
        headers: dict[str, str] = {}
        allowed = True
        tightest: tuple[int, float, int, float] | None = None  # remaining, reset (compressed), limit, window
        if self.limits.per_ip:
            if self._ip_window is None:
                self._ip_window = Window(*self.limits.per_ip, started=now)
            ok, remaining, reset = self._ip_window.take(1, now)
            allowed &= ok
            tightest = (remaining, reset, self.limits.per_ip[0], self.limits.per_ip[1])
        if did and points and self.limits.per_account_points:
            window = self._account_windows.get(did)
            if window is None:
                window = self._account_windows[did] = Window(*self.limits.per_account_points, started=now)
            ok, remaining, reset = window.take(points, now) if allowed else (False, window.limit - window.used,
                                                                             window.started + window.seconds)
            allowed &= ok
            limit, seconds = self.limits.per_account_points
            # report in requests of `points` each, as a client would plan them
            if tightest is None or remaining // points < tightest[0]:
                tightest = (remaining // points, reset, limit // points, seconds)
        if tightest is not None:
            remaining, reset, limit, seconds = tightest
            real_reset = time.time() + (reset - now) / self.limits.speed
            headers = {"RateLimit-Limit": str(limit), "RateLimit-Remaining": str(remaining),
                       "RateLimit-Reset": str(int(real_reset + 0.999)),
                       "RateLimit-Policy": f"{limit};w={int(seconds)}"}
        return allowed, headers

    # --- methods ------------------------------------------------------------------------------

    def handle(self, method: str, params: dict[str, str], body: dict[str, Any] | None,
               auth: str | None) -> tuple[int, dict[str, Any], dict[str, str]]:
        if self.latency:
            time.sleep(self.latency)
        with self._lock:
            self.state.calls[method] = self.state.calls.get(method, 0) + 1
            did = _did_from_auth(auth)
            points = self.limits.create_cost if method in ("com.atproto.repo.createRecord",) else 0
            allowed, headers = self._check_limits(did, points)
            if not allowed:
                self.state.rejected_429 += 1
                return 429, {"error": "RateLimitExceeded", "message": "Rate Limit Exceeded"}, headers
            status, answer = self._dispatch(method, params, body or {}, did)
            return status, answer, headers

    def _dispatch(self, method: str, params: dict[str, str], body: dict[str, Any],
                  did: str | None) -> tuple[int, dict[str, Any]]:
        if method == "com.atproto.server.createSession":
            handle = str(body.get("identifier", "")).lower()
            if self.password is not None and body.get("password") != self.password:
                return 401, {"error": "AuthenticationRequired", "message": "Invalid identifier or password"}
            self.state.logins[handle] = self.state.logins.get(handle, 0) + 1
            return 200, self._session(handle)
        if method == "com.atproto.server.refreshSession":
            if did is None:
                return 400, {"error": "InvalidToken", "message": "bad token"}
            return 200, {**self._session_for(did)}
        if did is None:
            return 401, {"error": "AuthMissing", "message": "Authentication Required"}
        if method == "com.atproto.repo.createRecord":
            key = (body["repo"], body["rkey"])
            if key in self.state.records:
                self.state.duplicates += 1
                return 500, {"error": "InternalServerError", "message": "Internal Server Error"}
            cid = f"bafyrei{next(self._cid):020d}"
            uri = f"at://{body['repo']}/{body['collection']}/{body['rkey']}"
            self.state.records[key] = {"uri": uri, "cid": cid, "value": body["record"]}
            self.state.order.setdefault(body["repo"], []).append(body["rkey"])
            return 200, {"uri": uri, "cid": cid, "validationStatus": "valid"}
        if method == "com.atproto.repo.getRecord":
            record = self.state.records.get((params.get("repo", ""), params.get("rkey", "")))
            if record is None:
                return 400, {"error": "RecordNotFound", "message": "Could not locate record"}
            return 200, record
        if method == "com.atproto.identity.resolveHandle":
            return 200, {"did": did_for(params.get("handle", ""))}
        return 501, {"error": "MethodNotImplemented", "message": method}

    def _session(self, handle: str) -> dict[str, Any]:
        return {**self._session_for(did_for(handle)), "handle": handle}

    def _session_for(self, did: str) -> dict[str, Any]:
        return {"did": did, "handle": did, "accessJwt": make_jwt(did, "com.atproto.appPass", 7200),
                "refreshJwt": make_jwt(did, "com.atproto.refresh", 90 * 86400), "active": True}


def _did_from_auth(auth: str | None) -> str | None:
    if not auth or not auth.startswith("Bearer "):
        return None
    try:
        payload = auth[7:].split(".")[1]
        payload += "=" * (-len(payload) % 4)
        return json.loads(base64.urlsafe_b64decode(payload))["sub"]
    except (IndexError, ValueError, KeyError):
        return None


class _Handler(BaseHTTPRequestHandler):
    pds: StubPDS
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go in two writes: no 40 ms delayed-ACK stall

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def _serve(self, body: dict[str, Any] | None) -> None:
        parts = urlsplit(self.path)
        method = parts.path.rsplit("/", 1)[-1]
        params = {k: v[0] for k, v in parse_qs(parts.query).items()}
        status, answer, headers = self.pds.handle(method, params, body, self.headers.get("Authorization"))
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802
        self._serve(None)

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw and "json" in (self.headers.get("Content-Type") or "") else {}
        except ValueError:
            body = {}
        self._serve(body)
