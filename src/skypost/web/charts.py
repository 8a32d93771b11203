"""The dashboard's chart: syndications per hour over the last 7 days, as inline SVG.

Rendered on the server (no JavaScript): one stacked bar per hour, published
below and failed on top (from the activity log: a failure that was retried later
still counts in its hour), a tooltip (<title>) on each bar.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from html import escape
from typing import Iterable, Mapping

HOURS = 7 * 24
BAR, GAP = 4, 1
HEIGHT, TOP, BOTTOM, LEFT = 120, 8, 22, 34


@dataclass(frozen=True)
class HourlyCounts:
    start_hour: int  # UNIX hour number of the first bar
    published: list[int]
    failed: list[int]

    @property
    def totals(self) -> tuple[int, int]:
        return sum(self.published), sum(self.failed)


def hourly_counts(rows: Iterable[Mapping[str, object]], *, now: float, hours: int = HOURS) -> HourlyCounts:
    """Bucket (hour, status, n) rows into the `hours` hours that end with the current one."""
    last = int(now // 3600)
    start = last - hours + 1
    published, failed = [0] * hours, [0] * hours
    for row in rows:
        index = int(row["hour"]) - start  # type: ignore[call-overload]
        if 0 <= index < hours:
            target = published if row["status"] == "completed" else failed
            target[index] += int(row["n"])  # type: ignore[call-overload]
    return HourlyCounts(start, published, failed)


def _nice_max(value: int) -> int:
    for step in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10000):
        if value <= step * 4:
            return step * 4
    return value


def svg(counts: HourlyCounts) -> str:
    """The chart as an <svg> element (escaped, safe to insert as markup)."""
    hours = len(counts.published)
    width = LEFT + hours * (BAR + GAP) + 4
    peak = _nice_max(max((p + f for p, f in zip(counts.published, counts.failed)), default=0) or 1)
    plot = HEIGHT - TOP - BOTTOM
    published, failed = counts.totals
    label = f"Syndications per hour, last 7 days: {published} published, {failed} failed"
    parts = [f'<svg class="chart" viewBox="0 0 {width} {HEIGHT}" role="img" aria-label="{escape(label)}" '
             f'xmlns="http://www.w3.org/2000/svg"><title>{escape(label)}</title>']
    for fraction in (0.0, 0.5, 1.0):  # grid lines and their values
        y = TOP + plot - plot * fraction
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{width - 4}" y1="{y:.1f}" y2="{y:.1f}"/>'
                     f'<text class="axis" x="{LEFT - 4}" y="{y + 3:.1f}" text-anchor="end">'
                     f'{round(peak * fraction)}</text>')
    for i in range(hours):
        hour = counts.start_hour + i
        when = datetime.fromtimestamp(hour * 3600, timezone.utc)
        x = LEFT + i * (BAR + GAP)
        if when.hour == 0:  # a line and a label at each day's start
            parts.append(f'<line class="day" x1="{x}" x2="{x}" y1="{TOP}" y2="{TOP + plot}"/>'
                         f'<text class="axis" x="{x + 2}" y="{HEIGHT - 6}">{when.strftime("%a %d")}</text>')
        ok, bad = counts.published[i], counts.failed[i]
        if not ok and not bad:
            continue
        tip = f"{when.strftime('%Y-%m-%d %H:00')} UTC: {ok} published, {bad} failed"
        h_ok, h_bad = plot * ok / peak, plot * bad / peak
        base = TOP + plot
        parts.append(f'<g><title>{escape(tip)}</title>')
        if ok:
            parts.append(f'<rect class="ok" x="{x}" y="{base - h_ok:.1f}" width="{BAR}" height="{h_ok:.1f}"/>')
        if bad:
            parts.append(f'<rect class="bad" x="{x}" y="{base - h_ok - h_bad:.1f}" width="{BAR}" '
                         f'height="{h_bad:.1f}"/>')
        parts.append("</g>")
    parts.append("</svg>")
    return "".join(parts)
