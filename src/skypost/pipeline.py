"""process_syndication: one post's deliveries, one account after another.

For each delivery `decide` (pure: no clock, no database) reads the gates — pause,
order, account, breaker, rate limits — and says what to do; `_apply` writes that
in the same transaction, and for an attempt also re-checks the lease, takes the
breaker's probe and spends the budgets atomically. The attempt itself runs with
no transaction open: check whether an earlier attempt already created the record,
compose, create with the delivery's own record key. Its outcome — delivery,
breaker, budgets, activity and, after the last delivery, the job — is written in
one transaction. Three commits per delivery: claim, gate, outcome.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import logging
import random
from datetime import datetime, timezone
from typing import Any, Callable, Mapping, Protocol, Sequence
from urllib.parse import urlsplit

from skypost import resilience as rz
from skypost.config import Settings
from skypost.conversation import outbox
from skypost.crypto import Cipher
from skypost.models import (
    AccountState,
    DeliveryStatus,
    DeliveryFailure,
    Intent,
    Post,
    PostStatus,
    parse_post_document,
    reauth_message,
)
from skypost.gates import CREATE_COST, creates, post_writes
from skypost.replies import WritePlan, display_id, is_reply, not_in_thread, write_plan
from skypost.replies import load_post as load_reply
from skypost.store import queries as q
from skypost.store.db import Conn, Database
from skypost.store.rows import AccountRow, BreakerRow, DeliveryRow, RateLimitRow
from skypost.syndicator import account_from_row, categories_allow, is_paused, post_state, requeue_post

log = logging.getLogger("skypost.pipeline")

Clock = Callable[[], float]


class Client(Protocol):
    """What the pipeline needs of a Bluesky connection (bluesky.client.BlueskyClient)."""

    @property
    def did(self) -> str: ...
    def create_post(self, record: dict[str, Any], rkey: str) -> Any: ...
    def delete_post(self, rkey: str) -> None: ...
    def apply_writes(self, writes: list[dict[str, Any]]) -> list[Any]: ...
    def get_record(self, uri: str) -> tuple[str, dict[str, Any]] | None: ...
    def get_post(self, rkey: str) -> Any: ...
    def upload_blob(self, data: bytes, mime: str) -> dict[str, Any]: ...
    def resolve_handle(self, handle: str) -> str | None: ...
    def close(self) -> None: ...


ClientFactory = Callable[..., Client]
Composer = Callable[..., Any]



def write_cost(plan: WritePlan) -> int:
    """What an attempt spends from the account's write budget: one for a single create (as
    always), CREATE_COST points per create for an applyWrites."""
    n = creates(plan.threadgate, plan.postgate)
    return 1 if n == 1 else CREATE_COST * n


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
    deleted: bool = False  # a delete attempt removed the record (or found none)
    failure: rz.Failure | None = None
    failed_method: str | None = None
    failure_headers: dict[str, str] = dataclasses.field(default_factory=dict)
    warnings: list[str] = dataclasses.field(default_factory=list)


class Action(enum.Enum):
    ATTEMPT = "attempt"  # go (as the breaker's single probe when `probe`)
    WAIT = "wait"  # not now: look again at `until`, no attempt used
    PARK = "park"  # stop until a person acts (a new app password)
    GIVE_UP = "give_up"  # finished: failed, with the reason
    STOP = "stop"  # paused: leave the rest of the post for later


@dataclasses.dataclass(frozen=True)
class Decision:
    action: Action
    reason: str = ""
    status: DeliveryStatus | None = None  # WAIT: the status shown meanwhile (None: unchanged)
    until: float | None = None
    failure_kind: DeliveryFailure | None = None
    probe: bool = False
    # WAIT: the cause holds every delivery of the account / of every account on its service
    hold: str | None = None  # None, "account" or "service"


@dataclasses.dataclass(frozen=True)
class Budgets:
    """The rate-limit rows that gate an attempt, and what each keeps in reserve."""

    account_key: str
    host_key: str
    rows: Sequence[RateLimitRow]
    reserve: int
    account_reserve: int


def decide(delivery: DeliveryRow, account: AccountRow | None, *, categories_ok: bool,
           blocker: DeliveryRow | None, breaker: BreakerRow | None, budgets: Budgets,
           paused: bool, now: float, lease: float) -> Decision:
    """What to do with one due delivery now. Pure: every input is given."""
    if paused:
        return Decision(Action.STOP, "syndication is paused")
    if account is None:
        return Decision(Action.GIVE_UP, f"the account @{delivery.handle} was removed",
                        failure_kind=DeliveryFailure.REMOVED)
    if blocker is not None:
        # an earlier post to this account goes first; finishing it wakes this job,
        # the lease is only a safety net
        wait = blocker.next_attempt_at
        return Decision(Action.WAIT, f"waits for post #{blocker.post_seq} to @{account.handle}",
                        until=wait if wait is not None and wait > now else now + lease)
    if account.state == AccountState.NEEDS_REAUTH.value:
        return Decision(Action.PARK, reauth_message(account.handle), failure_kind=DeliveryFailure.AUTH)
    if not categories_ok:
        return Decision(Action.GIVE_UP, f"the category rules of @{account.handle} no longer allow this post",
                        failure_kind=DeliveryFailure.PERMANENT)
    gate = rz.breaker_gate(breaker, now)
    if not gate.allow:
        half_open = breaker is not None and breaker.state == "half_open"
        reason = (f"circuit half-open for @{account.handle}: a probe is running" if half_open
                  else f"circuit open for @{account.handle}")
        return Decision(Action.WAIT, reason, DeliveryStatus.CIRCUIT_OPEN, gate.wait_until or now,
                        hold="account")
    account_rows = [r for r in budgets.rows if r.key != budgets.host_key]
    host_rows = [r for r in budgets.rows if r.key == budgets.host_key]
    host_hold = rz.hold_until(host_rows, now, reserve=budgets.reserve)
    account_hold = rz.hold_until(account_rows, now, reserve=budgets.reserve,
                                 reserves={budgets.account_key: budgets.account_reserve})
    if host_hold is not None or account_hold is not None:
        until = max(t for t in (host_hold, account_hold) if t is not None)
        scope = "service" if host_hold is not None and host_hold >= (account_hold or 0) else "account"
        return Decision(Action.WAIT, f"rate limit of @{account.handle} spent", DeliveryStatus.RATE_LIMITED,
                        until, hold=scope)
    return Decision(Action.ATTEMPT, probe=gate.probe)


@dataclasses.dataclass(frozen=True)
class Credentials:
    password: str
    session: str | None


JobFinisher = Callable[[Conn, float | None], None]


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

    @staticmethod
    def load(conn: Conn, post_seq: int) -> tuple[Mapping[str, Any] | None, list[DeliveryRow]]:
        """What a syndication job reads first (in the claim's transaction)."""
        return q.post_by_seq(conn, post_seq), q.deliveries_of_post(conn, post_seq)

    def process_syndication(self, job_id: int, post_seq: int, *, owner: str,
                            should_stop: Callable[[], bool] = lambda: False,
                            claimed_run_at: float | None = None,
                            loaded: tuple[Mapping[str, Any] | None, list[DeliveryRow]] | None = None) -> None:
        """Run one pass over the post's deliveries. `claimed_run_at` is the job's run_at when it
        was claimed: a later one means another worker woke the job meanwhile."""
        if loaded is None:
            with self.db.connect() as conn:
                loaded = self.load(conn, post_seq)
        post_row, rows = loaded
        if post_row is None:
            with self.db.transaction() as conn:
                q.release_job(conn, job_id, owner=owner, status="done", run_at=None, now=self.clock())
            return
        post = load_reply(post_row) or parse_post_document(post_row["document"], allow_extra=True)
        now = self.clock()
        due = [r for r in rows if not _idle(r) and (r.next_attempt_at is None or r.next_attempt_at <= now)]
        hints: dict[int, float] = {}
        finished = False

        def finish(conn: Conn, hint: float | None, *, row: DeliveryRow) -> None:
            nonlocal finished
            if hint is not None:
                hints[row.id] = hint
            self._finish_job(conn, job_id, post_seq, owner=owner, hints=hints, claimed_run_at=claimed_run_at)
            finished = True

        for n, row in enumerate(due):
            if should_stop():
                break
            last = n == len(due) - 1
            outcome = self._process_delivery(post, row, job_id=job_id, owner=owner,
                                             finish=functools.partial(finish, row=row) if last else None)
            if outcome is _STOP:
                break
            if isinstance(outcome, float):
                hints[row.id] = outcome
        if not finished:
            with self.db.transaction() as conn:
                self._finish_job(conn, job_id, post_seq, owner=owner, hints=hints, claimed_run_at=claimed_run_at)

    def _finish_job(self, conn: Conn, job_id: int, post_seq: int, *, owner: str, hints: Mapping[int, float],
                    claimed_run_at: float | None) -> None:
        """Reschedule the job for its next due delivery, or end it; store the post's status."""
        now = self.clock()
        # the job row first, then what it decides on: a delete request (deliveries, then this
        # row) is then either seen here or sees the job as this worker leaves it
        q.lock_job(conn, job_id)
        post_row = q.post_by_seq(conn, post_seq)
        assert post_row is not None
        state = post_state(conn, post_row, paused=is_paused(conn), counts=False)
        waiting = [d for d in state.deliveries if not d.status.finished and not d.status.parked]
        if waiting:
            times = []
            for d in waiting:
                at = d.next_attempt_at.timestamp() if d.next_attempt_at else now
                times.append(max(at, hints.get(d.id, at)))
            q.reschedule_job(conn, job_id, owner=owner, run_at=max(min(times), now), now=now,
                             claimed_run_at=claimed_run_at)
        else:
            q.release_job(conn, job_id, owner=owner, status="done", run_at=None, now=now)
        stored = state.status if state.status is not PostStatus.PAUSED else PostStatus.PENDING
        if post_row["status"] != stored.value:
            q.set_post_status(conn, post_seq, stored.value, post_row["reason"], now)
            outbox.post_status_changed(conn, post_seq=post_seq, status=stored.value, now=now)
            if stored in (PostStatus.COMPLETED, PostStatus.PARTIAL, PostStatus.FAILED):
                q.add_event(conn, ts=now, kind=f"post_{stored.value}", post_id=display_id(post_row),
                            level="info" if stored is PostStatus.COMPLETED else "warning",
                            message=f"syndication {stored.value}" + (f": {state.reason}" if state.reason else ""))
            elif stored in (PostStatus.DELETED, PostStatus.DELETE_FAILED):
                q.add_event(conn, ts=now, kind=f"post_{stored.value}", post_id=post_row["post_id"],
                            level="info" if stored is PostStatus.DELETED else "warning",
                            message=("removed from Bluesky on every account" if stored is PostStatus.DELETED
                                     else f"the delete failed: {state.reason}"))

    # --- one delivery -------------------------------------------------------------

    def _process_delivery(self, post: Post, row: DeliveryRow, *, job_id: int, owner: str,
                          finish: Callable[[Conn, float | None], None] | None) -> object:
        """Decide and apply; attempt when allowed. Returns when the job should look again
        (a time), None, or _STOP. `finish` (for the job's last delivery) runs in the
        transaction that ends the delivery's turn."""
        now = self.clock()
        with self.db.transaction() as conn:
            # the delivery as it is now: a delete may have been requested since the job read it
            fresh = q.delivery_row(conn, row.id)
            if fresh is None or DeliveryStatus(fresh.status).finished:
                if finish:
                    finish(conn, None)
                return None
            row = fresh
            deleting = row.intent == Intent.DELETE.value
            account = None
            account_row = q.account_by_id(conn, row.account_id) if row.account_id is not None else None
            if account_row is not None:
                account = AccountRow.from_row(account_row)
            keys = account_keys(account.id, account.service, self.settings.egress_id) if account else {}
            paused = is_paused(conn)
            # a delete waits for no earlier post
            blocker = (q.earlier_unfinished_delivery(conn, account.id, row.post_seq)
                       if account and not deleting else None)
            if paused or account is None or account_row is None or blocker is not None:
                # decided before the breaker and the budgets matter: most claims of a long queue
                # behind one account end here, so they read nothing more
                budgets = self._budgets(conn, {}, None)
                decision = decide(row, account, categories_ok=True, blocker=blocker, breaker=None,
                                  budgets=budgets, paused=paused, now=now, lease=self.settings.job_lease)
            else:
                budgets = self._budgets(conn, keys, account_row)
                decision = decide(
                    row, account,
                    # a delete needs no category; a reply answers a thread the post's rules already allowed
                    categories_ok=deleting or is_reply(post)
                    or categories_allow(account_from_row(account_row), post.categories),
                    blocker=None, breaker=q.breaker(conn, account.id), budgets=budgets, paused=False,
                    now=now, lease=self.settings.job_lease,
                )
            if decision.action is Action.STOP:
                if finish:
                    finish(conn, None)
                return _STOP
            plan = WritePlan()
            if decision.action is Action.ATTEMPT and not deleting:
                found = write_plan(conn, post, row)
                if isinstance(found, str):  # a reply whose post never reached this account
                    decision = Decision(Action.GIVE_UP, found, failure_kind=DeliveryFailure.PERMANENT)
                else:
                    plan = found
            if decision.action is not Action.ATTEMPT or account is None:
                hint = self._apply(conn, row, post, decision, account, now)
                if finish:
                    finish(conn, hint)
                return hint
            credentials = self._begin_attempt(conn, row, post, decision, account, budgets, job_id, owner, now,
                                              cost=write_cost(plan))
            if credentials is _CHANGED:  # a delete was requested meanwhile: look again at once
                if finish:
                    finish(conn, now)
                return now
            if isinstance(credentials, Decision):  # lost a race for the probe or the budget
                hint = self._apply(conn, row, post, credentials, account, now)
                if finish:
                    finish(conn, hint)
                return hint
            if credentials is None:
                return None  # another worker took this job over: leave the delivery to it
        assert isinstance(credentials, Credentials)
        attempt = self._attempt(post, row, account.id, account.handle, account.service, credentials.password,
                                credentials.session, tried_before=row.tried, plan=plan)
        return self._record(post, row, account, keys, attempt, probe=decision.probe, finish=finish)

    def _budgets(self, conn: Conn, keys: Mapping[str, str], account_row: Mapping[str, Any] | None) -> Budgets:
        if not keys:
            return Budgets("", "", [], self.settings.rate_limit_reserve, self.settings.rate_limit_reserve)
        key_list = [keys["account"], keys["host"]]
        if account_row is not None and not account_row["session_enc"]:
            key_list.append(keys["login"])
        return Budgets(keys["account"], keys["host"], q.rate_limit_rows(conn, key_list),
                       self.settings.rate_limit_reserve, max(self.settings.rate_limit_reserve, CREATE_COST))

    def _apply(self, conn: Conn, row: DeliveryRow, post: Post, decision: Decision, account: AccountRow | None,
               now: float) -> float | None:
        """Write a decision that is not an attempt. Returns when the job should look again."""
        if decision.action is Action.GIVE_UP:
            assert decision.failure_kind is not None
            self._fail(conn, row, post, decision.failure_kind, decision.reason, now)
            return None
        if decision.action is Action.PARK:
            assert decision.failure_kind is not None
            if row.status != DeliveryStatus.NEEDS_REAUTH.value:
                q.park_delivery(conn, row.id, status=DeliveryStatus.NEEDS_REAUTH.value,
                                kind=decision.failure_kind.value, error=decision.reason, now=now,
                                intent=row.intent)
                q.add_event(conn, ts=now, kind="needs_reauth", level="error", post_id=post.id,
                            account=row.handle, message=f"@{row.handle}: {decision.reason}")
                if row.account_id is not None:
                    q.wake_jobs_waiting_on_account(conn, row.account_id, row.post_seq, now)
            return None
        assert decision.action is Action.WAIT and decision.until is not None
        until = decision.until
        if decision.status is None:
            # waiting on an earlier post; a hold that has run out no longer describes it
            if row.status != DeliveryStatus.PENDING.value and (row.next_attempt_at or 0) <= now:
                q.schedule_delivery(conn, row.id, status=DeliveryStatus.PENDING.value, next_attempt_at=None,
                                    error=row.error, now=now, intent=row.intent)
            return until
        if decision.hold is not None and account is not None:
            # the cause holds every delivery of the account (or service): one statement moves
            # them and their jobs, instead of each job being claimed only to wait again
            q.hold_deliveries(conn, status=decision.status.value, until=until, now=now,
                              account_id=account.id if decision.hold == "account" else None,
                              service=account.service if decision.hold == "service" else None)
        if row.status != decision.status.value or row.next_attempt_at != until:
            q.schedule_delivery(conn, row.id, status=decision.status.value, next_attempt_at=until,
                                error=row.error, now=now, intent=row.intent)
        if row.status != decision.status.value:
            when = datetime.fromtimestamp(until, timezone.utc).strftime("%H:%M:%S")
            q.add_event(conn, ts=now, kind=decision.status.value, post_id=post.id, account=row.handle,
                        message=f"{decision.reason}; waiting until {when} UTC (no attempt used)")
        return until

    def _begin_attempt(self, conn: Conn, row: DeliveryRow, post: Post, decision: Decision, account: AccountRow,
                       budgets: Budgets, job_id: int, owner: str, now: float,
                       cost: int = 1) -> Credentials | Decision | object | None:
        """Claim what the attempt needs, atomically: the lease (still ours), the probe (only one),
        the budgets (spent in SQL, shared by every worker). None: the lease was lost. _CHANGED:
        a delete was requested since the delivery was read (nothing may be sent for it now)."""
        if not q.holds_lease(conn, job_id, owner, now=now):
            return None
        if decision.probe and not q.take_probe(conn, account.id, owner=owner, now=now,
                                               until=now + self.settings.job_lease):
            current = q.breaker(conn, account.id)
            until = (current.probe_until if current else None) or now + self.settings.poll_interval
            return Decision(Action.WAIT, f"circuit half-open for @{account.handle}: a probe is running",
                            DeliveryStatus.CIRCUIT_OPEN, until)
        # row locks in one order everywhere: breaker, delivery, jobs, then the shared budgets
        if not q.start_attempt(conn, row.id, now, intent=row.intent):
            if decision.probe:
                breaker = q.breaker_for_update(conn, account.id, now)
                q.store_breaker(conn, rz.breaker_release_probe(breaker, now), now)
            return _CHANGED
        spent: list[str] = []
        # only a budget known and live now can be spent (the others cost no statement)
        live = {r.key for r in budgets.rows if r.remaining is not None and r.reset_at is not None
                and r.reset_at > now}
        # the account's budget counts the writes (an applyWrites of N creates costs N creates),
        # the host's the requests
        costs = {budgets.account_key: cost, budgets.host_key: 1}
        for key, reserve in ((budgets.account_key, budgets.account_reserve), (budgets.host_key, budgets.reserve)):
            if key not in live:
                continue
            reset = q.spend_budget(conn, key, cost=costs[key], reserve=reserve, now=now)
            if reset is not None:  # another worker spent the last of it since we looked
                for done in spent:
                    q.refund_budget(conn, done, cost=costs[done], now=now)
                q.unspend_attempt(conn, row.id, now)
                if decision.probe:
                    breaker = q.breaker_for_update(conn, account.id, now)
                    q.store_breaker(conn, rz.breaker_release_probe(breaker, now), now)
                return Decision(Action.WAIT, f"rate limit of @{account.handle} spent", DeliveryStatus.RATE_LIMITED,
                                reset, hold="service" if key == budgets.host_key else "account")
            spent.append(key)
        cipher = self._cipher()
        session = account.session_enc
        return Credentials(cipher.decrypt(account.password_enc), cipher.decrypt(session) if session else None)

    def _attempt(self, post: Post, row: DeliveryRow, account_id: int, handle: str, service: str,
                 password: str, session: str | None, *, tried_before: bool,
                 plan: WritePlan | None = None) -> Attempt:
        from skypost.bluesky.client import CallError, translate

        attempt = Attempt()

        def save_session(value: str) -> None:
            with self.db.transaction() as conn:
                q.set_account_session(conn, account_id, session_enc=self._cipher().encrypt(value),
                                      now=self.clock())

        client = self.client_factory(
            service=service, handle=handle, password=password, session_string=session,
            on_session=save_session, on_response=lambda m, s, h: attempt.responses.append((m, s, h)),
            timeout=self.settings.http_timeout, transport=self._transport() if self._transport else None,
        )
        method = "com.atproto.repo.createRecord"
        try:
            if row.intent == Intent.DELETE.value:
                # the post and any gate with its key; a record that is not there counts as removed
                method = "com.atproto.repo.deleteRecord"
                client.delete_post(row.rkey)
                attempt.deleted = True
                return attempt
            if tried_before:
                method = "com.atproto.repo.getRecord"
                existing = client.get_post(row.rkey)
                if existing is not None:
                    attempt.result, attempt.already_existed = existing, True
                    return attempt
            fetcher = self._fetcher() if self._fetcher else None
            composed = self.composer(post, now=datetime.fromtimestamp(self.clock(), timezone.utc),
                                     fetcher=fetcher, upload_blob=client.upload_blob,
                                     resolve_handle=client.resolve_handle)
            attempt.warnings.extend(composed.warnings)
            record = composed.record
            plan = plan or WritePlan()
            if plan.reply is not None:
                refs = plan.reply
                parent_cid = refs.parent_cid
                if parent_cid is None:  # a parent skypost has not stored: is it in the thread?
                    method = "com.atproto.repo.getRecord"
                    found = client.get_record(refs.parent_uri)
                    why = (f"the parent {refs.parent_uri} was not found (deleted?)" if found is None
                           else not_in_thread(refs.parent_uri, found[1], refs.root_uri))
                    if why is not None or found is None:
                        attempt.failure = rz.Failure(rz.FailureKind.PERMANENT, why or "")
                        attempt.failed_method = method
                        return attempt
                    parent_cid = found[0]
                record = {**record, "reply": {"root": {"uri": refs.root_uri, "cid": refs.root_cid},
                                              "parent": {"uri": refs.parent_uri, "cid": parent_cid}}}
            method = "com.atproto.repo.applyWrites" if plan.gated else "com.atproto.repo.createRecord"
            try:
                if plan.gated:
                    # the post and its gates in one atomic commit: never the post without its gate
                    results = client.apply_writes(post_writes(client.did, row.rkey, record,
                                                              threadgate=plan.threadgate,
                                                              postgate=plan.postgate))
                    if not results:
                        raise CallError(None, None, "applyWrites answered without results", None, method)
                    attempt.result = results[0]
                else:
                    attempt.result = client.create_post(record, row.rkey)
            except CallError as exc:
                # the same rkey again: an earlier attempt's create went through (BLUESKY.md)
                if exc.status is not None and (exc.status == 409 or exc.status >= 500):
                    method = "com.atproto.repo.getRecord"
                    existing = client.get_post(row.rkey)
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

    def _record(self, post: Post, row: DeliveryRow, account: AccountRow, keys: Mapping[str, str],
                attempt: Attempt, *, probe: bool, finish: Callable[[Conn, float | None], None] | None) -> float | None:
        now = self.clock()
        budget_writes: list[Callable[[Conn], None]] = []
        with self.db.transaction() as conn:
            hint = self._outcome(conn, post, row, account, keys, attempt, probe=probe, now=now,
                                 budget_writes=budget_writes)
            if finish:
                finish(conn, hint)
            # the shared budget rows are every worker's hottest rows: lock them last and briefly
            # (the gate takes them last too, so no two transactions wait on each other in a cycle)
            for write in budget_writes:
                write(conn)
        return hint

    def _outcome(self, conn: Conn, post: Post, row: DeliveryRow, account: AccountRow, keys: Mapping[str, str],
                 attempt: Attempt, *, probe: bool, now: float,
                 budget_writes: list[Callable[[Conn], None]]) -> float | None:
        handle = account.handle
        now_row = q.delivery_row(conn, row.id)
        # a create that was in flight when a delete was requested: its outcome only decides
        # when the delete goes (at once); the create's failure is not counted against anything
        switched = (row.intent == Intent.PUBLISH.value and now_row is not None
                    and now_row.intent == Intent.DELETE.value)
        for method, status, headers in attempt.responses:
            if status == 429:
                continue
            observation = rz.parse_rate_headers(headers, now)
            if observation is not None and observation.remaining is not None:
                budget_writes.append(functools.partial(
                    q.observe_budget, key=key_for_method(method, keys, observation.policy), limit=observation.limit,
                    remaining=observation.remaining, reset_at=observation.reset_at, policy=observation.policy,
                    now=now))
        for warning in attempt.warnings:
            q.add_event(conn, ts=now, kind="card_warning", level="warning", post_id=post.id,
                        account=handle, message=warning)
        failure = attempt.failure
        if failure is None and attempt.deleted:
            q.mark_deleted(conn, row.id, now=now)
            q.add_event(conn, ts=now, kind="record_deleted", post_id=post.id, account=handle,
                        message=f"removed from @{handle}: at://{row.did}/app.bsky.feed.post/{row.rkey}",
                        data={"rkey": row.rkey})
            self.healthy_answer(conn, account, post.id, now)
            self._wake_next(conn, row, now)
            return None
        if switched and failure is not None:
            if probe:
                breaker = q.breaker_for_update(conn, account.id, now)
                q.store_breaker(conn, rz.breaker_release_probe(breaker, now), now)
            q.add_event(conn, ts=now, kind="delete_waited", post_id=post.id, account=handle,
                        message=f"@{handle}: the attempt in flight when the delete was requested ended "
                                f"({failure.message}); removing whatever it may have created")
            return now
        if failure is None:
            result = attempt.result
            did = _did_of(result.uri) or row.did
            from skypost.bluesky.client import post_url

            url = post_url(did, row.rkey)
            kept = q.complete_delivery(conn, row.id, uri=result.uri, cid=result.cid, url=url, now=now)
            note = " (found the record of an earlier attempt)" if attempt.already_existed else ""
            if not kept:
                note += "; a delete was requested meanwhile: it is removed next"
            q.add_event(conn, ts=now, kind="published", post_id=post.id, account=row.handle,
                        message=f"published to @{row.handle}: {url}{note}",
                        data={"uri": result.uri, "cid": result.cid, "url": url})
            self.healthy_answer(conn, account, post.id, now)
            self._wake_next(conn, row, now)
            return None if kept else now
        if failure.kind is rz.FailureKind.RATE_LIMITED:
            observation = rz.parse_rate_headers(attempt.failure_headers, now)
            key = key_for_method(attempt.failed_method or "", keys, observation.policy if observation else None)
            current = next(iter(q.rate_limit_rows(conn, [key])), None)
            blocked_until, _ = rz.blocked_after_429(current, attempt.failure_headers, now, self.rng)
            budget_writes.append(functools.partial(q.store_block, key=key, blocked_until=blocked_until, now=now))
            if observation is not None and observation.remaining is not None:
                budget_writes.append(functools.partial(
                    q.observe_budget, key=key, limit=observation.limit, remaining=observation.remaining,
                    reset_at=observation.reset_at, policy=observation.policy, now=now))
            if probe:
                breaker = q.breaker_for_update(conn, account.id, now)
                q.store_breaker(conn, rz.breaker_release_probe(breaker, now), now)
            q.unspend_attempt(conn, row.id, now)  # a 429 uses no attempt
            decision = Decision(Action.WAIT, f"rate limited ({failure.message})", DeliveryStatus.RATE_LIMITED,
                                blocked_until, hold="service" if key == keys["host"] else "account")
            return self._apply(conn, row, post, decision, account, now)
        if failure.kind is rz.FailureKind.AUTH:
            if probe:
                breaker = q.breaker_for_update(conn, account.id, now)
                q.store_breaker(conn, rz.breaker_release_probe(breaker, now), now)
            q.mark_needs_reauth(conn, account.id, error=failure.message, now=now)
            q.add_event(conn, ts=now, kind="needs_reauth", level="error", account=handle,
                        message=f"@{handle} refused the credentials ({failure.message}): {reauth_message(handle)}")
            return self._apply(conn, row, post, Decision(Action.PARK, reauth_message(handle),
                                                         failure_kind=DeliveryFailure.AUTH), account, now)
        if failure.kind is rz.FailureKind.PERMANENT:
            # a real answer from a healthy server: it breaks a run of transient failures
            self.healthy_answer(conn, account, post.id, now)
            what = "the delete" if row.intent == Intent.DELETE.value else "the post"
            self._fail(conn, row, post, DeliveryFailure.PERMANENT, f"Bluesky refused {what}: {failure.message}", now)
            return None
        after = self.count_failure(conn, account, probe=probe, now=now, post_id=post.id)
        attempts = row.attempts + 1
        delay = rz.retry_delay(attempts, self.settings.retry_delays)
        if delay is None:
            self._fail(conn, row, post, DeliveryFailure.TRANSIENT_EXHAUSTED,
                       f"gave up after {attempts} attempts: {failure.message}", now)
            if after.state == "open" and after.open_until is not None:
                self._hold_for_breaker(conn, account, after.open_until, now)
            return None
        if after.state == "open" and after.open_until is not None:
            # every unfinished delivery of the account, this one included, waits for the cooldown
            until = max(after.open_until, now + delay)
            self._hold_for_breaker(conn, account, after.open_until, now)
            q.schedule_delivery(conn, row.id, status=DeliveryStatus.CIRCUIT_OPEN.value, next_attempt_at=until,
                                error=failure.message, now=now, intent=row.intent)
            when = datetime.fromtimestamp(until, timezone.utc).strftime("%H:%M:%S")
            q.add_event(conn, ts=now, kind="retry_scheduled", level="warning", post_id=post.id, account=handle,
                        message=f"attempt {attempts} failed ({failure.message}); the circuit is open: "
                                f"next attempt at {when} UTC")
            return until
        q.schedule_delivery(conn, row.id, status=DeliveryStatus.RETRYING.value, next_attempt_at=now + delay,
                            error=failure.message, now=now, intent=row.intent)
        q.add_event(conn, ts=now, kind="retry_scheduled", level="warning", post_id=post.id, account=handle,
                    message=f"attempt {attempts} failed ({failure.message}); retrying in {delay:g} s")
        return now + delay

    # --- helpers -----------------------------------------------------------------

    def _hold_for_breaker(self, conn: Conn, account: AccountRow, until: float, now: float) -> None:
        q.hold_deliveries(conn, status=DeliveryStatus.CIRCUIT_OPEN.value, until=until, now=now,
                          account_id=account.id)

    def count_failure(self, conn: Conn, account: AccountRow, *, probe: bool, now: float,
                      post_id: str | None = None) -> BreakerRow:
        """A transient failure, counted against the account's breaker in one row-locked
        read-modify-write. Returns the breaker after it."""
        handle = account.handle
        before = q.breaker_for_update(conn, account.id, now)
        after = rz.breaker_after_failure(before, now, threshold=self.settings.circuit_threshold,
                                         cooldown=self.settings.circuit_cooldown, was_probe=probe)
        q.store_breaker(conn, after, now)
        opened = after.state == "open" and (before.state == "closed" or probe)
        if opened:
            q.add_event(conn, ts=now, kind="circuit_open", level="warning", account=handle, post_id=post_id,
                        message=f"circuit opened for @{handle} for {self.settings.circuit_cooldown:g} s after "
                                f"{after.failures} consecutive failures" + (" (the probe failed)" if probe else ""))
        return after

    def healthy_answer(self, conn: Conn, account: AccountRow, post_id: str | None, now: float) -> None:
        """The server answered for real: close the breaker if it counted anything."""
        current = q.breaker(conn, account.id)
        if current is None or (current.state == "closed" and not current.failures):
            return  # the common case: no write, no lock on the row
        before = q.breaker_for_update(conn, account.id, now)
        q.store_breaker(conn, rz.breaker_after_success(account.id), now)
        if before.state == "closed":
            return
        # The service is back. Deliveries held by the breaker go now; those that ran out of
        # attempts during this outage were not wrong, only early: queue them again.
        released = q.release_held(conn, account_id=account.id, status=DeliveryStatus.CIRCUIT_OPEN.value, now=now)
        since = (before.opened_at or now) - sum(self.settings.retry_delays) - self.settings.job_lease
        requeued = 0
        for delivery in q.deliveries_stopped(conn, account.id, status=DeliveryStatus.FAILED.value,
                                             kind=DeliveryFailure.TRANSIENT_EXHAUSTED.value, since=since):
            q.reset_delivery(conn, delivery.id, now)
            requeue_post(conn, delivery.post_seq, now)
            requeued += 1
        message = f"circuit closed for @{account.handle}: the probe succeeded"
        if requeued:
            message += f"; {requeued} delivery(ies) that gave up during the outage queued again"
        if released:
            message += f"; {released} waiting delivery(ies) go now"
        q.add_event(conn, ts=now, kind="circuit_closed", account=account.handle, post_id=post_id, message=message)

    def _wake_next(self, conn: Conn, row: DeliveryRow, now: float) -> None:
        if row.account_id is not None:
            q.wake_jobs_waiting_on_account(conn, row.account_id, row.post_seq, now)

    def _fail(self, conn: Conn, row: DeliveryRow, post: Post, kind: DeliveryFailure, error: str, now: float) -> None:
        q.fail_delivery(conn, row.id, kind=kind.value, error=error, now=now, intent=row.intent)
        self._wake_next(conn, row, now)
        q.add_event(conn, ts=now, kind="delivery_failed", level="error", post_id=post.id,
                    account=row.handle, message=f"@{row.handle}: {error}")


_STOP = object()
_CHANGED = object()


def _idle(row: DeliveryRow) -> bool:
    status = DeliveryStatus(row.status)
    return status.finished or status.parked


def _did_of(uri: str | None) -> str | None:
    if uri and uri.startswith("at://"):
        return uri[5:].split("/", 1)[0]
    return None


def _is_network(exc: BaseException) -> bool:
    import httpx
    from atproto_client.exceptions import AtProtocolError

    return isinstance(exc, (httpx.HTTPError, AtProtocolError, OSError))
