"""Feed syndication: add, list and remove feeds, and poll them.

Each enabled feed has one long-lived durable job (kind "feed_poll", args
{"feed_id": N}) that polls it and reschedules itself for the next poll; there is
no cron. A poll is a conditional GET with a size cap; new entries are submitted
with `SourceHost.submit_state(..., source="feed", check_cutoff=False)`.

Which entries are syndicated (the activation cutoff):

* `feed add` marks every entry present at that moment as seen (the backlog); with
  `backfill=N` the newest N of them (after the category filter) are submitted then.
* A later poll submits an entry only if its key (guid/id, else link) was never
  seen, and — when it has a guid — its link was never seen either (a site that
  regenerates guids keeps its links). Seeing a key and submitting happen in one
  transaction whose insert-if-absent decides, so two pollers never both submit it.
* An entry with a new key whose publication date is well before the time the feed was
  added (more than `feed_cutoff_grace`, a day by default) is not submitted either (the
  "re-guided old post" trap: a site migration changes every guid and link, but not the
  dates). Entries first seen after the add that are dated a little before it are new
  posts: a scheduled post goes live after its date, a static site dates a post when
  writing began, a site's clock runs behind. Entries without a date are submitted.
* Seen once, never submitted again: edits, re-dating and reordering change nothing.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from datetime import datetime, timezone
from typing import Any, Callable, Mapping, Sequence

from skypost.fetch import CachingFetcher, FetchError
from skypost.models import ValidationError, check_http_url, iso, normalize_handle
from skypost.resilience import retry_after_seconds
from skypost.sources.entries import (
    HTML_PAGE,
    Entry,
    FeedParseError,
    ParsedFeed,
    entry_post_id,
    entry_to_post,
    matches_categories,
    newest_first,
    parse_feed,
    unique_entries,
)
from skypost.sources import SourceHost
from skypost.store import queries as q
from skypost.store import queries_feeds as qf
from skypost.store.rows import JobRow
from skypost.worker import JobKind

log = logging.getLogger("skypost.feeds")

POLL_JOB = qf.POLL_JOB
DEFAULT_INTERVAL = 300.0
MIN_INTERVAL = 60.0  # politeness; Settings.feed_min_interval (when present) overrides it
MAX_BACKOFF = 6 * 3600.0
MAX_RETRY_AFTER = 24 * 3600.0  # a site's Retry-After is honoured up to this
MAX_FEED_BYTES = 5_000_000
MAX_URL = 2048
ACCEPT = ("application/rss+xml, application/atom+xml, application/feed+json, "
          "application/rdf+xml;q=0.9, application/xml;q=0.8, text/xml;q=0.8, "
          "application/json;q=0.8, */*;q=0.5")
MAX_ALTERNATES = 3  # feeds of an HTML page that `feed add` reads before naming one


# --- results -----------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class EntryOutcome:
    """What happened to one entry that was new to the feed."""

    post_id: str
    title: str
    url: str
    submitted: bool
    post_status: str | None = None  # the post's status right after submit
    reason: str | None = None  # why it was not submitted

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class PollResult:
    feed_id: int
    url: str
    outcome: str  # "ok", "not_modified", "error", "disabled"
    entries: int  # entries in the document
    new: tuple[EntryOutcome, ...]
    error: str | None
    enabled: bool
    next_poll_at: float | None

    @property
    def submitted(self) -> list[EntryOutcome]:
        return [e for e in self.new if e.submitted]

    def to_json(self) -> dict[str, Any]:
        return {
            "feed_id": self.feed_id, "url": self.url, "outcome": self.outcome, "entries": self.entries,
            "new": [e.to_json() for e in self.new], "error": self.error, "enabled": self.enabled,
            "next_poll_at": _iso(self.next_poll_at),
        }


@dataclasses.dataclass(frozen=True)
class AddedFeed:
    feed: dict[str, Any]  # as in list_feeds()
    seen: int  # entries marked as seen (the backlog)
    backfilled: tuple[EntryOutcome, ...]


@dataclasses.dataclass(frozen=True)
class Fetched:
    """One conditional GET: a document, a 304, or an error."""

    status: int | None
    content: bytes = b""
    content_type: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    error: str | None = None
    retry_after: float | None = None
    gone: bool = False


# --- managing feeds ------------------------------------------------------------------------

def min_interval(settings: Any) -> float:
    return float(getattr(settings, "feed_min_interval", MIN_INTERVAL))


def add_feed(app: SourceHost, url: str, *, accounts: Sequence[str] = (), interval: float = DEFAULT_INTERVAL,
             backfill: int = 0, include_categories: Sequence[str] = (),
             max_bytes: int = MAX_FEED_BYTES) -> AddedFeed:
    """Validate, fetch once (it must parse), then in one transaction: the feed, its
    backlog marked as seen, the backfilled posts and the poll job. Bad input raises
    ValidationError and writes nothing."""
    url = (url or "").strip()
    errors: dict[str, str] = {}
    problem = check_http_url(url)
    if problem:
        errors["url"] = problem
    elif len(url) > MAX_URL:
        errors["url"] = f"must be at most {MAX_URL} characters"
    handles: list[str] = []
    for handle in accounts:
        try:
            handles.append(normalize_handle(handle))
        except ValidationError:
            errors["account"] = f"{handle!r} is not a valid handle"
    handles = list(dict.fromkeys(handles))
    floor = min_interval(app.settings)
    if not isinstance(interval, (int, float)) or not math.isfinite(interval) or interval < floor:
        errors["interval"] = f"must be at least {floor:g} seconds"
    if not isinstance(backfill, int) or backfill < 0:
        errors["backfill"] = "must be 0 or more"
    categories = list(dict.fromkeys(c.strip() for c in include_categories if c and c.strip()))
    if errors:
        raise ValidationError(errors)

    with app.db.connect() as conn:
        existing = qf.feed_by_url(conn, url)
        known = qf.existing_account_handles(conn, handles)
    if existing is not None:
        raise ValidationError({"url": f"this feed is already added (feed {existing['id']})"})
    unknown = [h for h in handles if h not in known]
    if unknown:
        raise ValidationError({"account": f"unknown account @{unknown[0]} (see `skypost account list`)"})

    fetched = fetch_feed(feed_fetcher(app), url, etag=None, last_modified=None, max_bytes=max_bytes, now=app.clock())
    if fetched.error:
        raise ValidationError({"url": f"cannot fetch the feed: {fetched.error}"})
    try:
        parsed = parse_feed(fetched.content, base_url=url, content_type=fetched.content_type)
    except FeedParseError as exc:
        raise ValidationError({"url": _page_hint(app, exc, max_bytes)}) from None

    entries = unique_entries(newest_first(parsed.entries))
    chosen = _backfill_choice(entries, backfill, categories, handles)
    now = app.clock()
    backfilled: list[EntryOutcome] = []
    with app.db.transaction() as conn:
        if qf.feed_by_url(conn, url) is not None:  # added meanwhile by someone else
            raise ValidationError({"url": "this feed is already added"})
        feed_id = qf.insert_feed(
            conn, url=url, accounts=handles, include_categories=categories, interval=float(interval),
            backfill=backfill, cutoff=now, etag=_fits(fetched.etag, 1024),
            last_modified=_fits(fetched.last_modified, 255), title=parsed.title or None, enabled=True,
            last_polled_at=now, next_poll_at=now + interval, last_status=fetched.status, last_error=None,
            error_count=0, created_at=now, updated_at=now,
        )
        chosen_keys = {e.key for e in chosen}
        for entry in entries:
            post_id = entry_post_id(feed_id, entry.key) if entry.key in chosen_keys else None
            qf.insert_entry_if_absent(conn, feed_id, entry.key, post_id=post_id, now=now)
            if entry.link_key:
                qf.insert_entry_if_absent(conn, feed_id, entry.link_key, post_id=None, now=now)
        for entry in reversed(chosen):  # oldest first: submit order is publication order (rule 4)
            post = entry_to_post(entry, feed_id=feed_id, accounts=handles)
            # joins this transaction: the feed and its backfill exist together or not at all
            state = app.submit_state(post, sync=False, source="feed", check_cutoff=False)
            backfilled.append(EntryOutcome(post.id, entry.title, entry.url, True, state.status.value))
        q.insert_job(conn, kind=POLL_JOB, args={"feed_id": feed_id}, run_at=now + interval, now=now)
        q.add_event(conn, ts=now, kind="feed_added", data={"feed_id": feed_id, "url": url},
                    message=f"feed {url} added: {len(entries)} entr(ies) marked as seen"
                            + (f", {len(backfilled)} backfilled" if backfilled else ""))
    app.queue.notify()
    info = feed_info(app, url)
    assert info is not None
    return AddedFeed(info, len(entries), tuple(backfilled))


def _page_hint(app: SourceHost, exc: FeedParseError, max_bytes: int) -> str:
    """For an HTML page: name the first feed it advertises that can be read."""
    if not exc.alternates:
        return exc.reason
    readable = readable_feed(feed_fetcher(app), exc.alternates[:MAX_ALTERNATES],
                             max_bytes=max_bytes, now=app.clock())
    if readable is not None:
        return f"{HTML_PAGE}; it links to the feed {readable}: add that URL"
    if exc.reason != HTML_PAGE:
        return exc.reason  # it names an RSS or Atom feed, read or not
    return f"{HTML_PAGE}; none of the feeds it links to can be read"


def readable_feed(fetcher: Any, urls: Sequence[str], *, max_bytes: int, now: float) -> str | None:
    """The first of `urls` whose document is a feed that parses, or None."""
    for url in urls:
        fetched = fetch_feed(fetcher, url, etag=None, last_modified=None, max_bytes=max_bytes,
                             now=now)
        if fetched.error or fetched.status != 200:
            continue
        try:
            parse_feed(fetched.content, base_url=url, content_type=fetched.content_type)
        except FeedParseError:
            continue
        return url
    return None


def _backfill_choice(entries: Sequence[Entry], backfill: int, categories: Sequence[str],
                     handles: Sequence[str]) -> list[Entry]:
    """The newest `backfill` entries that pass the category filter and make valid posts."""
    chosen: list[Entry] = []
    for entry in entries:
        if len(chosen) >= backfill:
            break
        if not matches_categories(entry, categories):
            continue
        try:
            entry_to_post(entry, feed_id=0, accounts=handles)
        except ValidationError:
            continue
        chosen.append(entry)
    return chosen


def remove_feed(app: SourceHost, url: str) -> dict[str, Any]:
    """Delete a feed, its seen entries and its waiting poll job. Posts already submitted stay."""
    url = (url or "").strip()
    now = app.clock()
    with app.db.transaction() as conn:
        feed = qf.feed_by_url(conn, url)
        if feed is None:
            raise ValidationError({"url": f"no feed {url!r} (see `skypost feed list`)"})
        info = _feed_json(feed, qf.entry_counts(conn).get(feed["id"], {}))
        for job in qf.live_poll_jobs(conn, feed["id"]):
            qf.finish_waiting_job(conn, job["id"], now)  # a running one completes itself: its feed is gone
        qf.delete_feed(conn, feed["id"])
        q.add_event(conn, ts=now, kind="feed_removed", message=f"feed {url} removed",
                    data={"feed_id": feed["id"], "url": url})
    return info


def list_feeds(app: SourceHost) -> list[dict[str, Any]]:
    """Every feed with its poll state (last_error, error_count, last/next poll, enabled) —
    for `feed list`, `status` and the dashboard."""
    with app.db.connect() as conn:
        rows = qf.list_feeds(conn)
        counts = qf.entry_counts(conn)
    return [_feed_json(r, counts.get(r["id"], {})) for r in rows]


def feed_info(app: SourceHost, url: str) -> dict[str, Any] | None:
    with app.db.connect() as conn:
        row = qf.feed_by_url(conn, (url or "").strip())
        counts = qf.entry_counts(conn) if row else {}
    return _feed_json(row, counts.get(row["id"], {})) if row else None


def _feed_json(row: Mapping[str, Any], counts: Mapping[str, int]) -> dict[str, Any]:
    return {
        "id": row["id"], "url": row["url"], "title": row["title"], "accounts": list(row["accounts"]),
        "include_categories": list(row["include_categories"]), "interval": row["interval"],
        "backfill": row["backfill"], "enabled": row["enabled"], "cutoff": _iso(row["cutoff"]),
        "last_polled_at": _iso(row["last_polled_at"]),
        "next_poll_at": _iso(row["next_poll_at"]) if row["enabled"] else None,
        "last_status": row["last_status"], "last_error": row["last_error"], "error_count": row["error_count"],
        "keys_seen": counts.get("keys_seen", 0), "entries_submitted": counts.get("submitted", 0),
        "created_at": _iso(row["created_at"]),
    }


# --- polling ------------------------------------------------------------------------------

def feed_fetcher(app: SourceHost) -> Any:
    """The app's fetcher without its short-lived answer cache: a poll must see the feed
    as it is now (a cached answer would hide new entries, or an error, for a while)."""
    fetcher = app.fetcher()
    return fetcher.inner if isinstance(fetcher, CachingFetcher) else fetcher


def fetch_feed(fetcher: Any, url: str, *, etag: str | None, last_modified: str | None, max_bytes: int,
               now: float) -> Fetched:
    """A conditional GET (If-None-Match / If-Modified-Since) with a size cap; never raises
    FetchError. The fetcher brings the timeout and the private-address checks."""
    headers = {"Accept": ACCEPT}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    try:
        result = fetcher.get(url, max_bytes=max_bytes, headers=headers, accept_statuses=(200, 304))
    except FetchError as exc:
        status = exc.status
        retry_after = None
        reason = exc.reason
        if status in (429, 503):
            retry_after = retry_after_seconds(exc.headers or {}, now)
            if retry_after is not None:
                reason += f" (the site asks to wait {retry_after:.0f} s)"
        elif status == 410:
            reason += ": the feed is gone, polling stopped (remove it, or add it again if it comes back)"
        return Fetched(status=status, error=reason, retry_after=retry_after, gone=status == 410)
    h = result.headers
    return Fetched(status=result.status, content=result.content if result.status == 200 else b"",
                   content_type=h.get("content-type"), etag=h.get("etag"), last_modified=h.get("last-modified"))


def poll_feed(app: SourceHost, feed_id: int, *, should_stop: Callable[[], bool] | None = None,
              max_bytes: int = MAX_FEED_BYTES) -> PollResult | None:
    """Poll one feed now: fetch, parse, submit new entries, record the outcome and the
    next poll time on the feed. None when the feed does not exist."""
    with app.db.connect() as conn:
        feed = qf.feed_by_id(conn, feed_id)
        if feed is None:
            return None
        missing = [h for h in feed["accounts"] if h not in qf.existing_account_handles(conn, feed["accounts"])]
    if not feed["enabled"]:
        return PollResult(feed_id, feed["url"], "disabled", 0, (), feed["last_error"], False, None)
    if missing:
        return _record_failure(app, feed, app.clock(), Fetched(
            status=None, error=f"the feed's account @{missing[0]} no longer exists: add it again, "
                               "or remove the feed and add it with other accounts"))
    fetched = fetch_feed(feed_fetcher(app), feed["url"], etag=feed["etag"], last_modified=feed["last_modified"],
                         max_bytes=max_bytes, now=app.clock())
    now = app.clock()
    if fetched.error:
        return _record_failure(app, feed, now, fetched)
    if fetched.status == 304:
        return _record_success(app, feed, now, fetched, None, (), stopped=False)
    try:
        parsed = parse_feed(fetched.content, base_url=feed["url"], content_type=fetched.content_type)
    except FeedParseError as exc:
        # the validators are not kept: a 304 must not hide a document that did not parse
        return _record_failure(app, feed, now, dataclasses.replace(fetched, error=exc.reason))

    entries = unique_entries(newest_first(parsed.entries))
    with app.db.connect() as conn:
        seen = qf.seen_keys(conn, feed_id, [e.key for e in entries])
    outcomes: list[EntryOutcome] = []
    stopped = False
    for entry in reversed(entries):  # oldest first: submit order is publication order (rule 4)
        if entry.key in seen:
            continue
        if should_stop is not None and should_stop():
            stopped = True  # the rest stays unseen: the next poll takes it
            break
        outcome = _take_entry(app, feed, entry, now)
        if outcome is not None:
            outcomes.append(outcome)
    return _record_success(app, feed, now, fetched, parsed, tuple(outcomes), stopped=stopped)


def _take_entry(app: SourceHost, feed: Mapping[str, Any], entry: Entry, now: float) -> EntryOutcome | None:
    """Mark one entry as seen and, if it qualifies, submit it — in one transaction.
    None when another poller saw it first."""
    feed_id = feed["id"]
    post_id = entry_post_id(feed_id, entry.key)
    with app.db.transaction() as conn:
        if not qf.insert_entry_if_absent(conn, feed_id, entry.key, post_id=None, now=now):
            return None
        reason, warn = None, False
        if entry.link_key and not qf.insert_entry_if_absent(conn, feed_id, entry.link_key, post_id=None, now=now):
            reason, warn = "an entry with the same link was seen before (did the site change its guids?)", True
        if reason is None:
            reason, warn = _skip_reason(entry, feed, grace=app.settings.feed_cutoff_grace)
        post = None
        if reason is None:
            try:
                post = entry_to_post(entry, feed_id=feed_id, accounts=feed["accounts"])
            except ValidationError as exc:
                reason, warn = f"not a valid post ({exc})", True
        if post is None:
            if warn:
                q.add_event(conn, ts=now, kind="feed_entry_skipped", level="warning",
                            message=f"{feed['url']}: entry {entry.url or entry.key} not syndicated: {reason}",
                            data={"feed_id": feed_id, "entry_key": entry.key})
            return EntryOutcome(post_id, entry.title, entry.url, False, None, reason)
        # joins this transaction: the entry is seen if and only if its post is recorded
        state = app.submit_state(post, sync=False, source="feed", check_cutoff=False)
        qf.set_entry_post(conn, feed_id, entry.key, post.id)
    return EntryOutcome(post.id, entry.title, entry.url, True, state.status.value)


def _skip_reason(entry: Entry, feed: Mapping[str, Any], *, grace: float) -> tuple[str | None, bool]:
    """(why the entry is not submitted, whether that deserves a warning in the log)."""
    if not matches_categories(entry, feed["include_categories"]):
        return f"not in the feed's categories ({', '.join(feed['include_categories'])})", False
    cutoff = feed["cutoff"]
    if (cutoff is not None and entry.published_at is not None
            and entry.published_at.timestamp() < cutoff - grace):
        return (f"published {iso(entry.published_at)}, long before the feed was added ({_iso(cutoff)}): "
                "an old entry under a new id", True)
    return None, False


def backoff_delay(interval: float, error_count: int) -> float:
    """After the n-th consecutive failure: interval × 2^n, capped (never under the interval)."""
    return max(interval, min(interval * 2 ** min(error_count, 30), MAX_BACKOFF))


def _record_failure(app: SourceHost, feed: Mapping[str, Any], now: float, fetched: Fetched) -> PollResult:
    count = (feed["error_count"] or 0) + 1
    interval = float(feed["interval"])
    error = fetched.error or "unknown error"
    if fetched.gone:
        next_at = None
    elif fetched.retry_after is not None:
        next_at = now + min(max(fetched.retry_after, interval), MAX_RETRY_AFTER)
    else:
        next_at = now + backoff_delay(interval, count)
    values: dict[str, Any] = {"last_polled_at": now, "next_poll_at": next_at, "last_status": fetched.status,
                              "last_error": error, "error_count": count, "updated_at": now}
    if fetched.gone:
        values["enabled"] = False
    with app.db.transaction() as conn:
        exists = qf.update_feed(conn, feed["id"], **values) == 1
        if exists and (fetched.gone or error != feed["last_error"]):  # a changed error, not every retry
            q.add_event(conn, ts=now, kind="feed_disabled" if fetched.gone else "feed_error",
                        level="error" if fetched.gone else "warning", message=f"feed {feed['url']}: {error}",
                        data={"feed_id": feed["id"], "url": feed["url"], "status": fetched.status})
    enabled = exists and not fetched.gone
    return PollResult(feed["id"], feed["url"], "error", 0, (), error, enabled, next_at if enabled else None)


def _record_success(app: SourceHost, feed: Mapping[str, Any], now: float, fetched: Fetched,
                    parsed: ParsedFeed | None, outcomes: tuple[EntryOutcome, ...], *, stopped: bool) -> PollResult:
    next_at = now if stopped else now + float(feed["interval"])
    values: dict[str, Any] = {"last_polled_at": now, "next_poll_at": next_at, "last_status": fetched.status,
                              "last_error": None, "error_count": 0, "updated_at": now}
    if stopped:
        # entries are left unseen: the next GET must fetch the document, not get a 304
        values.update(etag=None, last_modified=None)
    elif parsed is not None:
        # what the server sent this time: a validator it dropped must not be sent again
        values.update(etag=_fits(fetched.etag, 1024), last_modified=_fits(fetched.last_modified, 255))
    else:  # a 304 may carry fresh validators
        if fetched.etag:
            values["etag"] = _fits(fetched.etag, 1024)
        if fetched.last_modified:
            values["last_modified"] = _fits(fetched.last_modified, 255)
    if parsed is not None and parsed.title:
        values["title"] = parsed.title
    submitted = [o for o in outcomes if o.submitted]
    with app.db.transaction() as conn:
        exists = qf.update_feed(conn, feed["id"], **values) == 1
        if exists and feed["last_error"]:
            q.add_event(conn, ts=now, kind="feed_recovered", message=f"feed {feed['url']} polled again without error",
                        data={"feed_id": feed["id"], "url": feed["url"]})
        if exists and submitted:
            q.add_event(conn, ts=now, kind="feed_poll",
                        message=f"feed {feed['url']}: {len(submitted)} new entr(ies) submitted",
                        data={"feed_id": feed["id"], "posts": [o.post_id for o in submitted]})
    return PollResult(feed["id"], feed["url"], "ok" if parsed is not None else "not_modified",
                      len(parsed.entries) if parsed is not None else 0, outcomes, None, exists,
                      next_at if exists else None)


def poll_feeds(app: SourceHost, url: str | None = None) -> list[PollResult]:
    """Poll one feed (by URL) or every enabled feed, now, in this process (`feed poll`)."""
    with app.db.connect() as conn:
        if url is not None:
            feed = qf.feed_by_url(conn, url.strip())
            if feed is None:
                raise ValidationError({"url": f"no feed {url!r} (see `skypost feed list`)"})
            feeds = [feed]
        else:
            feeds = qf.list_feeds(conn, enabled_only=True)
    results = []
    for feed in feeds:
        result = poll_feed(app, feed["id"])
        if result is not None:
            results.append(result)
            if result.enabled:
                sync_poll_job(app, feed["id"])
    return results


def sync_poll_job(app: SourceHost, feed_id: int) -> int | None:
    """Make sure an enabled feed has its poll job, waiting for the feed's next poll time.
    Returns the job id (None for a missing or disabled feed)."""
    now = app.clock()
    with app.db.transaction() as conn:
        feed = qf.feed_by_id(conn, feed_id)
        if feed is None or not feed["enabled"]:
            return None
        run_at = feed["next_poll_at"] if feed["next_poll_at"] is not None else now
        live = qf.live_poll_jobs(conn, feed_id)
        if live:
            job_id = int(live[0]["id"])
            qf.move_waiting_job(conn, job_id, run_at, now)
        else:
            job_id = q.insert_job(conn, kind=POLL_JOB, args={"feed_id": feed_id}, run_at=run_at, now=now)
    app.queue.notify()
    return job_id


def run_poll_job(app: SourceHost, job: JobRow, owner: str, should_stop: Callable[[], bool]) -> None:
    """The feed_poll job handler: poll, then reschedule this job for the next poll (or
    complete it when the feed is gone or disabled). The job is always released here."""
    feed_id = job.args.get("feed_id")
    now = app.clock()
    with app.db.connect() as conn:
        feed = qf.feed_by_id(conn, feed_id) if isinstance(feed_id, int) else None
        live = qf.live_poll_jobs(conn, feed_id) if feed is not None else []
    if feed is None or not feed["enabled"]:
        app.queue.complete(job.id, owner)
        return
    if live and live[0]["id"] != job.id:
        app.queue.complete(job.id, owner)  # a duplicate: the feed's oldest job polls it
        return
    if feed["next_poll_at"] is not None and feed["next_poll_at"] > now:
        # polled meanwhile (`feed poll`): no need to poll again before its next time
        app.queue.reschedule(job.id, owner, run_at=feed["next_poll_at"])
        return
    try:
        result = poll_feed(app, feed_id, should_stop=should_stop)
    except Exception as exc:  # noqa: BLE001 - shown on the feed and retried with backoff, not every 30 s
        log.exception("polling feed %s failed", feed_id)
        result = _record_failure(app, feed, app.clock(), Fetched(status=None, error=f"internal error: "
                                                                                   f"{type(exc).__name__}: {exc}"))
    if result is None or not result.enabled or result.next_poll_at is None:
        app.queue.complete(job.id, owner)
    else:
        app.queue.reschedule(job.id, owner, run_at=result.next_poll_at, error=result.error)


# --- helpers ----------------------------------------------------------------------------------

def _iso(ts: float | None) -> str | None:
    return iso(datetime.fromtimestamp(ts, timezone.utc)) if ts is not None else None


def _fits(value: str | None, limit: int) -> str | None:
    """A validator longer than its column is not kept (the next GET is then unconditional)."""
    return value if value is not None and len(value) <= limit else None


def job_kinds(host: SourceHost) -> dict[str, JobKind]:
    """The job kinds feeds run on the shared queue, for the worker to register."""

    def poll(job: JobRow, owner: str, should_stop: Callable[[], bool], loaded: Any) -> None:
        run_poll_job(host, job, owner, should_stop)

    return {POLL_JOB: JobKind(poll)}
