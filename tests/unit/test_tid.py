from hypothesis import given, strategies as st

from skypost.bluesky.tid import is_tid, new_tid


def test_tids_are_valid_and_increasing():
    tids = [new_tid() for _ in range(1000)]
    assert all(is_tid(t) for t in tids)
    assert tids == sorted(tids) and len(set(tids)) == 1000


@given(st.integers(min_value=0, max_value=2**53 - 1), st.integers(min_value=0, max_value=1023))
def test_tid_shape(micros, clock):
    tid = new_tid(now_us=micros + 10**17, clock_id=clock)
    assert len(tid) == 13 and is_tid(tid)
