"""Skypost: the Python API that the CLI, the HTTP API and host applications use.

    from skypost import Skypost, Post
    app = Skypost.from_url("sqlite:///skypost.db")
    status = app.submit(Post(id="42", title="Hello", url="https://blog.example.com/hello"))
    app.run_worker(burst=True)
"""

from __future__ import annotations

import dataclasses
import random
import threading
import time
from typing import Any, Callable, Mapping, Sequence

from typing import TYPE_CHECKING

from skypost import syndicator
from skypost.clock import DatabaseClock
from skypost.config import Settings, load_settings
from skypost.conversation.views import interaction_counts, post_interactions
from skypost.models import (Post, PostState, PostStatus, ValidationError, iso, normalize_handle,
                            parse_post_document, valid_id)
from skypost.queue import JobQueue
from skypost.store import queries as q
from skypost.store import queries_gates as qg
from skypost.store.db import SCHEMA_HEAD, Database

if TYPE_CHECKING:  # the worker side is loaded on first use: submit stays fast
    from skypost.crypto import Cipher
    from skypost.pipeline import Pipeline
    from skypost.worker import Worker

DEFAULT_SERVICE = "https://bsky.social"
PRUNE_JOB = "prune"
# the dashboard's cookie-signing secret (web.session), encrypted in the settings table
WEB_SESSION_KEY = "web_session_key"

Clock = Callable[[], float]


@dataclasses.dataclass(frozen=True)
class InitResult:
    database: str
    key_file: str | None
    key_created: bool


def _default_client_factory(**kwargs: Any) -> Any:
    from skypost.bluesky.client import BlueskyClient

    return BlueskyClient(**kwargs)


def _default_composer(post: Post, **kwargs: Any) -> Any:
    from skypost.bluesky.compose import compose_post_record

    return compose_post_record(post, **kwargs)


class Skypost:
    def __init__(
        self,
        settings: Settings | None = None,
        *,
        clock: Clock | None = None,
        host_clock: Clock = time.time,
        client_factory: Callable[..., Any] | None = None,
        composer: Callable[..., Any] | None = None,
        fetcher_factory: Callable[[], Any] | None = None,
        rng: random.Random | None = None,
        auto_init: bool = True,
    ):
        self.settings = settings or load_settings()
        self.db = Database(self.settings.database_url)
        # leases, cooldowns and resets are compared across hosts: by default "now" is the
        # database's time (`host_clock` is this host's, for a test that skews it)
        if clock is None:
            clock = DatabaseClock(self.db.server_time, local=host_clock) if self.db.is_postgres else host_clock
        self.clock = clock
        self.client_factory = client_factory or _default_client_factory
        self.composer = composer or _default_composer
        self._fetcher_factory = fetcher_factory
        self._fetcher: Any = None
        self._transport: Any = None
        self._cipher: Cipher | None = None
        self._lock = threading.Lock()
        self.queue = JobQueue(self.db, clock=clock, lease=self.settings.job_lease)
        self._rng = rng
        self._pipeline: Pipeline | None = None
        self._status_listeners: list[Callable[[PostState], None]] = []
        if auto_init:
            self.ensure_schema()

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> "Skypost":
        settings = kwargs.pop("settings", None) or load_settings()
        return cls(settings.replace(database_url=url), **kwargs)

    # --- set-up --------------------------------------------------------------------

    def init(self) -> InitResult:
        """Create or upgrade the schema, the secret key file, its check value and the activation time.

        A key is created only while the database holds no secret: a new key could not read old ones."""
        from skypost.crypto import (KEY_CHECK_SETTING, SecretKeyError, create_key_file, key_check,
                                    load_cipher, verify_key)

        self.db.migrate()
        with self.db.connect() as conn:
            sample = q.encrypted_secret_sample(conn)
            check = q.get_setting(conn, KEY_CHECK_SETTING)
        key_created = False
        key_file = None
        if not self.settings.secret_key:
            path = self.settings.key_file()
            key_file = str(path)
            if sample is not None and not path.exists():
                raise SecretKeyError(
                    f"the secret key file {path} is missing and the database holds secrets encrypted "
                    "with it: restore the file or set SKYPOST_SECRET_KEY (a new key could not read them)")
            key_created = create_key_file(path)
        cipher = load_cipher(self.settings.secret_key, self.settings.key_file())
        if sample is not None:
            verify_key(cipher, check=check, sample=sample)
        with self.db.transaction() as conn:
            if check is None or not cipher.can_read(check):  # no secret to lose: this key is the one
                q.set_setting(conn, KEY_CHECK_SETTING, key_check(cipher))
                session_key = q.get_setting(conn, WEB_SESSION_KEY)
                if session_key is not None and not cipher.can_read(session_key):
                    q.delete_setting(conn, WEB_SESSION_KEY)  # disposable: serve makes a new one
            q.insert_setting_if_missing(conn, "activated_at", repr(self.clock()))
        self._cipher = cipher
        return InitResult(self.settings.database_url, key_file, key_created)

    def ensure_schema(self) -> None:
        """Initialise on first use, upgrade an older schema; cheap when the schema is current."""
        revision = self.db.schema_revision()
        if revision is None:
            self.init()
        elif revision != SCHEMA_HEAD:
            self.db.migrate()

    @property
    def pipeline(self) -> "Pipeline":
        if self._pipeline is None:
            from skypost.pipeline import Pipeline

            self._pipeline = Pipeline(
                db=self.db, settings=self.settings, cipher_provider=self.cipher,
                client_factory=self.client_factory, composer=self.composer, fetcher_provider=self.fetcher,
                clock=self.clock, rng=self._rng, transport_provider=self.http_transport,
            )
        return self._pipeline

    def cipher(self) -> "Cipher":
        """The cipher of the configured key, once it is known to read this database's secrets."""
        from skypost.crypto import KEY_CHECK_SETTING, load_cipher, verify_key

        if self._cipher is None:
            with self._lock:
                if self._cipher is None:
                    cipher = load_cipher(self.settings.secret_key, self.settings.key_file())
                    with self.db.connect() as conn:
                        check = q.get_setting(conn, KEY_CHECK_SETTING)
                        sample = q.encrypted_secret_sample(conn) if check is None else None
                    verify_key(cipher, check=check, sample=sample)
                    self._cipher = cipher
        return self._cipher

    def fetcher(self) -> Any:
        if self._fetcher is None:
            if self._fetcher_factory is not None:
                self._fetcher = self._fetcher_factory()
            else:
                from skypost.fetch import CachingFetcher, SafeFetcher

                self._fetcher = CachingFetcher(SafeFetcher(allow_private=self.settings.allow_private_urls))
        return self._fetcher

    def http_transport(self) -> Any:
        """One connection pool for every Bluesky call of this process (keep-alive, one TLS set-up)."""
        if self._transport is None:
            with self._lock:
                if self._transport is None:
                    import httpx

                    self._transport = httpx.HTTPTransport(
                        limits=httpx.Limits(max_connections=100, max_keepalive_connections=20))
        return self._transport

    def close(self) -> None:
        if self._fetcher is not None and hasattr(self._fetcher, "close"):
            self._fetcher.close()
        if self._transport is not None:
            self._transport.close()
        self.db.dispose()

    def __enter__(self) -> "Skypost":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # --- publishing ------------------------------------------------------------------

    def submit(self, post: Post | Mapping[str, Any], *, sync: bool | None = None,
               source: str = "api") -> dict[str, Any]:
        """Record the post and its deliveries in one transaction; returns its status at once."""
        return self.submit_state(post, sync=sync, source=source).to_json()

    def submit_state(self, post: Post | Mapping[str, Any], *, sync: bool | None = None,
                     source: str = "api", check_cutoff: bool = True) -> PostState:
        """`check_cutoff=False` for sources with their own activation cutoff (feeds)."""
        if not isinstance(post, Post):
            post = parse_post_document(post)
        now = self.clock()
        inline = self.settings.queue == "inline" if sync is None else sync
        with self.db.transaction() as conn:
            state, created = syndicator.submit(conn, post, now=now, source=source, check_cutoff=check_cutoff)
            if created and state.deliveries:
                # after the outermost commit: a submit inside a caller's transaction (a feed poll)
                # must not wake workers for rows that may still be rolled back
                conn.after_commit(self.queue.notify)
            if created and not (inline and state.deliveries):
                conn.after_commit(lambda: self._emit(state))
        if created and state.deliveries and inline:
            state = self._run_inline(post.id)
            self._emit(state)
        return state

    def on_status_change(self, post: Post | Mapping[str, Any], old: str | None, new: str) -> dict[str, Any]:
        """For hosts with status transitions: only a change *into* published syndicates."""
        if not isinstance(post, Post):
            post = parse_post_document(post)
        if new not in syndicator.PUBLISHED_STATES:
            return syndicator.transient_skip(post, f"status {new!r} is not published").to_json()
        if old in syndicator.PUBLISHED_STATES:
            known = self.status(post.id)
            return known or syndicator.transient_skip(post, "an edit of a published post is not syndicated").to_json()
        return self.submit(post)

    def _run_inline(self, post_id: str) -> PostState:
        """Rule 13: one pass of the same pipeline, in this process."""
        owner = f"inline:{id(self)}"
        with self.db.transaction() as conn:
            post_row = q.post_by_id(conn, post_id)
            assert post_row is not None
            job = q.job_for_post(conn, post_row["seq"])
            claimed = job is not None and q.claim_job_by_id(
                conn, job["id"], owner=owner, now=self.clock(), lease=self.settings.job_lease)
        if claimed:
            self.pipeline.process_syndication(job["id"], post_row["seq"], owner=owner,
                                              claimed_run_at=job["run_at"])
        state = self.status_state(post_id)
        assert state is not None
        return state

    def status_state(self, post_id: str) -> PostState | None:
        if not valid_id(post_id):
            return None  # no such id can have been stored
        with self.db.connect() as conn:
            row = q.post_by_id(conn, post_id)
            if row is None:
                return None
            return syndicator.post_state(conn, row, paused=syndicator.is_paused(conn))

    def status(self, post_id: str) -> dict[str, Any] | None:
        state = self.status_state(post_id)
        return state.to_json() if state else None

    def list_posts(self, *, status: str | None = None, limit: int = 50,
                   before: int | None = None) -> list[dict[str, Any]]:
        """Newest first. Each item is the status JSON plus `seq` (for paging) and `title`/`url`."""
        with self.db.connect() as conn:
            paused = syndicator.is_paused(conn)
            wanted: str | list[str] | None = status
            if status == "paused":  # not stored: every unfinished post is paused while paused
                wanted = ["pending", "retrying", "rate_limited", "circuit_open"] if paused else ["-"]
            rows = q.list_posts(conn, status=wanted, limit=limit, before_seq=before)
            by_post: dict[int, list[Any]] = {}
            for d in q.deliveries_for_posts(conn, [r["seq"] for r in rows]):
                by_post.setdefault(d["post_seq"], []).append(d)
            counts = interaction_counts(conn, [r["seq"] for r in rows])  # one query for the page
        items = []
        for row in rows:
            state = syndicator.state_from_rows(row, by_post.get(row["seq"], []), paused=paused,
                                               interactions=counts[row["seq"]])
            item = state.to_json()
            item.update(seq=row["seq"], title=row["document"].get("title", ""), url=row["document"].get("url", ""),
                        submitted_at=iso_ts(row["created_at"]))
            items.append(item)
        return items

    def delete(self, post_id: str) -> dict[str, Any] | None:
        """Remove the post from Bluesky on every account; its status at once, None for an unknown id.

        Deliveries that never reached Bluesky are cancelled (they are never sent); the others'
        records are deleted by the worker, with the same retries and gates as publishing. The
        id stays known: it is never syndicated again (see `retry(..., repost=True)`). A second
        delete changes nothing."""
        if not valid_id(post_id):
            return None
        with self.db.transaction() as conn:
            row = q.post_by_id(conn, post_id)
            if row is None:
                return None
            now = self.clock()
            changed = syndicator.request_delete(conn, row, now=now)
            # the site's replies under it go too (a reply locks the post first, then checks
            # that no delete was requested: none is recorded after this reads them)
            for reply in qg.replies_of_post(conn, row["seq"]):
                changed = syndicator.request_delete(conn, reply, now=now) or changed
            if changed:
                conn.after_commit(self.queue.notify)
        return self.status(post_id)

    def interactions(self, post_id: str) -> dict[str, Any] | None:
        """What a post gathered on Bluesky (replies, quotes, likes, reposts; removed ones marked
        `"removed": true`), oldest first; None for an unknown id."""
        with self.db.connect() as conn:
            return post_interactions(conn, post_id)

    def retry(self, post_id: str, account: str | None = None, *, repost: bool = False) -> dict[str, Any] | None:
        """Queue the failed deliveries of a post again (or those of one account); None for an unknown id.

        A post skipped because no account would take it is judged again against today's accounts.
        `repost`: publish a deleted post again, as new records (only for a deleted post)."""
        if not valid_id(post_id):
            return None
        now = self.clock()
        handle = normalize_handle(account) if account else None
        with self.db.transaction() as conn:
            row = q.post_by_id(conn, post_id)
            if row is None:
                return None
            current = syndicator.post_state(conn, row, paused=False, counts=False).status
            deleted = row["delete_requested_at"] is not None
            if repost:
                if handle:
                    raise ValidationError({"account": "a repost goes to every account the post is for"})
                if not syndicator.repost(conn, row, now=now):
                    why = ("it is still being deleted: wait until it is deleted" if deleted
                           else "only a deleted post can be reposted (skypost delete ID first)")
                    raise ValidationError({"repost": f"post {post_id} cannot be reposted: {why}"})
                conn.after_commit(self.queue.notify)
                return self._status_after(conn, post_id)
            if current is PostStatus.DELETED:
                raise ValidationError({"post": f"post {post_id} was deleted from Bluesky: it is not sent "
                                               f"again (skypost retry {post_id} --repost publishes it anew)"})
            revived = row["status"] == "skipped" and syndicator.resubmit_skipped(conn, row, now)
            deliveries = q.deliveries_for_posts(conn, [row["seq"]])
            if handle and not any(d["handle"] == handle for d in deliveries):
                raise ValidationError({"account": f"post {post_id} has no delivery to @{handle}"})
            touched = 0
            for d in deliveries:
                if handle and d["handle"] != handle:
                    continue
                if d["status"] == "failed" and d["account_id"] is not None:
                    q.reset_delivery(conn, d["id"], now)
                    touched += 1
                elif d["status"] in ("retrying", "circuit_open", "rate_limited"):
                    q.make_delivery_due(conn, d["id"], now)
                    touched += 1
            if touched:
                syndicator.requeue_post(conn, row["seq"], now, reset_status=not deleted)
                q.add_event(conn, ts=now, kind="retry", post_id=post_id,
                            message=f"retry requested for {touched} delivery(ies)")
                conn.after_commit(self.queue.notify)
            elif revived:
                conn.after_commit(self.queue.notify)
        return self.status(post_id)

    def _status_after(self, conn: Any, post_id: str) -> dict[str, Any]:
        row = q.post_by_id(conn, post_id)
        assert row is not None
        return syndicator.post_state(conn, row, paused=syndicator.is_paused(conn)).to_json()

    def reply(self, post_id: str, reply_id: str, text: str, parent: str | None = None,
              account: str | None = None) -> dict[str, Any]:
        """Publish a comment of the site as a reply under the syndicated post (or under `parent`,
        the AT-URI of a record in its thread), as the post's account(s) or only `account`.
        Returns the reply's status at once; the same `reply_id` again returns the known status.
        Raises replies.UnknownPost for an unknown post, ValidationError for bad input."""
        return self.reply_state(post_id, reply_id, text, parent=parent, account=account)[0]

    def reply_state(self, post_id: str, reply_id: str, text: str, parent: str | None = None,
                    account: str | None = None) -> tuple[dict[str, Any], bool]:
        """Like reply(), with whether it was recorded now (False: known already)."""
        from skypost import replies

        post_id, reply_id, text, parent, handle = replies.parse_reply(post_id, reply_id, text, parent, account)
        with self.db.transaction() as conn:
            status, created = replies.submit_reply(conn, post_id=post_id, reply_id=reply_id, text=text,
                                                   parent=parent, account=handle, now=self.clock())
            if created:
                conn.after_commit(self.queue.notify)
        return status, created

    def replies(self, post_id: str) -> list[dict[str, Any]] | None:
        """The status of each reply from the site to a post; None for an unknown post."""
        from skypost import replies

        if not valid_id(post_id):
            return None
        with self.db.connect() as conn:
            try:
                return replies.replies_of(conn, post_id)
            except replies.UnknownPost:
                return None

    def pause(self) -> None:
        self._set_paused(True)

    def resume(self) -> None:
        self._set_paused(False)
        self.queue.notify()

    def _set_paused(self, paused: bool) -> None:
        now = self.clock()
        with self.db.transaction() as conn:
            q.set_setting(conn, "paused", "1" if paused else "0")
            if not paused:
                q.notify_jobs(conn)
            q.add_event(conn, ts=now, kind="paused" if paused else "resumed",
                        message="syndication paused" if paused else "syndication resumed")

    @property
    def paused(self) -> bool:
        with self.db.connect() as conn:
            return syndicator.is_paused(conn)

    def on_post_status(self, listener: Callable[[PostState], None]) -> None:
        self._status_listeners.append(listener)

    def _emit(self, state: PostState) -> None:
        for listener in self._status_listeners:
            listener(state)

    # --- accounts ----------------------------------------------------------------------

    def add_account(self, handle: str, password: str, *, service: str = DEFAULT_SERVICE,
                    auto_syndicate: bool = True, include_categories: Sequence[str] | None = None,
                    exclude_categories: Sequence[str] | None = None, verify: bool = True,
                    replies: Sequence[str] | None = None, quotes: bool | None = None) -> dict[str, Any]:
        """`replies`: who may reply to its posts (everyone, nobody, following, mentioned);
        `quotes=False`: its posts cannot be quoted. A post's own `replies`/`quotes` win."""
        from skypost import accounts as acct

        account = acct.add_account(
            self.db, self.cipher(), self.client_factory, handle=handle, password=password, service=service,
            auto_syndicate=auto_syndicate, include_categories=include_categories,
            exclude_categories=exclude_categories, verify=verify, now=self.clock(),
            replies=replies, quotes=quotes,
            timeout=self.settings.http_timeout, allow_private=self.settings.allow_private_urls,
        )
        from skypost.conversation.backfeed import schedule_account

        if account.id is not None:
            schedule_account(self, account.id)
        return account.to_json()

    def update_account(self, handle: str, **changes: Any) -> dict[str, Any]:
        from skypost import accounts as acct

        account, requeued = acct.update_account(self.db, self.cipher(), self.client_factory, handle=handle,
                                                now=self.clock(), timeout=self.settings.http_timeout,
                                                allow_private=self.settings.allow_private_urls, **changes)
        if requeued:
            self.queue.notify()
        return {**account.to_json(), "requeued": requeued}

    def remove_account(self, handle: str) -> int:
        from skypost import accounts as acct

        return acct.remove_account(self.db, handle=handle, now=self.clock())

    def accounts(self) -> list[dict[str, Any]]:
        from skypost import accounts as acct

        return [a.to_json() for a in acct.list_accounts(self.db)]

    # --- telling the site (signed webhooks out) -------------------------------------------

    def add_notify(self, url: str, events: Sequence[str] | None = None) -> str:
        """Send events to `url` as signed JSON webhooks; returns the signing secret (shown once)."""
        from skypost.conversation import notify

        return notify.add_target(self, url, events)

    def notify_targets(self) -> list[dict[str, Any]]:
        """The webhook targets with their delivery counts (never their secrets)."""
        from skypost.conversation import notify

        return notify.list_targets(self)

    def remove_notify(self, url: str) -> None:
        from skypost.conversation import notify

        notify.remove_target(self, url)

    # --- the worker -----------------------------------------------------------------------

    def make_worker(self, *, burst: bool = False, concurrency: int = 1) -> "Worker":
        # loaded here, not at the top: `skypost submit` imports this module and must stay fast
        from skypost.conversation import backfeed
        from skypost.conversation import notify
        from skypost.sources import feeds
        from skypost.worker import JobKind, Worker

        pipeline = self.pipeline

        def syndicate(job: Any, owner: str, should_stop: Callable[[], bool], loaded: Any) -> None:
            pipeline.process_syndication(job.id, job.args["post_seq"], owner=owner, should_stop=should_stop,
                                         claimed_run_at=job.run_at, loaded=loaded)

        def load_post(conn: Any, job: Any) -> Any:
            return pipeline.load(conn, job.args["post_seq"])

        handlers = {
            syndicator.SYNDICATE_JOB: JobKind(syndicate, load_post),
            PRUNE_JOB: JobKind(self._prune),
            **feeds.job_kinds(self),
            **backfeed.job_kinds(self),
            **notify.job_kinds(self),
        }
        if not burst:
            self.queue.schedule_recurring(PRUNE_JOB, run_at=self.clock())
        backfeed.ensure_jobs(self)
        return Worker(db=self.db, queue=self.queue, handlers=handlers, concurrency=concurrency, burst=burst,
                      poll_interval=self.settings.poll_interval)

    def _prune(self, job: Any, owner: str, should_stop: Callable[[], bool], loaded: Any) -> None:
        """Delete finished jobs and old events, then come back after `prune_interval`."""
        now = self.clock()
        with self.db.transaction() as conn:
            if self.settings.retention_days > 0:
                jobs, events = q.prune(conn, before=now - self.settings.retention_days * 86400)
                if jobs or events:
                    q.add_event(conn, ts=now, kind="pruned", message=f"deleted {jobs} finished job(s) and "
                                f"{events} event(s) older than {self.settings.retention_days:g} days")
            q.reschedule_job(conn, job.id, owner=owner, run_at=now + self.settings.prune_interval, now=now)

    def backfeed(self, account: str | None = None) -> dict[str, Any]:
        """Poll Bluesky now, once, for the reactions to syndicated posts: one account (a handle)
        or every account. Returns {"accounts": [...], "new": {kind: n}, "removed": {kind: n}}."""
        from skypost.conversation.backfeed import backfeed

        return backfeed(self, account)

    def run_worker(self, *, burst: bool = False, concurrency: int = 1) -> int:
        """Run a worker in this thread: until nothing is due (burst) or until stopped."""
        return self.make_worker(burst=burst, concurrency=concurrency).run()

    # --- visibility ------------------------------------------------------------------------

    def events(self, *, limit: int = 50, post_id: str | None = None) -> list[dict[str, Any]]:
        if post_id is not None and not valid_id(post_id):
            return []
        with self.db.connect() as conn:
            rows = q.list_events(conn, limit=limit, post_id=post_id)
        return [
            {"id": r["id"], "ts": iso_ts(r["ts"]), "level": r["level"], "kind": r["kind"], "post_id": r["post_id"],
             "account": r["account"], "message": r["message"]}
            for r in rows
        ]

    def feeds(self) -> list[dict[str, Any]]:
        """Watched feeds with their last error and next poll."""
        from skypost.sources.feeds import list_feeds

        return list_feeds(self)

    def health(self) -> dict[str, Any]:
        now = self.clock()
        with self.db.connect() as conn:
            accounts = q.list_accounts(conn)
            breakers = q.all_breakers(conn)
            limits = {r["key"]: r for r in q.all_rate_limits(conn)}
            jobs = q.count_jobs(conn, now=now)
            oldest = q.oldest_due_run_at(conn, now)
            heartbeat = q.last_heartbeat(conn)
            deliveries = q.count_deliveries_by_status(conn)
            paused = syndicator.is_paused(conn)
        account_health = []
        for a in accounts:
            b = breakers.get(a["id"])
            limit = limits.get(f"account:{a['id']}")
            account_health.append({
                "handle": a["handle"], "did": a["did"], "state": a["state"],
                "needs_reauth": a["state"] == "needs_reauth", "session_valid": bool(a["session_enc"]),
                "breaker": b["state"] if b else "closed",
                "breaker_open_until": iso_ts(b["open_until"]) if b and b["state"] != "closed" else None,
                "rate_remaining": limit["remaining"] if limit else None,
                "rate_reset_at": iso_ts(limit["reset_at"]) if limit and limit["reset_at"] else None,
                "last_error": a["last_error"],
            })
        stale = heartbeat is None or now - heartbeat > self.settings.worker_stale_after
        return {
            "paused": paused,
            "accounts": account_health,
            "jobs": jobs,
            "deliveries": deliveries,
            "oldest_due_job_at": iso_ts(oldest),
            "oldest_due_job_age": round(now - oldest, 3) if oldest is not None else None,
            "last_worker_heartbeat": iso_ts(heartbeat),
            "worker_seen_recently": not stale,
            "feeds": [{k: f.get(k) for k in ("url", "enabled", "last_error", "next_poll_at", "last_polled_at")}
                      for f in self.feeds()],
        }




def iso_ts(value: float | None) -> str | None:
    from datetime import datetime, timezone

    return iso(datetime.fromtimestamp(value, timezone.utc)) if value is not None else None
