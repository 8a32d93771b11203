"""results.json → results.md (markdown tables) and PNG plots (matplotlib, Agg).

    .venv/bin/python -m bench.report [bench/results]     # re-render from an existing results.json
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any


def _ms(seconds: float | None) -> str:
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return "–"
    ms = seconds * 1000
    return f"{ms:.2f} ms" if ms < 10 else f"{ms:.1f} ms" if ms < 100 else f"{ms:.0f} ms"


def _x(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.4f}×" if value < 0.01 else f"{value:.3f}×" if value < 1 else f"{value:.2f}×"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f} %"


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def _load(values: Any) -> str:
    return "/".join(f"{v:.1f}" for v in values) if values else "–"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


# --- sections --------------------------------------------------------------------------------

def _submit_md(sub: dict[str, Any]) -> str:
    base_in = sub["sdk_inprocess"]
    base_proc = sub["sdk_script"]
    rows = []

    def row(label: str, s: dict[str, Any], base: dict[str, Any], base_label: str) -> None:
        rows.append([label, str(s["n"]), _ms(s["p50"]), _ms(s["p99"]), _x(_ratio(s["p50"], base["p50"])),
                     _x(_ratio(s["p99"], base["p99"])), base_label])

    row("**baseline A**: plain SDK script in-process: login + createRecord per post (real PDS)", base_in, base_in, "A")
    row("`app.submit()` (SQLite)", sub["library_sqlite"], base_in, "A")
    row("`app.submit()` (PostgreSQL)", sub["library_postgresql"], base_in, "A")
    row("`app.submit(sync=True)` (SQLite, real PDS)", sub["sync"], base_in, "A")
    row("**baseline B**: plain SDK script, one process per post (real PDS)", base_proc, base_proc, "B")
    row("`skypost submit` (CLI process, SQLite)", sub["cli"], base_proc, "B")
    row("`python -c pass` (interpreter start-up)", sub["python_c_pass"], base_proc, "B")
    text = _table(["path", "n", "p50", "p99", "p50 vs baseline", "p99 vs baseline", "baseline"], rows)
    beyond = sub["cli_beyond_startup_s"]
    sdk_beyond = sub["sdk_script_beyond_startup_s"]
    text += (f"\n\nCLI submit time beyond interpreter start-up: median(`skypost submit`) − median(`python -c pass`) = "
             f"**{_ms(beyond)}** ({_x(_ratio(beyond, sdk_beyond))} of the plain script's {_ms(sdk_beyond)} beyond "
             f"start-up; {_x(_ratio(sub['cli']['p50'], sub['python_c_pass']['p50']))} a bare interpreter). "
             f"The SDK script's in-process time is login {_ms(sub['sdk_inprocess_login']['p50'])} + create "
             f"{_ms(sub['sdk_inprocess_create']['p50'])} (p50). First `sync=True` call of a process (imports): "
             f"{_ms(sub['sync_first_call_s'])}.")
    return text


def _live_md(live: dict[str, Any]) -> str:
    base = live["direct_create"]
    labels = [
        ("direct_create", "**baseline**: createRecord with a logged-in SDK client (returns when live)"),
        ("sqlite_thread", "SQLite, idle worker thread in the submitting process (in-process wake-up)"),
        ("sqlite_process_poll", "SQLite, idle `skypost worker` process (polls every 1 s)"),
        ("postgresql_process_notify", "PostgreSQL, idle `skypost worker` process (LISTEN/NOTIFY, poll 1 s)"),
        ("postgresql_process_poll_only", "PostgreSQL, idle worker process without LISTEN (poll 1 s)"),
    ]
    rows = []
    for key, label in labels:
        s = live.get(key)
        if s:
            rows.append([label, str(s["n"]), _ms(s["p50"]), _ms(s["p99"]), _x(_ratio(s["p50"], base["p50"])),
                         _x(_ratio(s["p99"], base["p99"]))])
    text = _table(["setup", "n", "p50", "p99", "p50 vs baseline", "p99 vs baseline"], rows)
    notify, poll = live.get("postgresql_process_notify"), live.get("postgresql_process_poll_only")
    if notify and poll:
        text += (f"\n\nNOTIFY vs polling only (PostgreSQL, same worker, poll interval 1 s): p50 "
                 f"{_ms(notify['p50'])} vs {_ms(poll['p50'])} ({_x(_ratio(notify['p50'], poll['p50']))}). "
                 "Latency is measured from before `submit()` to the first getRecord (polled every 5 ms) that finds "
                 "the record on the PDS; submissions are spaced by a random 0–1 s so that they fall at a random "
                 "phase of the worker's poll.")
    return text


def _tput_md(tp: dict[str, Any]) -> str:
    rows = []
    for r in tp["runs"]:
        b = r["baseline"]
        who = (f"{r['processes']} process{'es' if r['processes'] > 1 else ''}" if r["mode"] == "processes"
               else f"1 process × {r['threads_each']} threads")
        rows.append([
            r["engine"], who, f"{r['per_s']:.0f}", f"{b['per_s']:.0f}", _x(r["per_s_vs_baseline"]),
            f"{r['worker_cpu_per_delivery_ms']:.2f}", f"{b['client_cpu_per_request_ms']:.2f}", _x(r["cpu_vs_baseline"]),
            "–" if r["db_server_cpu_per_delivery_ms"] is None else f"{r['db_server_cpu_per_delivery_ms']:.2f}",
            f"{r['claims_per_job']:.2f}",
            "–" if r.get("pg_commits_per_delivery") is None else f"{r['pg_commits_per_delivery']:.1f}",
            f"{max(r['peak_rss_mib']):.0f}",
        ])
    text = _table(["db", "workers", "deliveries/s", "raw stub creates/s", "vs raw", "worker CPU ms/delivery",
                   "raw client CPU ms/request", "CPU vs raw", "DB server CPU ms/delivery", "job claims per post",
                   "PostgreSQL commits per delivery", "peak worker RSS MiB"], rows)
    n = tp["runs"][0]["deliveries"] if tp["runs"] else 0
    text += (f"\n\n{n} deliveries per run (posts round-robin over 20 accounts, one account each, link-card URL "
             "https://192.0.2.1/n refused by policy), against the in-memory stub PDS. Workers are `python -m "
             "skypost.cli worker --concurrency 1` processes (or one process with `--concurrency N` threads where "
             "said); the queue is paused while posts are submitted and the workers start and warm up, and the "
             "clock runs from resume to the last record at the stub. The raw baseline is the same number of "
             "processes each running a bare httpx createRecord loop against the same stub, measured just before. "
             "Worker CPU is user+system time of the worker processes over the run (/proc); the DB server column is "
             "the CPU of the PostgreSQL backends serving the scratch database. \"Job claims per post\" is "
             "SUM(jobs.attempts)/jobs: 1.00 means every post was claimed once. \"PostgreSQL commits per delivery\" is the "
             "growth of pg_stat_database.xact_commit over the run (workers and the benchmark's few status reads) "
             "÷ deliveries.")
    for note in tp.get("notes", []):
        text += f"\n\nNote: {note}"
    return text


def _rate_md(results: dict[str, Any]) -> str:
    rl = results["scenarios"]
    rows = []
    for key, r in rl.items():
        if key.startswith("per_ip"):
            e = r.get("per_ip") or {}
            allowed = f"{r['per_ip_allowed_per_s_real']:.0f} requests/s per IP (3000 / {r['per_ip_window_s_real']:g} s)"
            achieved = e.get("rate_vs_allowed")
            fill = e.get("fill")
            late = e.get("late_per_window_s_real")
            proj = e.get("projected_rate_vs_allowed_real_speed")
        else:
            entries = r.get("per_account") or []
            allowed = (f"{r['per_account_creates_allowed_per_window']} creates / {r['per_account_window_s_real']:g} s "
                       f"per account ×{r['accounts']}")
            achieved = r.get("per_account_rate_vs_allowed_mean")
            fills = [e["fill"] for e in entries if "fill" in e]
            fill = sum(fills) / len(fills) if fills else None
            lates = [e["late_per_window_s_real"] for e in entries if "late_per_window_s_real" in e]
            late = sum(lates) / len(lates) if lates else None
            proj = r.get("per_account_projected_real_speed_mean")
        rows.append([r["name"], f"×{r['speed']:g}", allowed, f"{r['seconds']:.0f} s", str(r["creates"]),
                     f"**{_pct(achieved)}**", _pct(fill), "–" if late is None else f"{late:.2f} s",
                     str(r["http_429"]), str(r["worker_tracebacks"]), f"{r['worker_cpu_s']:.1f} s",
                     str(r["job_claims"]), _pct(proj)])
    text = _table(["scenario", "clock", "allowed", "ran", "creates", "achieved rate vs allowed",
                   "window fill", "late per window (real)", "429s", "worker tracebacks", "worker CPU",
                   "job claims", "projected at real speed"], rows)
    if results.get("partial_upsert_bug"):
        text += ("\n\n\"as_is\" is `skypost worker` unchanged. \"patched\" is bench/worker_proc.py "
                 "--patch-rate-limit-upsert: the same worker with the partial-upsert bug (saving the row that "
                 "`resilience.spend()` returns violates NOT NULL on rate_limits.consecutive_429; traceback below) "
                 "worked around in the worker process only, to judge the limiter's own logic; src/ is unchanged.")
    else:
        text += ("\n\n\"as_is\" is `skypost worker` unchanged. The partial-upsert bug this benchmark found "
                 "(saving the row that `resilience.spend()` returns violated NOT NULL on "
                 "rate_limits.consecutive_429, so every delivery after the first one per rate-limit window crashed) "
                 "is fixed at this commit, so the \"patched\" re-run is skipped.")
    text += (" Achieved rate = "
             "requests accepted in the complete windows ÷ the time from the first window's start to the next "
             "window's start, vs limit ÷ window (a run with no complete window: accepted ÷ whole run). Window "
             "fill = accepted ÷ limit over the complete windows. \"Late per window\" is the real time between a "
             "window's reset and the next request; \"projected\" keeps the fill and that lateness (real seconds: "
             "whole-second reset, poll interval, re-scheduling the backlog) against Bluesky's real 300 s / 3600 s "
             "windows. One worker process, SQLite, poll interval 0.1 s.")
    first = next((r.get("first_traceback") for r in rl.values() if r.get("first_traceback")), None)
    if first:
        text += "\n\nFirst worker traceback (as_is):\n\n```\n" + first + "\n```"
    return text


def _logins_md(lg: dict[str, Any]) -> str:
    sky = lg["skypost_logins_total"]
    script = lg["script_logins_total"]
    rows = [["**baseline**: plain SDK script (login + create per post)", str(lg["posts"]), str(lg["script_records"]),
             str(script), "1.00×"],
            ["skypost (`account add` + worker)", str(lg["posts"]), str(lg["skypost_records"]), str(sky),
             _x(_ratio(sky, script))]]
    return _table(["client", "posts (one account)", "records created", "createSession calls", "vs baseline"], rows) + (
        f"\n\nskypost's logins: {lg['skypost_logins_at_add']} at `account add` (verifying the app password), "
        f"{sky - lg['skypost_logins_at_add']} while delivering; {lg['skypost_refreshes']} refreshSession calls. "
        "Against the stub PDS (which counts createSession per handle). Bluesky allows 30 logins per 5 min and "
        "300 per day per account (about 100 a day at the bsky.social entryway).")


def _memory_md(tp: dict[str, Any]) -> str:
    base = tp["idle_interpreter_rss_mib"].get("VmHWM") or tp["idle_interpreter_rss_mib"].get("VmRSS")
    rows = [["**baseline**: idle interpreter that imported skypost (app + CLI)", f"{base:.0f}", "1.00×"]]
    mods = tp.get("worker_modules_rss_mib")
    if mods:
        value = mods.get("VmHWM") or mods.get("VmRSS")
        rows.append(["idle interpreter that imported what a worker loads (worker, pipeline, Bluesky client → atproto "
                     "SDK, composer, fetcher)", f"{value:.0f}", _x(value / base)])
    for engine in ("sqlite", "postgresql"):
        runs = [r for r in tp["runs"] if r["engine"] == engine]
        if not runs:
            continue
        idle = max(max(v for v in r["idle_rss_mib"] if v) for r in runs)
        peak = max(max(v for v in r["peak_rss_mib"] if v) for r in runs)
        rows.append([f"`skypost worker` on {engine}, idle after warm-up (VmRSS, largest)", f"{idle:.0f}",
                     _x(idle / base)])
        rows.append([f"`skypost worker` on {engine}, under load (VmHWM, largest of all runs)", f"{peak:.0f}",
                     _x(peak / base)])
    return _table(["process", "MiB", "vs baseline"], rows)


def markdown(results: dict[str, Any]) -> str:
    meta = results["meta"]
    parts = [
        "# skypost benchmark results",
        f"Commit `{meta['commit']}`{' (src/ modified)' if meta.get('dirty') else ''}, {meta['started']}, "
        f"Python {meta['python']}, {meta['cpus']} CPUs (a shared machine: every figure is also given as a ratio "
        f"against a baseline measured in the same run). Command: `{meta['command']}`; total "
        f"{meta['total_seconds']:.0f} s ({', '.join(f'{k} {v:.0f} s' for k, v in meta['section_seconds'].items())})."
        + (f" Load average (1/5/15 min) at start {_load(meta.get('loadavg_at_start'))}, at end "
           f"{_load(meta.get('loadavg_at_end'))}." if meta.get("loadavg_at_start") else "")
        + (" **Quick mode: small counts.**" if meta.get("quick") else ""),
    ]
    lat = results.get("latency")
    if lat:
        parts += ["## 1. Submit latency", _submit_md(lat["submit"]), "![submit latency](submit_latency.png)",
                  "## 2. Publish → live with an idle worker (real PDS)", _live_md(lat["live"]),
                  "![publish to live](publish_to_live.png)"]
    tp = results.get("throughput")
    if tp:
        parts += ["## 3. Throughput and CPU per delivery (stub PDS)", _tput_md(tp), "![throughput](throughput.png)"]
    rl = results.get("ratelimit")
    if rl and "scenarios" not in rl:  # results.json of an earlier version of the suite
        rl = {"scenarios": rl, "partial_upsert_bug": True}
    if rl:
        parts += ["## 4. Rate-limit saturation (stub PDS enforcing Bluesky's limits, compressed clock)",
                  "Goal: at least 95 % of the allowed rate, no 429.", _rate_md(rl),
                  "![rate limits](ratelimit.png)"]
    if tp:
        parts += ["## 5. Logins", _logins_md(tp["logins"]), "## 6. Worker memory", _memory_md(tp),
                  "![memory](memory.png)"]
    return "\n\n".join(parts) + "\n"


# --- plots -------------------------------------------------------------------------------------

def plots(results: dict[str, Any], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written: list[Path] = []

    def save(fig: Any, name: str) -> None:
        path = out / name
        fig.tight_layout()
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        written.append(path)

    lat = results.get("latency")
    if lat:
        sub = lat["submit"]
        items = [("app.submit\nSQLite", sub["library_sqlite"]), ("app.submit\nPostgreSQL", sub["library_postgresql"]),
                 ("submit(sync)\nreal PDS", sub["sync"]), ("SDK login+create\nin-process", sub["sdk_inprocess"]),
                 ("python -c pass", sub["python_c_pass"]), ("skypost submit\nCLI", sub["cli"]),
                 ("SDK script\nper process", sub["sdk_script"])]
        fig, ax = plt.subplots(figsize=(9, 4.2))
        xs = range(len(items))
        p50 = [s["p50"] * 1000 for _, s in items]
        p99 = [s["p99"] * 1000 for _, s in items]
        colors = ["tab:blue", "tab:blue", "tab:orange", "tab:gray", "tab:gray", "tab:blue", "tab:gray"]
        ax.bar(xs, p50, color=colors, label="p50")
        ax.scatter(xs, p99, color="black", marker="_", s=300, label="p99", zorder=3)
        ax.set_yscale("log")
        ax.set_xticks(list(xs), [k for k, _ in items], fontsize=8)
        ax.set_ylabel("ms (log)")
        ax.set_title("Submit latency (blue: skypost queues; orange: skypost sync; gray: baselines)")
        for x, v in zip(xs, p50):
            ax.annotate(f"{v:.3g}", (x, v), ha="center", va="bottom", fontsize=7)
        ax.legend()
        save(fig, "submit_latency.png")

        live = lat["live"]
        keys = [("direct_create", "direct create\n(SDK)"), ("sqlite_thread", "SQLite\nthread"),
                ("postgresql_process_notify", "PG process\nNOTIFY"), ("sqlite_process_poll", "SQLite process\npoll 1 s"),
                ("postgresql_process_poll_only", "PG process\npoll only 1 s")]
        keys = [(k, lbl) for k, lbl in keys if k in live]
        fig, ax = plt.subplots(figsize=(8, 4))
        xs = range(len(keys))
        ax.bar(xs, [live[k]["p50"] * 1000 for k, _ in keys], color="tab:blue", label="p50")
        ax.scatter(xs, [live[k]["p99"] * 1000 for k, _ in keys], color="black", marker="_", s=300, label="p99",
                   zorder=3)
        ax.set_xticks(list(xs), [lbl for _, lbl in keys], fontsize=8)
        ax.set_ylabel("ms")
        ax.set_title("Publish → live with an idle worker (real local PDS)")
        ax.legend()
        save(fig, "publish_to_live.png")

    tp = results.get("throughput")
    if tp:
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.6))
        for engine, color in (("sqlite", "tab:blue"), ("postgresql", "tab:green")):
            runs = sorted((r for r in tp["runs"] if r["engine"] == engine and r["mode"] == "processes"),
                          key=lambda r: r["workers"])
            if runs:
                ax1.plot([r["workers"] for r in runs], [r["per_s"] for r in runs], "o-", color=color,
                         label=f"skypost, {engine} (processes)")
                ax2.plot([r["workers"] for r in runs], [r["worker_cpu_per_delivery_ms"] for r in runs], "o-",
                         color=color, label=f"{engine} worker CPU")
                if engine == "postgresql":
                    ax2.plot([r["workers"] for r in runs], [r["db_server_cpu_per_delivery_ms"] or 0 for r in runs],
                             "s--", color=color, label="postgresql server CPU")
            threads = [r for r in tp["runs"] if r["engine"] == engine and r["mode"] == "threads"]
            for r in threads:
                ax1.plot([r["workers"]], [r["per_s"]], "^", color=color, markersize=9,
                         label=f"{engine}, 1 process × {r['workers']} threads")
        for engine, color in (("sqlite", "tab:blue"), ("postgresql", "tab:green")):
            paired = sorted((r["workers"], r["baseline"]) for r in tp["runs"]
                            if r["engine"] == engine and r["mode"] == "processes")
            if paired:
                ax1.plot([k for k, _ in paired], [b["per_s"] for _, b in paired], ":", color=color, marker="x",
                         label=f"raw httpx loops, paired with {engine} runs (baseline)")
                ax2.plot([k for k, _ in paired], [b["client_cpu_per_request_ms"] for _, b in paired], ":",
                         color=color, marker="x", label=f"raw client CPU/request ({engine} pairs)")
        ax1.set_yscale("log")
        ax1.set_xlabel("workers")
        ax1.set_ylabel("deliveries/s (log)")
        ax1.set_title("Throughput against the stub PDS")
        ax1.set_xticks([1, 2, 4, 8])
        ax1.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2)
        ax2.set_xlabel("workers")
        ax2.set_ylabel("CPU ms per delivery")
        ax2.set_title("CPU per delivery")
        ax2.set_xticks([1, 2, 4, 8])
        ax2.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2)
        save(fig, "throughput.png")

        fig, ax = plt.subplots(figsize=(7, 3.6))
        base_rss = tp["idle_interpreter_rss_mib"].get("VmHWM") or 0
        labels, values = ["idle interpreter\n+ import skypost"], [base_rss]
        for engine in ("sqlite", "postgresql"):
            runs = [r for r in tp["runs"] if r["engine"] == engine]
            if runs:
                labels += [f"worker idle\n{engine}", f"worker peak\n{engine}"]
                values += [max(max(v for v in r["idle_rss_mib"] if v) for r in runs),
                           max(max(v for v in r["peak_rss_mib"] if v) for r in runs)]
        ax.bar(range(len(values)), values, color=["tab:gray"] + ["tab:blue"] * (len(values) - 1))
        ax.set_xticks(range(len(values)), labels, fontsize=8)
        ax.set_ylabel("MiB")
        ax.set_title("Worker memory (RSS)")
        save(fig, "memory.png")

    rl = results.get("ratelimit")
    if rl:
        rl = rl.get("scenarios", rl)
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        for ax, prefix in zip(axes, ("per_ip", "per_account")):
            speed = None
            for key, color in ((f"{prefix}_as_is", "tab:blue"), (f"{prefix}_patched", "tab:orange")):
                r = rl.get(key)
                if not r:
                    continue
                series = r["series"]
                ax.plot([t for t, _, _ in series], [n for _, n, _ in series], color=color,
                        label=f"{'as is' if key.endswith('as_is') else 'patched'} ({r['http_429']} × 429)")
                speed = r
            if speed:
                if prefix == "per_ip":
                    rate = speed["per_ip_allowed_per_s_real"]
                    title = f"per-IP limit, clock ×{speed['speed']:g} (window {speed['per_ip_window_s_real']:g} s)"
                else:
                    rate = (speed["per_account_creates_allowed_per_window"] * speed["accounts"]
                            / speed["per_account_window_s_real"])
                    title = (f"per-account limit ×{speed['accounts']} accounts, clock ×{speed['speed']:g} "
                             f"(window {speed['per_account_window_s_real']:g} s)")
                end = max(t for k in rl if k.startswith(prefix) for t, _, _ in rl[k]["series"])
                ax.plot([0, end], [0, rate * end], "k:", label="allowed average rate (limit / window)")
                ax.set_title(title, fontsize=9)
            ax.set_xlabel("seconds")
            ax.set_ylabel("requests accepted (cumulative)")
            ax.legend(fontsize=8)
        save(fig, "ratelimit.png")
    return written


def write(results: dict[str, Any], out: Path) -> None:
    (out / "results.md").write_text(markdown(results))
    plots(results, out)


if __name__ == "__main__":
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / "results"
    write(json.loads((folder / "results.json").read_text()), folder)
