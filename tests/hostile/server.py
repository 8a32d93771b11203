"""A hostile HTTP server on 127.0.0.1: raw sockets, so that a route controls every byte
and its timing (headers dripped one byte at a time, bodies that never end, encodings
stacked). Each route is ``handler(conn, stop)``; ``stop`` is set when the server closes."""

from __future__ import annotations

import socket
import threading
from typing import Callable, Iterable

Handler = Callable[[socket.socket, threading.Event], None]


class HostileServer:
    def __init__(self, routes: dict[str, Handler]) -> None:
        self.routes = routes
        self.hits: dict[str, int] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            head = b""
            try:
                while b"\r\n\r\n" not in head and len(head) < 65536:
                    data = conn.recv(4096)
                    if not data:
                        return
                    head += data
                path = head.split(b" ", 2)[1].decode("ascii", "replace")
                with self._lock:
                    self.hits[path] = self.hits.get(path, 0) + 1
                route = self.routes.get(path)
                if route is None:
                    conn.sendall(response(404, b"not found"))
                    return
                conn.settimeout(None)
                route(conn, self._stop)
            except (OSError, IndexError):
                pass  # the client went away: that is what a refusal looks like from here


def response(status: int, body: bytes, headers: dict[str, str] | None = None) -> bytes:
    lines = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def serve(body: bytes, headers: dict[str, str] | None = None) -> Handler:
    def handler(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(response(200, body, headers))
    return handler


def stream(chunks: Callable[[], Iterable[bytes]], headers: dict[str, str]) -> Handler:
    """A body without Content-Length (it ends when the connection closes), sent as the
    client reads it."""
    def handler(conn: socket.socket, stop: threading.Event) -> None:
        lines = ["HTTP/1.1 200 OK", "Connection: close"] + [f"{k}: {v}" for k, v in headers.items()]
        conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        for chunk in chunks():
            if stop.is_set():
                return
            conn.sendall(chunk)
    return handler


def drip(head: bytes, *, every: float, endless: bytes = b"a") -> Handler:
    """``head`` one byte at a time, then ``endless`` forever, one byte every ``every`` s."""
    def handler(conn: socket.socket, stop: threading.Event) -> None:
        for i in range(len(head)):
            if stop.wait(every):
                return
            conn.sendall(head[i:i + 1])
        while not stop.wait(every):
            conn.sendall(endless)
    return handler


def first_then(first: Handler, then: Handler) -> Handler:
    """``first`` for the first request of the path, ``then`` for every later one."""
    count = [0]
    lock = threading.Lock()

    def handler(conn: socket.socket, stop: threading.Event) -> None:
        with lock:
            count[0] += 1
            n = count[0]
        (first if n == 1 else then)(conn, stop)
    return handler

