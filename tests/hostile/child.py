"""Runs one call in this (child) process under an address-space limit and prints what
happened as one JSON line, with the wall time of the call and the process's peak RSS.

Used by the hostile tests: a regression (a bomb decoded whole, a deadline not kept)
then fails a test instead of taking the machine's memory or a worker slot.

    python -m tests.hostile.child '{"call": "module:function", "args": {...}, "rlimit_as": N}'
"""

from __future__ import annotations

import importlib
import json
import resource
import sys
import time


def peak_rss_kib() -> int:
    """This process's own peak RSS (VmHWM). Not ru_maxrss: Linux carries the parent's peak
    across fork and exec, so a child of a large test runner would report the runner's."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def main() -> None:
    spec = json.loads(sys.argv[1])
    limit = int(spec["rlimit_as"])
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    module, name = spec["call"].split(":")
    call = getattr(importlib.import_module(module), name)
    started = time.monotonic()
    try:
        result = {"outcome": "returned", **call(**spec["args"])}
    except BaseException as exc:  # noqa: BLE001 - whatever escapes is the finding
        result = {"outcome": "raised", "type": type(exc).__name__,
                  "kind": getattr(exc, "kind", None), "reason": str(exc)[:500]}
    result["wall"] = round(time.monotonic() - started, 3)
    result["maxrss_mb"] = round(peak_rss_kib() / 1024, 1)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
