"""Telling the site: signed webhook targets, and the `notify` job that sends the outbox.

Delivery is at least once, with exactly-once ids: every row of the outbox is one event
for one target with its own event id (X-Skypost-Event-Id), the same on every attempt. A
worker claims a row in one statement, sends it with no transaction open, then records
the outcome; if it dies in between, the row's lease runs out and it is sent again with
the same id. Receivers deduplicate by that id.

Each webhook is a JSON POST signed like the webhooks skypost receives:

    X-Skypost-Timestamp: <Unix seconds>
    X-Skypost-Signature: sha256=<hex HMAC-SHA256 of timestamp + "." + body, keyed with the secret>

Failures are retried on the retry schedule (network errors, timeouts, 408, 429, 5xx);
any other answer is final.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from skypost.conversation import webmention
from skypost.conversation.outbox import EVENT_TYPES, WEBHOOK, WEBMENTION
from skypost.fetch import FetchError, SafeFetcher, check_url, host_refusal
from skypost.app import iso_ts
from skypost.models import ValidationError
from skypost.resilience import retry_after_seconds
from skypost.store import queries as q
from skypost.store import queries_outbox as qo
from skypost.store.rows import JobRow
from skypost.web.hooks import sign
from skypost.worker import JobKind

if TYPE_CHECKING:
    from skypost.app import Skypost

Row = dict[str, Any]

# rows sent by one run of the job before it makes room for other kinds of work
BATCH = 200
# a webhook target's answer is read up to this size (only its status matters)
MAX_ANSWER_BYTES = 65_536
# the longest a receiver's Retry-After is believed
MAX_RETRY_AFTER = 3600.0
USER_AGENT = "skypost-notify (+https://github.com/skypost)"


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What one attempt at one row learnt."""

    status: str  # sent / retry / failed / skipped
    http_status: int | None = None
    error: str | None = None
    retry_after: float | None = None
    detail: str = ""  # for the activity log


# --- targets -------------------------------------------------------------------------------

def _check_events(events: Sequence[str] | str | None) -> list[str]:
    if events is None:
        return list(EVENT_TYPES)
    items = events.split(",") if isinstance(events, str) else list(events)
    chosen = list(dict.fromkeys(str(e).strip() for e in items if str(e).strip()))
    unknown = [e for e in chosen if e not in EVENT_TYPES]
    if unknown or not chosen:
        raise ValidationError({"events": f"{', '.join(unknown) or 'nothing'} is not an event type: "
                                         f"choose among {', '.join(EVENT_TYPES)}"})
    return chosen


def check_target_url(url: str, *, allow_private: bool) -> str:
    """An http(s) URL whose host is a public address (unless private addresses are allowed)."""
    url = (url or "").strip()
    try:
        parsed = check_url(url)
    except FetchError as exc:
        raise ValidationError({"url": exc.reason}) from None
    if len(url) > 2048:
        raise ValidationError({"url": "is longer than 2048 characters"})
    if allow_private:
        return url
    why = host_refusal(parsed)
    if why:
        raise ValidationError({"url": why + " (set SKYPOST_ALLOW_PRIVATE_URLS=1 to allow it)"})
    return url


def add_target(app: "Skypost", url: str, events: Sequence[str] | str | None = None) -> str:
    """Register a webhook target; returns its signing secret (shown once, stored encrypted)."""
    chosen = _check_events(events)
    url = check_target_url(url, allow_private=app.settings.allow_private_urls)
    secret = secrets.token_hex(32)
    secret_enc = app.cipher().encrypt(secret)
    now = app.clock()
    with app.db.transaction() as conn:
        if not qo.insert_target(conn, url=url, events=chosen, secret_enc=secret_enc, now=now):
            raise ValidationError({"url": f"{url} is a target already (remove it first to change it)"})
        q.add_event(conn, ts=now, kind="notify_added", message=f"notify target {url} added "
                                                                 f"({', '.join(chosen)})")
    return secret


def remove_target(app: "Skypost", url: str) -> None:
    """Forget a target; its unsent events are dropped when their turn comes."""
    url = (url or "").strip()
    now = app.clock()
    with app.db.transaction() as conn:
        row = qo.target_by_url(conn, url)
        if row is None:
            raise ValidationError({"url": f"no notify target {url!r} (see `skypost notify list`)"})
        qo.delete_target(conn, row["id"])
        q.add_event(conn, ts=now, kind="notify_removed", message=f"notify target {url} removed")


def list_targets(app: "Skypost") -> list[dict[str, Any]]:
    """Targets with their delivery counts; never their secrets."""
    with app.db.connect() as conn:
        rows = qo.list_targets(conn)
        counts = qo.target_counts(conn)
    return [{"url": r["url"], "events": list(r["events"]), "created_at": iso_ts(r["created_at"]),
             "sent": counts.get(r["id"], {}).get("sent", 0),
             "pending": sum(counts.get(r["id"], {}).get(s, 0) for s in qo.UNFINISHED),
             "failed": counts.get(r["id"], {}).get("failed", 0)} for r in rows]


def recent_deliveries(app: "Skypost", *, limit: int = 50) -> list[dict[str, Any]]:
    with app.db.connect() as conn:
        rows = qo.recent_events(conn, limit=limit)
    return [{"event_id": r["event_id"], "type": r["type"], "channel": r["channel"], "target": r["target"],
             "status": r["status"], "attempts": r["attempts"], "next_attempt_at": iso_ts(r["next_attempt_at"]),
             "last_status": r["last_status"], "last_error": r["last_error"],
             "created_at": iso_ts(r["created_at"]), "sent_at": iso_ts(r["sent_at"])} for r in rows]




# --- sending -----------------------------------------------------------------------------------

def make_fetcher(app: "Skypost") -> SafeFetcher:
    timeout = app.settings.notify_timeout
    return SafeFetcher(allow_private=app.settings.allow_private_urls, timeout=timeout,
                       total_timeout=2 * timeout, max_bytes=webmention.MAX_PAGE_BYTES, user_agent=USER_AGENT)


def _judge(status: int, headers: Any, now: float) -> Outcome:
    if 200 <= status < 300:
        return Outcome("sent", status)
    error = f"HTTP {status}"
    if status in (408, 429) or status >= 500:
        return Outcome("retry", status, error, retry_after_seconds(headers or {}, now))
    return Outcome("failed", status, error + " (a final answer: not retried)")


def _fetch_failure(exc: FetchError, what: str, now: float) -> Outcome:
    if exc.status is not None:
        judged = _judge(exc.status, exc.headers, now)
        return dataclasses.replace(judged, error=f"{what}: {exc.reason}")
    if exc.kind in ("network", "timeout", "dns"):
        return Outcome("retry", None, f"{what}: {exc.reason}")
    return Outcome("failed", None, f"{what}: {exc.reason}")


def send_webhook(app: "Skypost", fetcher: SafeFetcher, row: qo.OutboxRow,
                 target: Mapping[str, Any] | None) -> Outcome:
    """`target` is the row's webhook target as read when the row was claimed (None: removed)."""
    if target is None:
        return Outcome("skipped", error="the target was removed")
    secret = app.cipher().decrypt(target["secret_enc"])
    body = row.payload.encode()
    timestamp = int(app.clock())
    headers = {
        "Content-Type": "application/json", "X-Skypost-Event-Id": row.event_id, "X-Skypost-Event": row.type,
        "X-Skypost-Timestamp": str(timestamp), "X-Skypost-Signature": sign(secret, body, timestamp),
    }
    try:
        answer = fetcher.post(row.target, content=body, headers=headers, max_bytes=MAX_ANSWER_BYTES)
    except FetchError as exc:
        return _fetch_failure(exc, "webhook", app.clock())
    return _judge(answer.status, answer.headers, app.clock())


def public_page(public_url: str, interaction_id: int) -> str:
    return f"{public_url.rstrip('/')}/i/{interaction_id}"


def send_webmention(app: "Skypost", fetcher: SafeFetcher, row: qo.OutboxRow) -> Outcome:
    public_url = app.settings.public_url
    if not public_url:
        return Outcome("skipped", error="SKYPOST_PUBLIC_URL is not set: no public page to mention")
    payload = json.loads(row.payload)
    source = public_page(public_url, int(payload["interaction_id"]))
    try:
        found = webmention.discover(fetcher, row.target)
    except FetchError as exc:
        return _fetch_failure(exc, "endpoint discovery", app.clock())
    if found.endpoint is None:
        return Outcome("skipped", error=f"{row.target} advertises no Webmention endpoint",
                       detail="no endpoint")
    try:
        answer = webmention.send(fetcher, found.endpoint, source=source, target=row.target)
    except FetchError as exc:
        return _fetch_failure(exc, f"Webmention to {found.endpoint}", app.clock())
    outcome = _judge(answer.status, answer.headers, app.clock())
    return dataclasses.replace(outcome, detail=f"endpoint {found.endpoint}")


def record(app: "Skypost", row: qo.OutboxRow, outcome: Outcome, *, owner: str) -> str:
    """Store one attempt's outcome and log it; returns the row's new status."""
    now = app.clock()
    delays = app.settings.retry_delays
    status = outcome.status
    error = outcome.error
    if status == "retry" and row.attempts > len(delays):
        status, error = "failed", f"gave up after {row.attempts} attempt(s): {outcome.error}"
    payload_post = _post_id(row)
    what = f"{row.type} {row.channel} to {row.target}"
    with app.db.transaction() as conn:
        if status == "retry":
            delay = delays[row.attempts - 1]
            if outcome.retry_after is not None:
                delay = max(delay, min(outcome.retry_after, MAX_RETRY_AFTER))
            if not qo.retry_event(conn, row.id, owner=owner, at=now + delay, http_status=outcome.http_status,
                                  error=error or "", now=now):
                return "lost"
            q.add_event(conn, ts=now, kind="notify_retry", level="warning", post_id=payload_post,
                        message=f"{what} (event {row.event_id}) failed, retry in {delay:g} s: {error}",
                        data={"event_id": row.event_id, "attempts": row.attempts})
            return "pending"
        if not qo.finish_event(conn, row.id, owner=owner, status=status, http_status=outcome.http_status,
                               error=error, now=now):
            return "lost"
        if status == "sent":
            q.add_event(conn, ts=now, kind="notify_sent", post_id=payload_post,
                        message=f"{what} sent (event {row.event_id}, HTTP {outcome.http_status})"
                                + (f", {outcome.detail}" if outcome.detail else ""),
                        data={"event_id": row.event_id, "attempts": row.attempts})
        elif status == "failed":
            q.add_event(conn, ts=now, kind="notify_failed", level="error", post_id=payload_post,
                        message=f"{what} (event {row.event_id}) failed: {error}",
                        data={"event_id": row.event_id, "attempts": row.attempts})
        elif outcome.detail == "no endpoint":  # the site does not take Webmentions: not an error
            q.add_event(conn, ts=now, kind="notify_skipped", post_id=payload_post,
                        message=f"{what} not sent: {error}", data={"event_id": row.event_id})
    return status


def _post_id(row: qo.OutboxRow) -> str | None:
    try:
        payload = json.loads(row.payload)
    except ValueError:
        return None
    if row.channel == WEBMENTION:
        post_id = payload.get("post_id")
    else:
        data = payload.get("data") or {}
        post_id = (data.get("post") or {}).get("id") if row.type != "post.status" else data.get("id")
    return post_id if isinstance(post_id, str) else None


def claim(app: "Skypost", *, owner: str, lease: float) -> tuple[qo.OutboxRow, Row | None] | None:
    """The next due row and, for a webhook, its target, in one transaction."""
    with app.db.transaction() as conn:
        row = qo.claim_event(conn, owner=owner, now=app.clock(), lease=lease)
        if row is None:
            return None
        target = qo.target_by_id(conn, row.target_id) if row.target_id is not None else None
    return row, target


def send_one(app: "Skypost", fetcher: SafeFetcher, row: qo.OutboxRow, target: Row | None = None) -> Outcome:
    if row.channel == WEBHOOK:
        return send_webhook(app, fetcher, row, target)
    return send_webmention(app, fetcher, row)


def drain(app: "Skypost", *, owner: str, should_stop: Callable[[], bool] | None = None,
          limit: int = BATCH, fetcher: SafeFetcher | None = None) -> int:
    """Send due outbox rows until none is due, `limit` were taken or `should_stop()`.
    Returns the number of rows taken."""
    own = fetcher is None
    fetcher = fetcher or make_fetcher(app)
    # long enough for discovery and the POST (each bounded by total_timeout) before another takes it
    lease = app.settings.job_lease + 4 * app.settings.notify_timeout
    taken = 0
    try:
        while taken < limit and not (should_stop and should_stop()):
            claimed = claim(app, owner=owner, lease=lease)
            if claimed is None:
                break
            taken += 1
            row, target = claimed
            outcome = send_one(app, fetcher, row, target)  # no transaction open during the network call
            record(app, row, outcome, owner=owner)
    finally:
        if own:
            fetcher.close()
    return taken


def run_job(app: "Skypost", job: JobRow, owner: str, should_stop: Callable[[], bool]) -> None:
    """The `notify` job: drain the outbox, then come back when the next row is due (or end
    when another notify job waits, or nothing is left)."""
    drain(app, owner=owner, should_stop=should_stop)
    now = app.clock()
    with app.db.transaction() as conn:
        next_at = qo.next_event_due_at(conn)
        if next_at is None or qo.other_notify_job_waits(conn, job.id):
            q.release_job(conn, job.id, owner=owner, status="done", run_at=None, now=now)
        else:
            q.reschedule_job(conn, job.id, owner=owner, run_at=max(next_at, now), now=now)


def job_kinds(app: "Skypost") -> dict[str, JobKind]:
    def run(job: JobRow, owner: str, should_stop: Callable[[], bool], loaded: Any) -> None:
        run_job(app, job, owner, should_stop)

    return {qo.NOTIFY_JOB: JobKind(run)}
