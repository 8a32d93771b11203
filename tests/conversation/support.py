"""What the notify tests share: interactions stored the way the backfeed stores them
(the row and `interaction_changed` in one transaction), a webhook receiver and a
Webmention-enabled site on 127.0.0.1, and `skypost serve`'s app on a real port."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator
from urllib.parse import parse_qs

import httpx
import mf2py
import uvicorn

from skypost import Skypost
from skypost.conversation.outbox import interaction_changed
from skypost.store import queries as q
from skypost.store import queries_outbox as qo
from skypost.web import create_app
from skypost.web.hooks import signature_problem
from tests.support.pds import free_port

# --- interactions, as the backfeed stores them ----------------------------------------------


def insert_post(app: Skypost, post_id: str, url: str) -> int:
    now = app.clock()
    with app.db.transaction() as conn:
        seq = q.insert_post_if_absent(conn, post_id=post_id, document={"id": post_id, "title": post_id, "url": url},
                                      status="completed", reason=None, source="api", now=now)
    assert seq is not None
    return int(seq)


_counter = iter(range(1, 1_000_000))


def insert_interaction(app: Skypost, post_seq: int, kind: str, *, text: str | None = None,
                       name: str = "Ann", handle: str = "ann.test", avatar: str | None = None) -> int:
    n = next(_counter)
    did = f"did:plc:author{n:06d}"
    collection = {"reply": "app.bsky.feed.post", "quote": "app.bsky.feed.post", "like": "app.bsky.feed.like",
                  "repost": "app.bsky.feed.repost"}[kind]
    now = app.clock()
    with app.db.transaction() as conn:
        interaction_id = conn.scalar(
            "INSERT INTO interactions (kind, uri, cid, post_seq, delivery_id, account, subject_uri, author_did, "
            "author_handle, author_display_name, author_avatar, text, parent_uri, created_at, indexed_at, "
            "removed_at, updated_at) VALUES (:kind, :uri, 'bafycid', :seq, NULL, 'site.test', :subject, :did, "
            ":handle, :name, :avatar, :text, :parent, :now, :now, NULL, :now) RETURNING id",
            {"kind": kind, "uri": f"at://{did}/{collection}/3k{n:011d}", "seq": post_seq,
             "subject": "at://did:plc:site/app.bsky.feed.post/3ksite", "did": did, "handle": handle,
             "name": name, "avatar": avatar, "text": text,
             "parent": "at://did:plc:site/app.bsky.feed.post/3ksite" if kind == "reply" else None, "now": now})
        interaction_changed(conn, interaction_id=interaction_id, event="interaction.created", now=now)
    return int(interaction_id)


def remove_interaction(app: Skypost, interaction_id: int) -> None:
    now = app.clock()
    with app.db.transaction() as conn:
        conn.execute("UPDATE interactions SET removed_at = :now, updated_at = :now WHERE id = :id",
                     {"now": now, "id": interaction_id})
        interaction_changed(conn, interaction_id=interaction_id, event="interaction.removed", now=now)


def outbox_rows(app: Skypost) -> list[dict[str, Any]]:
    with app.db.connect() as conn:
        return conn.all("SELECT * FROM outbox ORDER BY id")


def run_until_settled(app: Skypost, clock: Any, *, rounds: int = 12) -> None:
    """Run burst workers, moving the fake clock to each next attempt, until nothing is unfinished."""
    for _ in range(rounds):
        app.run_worker(burst=True)
        with app.db.connect() as conn:
            unfinished = conn.scalar("SELECT COUNT(*) FROM outbox WHERE status = 'pending'")
            pending = qo.next_event_due_at(conn)
            sending = conn.scalar("SELECT COUNT(*) FROM outbox WHERE status = 'sending'")
        assert not sending
        if not unfinished:
            return
        assert pending is not None
        clock.advance(max(0.0, pending - clock()) + 0.001)
    raise AssertionError(f"outbox not settled after {rounds} rounds: {outbox_rows(app)}")


# --- a webhook receiver -------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Delivery:
    event_id: str
    event_type: str
    body: bytes
    headers: dict[str, str]
    signature_problem: str | None
    answered: str  # what the receiver did


class Server:
    """A threaded HTTP server on 127.0.0.1 whose handler is a function of the request."""

    def __init__(self, handle: Callable[[BaseHTTPRequestHandler, str, bytes], None]) -> None:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                handle(self, self.command, body)

            do_GET = do_POST = do_HEAD = _any  # noqa: N815

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def answer(h: BaseHTTPRequestHandler, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
           content_type: str = "text/plain") -> None:
    h.send_response(status)
    h.send_header("Content-Type", content_type)
    h.send_header("Content-Length", str(len(body)))
    for k, v in (headers or {}).items():
        h.send_header(k, v)
    h.end_headers()
    if h.command != "HEAD":
        h.wfile.write(body)


class WebhookReceiver:
    """Checks each request's signature and timestamp like skypost's own incoming hooks, and
    answers as `plan(event body) -> "ok" | "500" | "drop" | "slow" | "<status>"` says."""

    def __init__(self, clock: Callable[[], float], plan: Callable[[dict[str, Any]], str] | None = None,
                 slow_seconds: float = 1.5) -> None:
        self.secret = ""
        self.clock = clock
        self.plan = plan or (lambda event: "ok")
        self.slow_seconds = slow_seconds
        self.deliveries: list[Delivery] = []
        self.lock = threading.Lock()
        self.server = Server(self._handle)
        self.url = self.server.base + "/skypost-events"

    def _handle(self, h: BaseHTTPRequestHandler, method: str, body: bytes) -> None:
        headers = {k.lower(): v for k, v in h.headers.items()}
        event = json.loads(body)
        action = self.plan(event)
        problem = signature_problem(self.secret, body, headers, now=self.clock())
        with self.lock:
            self.deliveries.append(Delivery(headers.get("x-skypost-event-id", ""), headers.get("x-skypost-event", ""),
                                            body, headers, problem, action))
        if action == "drop":
            h.close_connection = True
            return  # no answer at all: the connection is closed
        if action == "slow":
            time.sleep(self.slow_seconds)
            action = "ok"
        answer(h, 200 if action == "ok" else int(action), b"ok")

    def unique(self) -> dict[str, Delivery]:
        """Deliveries by event id, as a receiver that deduplicates keeps them."""
        seen: dict[str, Delivery] = {}
        for d in self.deliveries:
            seen.setdefault(d.event_id, d)
        return seen

    def close(self) -> None:
        self.server.close()


# --- a Webmention-enabled site ------------------------------------------------------------------

@dataclasses.dataclass
class Mention:
    source: str
    target: str
    source_status: int
    entry: dict[str, Any] | None  # the h-entry mf2py found on the source, if any
    links_to_target: bool


class WebmentionSite:
    """Post pages that advertise an endpoint (each page its own way) and the endpoint, which
    verifies each Webmention like a real receiver: it fetches the source, checks that it links
    to the target, and parses its h-entry with mf2py."""

    def __init__(self) -> None:
        self.pages: dict[str, tuple[int, dict[str, str], str, bytes]] = {}
        self.mentions: list[Mention] = []
        self.endpoint_hits: list[str] = []
        self.lock = threading.Lock()
        self.server = Server(self._handle)

    @property
    def base(self) -> str:
        return self.server.base

    def page(self, path: str, *, link_header: str | None = None, html_head: str = "", html_body: str = "",
             status: int = 200, content_type: str = "text/html; charset=utf-8") -> str:
        headers = {"Link": link_header} if link_header else {}
        body = f"<!doctype html><html><head><title>post</title>{html_head}</head><body>{html_body}" \
               "<p>The post.</p></body></html>"
        self.pages[path] = (status, headers, content_type, body.encode())
        return self.base + path

    def _handle(self, h: BaseHTTPRequestHandler, method: str, body: bytes) -> None:
        path = h.path
        if method == "POST":  # the endpoint, wherever a page says it is
            self._receive(h, path, body)
            return
        found = self.pages.get(path)
        if found is None:
            answer(h, 404, b"not found")
            return
        status, headers, content_type, page = found
        answer(h, status, page, headers, content_type=content_type)

    def _receive(self, h: BaseHTTPRequestHandler, path: str, body: bytes) -> None:
        form = parse_qs(body.decode())
        source, target = form["source"][0], form["target"][0]
        with self.lock:
            self.endpoint_hits.append(path)
        fetched = httpx.get(source, timeout=5)
        entry = None
        links = False
        if fetched.status_code == 200:
            parsed = mf2py.parse(doc=fetched.text, url=source)
            entries = [i for i in parsed["items"] if "h-entry" in i["type"]]
            entry = entries[0] if entries else None
            links = target in fetched.text and entry is not None and any(
                target in entry["properties"].get(p, []) for p in ("in-reply-to", "like-of", "repost-of"))
        with self.lock:
            self.mentions.append(Mention(source, target, fetched.status_code, entry, links))
        answer(h, 202, b"accepted")

    def close(self) -> None:
        self.server.close()


@contextlib.contextmanager
def serving(app: Skypost) -> Iterator[str]:
    """`skypost serve`'s web app (no worker) on a free loopback port; yields its base URL."""
    port = free_port()
    config = uvicorn.Config(create_app(app), host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the web app did not start"
        time.sleep(0.02)
    try:
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=10)

