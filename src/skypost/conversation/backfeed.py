"""The backfeed: replies, quotes, likes and reposts of syndicated posts come back from Bluesky.

Each account has one recurring durable job (kind "backfeed", args {"account_id": N}) that
polls, then reschedules itself `backfeed_interval` seconds later; `skypost backfeed` runs the
same poll at once. A poll goes through the gates a publish does — pause, needs_reauth, the
account's breaker, the per-IP ("host") rate budget — with no transaction open during its
HTTP calls, and holds no lock a syndication needs. One poll:

1. `listNotifications` (reasons reply, quote, like, repost), page by page down to a watermark
   (the AppView's indexedAt of the newest notification read before) less WATERMARK_GRACE: a
   reaction that arrived before its target's record was known locally (a delivery whose
   response was lost and is retried) is looked at again.
2. The account's own likes, reposts and posts (`listRecords`, newest first), which
   notifications omit, down to their own watermarks (createdAt) less the same grace, and
   never past the BACKFEED_DAYS window.
3. Reconciliation of the deliveries published in the window (which ones: below):
   `getPostThread`, `getLikes`, `getRepostedBy`, `getQuotes`. A stored reaction no longer
   listed is marked removed; replies and quotes listed but never stored are stored (so a lost
   watermark loses nothing). Likes and reposts are listed by actor, without their record URI:
   those the polls missed cannot be stored from these lists.

Reactions are matched to a delivery by the AT-URI they target (reply parent, then root; the
quoted record; a like's or repost's subject) with one lookup per batch; unmatched ones are
ignored. A reaction is inserted with ON CONFLICT (uri) DO NOTHING and announced through
`outbox.interaction_changed` in the same transaction only when this statement inserted it;
a removal is one conditional UPDATE, announced only when it hit the row. So overlapping
and concurrent polls store and announce each reaction once.

Request cost of a poll with nothing new: 1 listNotifications + 3 listRecords + one getPosts
per 25 deliveries in the window (the count check). Reconciliation adds 4 requests per
delivery it looks at (more for long lists): every delivery whose like/repost/quote/reply
counts on the AppView differ from the stored live reactions, every delivery on a manual
`skypost backfeed` and, once per FULL_RECONCILE_EVERY, every delivery in the window (a
deleted nested reply changes no count of the syndicated post).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import re
from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

from skypost import resilience as rz
from skypost.conversation import outbox
from skypost.models import AccountState, ValidationError, normalize_handle, reauth_message
from skypost.store import queries as q
from skypost.store import queries_conversation as qc
from skypost.store.db import Conn
from skypost.store.rows import AccountRow, JobRow

if TYPE_CHECKING:
    from skypost.app import Skypost
    from skypost.worker import JobKind

log = logging.getLogger("skypost.backfeed")

JOB = qc.BACKFEED_JOB
KINDS = ("reply", "quote", "like", "repost")
PAGE = 100  # items per page, the most the lexicons allow
MAX_PAGES = 20  # pages of one listing in one poll
WATERMARK_GRACE = 900.0  # seconds of network time re-walked past each watermark
REMOVAL_GRACE = 120.0  # a reaction stored more recently is never removed (the views may lag)
FULL_RECONCILE_EVERY = 3600.0  # the recurring job looks at every delivery of the window this often
THREAD_DEPTH = 12  # reply levels read by getPostThread
POSTS_PER_CALL = 25  # uris per getPosts
MAX_TEXT = 20_000  # characters of a reply's or quote's text kept
STEP_ASIDE = 5.0  # seconds a due backfeed job waits when a publish is due

LIKE = "app.bsky.feed.like"
REPOST = "app.bsky.feed.repost"
POST = "app.bsky.feed.post"
_OWN_COLLECTIONS = (("likes_until", LIKE), ("reposts_until", REPOST), ("posts_until", POST))
_AT_URI = re.compile(r"at://([A-Za-z0-9._:%-]{1,2000})/([A-Za-z0-9.-]{1,317})/([A-Za-z0-9._~:-]{1,512})")


# --- what a poll finds ---------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Reaction:
    """One reaction record, with the records it may attach to, in order of preference."""

    uri: str
    cid: str | None
    candidates: tuple[tuple[str, str], ...]  # (kind, subject AT-URI)
    author_did: str
    author_handle: str | None
    author_display_name: str | None
    author_avatar: str | None
    text: str | None
    parent_uri: str | None
    created_at: float | None


@dataclasses.dataclass
class PollResult:
    account: str
    outcome: str  # "polled", "skipped" (a gate said not now), "failed", "idle" (nothing to look after)
    reason: str | None = None
    new: dict[str, int] = dataclasses.field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    removed: dict[str, int] = dataclasses.field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    requests: int = 0
    reconciled: int = 0  # deliveries reconciled
    until: float | None = None  # skipped or failed: when to look again (None: the usual interval)

    def to_json(self) -> dict[str, Any]:
        return {"account": self.account, "outcome": self.outcome, "reason": self.reason, "new": dict(self.new),
                "removed": dict(self.removed), "requests": self.requests, "reconciled": self.reconciled}


# --- hostile JSON --------------------------------------------------------------------------------

def _str(value: Any, limit: int) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= limit else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def at_uri(value: Any) -> str | None:
    text = _str(value, 2048)
    return text if text is not None and _AT_URI.fullmatch(text) else None


def _did_of(uri: str) -> str:
    return uri[5:].split("/", 1)[0]


def _collection_of(uri: str) -> str:
    return uri[5:].split("/", 2)[1]


def parse_time(value: Any) -> float | None:
    """An ISO 8601 datetime as UNIX seconds; None when unreadable (naive ones are taken as UTC)."""
    text = _str(value, 64)
    if text is None:
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        from datetime import timezone

        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


_LINK_FACET = "app.bsky.richtext.facet#link"


def expand_links(text: str, facets: Any) -> str:
    """The text with each link facet's display text (Bluesky shortens it: `example.com/lo...`)
    replaced by its full URI. Offsets are UTF-8 byte offsets, end exclusive; facets that are
    out of range, overlap, or carry a URI that is not http(s) are left as they are."""
    data = text.encode("utf-8")
    spans: list[tuple[int, int, str]] = []
    for facet in _list(facets):
        index = _dict(_dict(facet).get("index"))
        start, end = index.get("byteStart"), index.get("byteEnd")
        if not (isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= len(data)):
            continue
        for feature in _list(_dict(facet).get("features")):
            feature = _dict(feature)
            uri = _str(feature.get("uri"), 2048)
            if feature.get("$type") == _LINK_FACET and uri and re.match(r"https?://", uri, re.I):
                spans.append((start, end, uri))
                break
    out, last = [], len(data)
    for start, end, uri in sorted(spans, reverse=True):
        if end > last:
            continue  # overlaps the facet after it
        shown = data[start:end].decode("utf-8", "replace")
        full = uri if _shortens(shown, uri) else f"{shown} ({uri})"
        out.append(data[end:last])
        out.append(full.encode("utf-8"))
        last = start
    out.append(data[:last])
    return b"".join(reversed(out)).decode("utf-8", "replace")


def _shortens(shown: str, uri: str) -> bool:
    """Whether `shown` is the URI or Bluesky's shortening of it (no scheme, cut with ...)."""
    stem = shown.strip().rstrip(".…").rstrip()
    bare = re.sub(r"^https?://", "", uri, flags=re.I)
    bare_www = re.sub(r"^www\.", "", bare, flags=re.I)
    return bool(stem) and any(u.lower().startswith(stem.lower()) for u in (uri, bare, bare_www))


def reaction_from_record(uri: Any, cid: Any, record: Any, author: Any = None, *,
                         prefer: str | None = None, subject: str | None = None) -> Reaction | None:
    """A Reaction from a record (a like, repost or post) and its author's profile view; None
    when it is nothing a post can gather. `prefer` puts that kind's target first;
    `subject` forces a post to attach to that record as a reply (a thread's member)."""
    uri = at_uri(uri)
    record = _dict(record)
    if uri is None:
        return None
    did = _did_of(uri)
    profile = _dict(author)
    if profile.get("did") != did:
        profile = {}
    collection = _collection_of(uri)
    candidates: list[tuple[str, str]] = []
    text = parent = None
    if collection in (LIKE, REPOST):
        target = at_uri(_dict(record.get("subject")).get("uri"))
        if target:
            candidates.append(("like" if collection == LIKE else "repost", target))
    elif collection == POST:
        reply = _dict(record.get("reply"))
        parent = at_uri(_dict(reply.get("parent")).get("uri"))
        root = at_uri(_dict(reply.get("root")).get("uri"))
        quoted = _quoted(record.get("embed"))
        replies = [("reply", u) for u in (subject if parent else None, parent, root) if u]
        quotes = [("quote", quoted)] if quoted else []
        candidates = quotes + replies if prefer == "quote" else replies + quotes
        raw = record.get("text")
        if isinstance(raw, str):
            text = expand_links(raw, record.get("facets"))[:MAX_TEXT]
    seen: set[str] = set()
    unique = tuple(c for c in candidates if not (c[1] in seen or seen.add(c[1])))  # type: ignore[func-returns-value]
    if not unique:
        return None
    return Reaction(
        uri=uri, cid=_str(cid, 256), candidates=unique, author_did=did,
        author_handle=_str(profile.get("handle"), 253), author_display_name=_str(profile.get("displayName"), 640),
        author_avatar=_str(profile.get("avatar"), 2048), text=text, parent_uri=parent,
        created_at=parse_time(record.get("createdAt")))


def _quoted(embed: Any) -> str | None:
    embed = _dict(embed)
    kind = embed.get("$type")
    if kind == "app.bsky.embed.record":
        return at_uri(_dict(embed.get("record")).get("uri"))
    if kind == "app.bsky.embed.recordWithMedia":
        return at_uri(_dict(_dict(embed.get("record")).get("record")).get("uri"))
    return None


# --- the reads (no transaction open) -----------------------------------------------------------

@dataclasses.dataclass
class _Reads:
    """What the HTTP part of a poll learnt, to be written in one transaction."""

    reactions: list[Reaction] = dataclasses.field(default_factory=list)
    watermarks: dict[str, float | None] = dataclasses.field(default_factory=dict)
    reconciled: dict[int, "_Present"] = dataclasses.field(default_factory=dict)
    full: bool = False
    responses: list[tuple[str, int, dict[str, str]]] = dataclasses.field(default_factory=list)
    truncated: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class _Present:
    """What the views list for one delivery; a None set was not read completely."""

    posts: set[str] | None  # replies (thread) and quotes, by URI
    thread_complete: bool
    quotes_complete: bool
    likers: set[str] | None
    reposters: set[str] | None


def _walk(fetch: Callable[[str | None], dict[str, Any]], key: str, when: Callable[[Any], float | None],
          stop_at: float) -> tuple[list[Any], float | None, bool]:
    """Pages of a newest-first listing until one reaches back past `stop_at`. Returns the
    items, the newest time seen and whether MAX_PAGES cut the walk short."""
    items: list[Any] = []
    newest: float | None = None
    cursor: str | None = None
    for _ in range(MAX_PAGES):
        page = fetch(cursor)
        batch = [item for item in _list(page.get(key)) if isinstance(item, dict)]
        times = [t for t in (when(item) for item in batch) if t is not None]
        items.extend(batch)
        if times:
            newest = max(times + ([newest] if newest is not None else []))
        cursor = _str(page.get("cursor"), 1024)
        # a short page is the last one (servers hand out a cursor with it all the same)
        if len(batch) < PAGE or not cursor or (times and min(times) < stop_at):
            return items, newest, False
    return items, newest, True


def _paged_set(fetch: Callable[[str | None], dict[str, Any]], key: str,
               pick: Callable[[dict[str, Any]], str | None]) -> tuple[set[str], list[dict[str, Any]], bool]:
    """Every item of a paginated list (bounded); complete=False when the bound cut it."""
    found: set[str] = set()
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(MAX_PAGES):
        page = fetch(cursor)
        batch = [item for item in _list(page.get(key)) if isinstance(item, dict)]
        items.extend(batch)
        found.update(v for v in (pick(item) for item in batch) if v)
        cursor = _str(page.get("cursor"), 1024)
        # not "a short page is the last": a view drops blocked or taken-down items after paging,
        # and what decides a removal must be the whole list
        if not batch or not cursor:
            return found, items, True
    return found, items, False


def _thread_posts(thread: Any, depth: int = 0) -> tuple[list[dict[str, Any]], set[str], bool]:
    """The replies of a thread view (post views), the URIs present, and whether it is complete."""
    posts: list[dict[str, Any]] = []
    present: set[str] = set()
    complete = True
    node = _dict(thread)
    for child in _list(node.get("replies")):
        child = _dict(child)
        kind = child.get("$type")
        if kind == "app.bsky.feed.defs#blockedPost":
            uri = at_uri(child.get("uri"))
            if uri:
                present.add(uri)  # exists, but hidden from this viewer: not removed
            continue
        post = _dict(child.get("post"))
        uri = at_uri(post.get("uri"))
        if uri is None:
            continue  # notFoundPost and the like: gone
        posts.append(post)
        present.add(uri)
        if depth + 1 >= THREAD_DEPTH:
            if post.get("replyCount") and not child.get("replies"):
                complete = False  # deeper than we read
            continue
        more, more_present, more_complete = _thread_posts(child, depth + 1)
        posts.extend(more)
        present |= more_present
        complete = complete and more_complete
    return posts, present, complete


# --- the gate ------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class _Gate:
    account: AccountRow
    keys: Mapping[str, str]
    probe: bool
    password: str
    session: str | None


def _gate(app: "Skypost", account_id: int, owner: str, cost: int, now: float) -> _Gate | PollResult:
    """The gates of a publish, in one transaction: pause, needs_reauth, the breaker, the budgets
    (the host budget spent in SQL, shared by every worker).

    The breaker is publishing's: a poll waits while it is open or half-open (the probe is left
    to a publish), and a poll's own answers never move it — a failing read must not hold the
    account's posts, nor a working one hide failing writes (the backfeed never delays a publish)."""
    from skypost.pipeline import account_keys

    settings = app.settings
    with app.db.transaction() as conn:
        row = q.account_by_id(conn, account_id)
        if row is None:
            return PollResult("", "idle", "the account was removed")
        account = AccountRow.from_row(row)
        if q.get_setting(conn, "paused") == "1":
            return PollResult(account.handle, "skipped", "syndication is paused")
        if account.state == AccountState.NEEDS_REAUTH.value:
            return PollResult(account.handle, "skipped", reauth_message(account.handle))
        gate = rz.breaker_gate(q.breaker(conn, account.id), now)
        if not gate.allow or gate.probe:
            until = gate.wait_until if not gate.allow else now + settings.backfeed_interval
            return PollResult(account.handle, "skipped", f"circuit open for @{account.handle}", until=until)
        keys = account_keys(account.id, account.service, settings.egress_id)
        wanted = [keys["host"]] + ([keys["login"]] if not account.session_enc else [])
        rows = q.rate_limit_rows(conn, wanted)
        hold = rz.hold_until(rows, now, reserve=settings.rate_limit_reserve)
        if hold is not None:
            return PollResult(account.handle, "skipped", f"rate limit of @{account.handle} spent", until=hold)
        live = any(r.key == keys["host"] and r.remaining is not None and r.reset_at is not None
                   and r.reset_at > now for r in rows)
        if live:
            reset = q.spend_budget(conn, keys["host"], cost=cost, reserve=settings.rate_limit_reserve, now=now)
            if reset is not None:
                return PollResult(account.handle, "skipped", f"rate limit of @{account.handle} spent",
                                  until=reset)
        cipher = app.cipher()
        session = cipher.decrypt(account.session_enc) if account.session_enc else None
        return _Gate(account, keys, gate.probe, cipher.decrypt(account.password_enc), session)


# --- one poll --------------------------------------------------------------------------------------

def poll_account(app: "Skypost", account_id: int, *, owner: str | None = None, full: bool = False,
                 should_stop: Callable[[], bool] | None = None) -> PollResult:
    """Poll one account once (gates, reads, then one transaction). `full`: reconcile every
    delivery of the window, not only those whose counts changed."""
    owner = owner or f"backfeed:{os.getpid()}:{id(app)}"
    now = app.clock()
    window_start = now - app.settings.backfeed_days * 86400.0
    with app.db.connect() as conn:
        targets = qc.syndicated_since(conn, account_id, window_start)
        state = qc.backfeed_state(conn, account_id) or {}
        row = q.account_by_id(conn, account_id)
    if row is None:
        return PollResult("", "idle", "the account was removed")
    if not targets:
        return PollResult(row["handle"], "idle",
                          f"nothing syndicated in the last {app.settings.backfeed_days:g} days")
    cost = 4 + -(-len(targets) // POSTS_PER_CALL)  # the requests of a poll with nothing new
    gate = _gate(app, account_id, owner, cost, now)
    if isinstance(gate, PollResult):
        return gate
    account = gate.account
    due_full = full or (state.get("full_reconciled_at") or 0.0) + FULL_RECONCILE_EVERY <= now
    reads = _Reads(full=due_full)
    sessions: list[str] = []
    client = app.client_factory(
        service=account.service, handle=account.handle, password=gate.password, session_string=gate.session,
        on_session=sessions.append, on_response=lambda m, s, h: reads.responses.append((m, s, h)),
        timeout=app.settings.http_timeout, transport=app.http_transport())
    failure: Any = None
    try:
        _read(client, account, targets, state, reads, window_start=window_start, app=app,
              should_stop=should_stop or (lambda: False))
    except Exception as exc:  # noqa: BLE001 - every failure is classified, none escapes
        from skypost.bluesky.client import CallError, translate

        failure = translate(exc) if not isinstance(exc, CallError) else exc
        if failure.status is None and not _is_network(exc):
            log.exception("unexpected error while polling @%s", account.handle)
            failure = CallError(None, None, f"internal error: {type(exc).__name__}: {exc}")
    finally:
        client.close()
    if sessions:
        with app.db.transaction() as conn:
            q.set_account_session(conn, account.id, session_enc=app.cipher().encrypt(sessions[-1]),
                                  now=app.clock())
    now = app.clock()
    if failure is not None:
        return _record_failure(app, gate, reads, failure, now)
    return _record(app, gate, reads, now)


def _is_network(exc: BaseException) -> bool:
    import httpx
    from atproto_client.exceptions import AtProtocolError

    return isinstance(exc, (httpx.HTTPError, AtProtocolError, OSError))


def _read(client: Any, account: AccountRow, targets: Sequence[Mapping[str, Any]], state: Mapping[str, Any],
          reads: _Reads, *, window_start: float, app: "Skypost", should_stop: Callable[[], bool]) -> None:
    from skypost.bluesky.client import CallError

    def stop_at(mark: Any) -> float:
        return max(window_start, mark - WATERMARK_GRACE) if isinstance(mark, (int, float)) else window_start

    # 1. notifications (others' reactions)
    notes, newest, cut = _walk(
        lambda cursor: client.list_notifications(reasons=KINDS, cursor=cursor, limit=PAGE), "notifications",
        lambda n: parse_time(n.get("indexedAt")), stop_at(state.get("notifications_until")))
    reads.watermarks["notifications_until"] = newest
    if cut:
        reads.truncated.append("notifications")
    for note in notes:
        reason = note.get("reason")
        if reason not in KINDS:
            continue
        found = reaction_from_record(note.get("uri"), note.get("cid"), note.get("record"), note.get("author"),
                                     prefer=reason)
        if found is not None:
            reads.reactions.append(found)
    # 2. the account's own likes, reposts and replies/quotes (notifications omit them)
    me = {"did": account.did, "handle": account.handle}
    for column, collection in _OWN_COLLECTIONS:
        records, newest, cut = _walk(
            functools.partial(lambda c, cursor: client.list_records(c, cursor=cursor, limit=PAGE), collection),
            "records", lambda r: parse_time(_dict(r.get("value")).get("createdAt")), stop_at(state.get(column)))
        reads.watermarks[column] = newest
        if cut:
            reads.truncated.append(collection)
        for record in records:
            found = reaction_from_record(record.get("uri"), record.get("cid"), record.get("value"), me)
            if found is not None:
                reads.reactions.append(found)
    # 3. reconciliation of the deliveries whose counts changed (all of them when due)
    if reads.full:
        chosen = list(targets)
    else:
        chosen = _changed(client, app, targets, reads.reactions)
    for target in chosen:
        if should_stop():
            reads.full = False
            break
        try:
            reads.reconciled[target["id"]] = _reconcile(client, target, reads)
        except CallError as exc:
            if exc.status == 400:  # the record is gone or refused: leave its reactions be
                continue
            raise
    _confirm_missing_posts(client, app, reads)


def _confirm_missing_posts(client: Any, app: "Skypost", reads: _Reads) -> None:
    """A stored reply or quote missing from the views may still exist: a reply whose parent
    was deleted drops out of the thread. Ask for those records themselves (one getPosts per
    25) and keep the ones Bluesky still has."""
    if not reads.reconciled:
        return
    with app.db.connect() as conn:
        live = qc.live_interactions(conn, list(reads.reconciled))
    missing: dict[str, int] = {}
    for row in live:
        present = reads.reconciled[row["delivery_id"]]
        if row["kind"] in ("reply", "quote") and present.posts is not None and row["uri"] not in present.posts:
            missing[row["uri"]] = row["delivery_id"]
    uris = list(missing)
    for start in range(0, len(uris), POSTS_PER_CALL):
        page = client.get_posts(uris[start:start + POSTS_PER_CALL])
        for post in _list(page.get("posts")):
            uri = at_uri(_dict(post).get("uri"))
            if uri in missing:
                posts = reads.reconciled[missing[uri]].posts
                if posts is not None:
                    posts.add(uri)


def _changed(client: Any, app: "Skypost", targets: Sequence[Mapping[str, Any]],
             reactions: Sequence[Reaction]) -> list[Mapping[str, Any]]:
    """The deliveries whose counts on the AppView differ from what is stored live (plus what
    this poll found): one getPosts per 25."""
    by_uri = {t["uri"]: t for t in targets}
    views: dict[str, dict[str, Any]] = {}
    uris = list(by_uri)
    for start in range(0, len(uris), POSTS_PER_CALL):
        page = client.get_posts(uris[start:start + POSTS_PER_CALL])
        for post in _list(page.get("posts")):
            uri = at_uri(_dict(post).get("uri"))
            if uri is not None and uri in by_uri:
                views[uri] = post
    with app.db.connect() as conn:
        live = qc.live_interactions(conn, [t["id"] for t in targets])
    counts: dict[tuple[str, str], set[str]] = {}
    for row in live:
        _count(counts, row["subject_uri"], row["kind"], row["uri"], row["parent_uri"])
    for reaction in reactions:
        for kind, subject in reaction.candidates:
            if subject in by_uri:
                _count(counts, subject, kind, reaction.uri, reaction.parent_uri)
                break
    changed = []
    for uri, post in views.items():
        for kind, field in (("like", "likeCount"), ("repost", "repostCount"), ("quote", "quoteCount"),
                            ("direct", "replyCount")):
            value = post.get(field)
            if isinstance(value, int) and value != len(counts.get((uri, kind), ())):
                changed.append(by_uri[uri])
                break
    return changed


def _count(counts: dict[tuple[str, str], set[str]], subject: str, kind: str, uri: str,
           parent: str | None) -> None:
    counts.setdefault((subject, kind), set()).add(uri)
    if kind == "reply" and parent == subject:
        counts.setdefault((subject, "direct"), set()).add(uri)


def _reconcile(client: Any, target: Mapping[str, Any], reads: _Reads) -> _Present:
    uri = target["uri"]
    thread = _dict(client.get_post_thread(uri, depth=THREAD_DEPTH).get("thread"))
    replies, present, thread_complete = _thread_posts(thread)
    for post in replies:
        found = reaction_from_record(post.get("uri"), post.get("cid"), post.get("record"), post.get("author"),
                                     subject=uri)
        if found is not None:
            reads.reactions.append(found)
    likers, _, likes_complete = _paged_set(
        lambda cursor: client.get_likes(uri, cursor=cursor, limit=PAGE), "likes",
        lambda item: _str(_dict(item.get("actor")).get("did"), 2048))
    reposters, _, reposts_complete = _paged_set(
        lambda cursor: client.get_reposted_by(uri, cursor=cursor, limit=PAGE), "repostedBy",
        lambda item: _str(item.get("did"), 2048))
    quoted, quotes, quotes_complete = _paged_set(
        lambda cursor: client.get_quotes(uri, cursor=cursor, limit=PAGE), "posts",
        lambda item: at_uri(item.get("uri")))
    for post in quotes:
        found = reaction_from_record(post.get("uri"), post.get("cid"), post.get("record"), post.get("author"),
                                     prefer="quote")
        if found is not None:
            reads.reactions.append(found)
    return _Present(posts=present | quoted, thread_complete=thread_complete, quotes_complete=quotes_complete,
                    likers=likers if likes_complete else None, reposters=reposters if reposts_complete else None)


# --- writing what a poll learnt ------------------------------------------------------------------------

def _observations(conn: Conn, app: "Skypost", gate: _Gate, responses: Iterable[tuple[str, int, dict[str, str]]],
                  now: float) -> None:
    """The RateLimit headers of every answer, merged into the budgets (last: the hottest rows)."""
    from skypost.pipeline import key_for_method

    for method, status, headers in responses:
        if status == 429:
            continue
        observation = rz.parse_rate_headers(headers, now)
        if observation is not None and observation.remaining is not None:
            q.observe_budget(conn, key_for_method(method, gate.keys, observation.policy), limit=observation.limit,
                             remaining=observation.remaining, reset_at=observation.reset_at,
                             policy=observation.policy, now=now)


def _record(app: "Skypost", gate: _Gate, reads: _Reads, now: float) -> PollResult:
    account = gate.account
    result = PollResult(account.handle, "polled", requests=len(reads.responses), reconciled=len(reads.reconciled))
    unique: dict[str, Reaction] = {}
    for reaction in reads.reactions:
        unique.setdefault(reaction.uri, reaction)
    subjects = {s for r in unique.values() for _, s in r.candidates}
    with app.db.transaction() as conn:
        deliveries = qc.deliveries_by_uri(conn, subjects)
        known = qc.known_interaction_uris(conn, unique) | qc.published_uris(conn, unique)
        for reaction in unique.values():
            if reaction.uri in known:
                continue
            match = next(((kind, deliveries[s]) for kind, s in reaction.candidates if s in deliveries), None)
            if match is None:
                continue  # not a reaction to a syndicated post
            kind, delivery = match
            interaction_id = qc.insert_interaction(
                conn, now=now, kind=kind, uri=reaction.uri, cid=reaction.cid, post_seq=delivery["post_seq"],
                delivery_id=delivery["id"], account=delivery["handle"], subject_uri=delivery["uri"],
                author_did=reaction.author_did, author_handle=reaction.author_handle,
                author_display_name=reaction.author_display_name, author_avatar=reaction.author_avatar,
                text=reaction.text if kind in ("reply", "quote") else None,
                parent_uri=reaction.parent_uri if kind == "reply" else None, created_at=reaction.created_at)
            if interaction_id is not None:
                outbox.interaction_changed(conn, interaction_id=interaction_id, event="interaction.created",
                                           now=now)
                result.new[kind] += 1
        if reads.reconciled:
            for row in qc.live_interactions(conn, list(reads.reconciled)):
                present = reads.reconciled[row["delivery_id"]]
                if row["indexed_at"] > now - REMOVAL_GRACE or not _gone(row, present):
                    continue
                if qc.mark_interaction_removed(conn, row["id"], now=now):
                    outbox.interaction_changed(conn, interaction_id=row["id"], event="interaction.removed",
                                               now=now)
                    result.removed[row["kind"]] += 1
        qc.save_backfeed_state(conn, account.id, full_reconciled_at=now if reads.full else None, error=None,
                               now=now, **{k: reads.watermarks.get(k) for k in (
                                   "notifications_until", "likes_until", "reposts_until", "posts_until")})
        new, removed = sum(result.new.values()), sum(result.removed.values())
        if new or removed or reads.truncated:
            message = f"backfeed of @{account.handle}: {_summary(result)}"
            if reads.truncated:
                message += f" (stopped after {MAX_PAGES} pages of {', '.join(reads.truncated)})"
            q.add_event(conn, ts=now, kind="backfeed", account=account.handle, message=message,
                        level="warning" if reads.truncated else "info")
        _observations(conn, app, gate, reads.responses, now)
    return result


def _gone(row: Mapping[str, Any], present: _Present) -> bool:
    """Whether the views, read completely, no longer list this stored reaction."""
    kind = row["kind"]
    if kind == "like":
        return present.likers is not None and row["author_did"] not in present.likers
    if kind == "repost":
        return present.reposters is not None and row["author_did"] not in present.reposters
    if present.posts is None or row["uri"] in present.posts:
        return False
    return present.thread_complete if kind == "reply" else present.quotes_complete


def _record_failure(app: "Skypost", gate: _Gate, reads: _Reads, error: Any, now: float) -> PollResult:
    """A failed poll stores nothing it read and waits for its next interval; the breaker is left
    to publishing (see _gate)."""
    from skypost.pipeline import key_for_method

    account = gate.account
    failure = rz.classify(error.status, error.error, str(error), error.headers, now=now)
    result = PollResult(account.handle, "failed", str(error)[:500], requests=len(reads.responses))
    with app.db.transaction() as conn:
        if failure.kind is rz.FailureKind.AUTH:
            q.mark_needs_reauth(conn, account.id, error=failure.message, now=now)
            q.add_event(conn, ts=now, kind="needs_reauth", level="error", account=account.handle,
                        message=f"@{account.handle} refused the credentials ({failure.message}): "
                                f"{reauth_message(account.handle)}")
        qc.note_backfeed_error(conn, account.id, error=result.reason or "", now=now)
        q.add_event(conn, ts=now, kind="backfeed_failed", level="warning", account=account.handle,
                    message=f"backfeed of @{account.handle} failed ({failure.message}); "
                            "the next poll reads it again")
        blocked: tuple[str, float] | None = None
        if failure.kind is rz.FailureKind.RATE_LIMITED:
            observation = rz.parse_rate_headers(error.headers, now)
            key = key_for_method(error.method or "", gate.keys, observation.policy if observation else None)
            current = next(iter(q.rate_limit_rows(conn, [key])), None)
            until, _ = rz.blocked_after_429(current, error.headers, now, app.pipeline.rng)
            blocked = (key, until)
            result.until = until
        _observations(conn, app, gate, reads.responses, now)
        if blocked is not None:
            q.store_block(conn, blocked[0], blocked_until=blocked[1], now=now)
    return result


def _summary(result: PollResult) -> str:
    new = ", ".join(f"{n} {k}(s)" for k, n in result.new.items() if n) or "nothing new"
    removed = ", ".join(f"{n} {k}(s)" for k, n in result.removed.items() if n)
    return new + (f"; removed {removed}" if removed else "")


# --- the API, the job and its schedule ------------------------------------------------------------------

def backfeed(app: "Skypost", account: str | None = None) -> dict[str, Any]:
    """Poll now, once, in this process: one account (a handle) or every account. Each poll
    reconciles every delivery of the window."""
    with app.db.connect() as conn:
        if account is not None:
            try:
                handle = normalize_handle(account)
            except ValidationError:
                raise ValidationError({"account": f"{account!r} is not a valid handle"}) from None
            row = q.account_by_handle(conn, handle)
            if row is None:
                raise ValidationError({"account": f"no account @{account.strip().lstrip('@')} "
                                                   "(see `skypost account list`)"})
            ids = [row["id"]]
        else:
            ids = qc.account_ids(conn)
    results = [poll_account(app, account_id, full=True) for account_id in ids]
    totals_new = {k: sum(r.new[k] for r in results) for k in KINDS}
    totals_removed = {k: sum(r.removed[k] for r in results) for k in KINDS}
    return {"accounts": [r.to_json() for r in results], "new": totals_new, "removed": totals_removed}


def schedule_account(app: "Skypost", account_id: int, *, run_at: float | None = None) -> bool:
    """Make sure the account has its backfeed job (a no-op when one waits or runs, or when the
    recurring backfeed is off). True when this call created it."""
    interval = app.settings.backfeed_interval
    if interval <= 0:
        return False
    now = app.clock()
    with app.db.transaction() as conn:
        return qc.insert_backfeed_job(conn, account_id=account_id, run_at=now + interval if run_at is None
                                      else run_at, now=now)


def ensure_jobs(app: "Skypost") -> int:
    """Every account's backfeed job exists (a worker calls this when it starts). Returns how
    many were missing. A missing job is scheduled one interval from now."""
    if app.settings.backfeed_interval <= 0:
        return 0
    with app.db.connect() as conn:
        ids = qc.account_ids(conn)
    return sum(schedule_account(app, account_id) for account_id in ids)


def run_job(app: "Skypost", job: JobRow, owner: str, should_stop: Callable[[], bool]) -> None:
    """The backfeed job: poll, then come back after the interval (or when the gate that said
    no lets go). The job ends when its account is gone or the recurring backfeed is off. It
    never delays a publish: while one is due it steps aside, and it holds no lock meanwhile."""
    account_id = job.args.get("account_id")
    interval = app.settings.backfeed_interval
    if not isinstance(account_id, int) or interval <= 0:
        app.queue.complete(job.id, owner)
        return
    now = app.clock()
    with app.db.connect() as conn:
        busy = qc.syndication_due(conn, now)
    if busy:  # a publish due now goes first: this worker thread is its, the poll comes back shortly
        app.queue.reschedule(job.id, owner, run_at=now + STEP_ASIDE)
        return
    result = poll_account(app, account_id, owner=owner, should_stop=should_stop)
    if result.outcome == "idle" and result.account == "":
        app.queue.complete(job.id, owner)  # the account was removed
        return
    now = app.clock()
    run_at = result.until if result.until is not None and result.until > now else now + interval
    app.queue.reschedule(job.id, owner, run_at=run_at,
                         error=result.reason if result.outcome == "failed" else None)


def job_kinds(app: "Skypost") -> dict[str, "JobKind"]:
    """The job kind the backfeed runs on the shared queue, for the worker to register."""
    from skypost.worker import JobKind

    def run(job: JobRow, owner: str, should_stop: Callable[[], bool], loaded: Any) -> None:
        run_job(app, job, owner, should_stop)

    return {JOB: JobKind(run)}
