"""The breaker, the limiter, the retry schedule and failure classification, with an injected clock."""

import dataclasses
import random

import pytest

from skypost import resilience as rz
from skypost.store.rows import BreakerRow, RateLimitRow


@pytest.mark.parametrize(
    ("status", "error", "kind"),
    [
        (None, None, rz.FailureKind.TRANSIENT),
        (500, "InternalServerError", rz.FailureKind.TRANSIENT),
        (502, None, rz.FailureKind.TRANSIENT),
        (503, None, rz.FailureKind.TRANSIENT),
        (504, None, rz.FailureKind.TRANSIENT),
        (408, None, rz.FailureKind.TRANSIENT),
        (429, "RateLimitExceeded", rz.FailureKind.RATE_LIMITED),
        (401, "AuthenticationRequired", rz.FailureKind.AUTH),
        (403, None, rz.FailureKind.AUTH),
        (400, "AccountTakedown", rz.FailureKind.AUTH),
        (400, "InvalidRequest", rz.FailureKind.PERMANENT),
        (413, "PayloadTooLarge", rz.FailureKind.PERMANENT),
    ],
)
def test_classify(status, error, kind):
    assert rz.classify(status, error, "msg").kind is kind


def test_classify_keeps_bluesky_message():
    failure = rz.classify(400, "InvalidRequest", "grapheme too big (maximum 300, got 301) at $.record.text")
    assert failure.message == "grapheme too big (maximum 300, got 301) at $.record.text"


def test_retry_schedule_default():
    delays = (60, 120, 300)
    assert [rz.retry_delay(n, delays) for n in (1, 2, 3, 4)] == [60, 120, 300, None]


def test_retry_schedule_configurable():
    assert [rz.retry_delay(n, (1, 2)) for n in (1, 2, 3)] == [1, 2, None]


def closed() -> BreakerRow:
    return BreakerRow.closed(1)


def test_breaker_opens_after_threshold_and_waits_remaining_cooldown():
    state = closed()
    now = 1000.0
    for n in range(1, 4):
        state = rz.breaker_after_failure(state, now, threshold=3, cooldown=900, was_probe=False)
        assert state.state == ("open" if n == 3 else "closed")
    gate = rz.breaker_gate(state, now + 100)
    assert not gate.allow and gate.wait_until == now + 900  # the remaining cooldown, not a new one


def test_breaker_single_probe_then_close_or_reopen():
    now = 0.0
    state = rz.breaker_after_failure(closed(), now, threshold=1, cooldown=10, was_probe=False)
    assert state.state == "open"
    gate = rz.breaker_gate(state, 10.0)
    assert gate.allow and gate.probe
    half = dataclasses.replace(state, state="half_open", probe_until=20.0)
    assert not rz.breaker_gate(half, 11.0).allow  # someone else is probing
    assert rz.breaker_gate(half, 21.0).probe  # an abandoned probe can be taken over
    failed = rz.breaker_after_failure(half, 12.0, threshold=1, cooldown=10, was_probe=True)
    assert failed.state == "open" and failed.open_until == 22.0
    assert failed.opened_at == 0.0  # a reopening keeps the start of the outage
    assert rz.breaker_after_success(1).state == "closed"


def test_probe_failure_reopens_even_below_threshold():
    half = dataclasses.replace(closed(), state="half_open", probe_until=5.0)
    values = rz.breaker_after_failure(half, 1.0, threshold=3, cooldown=900, was_probe=True)
    assert values.state == "open" and values.open_until == 901.0


def limit_row(key: str = "account:1", *, remaining: int | None = None, reset_at: float | None = None,
              blocked_until: float | None = None, consecutive_429: int = 0) -> RateLimitRow:
    return RateLimitRow(key, None, remaining, reset_at, None, blocked_until, consecutive_429)


def test_rate_headers_absolute_reset_and_hold():
    headers = {"RateLimit-Limit": "30", "RateLimit-Remaining": "0", "RateLimit-Reset": "2000000000",
               "RateLimit-Policy": "30;w=300"}
    obs = rz.parse_rate_headers(headers, now=1_999_999_900.0)
    assert obs.remaining == 0 and obs.reset_at == 2_000_000_000.0 and obs.policy == "30;w=300"
    row = limit_row(remaining=obs.remaining, reset_at=obs.reset_at)
    assert rz.hold_until([row], 1_999_999_900.0, reserve=1) == 2_000_000_000.0
    assert rz.hold_until([row], 2_000_000_001.0, reserve=1) is None


def test_hold_allows_when_budget_left():
    row = limit_row(remaining=50, reset_at=100.0)
    assert rz.hold_until([row], 10.0, reserve=1) is None


def test_retry_after_seconds_and_http_date():
    assert rz.retry_after_seconds({"Retry-After": "42"}, 0.0) == 42.0
    assert rz.retry_after_seconds({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, 1445412470.0) == pytest.approx(10.0)
    # RateLimit-Reset: an absolute UNIX time on Bluesky, a delta in the IETF draft
    assert rz.retry_after_seconds({"RateLimit-Remaining": "0", "RateLimit-Reset": "2000000000"}, 1999999950.0) == 50.0
    assert rz.retry_after_seconds({"RateLimit-Remaining": "0", "RateLimit-Reset": "150"}, 100.0) == 150.0


def test_429_without_headers_falls_back_with_jitter():
    rng = random.Random(1)
    waits = []
    row = None
    for _ in range(4):
        blocked, consecutive = rz.blocked_after_429(row, {}, 0.0, rng)
        waits.append(blocked)
        row = limit_row(blocked_until=blocked, consecutive_429=consecutive)
    assert 48 <= waits[0] <= 72 and 96 <= waits[1] <= 144 and 240 <= waits[2] <= 360 and 240 <= waits[3] <= 360


def test_429_with_retry_after_blocks_exactly():
    assert rz.blocked_after_429(None, {"Retry-After": "7"}, 100.0, random.Random(0)) == (107.0, 1)


def test_hold_keeps_a_points_reserve_per_key():
    row = limit_row(remaining=3, reset_at=100.0)
    assert rz.hold_until([row], 10.0, reserve=1) is None
    assert rz.hold_until([row], 10.0, reserve=1, reserves={"account:1": 3}) == 100.0


def test_write_headers_go_to_the_budget_they_describe():
    from skypost.pipeline import key_for_method

    keys = {"account": "account:1", "host": "host:h:pds", "login": "login:1"}
    create = "com.atproto.repo.createRecord"
    assert key_for_method(create, keys, "5000;w=3600") == "account:1"
    assert key_for_method(create, keys, "3000;w=300") == "host:h:pds"
    assert key_for_method(create, keys, None) == "account:1"
    assert key_for_method("com.atproto.server.createSession", keys, "30;w=300") == "login:1"
    assert key_for_method("com.atproto.repo.getRecord", keys, None) == "host:h:pds"
