"""A fault-injecting HTTP/1.1 reverse proxy for XRPC tests (stdlib only).

Every request is forwarded unchanged (method, path+query, headers incl. Host, body) to
`upstream` on a fresh connection, and the full answer is relayed unchanged (status, reason,
headers, body) except that every response carries ``Connection: close`` and a
``Content-Length``: clients such as httpx never reuse a proxy connection, so a dropped
connection is always a fresh one. WebSocket / streaming endpoints are not supported.

Faults are rules, consulted in order; the first one whose `match` fits and whose `times`
is not used up applies (``times=None``: forever)::

    proxy.add_rule("com.atproto.repo.createRecord", lose_response())   # PDS stores, client errors
    proxy.add_rule("*", error(503), times=2)                           # next two requests of any kind
    proxy.add_rule("com.atproto.server.createSession",
                   error(429, {"error": "RateLimitExceeded", "message": "Rate Limit Exceeded"},
                         {"RateLimit-Remaining": "0", "Retry-After": "2"}))

Actions (small frozen dataclasses, built by these functions):

- ``forward()``                       relay normally (put first, with times=N, to let N requests through)
- ``error(status, json_body, headers)`` answer without forwarding
- ``lose_response(abort=False)``      forward (the PDS acts), then close the client connection
                                      without a byte: httpx raises RemoteProtocolError
                                      (abort=True: TCP RST, httpx raises ReadError)
- ``reset()``                         TCP RST without forwarding (httpx: ReadError / ConnectError)
- ``delay(seconds)``                  sleep (woken early by stop()), then forward
- ``error_after_forward(status, json_body, headers)``  forward (the PDS acts), answer the error instead
- ``random_faults(lose=, error5xx=, reset=, delay=, burst429=, deck=, seed=...)``  chaos (not a
                                      dataclass: it keeps counts and state): each request gets, with
                                      the given probabilities, one of the faults above, or starts a
                                      burst of 429s (Retry-After / RateLimit headers); else it is
                                      forwarded. ``.snapshot()`` says what was injected, by kind.

`match` is an XRPC method name (the path /xrpc/<method>), "*" for everything, or, for a
non-XRPC path, the path itself ("/.well-known/did.json").
"""

from __future__ import annotations

import collections
import dataclasses
import http.client
import json
import logging
import math
import random
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from email.utils import formatdate
from typing import Any, Iterable, Mapping, Union
from urllib.parse import urlsplit

__all__ = [
    "Action",
    "Delay",
    "Error",
    "ErrorAfterForward",
    "FaultProxy",
    "RandomFaults",
    "Forward",
    "LoseResponse",
    "Reset",
    "Rule",
    "SeenRequest",
    "delay",
    "error",
    "error_after_forward",
    "forward",
    "lose_response",
    "random_faults",
    "reset",
]

log = logging.getLogger(__name__)

HeadersArg = Union[Mapping[str, str], Iterable[tuple[str, str]], None]

# Not relayed as-is: hop-by-hop headers, and the framing headers the proxy sets itself.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
    }
)


def _header_list(headers: HeadersArg) -> tuple[tuple[str, str], ...]:
    if headers is None:
        return ()
    items = headers.items() if isinstance(headers, Mapping) else headers
    return tuple((str(k), str(v)) for k, v in items)


# -- actions ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Forward:
    """Relay normally."""


@dataclass(frozen=True)
class Error:
    """Answer `status` (JSON body if given) without forwarding."""

    status: int
    json_body: Any = None
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class LoseResponse:
    """Forward, then close the client connection without answering (abort: with a TCP RST)."""

    abort: bool = False


@dataclass(frozen=True)
class Reset:
    """Close the client connection with a TCP RST, without forwarding."""


@dataclass(frozen=True)
class Delay:
    """Sleep `seconds`, then forward."""

    seconds: float


@dataclass(frozen=True)
class ErrorAfterForward:
    """Forward (the upstream acts), then answer `status` instead of the real answer."""

    status: int
    json_body: Any = None
    headers: tuple[tuple[str, str], ...] = ()


class RandomFaults:
    """Chaos: each request gets one fault drawn at random (see `random_faults`), or is forwarded.

    Kinds counted in `counts`: "lose_response" (the upstream acted, the client gets nothing: a FIN
    or, half of the time, a RST), "error_5xx" (answered without forwarding), "error_5xx_after_forward"
    (the upstream acted, the client gets a 5xx), "reset" (RST, not forwarded), "delay" (forwarded late),
    "burst_429" (bursts started) and "429" (every 429 answered, bursts included), "forward".
    A burst lasts `burst_length` seconds (drawn): every request this rule sees meanwhile is answered
    429 with, drawn per burst, Retry-After in seconds, Retry-After as an HTTP date, or only
    RateLimit-Limit/Remaining(0)/Reset/Policy; all of them name the end of the burst (never a time
    already past). With `deck=N` the kinds are dealt from a shuffled deck of N requests holding
    round(p * N) (at least 1) of each kind with p > 0: exact proportions over every N requests (a
    bounded test then sees every kind), random order. Thread-safe; `seed` makes the draws
    repeatable (not the timing of requests).
    """

    _STATUSES_5XX = (500, 502, 503, 504)

    def __init__(
        self,
        *,
        lose: float = 0.0,
        error5xx: float = 0.0,
        reset: float = 0.0,
        delay: float = 0.0,
        burst429: float = 0.0,
        after_forward_share: float = 0.5,
        delay_range: tuple[float, float] = (0.2, 2.0),
        burst_length: tuple[float, float] = (0.5, 2.0),
        deck: int | None = None,
        seed: int | None = None,
    ) -> None:
        probabilities = (lose, error5xx, reset, delay, burst429)
        if any(p < 0 for p in probabilities) or sum(probabilities) > 1:
            raise ValueError("probabilities must be >= 0 and sum to at most 1")
        if deck is not None and deck < 1:
            raise ValueError("deck must be >= 1")
        self.deck = deck
        self._cards: list[str] = []
        self.lose, self.error5xx, self.reset, self.delay, self.burst429 = probabilities
        self.after_forward_share = after_forward_share
        self.delay_range = delay_range
        self.burst_length = burst_length
        self.counts: collections.Counter[str] = collections.Counter()
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._burst_until = 0.0
        self._burst_style = "seconds"

    def _error_429(self, now: float) -> Error:
        """A 429 of the running burst; its headers name the burst's end, seen from `now`."""
        end = self._burst_until
        self.counts["429"] += 1
        if self._burst_style == "seconds":
            headers: tuple[tuple[str, str], ...] = (("Retry-After", str(max(1, math.ceil(end - now)))),)
        elif self._burst_style == "date":
            headers = (("Retry-After", formatdate(math.ceil(end), usegmt=True)),)
        else:
            headers = (("RateLimit-Limit", "100"), ("RateLimit-Remaining", "0"),
                       ("RateLimit-Reset", str(math.ceil(end))), ("RateLimit-Policy", "100;w=300"))
        return Error(429, {"error": "RateLimitExceeded", "message": "Rate Limit Exceeded"}, headers)

    def _kinds(self) -> tuple[tuple[str, float], ...]:
        after = self.error5xx * self.after_forward_share
        return (("lose", self.lose), ("5xx", self.error5xx - after), ("5xx_after", after), ("reset", self.reset),
                ("delay", self.delay), ("429", self.burst429))

    def _draw(self) -> str:
        if self.deck is None:  # independent draws
            r = self._rng.random()
            for kind, p in self._kinds():
                if r < p:
                    return kind
                r -= p
            return "forward"
        if not self._cards:  # a shuffled deck: exact proportions over every `deck` requests
            cards = [kind for kind, p in self._kinds() for _ in range(max(1, round(p * self.deck)) if p else 0)]
            self._cards = cards + ["forward"] * max(0, self.deck - len(cards))
            self._rng.shuffle(self._cards)
        return self._cards.pop()

    def pick(self) -> Action:
        """The concrete action for one request (and count it)."""
        with self._lock:
            now = time.time()
            if now < self._burst_until:
                return self._error_429(now)
            kind = self._draw()
            if kind == "forward":
                self.counts["forward"] += 1
                return Forward()
            if kind == "lose":
                self.counts["lose_response"] += 1
                return LoseResponse(abort=self._rng.random() < 0.5)
            if kind in ("5xx", "5xx_after"):
                status = self._rng.choice(self._STATUSES_5XX)
                body = {"error": "InternalServerError", "message": f"fault proxy: injected {status}"}
                if kind == "5xx_after":
                    self.counts["error_5xx_after_forward"] += 1
                    return ErrorAfterForward(status, body)
                self.counts["error_5xx"] += 1
                return Error(status, body)
            if kind == "reset":
                self.counts["reset"] += 1
                return Reset()
            if kind == "delay":
                self.counts["delay"] += 1
                return Delay(self._rng.uniform(*self.delay_range))
            self.counts["burst_429"] += 1
            self._burst_until = now + self._rng.uniform(*self.burst_length)
            self._burst_style = self._rng.choice(("seconds", "date", "ratelimit"))
            return self._error_429(now)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)

    def __repr__(self) -> str:
        return (f"RandomFaults(lose={self.lose}, error5xx={self.error5xx}, reset={self.reset}, "
                f"delay={self.delay}, burst429={self.burst429})")


Action = Union[Forward, Error, LoseResponse, Reset, Delay, ErrorAfterForward, RandomFaults]


def forward() -> Forward:
    return Forward()


def error(status: int, json_body: Any = None, headers: HeadersArg = None) -> Error:
    return Error(status, json_body, _header_list(headers))


def lose_response(abort: bool = False) -> LoseResponse:
    return LoseResponse(abort)


def reset() -> Reset:
    return Reset()


def delay(seconds: float) -> Delay:
    return Delay(float(seconds))


def error_after_forward(status: int, json_body: Any = None, headers: HeadersArg = None) -> ErrorAfterForward:
    return ErrorAfterForward(status, json_body, _header_list(headers))


def random_faults(
    *,
    lose: float = 0.0,
    error5xx: float = 0.0,
    reset: float = 0.0,
    delay: float = 0.0,
    burst429: float = 0.0,
    after_forward_share: float = 0.5,
    delay_range: tuple[float, float] = (0.2, 2.0),
    burst_length: tuple[float, float] = (0.5, 2.0),
    deck: int | None = None,
    seed: int | None = None,
) -> RandomFaults:
    """Chaos for every request the rule matches (use times=None); see RandomFaults."""
    return RandomFaults(lose=lose, error5xx=error5xx, reset=reset, delay=delay, burst429=burst429,
                        after_forward_share=after_forward_share, delay_range=delay_range,
                        burst_length=burst_length, deck=deck, seed=seed)


@dataclass
class Rule:
    """A fault rule; `remaining` None = forever, `hits` = requests it was applied to."""

    match: str
    action: Action
    remaining: int | None = 1
    hits: int = 0

    def matches(self, method: str) -> bool:
        return (self.remaining is None or self.remaining > 0) and self.match in ("*", method)


@dataclass
class SeenRequest:
    """One request the proxy received (recorded on arrival), and what it did with it."""

    method: str  # XRPC method name, or the path for non-XRPC requests
    http_method: str
    path: str  # path + query as received
    action: str  # class name of the action ("Forward" when no rule applied)
    status: int | None = None  # set just before the answer is written; None if none was sent
    time: float = field(default_factory=time.time)


# -- server -----------------------------------------------------------------------------


def _xrpc_method(raw_path: str) -> str:
    path = urlsplit(raw_path).path
    return path[len("/xrpc/") :] if path.startswith("/xrpc/") else path


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 120  # per socket operation on the client side
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        log.debug("faultproxy %s: " + format, self.address_string(), *args)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size_line = self.rfile.readline(65537)
                size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline(65537)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _handle(self) -> None:
        self.close_connection = True
        proxy = self.server.proxy
        body = self._read_body()
        method = _xrpc_method(self.path)
        rule, seen = proxy._select(method, self.command, self.path)
        action: Action = rule.action if rule else Forward()
        if isinstance(action, RandomFaults):
            action = action.pick()
            with proxy._lock:
                seen.action = type(action).__name__
        if isinstance(action, (Error, ErrorAfterForward)):
            if isinstance(action, ErrorAfterForward):
                self._forward(body)
            self._send(seen, action.status, None, action.headers, _json_bytes(action.json_body), action.json_body is not None)
        elif isinstance(action, Reset):
            self._abort()
        elif isinstance(action, LoseResponse):
            self._forward(body)
            if action.abort:
                self._abort()
            # else: return without writing; the server then closes the socket (FIN)
        else:
            if isinstance(action, Delay):
                proxy._stopping.wait(action.seconds)
            up_status, reason, headers, data = self._forward(body)
            self._send(seen, up_status, reason, proxy._with_extra_headers(method, headers), data)

    def _forward(self, body: bytes) -> tuple[int, str | None, list[tuple[str, str]], bytes]:
        proxy = self.server.proxy
        conn = http.client.HTTPConnection(proxy.upstream_host, proxy.upstream_port, timeout=proxy.upstream_timeout)
        try:
            conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for k, v in self.headers.items():
                if k.lower() not in _HOP_BY_HOP:
                    conn.putheader(k, v)
            if body or self.command in ("POST", "PUT", "PATCH"):
                conn.putheader("Content-Length", str(len(body)))
            conn.putheader("Connection", "close")
            conn.endheaders(body or None)
            resp = conn.getresponse()
            data = resp.read()
            headers = [(k, v) for k, v in resp.getheaders() if k.lower() not in _HOP_BY_HOP]
            if self.command == "HEAD" and resp.getheader("Content-Length"):
                headers.append(("Content-Length", resp.getheader("Content-Length", "0")))
            return resp.status, resp.reason, headers, data
        except (OSError, http.client.HTTPException) as e:
            log.warning("faultproxy: upstream %s failed: %r", self.path, e)
            msg = {"error": "UpstreamUnavailable", "message": f"fault proxy: upstream failed: {e!r}"}
            return 502, "Bad Gateway", [("Content-Type", "application/json; charset=utf-8")], _json_bytes(msg)
        finally:
            conn.close()

    def _send(
        self,
        seen: SeenRequest,
        status: int,
        reason: str | None,
        headers: Iterable[tuple[str, str]],
        body: bytes,
        json_ct: bool = False,
    ) -> None:
        with self.server.proxy._lock:
            seen.status = status  # before the client can see the answer
        self.send_response_only(status, reason)
        names = set()
        for k, v in headers:
            names.add(k.lower())
            self.send_header(k, v)
        if json_ct and "content-type" not in names:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        if "content-length" not in names:
            self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)
        self.wfile.flush()

    def _abort(self) -> None:
        sock = self.connection
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()  # with linger 0: RST instead of FIN
        except OSError:
            pass


for _verb in ("GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"):
    setattr(_Handler, f"do_{_verb}", _Handler._handle)


def _json_bytes(obj: Any) -> bytes:
    return b"" if obj is None else json.dumps(obj).encode()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, port: int, proxy: FaultProxy) -> None:
        self.proxy = proxy
        super().__init__(("127.0.0.1", port), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError, ValueError)):
            log.debug("faultproxy: client %s: %r", client_address, exc)
        else:
            log.exception("faultproxy: error handling a request from %s", client_address)


class FaultProxy:
    """Reverse proxy on 127.0.0.1:`listen_port` (0 = pick one) to `upstream` ("http://127.0.0.1:N")."""

    def __init__(self, listen_port: int, upstream: str, upstream_timeout: float = 60.0) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname or not parts.port:
            raise ValueError(f"upstream must be http://host:port, got {upstream!r}")
        self.upstream = upstream
        self.upstream_host: str = parts.hostname
        self.upstream_port: int = parts.port
        self.upstream_timeout = upstream_timeout
        self._port = listen_port
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._rules: list[Rule] = []
        self._counts: collections.Counter[str] = collections.Counter()
        self._seen: collections.deque[SeenRequest] = collections.deque(maxlen=10000)
        self._extra_headers: dict[str, tuple[tuple[str, str], ...]] = {}
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._server.server_address[1] if self._server else self._port

    @property
    def url(self) -> str:
        """http://localhost:PORT (the form the PDS puts in DID documents)."""
        return f"http://localhost:{self.port}"

    def start(self) -> FaultProxy:
        if self._server is not None:
            raise RuntimeError("FaultProxy already started")
        self._stopping.clear()
        self._server = _Server(self._port, self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True, name=f"faultproxy-{self.port}"
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, wake delayed requests, close the socket. Idempotent."""
        self._stopping.set()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- rules ---------------------------------------------------------------------

    def add_rule(self, match: str, action: Action, times: int | None = 1) -> Rule:
        """Append a rule; returns it (see `.hits`, `.remaining`)."""
        if times is not None and times < 0:
            raise ValueError("times must be >= 0 or None")
        rule = Rule(match, action, times)
        with self._lock:
            self._rules.append(rule)
        return rule

    def clear_rules(self) -> None:
        with self._lock:
            self._rules.clear()

    def set_response_headers(self, match: str, headers: HeadersArg) -> None:
        """Add (override) headers on forwarded responses for `match`; None/{} removes."""
        with self._lock:
            hl = _header_list(headers)
            if hl:
                self._extra_headers[match] = hl
            else:
                self._extra_headers.pop(match, None)

    def _select(self, method: str, http_method: str, path: str) -> tuple[Rule | None, SeenRequest]:
        """Count and record the request, and pick (and use up) the rule that applies."""
        with self._cond:
            self._counts[method] += 1
            chosen = next((r for r in self._rules if r.matches(method)), None)
            if chosen is not None:
                if chosen.remaining is not None:
                    chosen.remaining -= 1
                chosen.hits += 1
            seen = SeenRequest(method, http_method, path, type(chosen.action).__name__ if chosen else "Forward")
            self._seen.append(seen)
            self._cond.notify_all()
            return chosen, seen

    def _with_extra_headers(self, method: str, headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
        with self._lock:
            extra = list(self._extra_headers.get("*", ())) + list(self._extra_headers.get(method, ()))
        if not extra:
            return headers
        override = {k.lower() for k, _ in extra}
        return [(k, v) for k, v in headers if k.lower() not in override] + extra

    # -- observation ---------------------------------------------------------------

    def calls(self, method: str | None = None) -> int:
        """Requests received for `method` (all methods if None), faulted or not."""
        with self._lock:
            return sum(self._counts.values()) if method is None else self._counts[method]

    def reset_counts(self) -> None:
        """Zero the counters and forget the request history."""
        with self._lock:
            self._counts.clear()
            self._seen.clear()

    def seen(self) -> list[SeenRequest]:
        """The requests received (newest last, at most 10000), with what was done to each."""
        with self._lock:
            return [dataclasses.replace(s) for s in self._seen]

    def wait_for_calls(self, method: str | None, n: int, timeout: float = 10.0) -> bool:
        """Block until calls(method) >= n or `timeout` seconds pass; True if reached."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while (sum(self._counts.values()) if method is None else self._counts[method]) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True
