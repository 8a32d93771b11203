"""The server-rendered chart: hourly buckets and the SVG."""

from __future__ import annotations

import re

from skypost.web import charts

NOW = 1_780_000_000.0  # some time; the current hour is the last bar


def test_rows_fall_into_the_last_168_hours():
    hour = int(NOW // 3600)
    rows = [{"hour": hour, "status": "completed", "n": 3}, {"hour": hour, "status": "failed", "n": 1},
            {"hour": hour - 167, "status": "completed", "n": 2}, {"hour": hour - 168, "status": "completed", "n": 9},
            {"hour": hour + 1, "status": "failed", "n": 9}]
    counts = charts.hourly_counts(rows, now=NOW)
    assert len(counts.published) == 168 and counts.start_hour == hour - 167
    assert counts.published[-1] == 3 and counts.failed[-1] == 1 and counts.published[0] == 2
    assert counts.totals == (5, 1)


def test_the_svg_has_one_bar_group_per_busy_hour_and_escapes_nothing_unsafe():
    hour = int(NOW // 3600)
    counts = charts.hourly_counts([{"hour": hour, "status": "completed", "n": 3},
                                   {"hour": hour - 5, "status": "failed", "n": 2}], now=NOW)
    svg = charts.svg(counts)
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert len(re.findall(r'<rect class="ok"', svg)) == 1 and len(re.findall(r'<rect class="bad"', svg)) == 1
    assert "3 published, 2 failed" in svg and ": 3 published, 0 failed</title>" in svg
    assert len(re.findall(r'class="day"', svg)) == 7  # a line at each midnight (UTC)
    empty = charts.svg(charts.hourly_counts([], now=NOW))
    assert "<rect" not in empty and "0 published, 0 failed" in empty
