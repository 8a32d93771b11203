"""Failure classification, the retry schedule, the circuit breaker and the
rate limiter — as pure functions over plain state, so that every worker on
every host can apply them to the rows they share in the database."""

from __future__ import annotations

import dataclasses
import enum
import random
import re
from typing import Mapping, Sequence

from skypost.store.rows import BreakerRow, RateLimitRow


class FailureKind(str, enum.Enum):
    TRANSIENT = "transient"  # network error, timeout, 5xx: retry on the schedule
    RATE_LIMITED = "rate_limited"  # 429 or a spent budget: wait for the reset, no attempt used
    AUTH = "auth"  # bad or revoked app password: the account needs a person
    PERMANENT = "permanent"  # the record is wrong: retrying cannot help


@dataclasses.dataclass(frozen=True)
class Failure:
    kind: FailureKind
    message: str
    status: int | None = None
    error: str | None = None
    retry_after: float | None = None  # seconds, when the server said


# 400s that say the session, not the request, is at fault
TOKEN_ERRORS = frozenset({"ExpiredToken", "InvalidToken"})
_AUTH_ERRORS = frozenset({
    "AuthenticationRequired", "AuthMissing", "AccountTakedown", "AccountDeactivated",
    "AuthFactorTokenRequired", "InvalidPassword",
})


def classify(status: int | None, error: str | None, message: str | None,
             headers: Mapping[str, str] | None = None, *, now: float = 0.0) -> Failure:
    """Map an HTTP outcome (status None = no response at all) to a failure kind."""
    text = message or error or (f"HTTP {status}" if status else "no response")
    if status is None:
        return Failure(FailureKind.TRANSIENT, text)
    if status == 429 or error == "RateLimitExceeded":
        return Failure(FailureKind.RATE_LIMITED, text, status, error,
                       retry_after_seconds(headers or {}, now))
    if status in (401, 403) or error in _AUTH_ERRORS:
        return Failure(FailureKind.AUTH, text, status, error)
    if status in (408, 425) or status >= 500:
        return Failure(FailureKind.TRANSIENT, text, status, error)
    return Failure(FailureKind.PERMANENT, text, status, error)


def retry_delay(attempts_made: int, delays: Sequence[float]) -> float | None:
    """Seconds until the next attempt after `attempts_made` failed ones; None: give up.

    With (60, 120, 300): attempt 1 fails → +60, 2 → +120, 3 → +300, 4 → failed.
    """
    if attempts_made < 1:
        return 0.0
    if attempts_made > len(delays):
        return None
    return float(delays[attempts_made - 1])


# --- circuit breaker ------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class BreakerGate:
    """What an attempt may do: go, go as the single probe, or wait until `wait_until`."""

    allow: bool
    probe: bool = False
    wait_until: float | None = None


def breaker_gate(state: BreakerRow | None, now: float) -> BreakerGate:
    if state is None or state.state == "closed":
        return BreakerGate(True)
    if state.state == "open":
        if state.open_until is not None and now < state.open_until:
            return BreakerGate(False, wait_until=state.open_until)
        return BreakerGate(True, probe=True)
    # half_open: someone holds the probe; wait for it unless it was abandoned
    if state.probe_until is not None and now < state.probe_until:
        return BreakerGate(False, wait_until=state.probe_until)
    return BreakerGate(True, probe=True)


def breaker_after_success(account_id: int) -> BreakerRow:
    return BreakerRow.closed(account_id)


def breaker_after_failure(state: BreakerRow, now: float, *, threshold: int, cooldown: float,
                          was_probe: bool) -> BreakerRow:
    """Count a transient failure; open (again) at the threshold or when a probe failed."""
    failures = state.failures + 1
    if was_probe or failures >= threshold or state.state != "closed":
        # opened_at marks the start of the outage: a reopening keeps it
        still_out = state.state != "closed" and state.opened_at is not None
        return dataclasses.replace(state, state="open", failures=failures,
                                   opened_at=state.opened_at if still_out else now,
                                   open_until=now + cooldown, probe_owner=None, probe_until=None)
    return dataclasses.replace(state, state="closed", failures=failures, opened_at=None,
                               open_until=None, probe_owner=None, probe_until=None)


def breaker_release_probe(state: BreakerRow, now: float) -> BreakerRow:
    """A probe that never reached the server (rate limited): the next caller may probe."""
    return dataclasses.replace(state, state="open", open_until=now, probe_owner=None,
                               probe_until=None)


# --- rate limiter ----------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class RateObservation:
    limit: int | None
    remaining: int | None
    reset_at: float | None
    policy: str | None


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(float(value.split(",")[0].strip()))
    except ValueError:
        return None


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def parse_rate_headers(headers: Mapping[str, str], now: float) -> RateObservation | None:
    """RateLimit-Limit/Remaining/Reset/Policy; Reset is a UNIX time (or, if small, seconds from now)."""
    h = _lower(headers)
    remaining = _int(h.get("ratelimit-remaining"))
    if remaining is None:
        return None
    reset = _int(h.get("ratelimit-reset"))
    reset_at: float | None = None
    if reset is not None:
        # an absolute time on Bluesky; a delta (draft standard) is a small number
        reset_at = float(reset) if reset > 1_000_000_000 else now + reset
    return RateObservation(_int(h.get("ratelimit-limit")), remaining, reset_at, h.get("ratelimit-policy"))


def retry_after_seconds(headers: Mapping[str, str], now: float) -> float | None:
    """Retry-After as seconds or an HTTP date; else the RateLimit-Reset time."""
    h = _lower(headers)
    value = h.get("retry-after")
    if value:
        value = value.strip()
        if re.fullmatch(r"\d+(\.\d+)?", value):
            return float(value)
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - now)
        except (TypeError, ValueError, IndexError):
            pass
    obs = parse_rate_headers(headers, now)
    if obs and obs.reset_at is not None:
        # a reset just past (whole seconds, a clock a little behind) still beats the
        # headerless fallback: wait a moment, not minutes
        return max(obs.reset_at - now, 1.0)
    return None


FALLBACK_429_DELAYS = (60.0, 120.0, 300.0)


def fallback_429_delay(consecutive: int, rng: random.Random) -> float:
    """A 429 without headers: 60/120/300 s, ±20 % jitter."""
    base = FALLBACK_429_DELAYS[min(max(consecutive, 1), len(FALLBACK_429_DELAYS)) - 1]
    return base * rng.uniform(0.8, 1.2)


def blocked_after_429(row: RateLimitRow | None, headers: Mapping[str, str], now: float,
                      rng: random.Random) -> tuple[float, int]:
    """(blocked until, consecutive 429s) after a 429: the server's word, else the fallback."""
    consecutive = (row.consecutive_429 if row else 0) + 1
    wait = retry_after_seconds(headers, now)
    if wait is None:
        wait = fallback_429_delay(consecutive, rng)
    return now + wait, consecutive


def hold_until(rows: Sequence[RateLimitRow], now: float, *, reserve: int,
               reserves: Mapping[str, int] | None = None) -> float | None:
    """The time before which no request should go out, or None when all budgets allow one.

    `reserves` overrides `reserve` for some keys (a budget counted in points, say)."""
    waits: list[float] = []
    for row in rows:
        keep = (reserves or {}).get(row.key, reserve)
        if row.blocked_until is not None and row.blocked_until > now:
            waits.append(row.blocked_until)
        if (row.remaining is not None and row.reset_at is not None and row.reset_at > now
                and row.remaining <= keep):
            waits.append(row.reset_at)
    return max(waits) if waits else None
