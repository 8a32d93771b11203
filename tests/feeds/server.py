"""A feed server on loopback: a threaded HTTP server with mutable routes that
honours ETag / Last-Modified and records every request."""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclasses.dataclass
class Route:
    body: bytes = b""
    status: int = 200
    content_type: str = "application/rss+xml; charset=utf-8"
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    etag: bool = True  # send an ETag (a hash of the body) and honour If-None-Match
    last_modified: str | None = None  # send it and honour If-Modified-Since
    content_length: bool = True


@dataclasses.dataclass(frozen=True)
class Request:
    path: str
    headers: dict[str, str]
    status: int


class FeedServer:
    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802
                server._serve(self)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def url(self, path: str = "/feed.xml") -> str:
        return self.base + path

    def set(self, path: str, body: bytes | str = b"", **kwargs: Any) -> Route:
        route = Route(body=body.encode() if isinstance(body, str) else body, **kwargs)
        with self._lock:
            self.routes[path] = route
        return route

    def count(self, path: str | None = None, status: int | None = None) -> int:
        with self._lock:
            return sum(1 for r in self.requests
                       if (path is None or r.path == path) and (status is None or r.status == status))

    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        with self._lock:
            route = self.routes.get(h.path)
        headers = {k.lower(): v for k, v in h.headers.items()}
        if route is None:
            route = Route(body=b"not found", status=404, content_type="text/plain", etag=False)
        status, body = route.status, route.body
        extra = dict(route.headers)
        if status == 200:
            if route.etag:
                tag = '"' + hashlib.sha1(body).hexdigest()[:16] + '"'
                extra["ETag"] = tag
                if headers.get("if-none-match") == tag:
                    status, body = 304, b""
            if route.last_modified:
                extra["Last-Modified"] = route.last_modified
                if headers.get("if-modified-since") == route.last_modified and not route.etag:
                    status, body = 304, b""
        with self._lock:
            self.requests.append(Request(h.path, headers, status))
        h.send_response(status)
        if status != 304:
            h.send_header("Content-Type", route.content_type)
        for key, value in extra.items():
            h.send_header(key, value)
        if route.content_length or status == 304:
            h.send_header("Content-Length", str(len(body)))
        else:
            h.send_header("Connection", "close")
        h.end_headers()
        if body:
            try:
                h.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client stopped reading (a size cap)
        if not route.content_length:
            h.close_connection = True

    def start(self) -> "FeedServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
