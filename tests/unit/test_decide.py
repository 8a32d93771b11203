"""decide(): what the pipeline does with one due delivery, table-driven, with no clock and
no database: every input is given."""

from __future__ import annotations

import dataclasses

import pytest

from skypost.models import DeliveryFailure, DeliveryStatus
from skypost.pipeline import Action, Budgets, decide
from skypost.store.rows import AccountRow, BreakerRow, DeliveryRow, RateLimitRow

NOW = 1_000.0
LEASE = 60.0
ACCOUNT = AccountRow(id=1, handle="alice.test", did="did:plc:a", service="https://pds.example",
                     state="active", password_enc="x", session_enc="y")
DELIVERY = DeliveryRow(id=10, post_seq=5, account_id=1, handle="alice.test", did="did:plc:a", position=0,
                       status="pending", attempts=0, tried=False, next_attempt_at=None, rkey="3kaaaaaaaaaaa",
                       uri=None, cid=None, url=None, error=None, failure_kind=None, completed_at=None)
EARLIER = dataclasses.replace(DELIVERY, id=9, post_seq=4)


def budget(key: str, remaining: int | None, reset_at: float | None = NOW + 100,
           blocked_until: float | None = None) -> RateLimitRow:
    return RateLimitRow(key, 100, remaining, reset_at, None, blocked_until, 0)


def budgets(*rows: RateLimitRow) -> Budgets:
    return Budgets("account:1", "host:h", list(rows), reserve=1, account_reserve=3)


def breaker(state: str, **values: float | None) -> BreakerRow:
    return dataclasses.replace(BreakerRow.closed(1), state=state, **values)


def run(**changes):  # type: ignore[no-untyped-def]
    args = dict(account=ACCOUNT, categories_ok=True, blocker=None, breaker=None, budgets=budgets(),
                paused=False, now=NOW, lease=LEASE)
    args.update(changes)
    account = args.pop("account")
    return decide(DELIVERY, account, **args)


CASES = [
    ("nothing in the way", {}, Action.ATTEMPT, None, None, None),
    ("paused", {"paused": True}, Action.STOP, None, None, None),
    ("account removed", {"account": None}, Action.GIVE_UP, None, None, None),
    ("an earlier post waits for a retry", {"blocker": dataclasses.replace(EARLIER, next_attempt_at=NOW + 30)},
     Action.WAIT, None, NOW + 30, None),
    ("an earlier post is due: look again within a lease", {"blocker": EARLIER}, Action.WAIT, None,
     NOW + LEASE, None),
    ("app password refused", {"account": dataclasses.replace(ACCOUNT, state="needs_reauth")}, Action.PARK,
     None, None, None),
    ("category rules changed", {"categories_ok": False}, Action.GIVE_UP, None, None, None),
    ("breaker open: the remaining cooldown", {"breaker": breaker("open", open_until=NOW + 500)},
     Action.WAIT, DeliveryStatus.CIRCUIT_OPEN, NOW + 500, "account"),
    ("breaker cooled down: the probe", {"breaker": breaker("open", open_until=NOW - 1)}, Action.ATTEMPT,
     None, None, None),
    ("a probe is running", {"breaker": breaker("half_open", probe_until=NOW + 20)}, Action.WAIT,
     DeliveryStatus.CIRCUIT_OPEN, NOW + 20, "account"),
    ("account budget down to its reserve", {"budgets": budgets(budget("account:1", 3))}, Action.WAIT,
     DeliveryStatus.RATE_LIMITED, NOW + 100, "account"),
    ("account budget above its reserve", {"budgets": budgets(budget("account:1", 4))}, Action.ATTEMPT,
     None, None, None),
    ("per-IP budget spent: every account on the service", {"budgets": budgets(budget("host:h", 1))},
     Action.WAIT, DeliveryStatus.RATE_LIMITED, NOW + 100, "service"),
    ("a 429 blocks until its Retry-After", {"budgets": budgets(budget("host:h", None, None, NOW + 7))},
     Action.WAIT, DeliveryStatus.RATE_LIMITED, NOW + 7, "service"),
    ("a budget whose window has reset", {"budgets": budgets(budget("account:1", 0, reset_at=NOW - 1))},
     Action.ATTEMPT, None, None, None),
]


@pytest.mark.parametrize(("name", "changes", "action", "status", "until", "hold"), CASES,
                         ids=[c[0] for c in CASES])
def test_decide(name, changes, action, status, until, hold):  # type: ignore[no-untyped-def]
    decision = run(**changes)
    assert decision.action is action, decision
    assert decision.status == status and decision.until == until and decision.hold == hold, decision


def test_the_order_of_the_gates():
    # a removed account wins over everything; pause over everything else; order before breakers
    assert run(account=None, paused=True).action is Action.STOP
    both = run(blocker=EARLIER, breaker=breaker("open", open_until=NOW + 500))
    assert both.action is Action.WAIT and both.status is None  # the earlier post goes first
    parked = run(account=dataclasses.replace(ACCOUNT, state="needs_reauth"),
                 breaker=breaker("open", open_until=NOW + 500))
    assert parked.action is Action.PARK and parked.failure_kind is DeliveryFailure.AUTH


def test_the_probe_is_flagged():
    assert run(breaker=breaker("open", open_until=NOW - 1)).probe
    assert not run().probe
