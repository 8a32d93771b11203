"""process_syndication: one post's deliveries, one account after another.

Each delivery goes through the gates (pause, order, breaker, rate limit), then
one attempt: check whether an earlier attempt already created the record,
compose, create with the delivery's own record key, and record the outcome —
delivery, breaker, rate limits and activity in one transaction.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from datetime import datetime, timezone
from typing import Any, Callable, Mapping, Protocol
from urllib.parse import urlsplit

from skypost import resilience as rz
from skypost.config import Settings
from skypost.crypto import Cipher
from skypost.models import FINISHED_DELIVERY, DeliveryStatus, Post, PostStatus, parse_post_document, reauth_message
from skypost.store import queries as q
from skypost.store.db import Database
from skypost.syndicator import account_from_row, categories_allow, is_paused, post_state

log = logging.getLogger("skypost.pipeline")

Clock = Callable[[], float]


class Client(Protocol):
    """What the pipeline needs of a Bluesky connection (bluesky.client.BlueskyClient)."""

    @property
    def did(self) -> str: ...
    def create_post(self, record: dict[str, Any], rkey: str) -> Any: ...
    def get_post(self, rkey: str) -> Any: ...
    def upload_blob(self, data: bytes, mime: str) -> dict[str, Any]: ...
    def resolve_handle(self, handle: str) -> str | None: ...
    def close(self) -> None: ...


ClientFactory = Callable[..., Client]
Composer = Callable[..., Any]


GAVE_UP = "gave up after"
# points a createRecord costs against an account's write budget (BLUESKY.md)
CREATE_COST = 3


def account_keys(account_id: int, service: str, egress_id: str) -> dict[str, str]:
    host = urlsplit(service).netloc or service
    return {
        "account": f"account:{account_id}",
        "login": f"login:{account_id}",
        "host": f"host:{egress_id}:{host}",
    }


# XRPC methods whose budget is the account's (repo writes) or its logins'
_ACCOUNT_METHODS = frozenset({"com.atproto.repo.createRecord", "com.atproto.repo.uploadBlob",
                              "com.atproto.repo.applyWrites", "com.atproto.repo.deleteRecord",
                              "com.atproto.repo.putRecord"})
_LOGIN_METHODS = frozenset({"com.atproto.server.createSession"})


def key_for_method(method: str, keys: Mapping[str, str], policy: str | None = None) -> str:
    """Which budget a response's RateLimit-* headers describe.

    A PDS reports its tightest limit. On a repo write that is either the account's
    write budget (hourly/daily windows) or the per-IP one (a 5-minute window).
    """
    if method in _LOGIN_METHODS:
        return keys["login"]
    if method in _ACCOUNT_METHODS:
        window = _policy_window(policy)
        return keys["host"] if window is not None and window <= 300 else keys["account"]
    return keys["host"]


def _policy_window(policy: str | None) -> float | None:
    for part in (policy or "").split(";")[1:]:
        name, _, value = part.strip().partition("=")
        if name == "w":
            try:
                return float(value)
            except ValueError:
                return None
    return None


@dataclasses.dataclass
class Attempt:
    """What one attempt learnt, to be written in one transaction."""

    responses: list[tuple[str, int, dict[str, str]]] = dataclasses.field(default_factory=list)
    result: Any = None
    already_existed: bool = False
    failure: rz.Failure | None = None
    failed_method: str | None = None
    failure_headers: dict[str, str] = dataclasses.field(default_factory=dict)
    warnings: list[str] = dataclasses.field(default_factory=list)


class Pipeline:
    def __init__(
        self,
        *,
        db: Database,
        settings: Settings,
        cipher_provider: Callable[[], Cipher],
        client_factory: ClientFactory,
        composer: Composer,
        fetcher_provider: Callable[[], Any] | None = None,
        clock: Clock,
        rng: random.Random | None = None,
        transport_provider: Callable[[], Any] | None = None,
    ):
        self.db = db
        self.settings = settings
        self._cipher = cipher_provider
        self.client_factory = client_factory
        self.composer = composer
        self._fetcher = fetcher_provider
        self.clock = clock
        self.rng = rng or random.Random()
        self._transport = transport_provider

    # --- the job ---------------------------------------------------------------

    def process_syndication(self, job_id: int, post_seq: int, *, owner: str,
                            should_stop: Callable[[], bool] = lambda: False,
                            claimed_run_at: float | None = None) -> None:
        """Run one pass over the post's deliveries. `claimed_run_at` is the job's run_at when it
        was claimed: a later one means another worker woke the job meanwhile."""
        with self.db.transaction() as conn:
            post_row = q.post_by_seq(conn, post_seq)
            rows = q.deliveries_for_posts(conn, [post_seq])
        if post_row is None:
            with self.db.transaction() as conn:
                q.release_job(conn, job_id, owner=owner, status="done", run_at=None, now=self.clock())
            return
        post = parse_post_document(post_row["document"], allow_extra=True)
        hints: dict[int, float] = {}
        for row in rows:
            if row["status"] in FINISHED_DELIVERY:
                continue
            if should_stop() or self._paused():
                break
            now = self.clock()
            if row["next_attempt_at"] is not None and row["next_attempt_at"] > now:
                continue
            hint = self._process_delivery(post, row, job_id=job_id, owner=owner)
            if hint is not None:
                hints[row["id"]] = hint
        self._finish_job(job_id, post_seq, owner=owner, hints=hints, claimed_run_at=claimed_run_at)

    def _finish_job(self, job_id: int, post_seq: int, *, owner: str, hints: Mapping[int, float],
                    claimed_run_at: float | None) -> None:
        now = self.clock()
        with self.db.transaction() as conn:
            post_row = q.post_by_seq(conn, post_seq)
            assert post_row is not None
            paused = is_paused(conn)
            state = post_state(conn, post_row, paused=paused)
            unfinished = [d for d in state.deliveries if not d.status.finished]
            if unfinished:
                times = []
                for d in unfinished:
                    at = d.next_attempt_at.timestamp() if d.next_attempt_at else now
                    times.append(max(at, hints.get(d.id, at)))
                q.reschedule_job(conn, job_id, owner=owner, run_at=max(min(times), now), now=now,
                                 claimed_run_at=claimed_run_at)
            else:
                q.release_job(conn, job_id, owner=owner, status="done", run_at=None, now=now)
            stored = state.status if state.status is not PostStatus.PAUSED else PostStatus.PENDING
            if post_row["status"] != stored.value:
                q.set_post_status(conn, post_seq, stored.value, post_row["reason"], now)
                if stored in (PostStatus.COMPLETED, PostStatus.PARTIAL, PostStatus.FAILED):
                    q.add_event(conn, ts=now, kind=f"post_{stored.value}", post_id=post_row["post_id"],
                                level="info" if stored is PostStatus.COMPLETED else "warning",
                                message=f"syndication {stored.value}" + (f": {state.reason}" if state.reason else ""))

    def _paused(self) -> bool:
        with self.db.connect() as conn:
            return is_paused(conn)

    # --- one delivery -------------------------------------------------------------

    def _process_delivery(self, post: Post, row: Mapping[str, Any], *, job_id: int, owner: str) -> float | None:
        """Run the gates and, if they allow, one attempt. Returns when the job should look again."""
        now = self.clock()
        with self.db.transaction() as conn:
            account_row = q.account_by_id(conn, row["account_id"]) if row["account_id"] else None
            if account_row is None:
                self._finish(conn, row, post, DeliveryStatus.FAILED, now,
                             error=f"the account @{row['handle']} was removed")
                return None
            blocker = q.earlier_unfinished_delivery(conn, row["account_id"], row["post_seq"])
            if blocker is not None:
                # rule 4: an earlier post to this account goes first; finishing it wakes this job,
                # the lease is only a safety net
                wait = blocker["next_attempt_at"]
                return wait if wait is not None and wait > now else now + self.settings.job_lease
            account = account_from_row(account_row)
            if account.state.value == "needs_reauth":
                self._finish(conn, row, post, DeliveryStatus.FAILED, now, error=reauth_message(account.handle))
                return None
            if not categories_allow(account, post.categories):
                self._finish(conn, row, post, DeliveryStatus.FAILED, now,
                             error=f"the category rules of @{account.handle} no longer allow this post")
                return None

            gate = rz.breaker_gate(q.breaker(conn, account.id), now)  # type: ignore[arg-type]
            probe = False
            if not gate.allow:
                return self._wait(conn, row, post, DeliveryStatus.CIRCUIT_OPEN, gate.wait_until or now,
                                  f"circuit open for @{account.handle}", now)
            keys = account_keys(account.id, account.service, self.settings.egress_id)
            key_list = [keys["account"], keys["host"]]
            if not account_row["session_enc"]:
                key_list.append(keys["login"])
            limits = q.rate_limit_rows(conn, key_list)
            hold = rz.hold_until(limits, now, reserve=self.settings.rate_limit_reserve,
                                 reserves={keys["account"]: max(self.settings.rate_limit_reserve, CREATE_COST)})
            if hold is not None:
                return self._wait(conn, row, post, DeliveryStatus.RATE_LIMITED, hold,
                                  f"rate limit of @{account.handle} spent", now)
            if gate.probe:
                probe = q.take_probe(conn, account.id, owner=owner, now=now, until=now + self.settings.job_lease)
                if not probe:
                    current = q.breaker(conn, account.id)
                    until = (current or {}).get("probe_until") or now + self.settings.poll_interval
                    return self._wait(conn, row, post, DeliveryStatus.CIRCUIT_OPEN, until,
                                      f"circuit half-open for @{account.handle}: a probe is running", now)
            if not q.holds_lease(conn, job_id, owner):
                return None  # another worker took this job over: leave the delivery to it
            tried_before = bool(row["tried"])
            q.update_delivery(conn, row["id"], attempts=row["attempts"] + 1, tried=True, updated_at=now)
            for key in (keys["account"], keys["host"]):
                budget = next((r for r in limits if r["key"] == key), None)
                spent = rz.spend(budget, 1, now)
                if spent:
                    q.save_rate_limit(conn, key, **spent)
            password = self._cipher().decrypt(account_row["password_enc"])
            session = self._cipher().decrypt(account_row["session_enc"]) if account_row["session_enc"] else None

        attempt = self._attempt(post, row, account.id, account.handle, account.service, password, session,
                                tried_before=tried_before)
        return self._record(post, row, account.id, account.handle, keys, attempt, probe=probe)

    def _attempt(self, post: Post, row: Mapping[str, Any], account_id: int, handle: str, service: str,
                 password: str, session: str | None, *, tried_before: bool) -> Attempt:
        from skypost.bluesky.client import CallError, translate

        attempt = Attempt()

        def save_session(value: str) -> None:
            with self.db.transaction() as conn:
                q.update_account(conn, account_id, session_enc=self._cipher().encrypt(value),
                                 updated_at=self.clock())

        client = self.client_factory(
            service=service, handle=handle, password=password, session_string=session,
            on_session=save_session, on_response=lambda m, s, h: attempt.responses.append((m, s, h)),
            timeout=self.settings.http_timeout, transport=self._transport() if self._transport else None,
        )
        method = "com.atproto.repo.createRecord"
        try:
            if tried_before:
                method = "com.atproto.repo.getRecord"
                existing = client.get_post(row["rkey"])
                if existing is not None:
                    attempt.result, attempt.already_existed = existing, True
                    return attempt
            fetcher = self._fetcher() if self._fetcher else None
            composed = self.composer(post, now=datetime.fromtimestamp(self.clock(), timezone.utc),
                                     fetcher=fetcher, upload_blob=client.upload_blob,
                                     resolve_handle=client.resolve_handle)
            attempt.warnings.extend(composed.warnings)
            method = "com.atproto.repo.createRecord"
            try:
                attempt.result = client.create_post(composed.record, row["rkey"])
            except CallError as exc:
                # the same rkey again: an earlier attempt's create went through (BLUESKY.md)
                if exc.status is not None and (exc.status == 409 or exc.status >= 500):
                    method = "com.atproto.repo.getRecord"
                    existing = client.get_post(row["rkey"])
                    if existing is not None:
                        attempt.result, attempt.already_existed = existing, True
                        return attempt
                raise
        except Exception as exc:  # noqa: BLE001 - every failure is classified, none escapes
            error = translate(exc, method) if not isinstance(exc, CallError) else exc
            if error.status is None and not isinstance(exc, CallError) and not _is_network(exc):
                log.exception("unexpected error while publishing")
                error = CallError(None, None, f"internal error: {type(exc).__name__}: {exc}", None, method)
            attempt.failure = rz.classify(error.status, error.error, str(error), error.headers, now=self.clock())
            attempt.failed_method = error.method or method
            attempt.failure_headers = error.headers
        finally:
            client.close()
        return attempt

    def _record(self, post: Post, row: Mapping[str, Any], account_id: int, handle: str,
                keys: Mapping[str, str], attempt: Attempt, *, probe: bool) -> float | None:
        now = self.clock()
        with self.db.transaction() as conn:
            for method, status, headers in attempt.responses:
                if status == 429:
                    continue
                observation = rz.parse_rate_headers(headers, now)
                values = rz.limiter_after_response(observation, now)
                if values:
                    q.save_rate_limit(conn, key_for_method(method, keys, observation.policy), **values)
            for warning in attempt.warnings:
                q.add_event(conn, ts=now, kind="card_warning", level="warning", post_id=post.id,
                            account=handle, message=warning)
            breaker_row = q.breaker(conn, account_id)
            failure = attempt.failure
            if failure is None:
                result = attempt.result
                did = _did_of(result.uri) or row["did"]
                from skypost.bluesky.client import post_url

                self._finish(conn, row, post, DeliveryStatus.COMPLETED, now, uri=result.uri, cid=result.cid,
                             url=post_url(did, row["rkey"]),
                             note="found the record of an earlier attempt" if attempt.already_existed else None)
                if breaker_row is None or breaker_row["state"] != "closed" or breaker_row["failures"]:
                    self._breaker_closed(conn, account_id, handle, breaker_row, now, post.id)
                return None
            if failure.kind is rz.FailureKind.RATE_LIMITED:
                observation = rz.parse_rate_headers(attempt.failure_headers, now)
                key = key_for_method(attempt.failed_method or "", keys, observation.policy if observation else None)
                limit_row = next(iter(q.rate_limit_rows(conn, [key])), None)
                values = rz.limiter_after_429(limit_row, attempt.failure_headers, now, self.rng)
                q.save_rate_limit(conn, key, **values)
                if probe:
                    q.save_breaker(conn, account_id, **rz.breaker_release_probe(now))
                # no attempt used
                q.update_delivery(conn, row["id"], attempts=row["attempts"])
                return self._wait(conn, row, post, DeliveryStatus.RATE_LIMITED, values["blocked_until"],
                                  f"rate limited ({failure.message})", now)
            if failure.kind is rz.FailureKind.AUTH:
                if probe:
                    q.save_breaker(conn, account_id, **rz.breaker_release_probe(now))
                q.update_account(conn, account_id, state="needs_reauth", last_error=failure.message,
                                 session_enc=None, updated_at=now)
                q.add_event(conn, ts=now, kind="needs_reauth", level="error", account=handle,
                            message=f"@{handle} refused the credentials ({failure.message}): {reauth_message(handle)}")
                self._finish(conn, row, post, DeliveryStatus.FAILED, now, error=reauth_message(handle))
                return None
            if failure.kind is rz.FailureKind.PERMANENT:
                # a real answer from a healthy server: it breaks a run of transient failures
                if breaker_row is not None and (breaker_row["state"] != "closed" or breaker_row["failures"]):
                    self._breaker_closed(conn, account_id, handle, breaker_row, now, post.id)
                self._finish(conn, row, post, DeliveryStatus.FAILED, now, error=f"Bluesky refused the post: {failure.message}")
                return None
            # transient
            values = rz.breaker_after_failure(breaker_row, now, threshold=self.settings.circuit_threshold,
                                              cooldown=self.settings.circuit_cooldown, was_probe=probe)
            q.save_breaker(conn, account_id, **values)
            if values["state"] == "open" and (breaker_row is None or breaker_row["state"] == "closed" or probe):
                q.add_event(conn, ts=now, kind="circuit_open", level="warning", account=handle, post_id=post.id,
                            message=f"circuit opened for @{handle} for {self.settings.circuit_cooldown:g} s after "
                                    f"{values['failures']} consecutive failures" + (" (the probe failed)" if probe else ""))
            attempts = row["attempts"] + 1
            delay = rz.retry_delay(attempts, self.settings.retry_delays)
            if delay is None:
                self._finish(conn, row, post, DeliveryStatus.FAILED, now,
                             error=f"{GAVE_UP} {attempts} attempts: {failure.message}")
                return None
            q.update_delivery(conn, row["id"], status=DeliveryStatus.RETRYING.value, next_attempt_at=now + delay,
                              error=failure.message, updated_at=now)
            q.add_event(conn, ts=now, kind="retry_scheduled", level="warning", post_id=post.id, account=handle,
                        message=f"attempt {attempts} failed ({failure.message}); retrying in {delay:g} s")
            return now + delay

    # --- helpers -----------------------------------------------------------------

    def _breaker_closed(self, conn: Any, account_id: int, handle: str, row: Any, now: float, post_id: str) -> None:
        q.save_breaker(conn, account_id, **rz.breaker_after_success(now))
        if row is None or row["state"] == "closed":
            return
        # The service is back. Deliveries that ran out of attempts during this outage were not
        # wrong, only early: queue them again rather than leave them for a person to find.
        since = (row["opened_at"] or now) - sum(self.settings.retry_delays) - self.settings.job_lease
        from skypost.accounts import requeue_post

        requeued = 0
        for delivery in q.failed_deliveries_of_account(conn, account_id, error_like=GAVE_UP + "%"):
            if (delivery["completed_at"] or 0) >= since:
                q.update_delivery(conn, delivery["id"], status=DeliveryStatus.PENDING.value, attempts=0,
                                  next_attempt_at=None, error=None, updated_at=now, completed_at=None)
                requeue_post(conn, delivery["post_seq"], now)
                requeued += 1
        message = f"circuit closed for @{handle}: the probe succeeded"
        if requeued:
            message += f"; {requeued} delivery(ies) that gave up during the outage queued again"
        q.add_event(conn, ts=now, kind="circuit_closed", account=handle, post_id=post_id, message=message)

    def _wait(self, conn: Any, row: Mapping[str, Any], post: Post, status: DeliveryStatus, until: float,
              message: str, now: float) -> float:
        if row["status"] != status.value or row["next_attempt_at"] != until:
            q.update_delivery(conn, row["id"], status=status.value, next_attempt_at=until, updated_at=now)
        if row["status"] != status.value:
            when = datetime.fromtimestamp(until, timezone.utc).strftime("%H:%M:%S")
            q.add_event(conn, ts=now, kind=status.value, post_id=post.id, account=row["handle"],
                        message=f"{message}; waiting until {when} UTC (no attempt used)")
        return until

    def _finish(self, conn: Any, row: Mapping[str, Any], post: Post, status: DeliveryStatus, now: float, *,
                error: str | None = None, uri: str | None = None, cid: str | None = None,
                url: str | None = None, note: str | None = None) -> None:
        q.update_delivery(conn, row["id"], status=status.value, error=error, uri=uri, cid=cid, url=url,
                          next_attempt_at=None, updated_at=now, completed_at=now)
        if row["account_id"] is not None:
            q.wake_jobs_waiting_on_account(conn, row["account_id"], row["post_seq"], now)
        if status is DeliveryStatus.COMPLETED:
            q.add_event(conn, ts=now, kind="published", post_id=post.id, account=row["handle"],
                        message=f"published to @{row['handle']}: {url}" + (f" ({note})" if note else ""),
                        data={"uri": uri, "cid": cid, "url": url})
        else:
            q.add_event(conn, ts=now, kind="delivery_failed", level="error", post_id=post.id,
                        account=row["handle"], message=f"@{row['handle']}: {error}")


def _did_of(uri: str | None) -> str | None:
    if uri and uri.startswith("at://"):
        return uri[5:].split("/", 1)[0]
    return None


def _is_network(exc: BaseException) -> bool:
    import httpx
    from atproto_client.exceptions import AtProtocolError

    return isinstance(exc, (httpx.HTTPError, AtProtocolError, OSError))
