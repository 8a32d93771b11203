"""The measuring stick of the hostile tests: a child's peak RSS is its own."""

from __future__ import annotations

from tests.hostile.harness import run_child


def test_a_child_of_a_large_runner_reports_its_own_peak():
    # Linux carries ru_maxrss across fork and exec: a full test run that grew to a few hundred
    # MB made every child look that large (and an image's growth look like nothing)
    ballast = bytearray(400 * 1024 * 1024)
    ballast[::4096] = b"x" * len(ballast[::4096])  # touch every page: resident, not just reserved
    result = run_child("tests.hostile.actions:nothing", hard_timeout=60)
    assert result["outcome"] == "returned" and result["maxrss_mb"] < 150, result
    del ballast
