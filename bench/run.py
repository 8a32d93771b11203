"""Run skypost's benchmark suite and write bench/results/{results.json, results.md, *.png}.

    .venv/bin/python -m bench.run            # everything (about 8-10 minutes on 2 cores)
    .venv/bin/python -m bench.run --quick    # smaller counts, a smoke test (about 4 minutes)
    .venv/bin/python -m bench.run --only latency,throughput,ratelimit

Needs: the venv with the test extras and matplotlib, tests/pds/node_modules (`npm ci`, as for
the tests; installed on first use by tests.support.pds.ensure_pds_installed), and PostgreSQL at
SKYPOST_BENCH_PG_URL / SKYPOST_TEST_PG_URL (default postgresql://postgres@127.0.0.1:5432/postgres):
a scratch database is created per run and dropped after.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from bench.common import REPO, install_signal_handlers, log, pg_available

SECTIONS = ("latency", "throughput", "ratelimit")


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10).stdout.strip()
    except OSError:
        return ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller counts (a smoke test)")
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated: " + ", ".join(SECTIONS))
    parser.add_argument("--out", default=str(REPO / "bench" / "results"))
    args = parser.parse_args(argv)
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s): {', '.join(sorted(unknown))}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    install_signal_handlers()
    if not pg_available():
        log("PostgreSQL is not reachable (run scripts/ensure-postgres.sh): it is needed for the comparisons")
        return 2

    started = time.time()
    t0 = time.perf_counter()
    results: dict[str, object] = {
        "meta": {
            "started": datetime.datetime.fromtimestamp(started, datetime.timezone.utc).isoformat(timespec="seconds"),
            "commit": _git("rev-parse", "--short", "HEAD"), "dirty": bool(_git("status", "--porcelain", "src")),
            "python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
            "loadavg_at_start": os.getloadavg(), "quick": args.quick, "sections": sections, "command": " ".join([Path(sys.executable).name, "-m", "bench.run",
                                                                           *(argv if argv is not None else sys.argv[1:])]),
        }
    }
    timings: dict[str, float] = {}
    for section in sections:
        s0 = time.perf_counter()
        log(f"=== {section} ===")
        if section == "latency":
            from bench import latency

            results["latency"] = latency.run(REPO / "test-artifacts", quick=args.quick)
        elif section == "throughput":
            from bench import throughput

            results["throughput"] = throughput.run(quick=args.quick)
        elif section == "ratelimit":
            from bench import ratelimit

            results["ratelimit"] = ratelimit.run(quick=args.quick)
        timings[section] = time.perf_counter() - s0
    results["meta"]["section_seconds"] = timings  # type: ignore[index]
    results["meta"]["total_seconds"] = time.perf_counter() - t0  # type: ignore[index]
    results["meta"]["loadavg_at_end"] = os.getloadavg()  # type: ignore[index]

    tmp = out / "results.json.tmp"
    tmp.write_text(json.dumps(results, indent=2, default=str))
    tmp.replace(out / "results.json")
    from bench import report

    report.write(results, out)
    log(f"done in {time.perf_counter() - t0:.0f} s: {out / 'results.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
