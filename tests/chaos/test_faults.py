"""The chaos test's fault source (faultproxy.random_faults), on its own: exact proportions with a
deck, every 429 of a burst names a wait that has not passed, repeatable draws from a seed."""

from __future__ import annotations

import time
from email.utils import parsedate_to_datetime

import pytest

from tests.support.faultproxy import Delay, Error, ErrorAfterForward, Forward, LoseResponse, Reset, random_faults


def test_a_deck_deals_exact_proportions():
    faults = random_faults(lose=0.05, error5xx=0.06, reset=0.04, delay=0.06, burst429=0.01,
                           burst_length=(0.0, 0.0), deck=100, seed=1)
    actions = [faults.pick() for _ in range(300)]
    counts = faults.snapshot()
    assert counts["lose_response"] == 15 and counts["reset"] == 12 and counts["delay"] == 18
    assert counts["error_5xx"] == 9 and counts["error_5xx_after_forward"] == 9
    assert counts["burst_429"] == 3 and counts["forward"] == 300 - 66
    kinds = {type(a) for a in actions}
    assert kinds == {Forward, LoseResponse, Reset, Delay, Error, ErrorAfterForward}
    assert all(0.2 <= a.seconds <= 2.0 for a in actions if isinstance(a, Delay))
    statuses = {a.status for a in actions if isinstance(a, (Error, ErrorAfterForward))}
    assert statuses <= {429, 500, 502, 503, 504}


def test_the_same_seed_draws_the_same_faults():
    def draws(seed):
        faults = random_faults(lose=0.1, error5xx=0.1, reset=0.1, delay=0.1, burst_length=(0, 0), seed=seed)
        return [repr(faults.pick()) for _ in range(200)]

    assert draws(7) == draws(7) != draws(8)


@pytest.mark.parametrize("seed", range(6))
def test_a_burst_answers_429_until_it_ends_naming_its_end(seed):
    faults = random_faults(burst429=1.0, burst_length=(0.3, 0.6), seed=seed)
    first = faults.pick()
    assert isinstance(first, Error) and first.status == 429
    started = time.time()
    while time.time() - started < 0.25:  # inside the burst: 429, never naming a moment already past
        action = faults.pick()
        now = time.time()
        assert isinstance(action, Error) and action.status == 429
        headers = dict(action.headers)
        if "Retry-After" in headers and headers["Retry-After"].isdigit():
            assert int(headers["Retry-After"]) >= 1
        elif "Retry-After" in headers:
            assert parsedate_to_datetime(headers["Retry-After"]).timestamp() >= now
        else:
            assert headers["RateLimit-Remaining"] == "0" and int(headers["RateLimit-Reset"]) >= now
        time.sleep(0.02)
    assert faults.snapshot()["burst_429"] == 1
