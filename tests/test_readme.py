"""The README is tested: every ```sh and ```python block runs, in README order, against the local
PDS, and the command-line synopsis matches the commands' --help.

How a block is run, so that a reader can trust it:

* The blocks run one after another in one fresh working directory, as a reader would type them
  after `make run`: the test first does what `make run` does there (`skypost init`, then
  `skypost serve` in the background on a free loopback port).
* `.venv/bin/skypost` and `skypost` are this checkout's CLI (a small launcher in
  `.venv/bin/`, which is also first on PATH). A command that serves until stopped (`serve`,
  `worker` without `--burst`) is started, must come up (`/healthz`, or still running after two
  seconds), and is then stopped with SIGTERM, which must end it with exit 0.
* Only the placeholders of `PLACEHOLDERS` change (the README's account, PDS, host, feed and
  PostgreSQL server become the test's); everything else runs as written. The environment has
  `SKYPOST_ALLOW_PRIVATE_URLS=1`, because the local PDS and feed listen on loopback.
* A block preceded by `<!-- not run: why -->` is not run (the reason is kept in the README).
  Fenced blocks in other languages are not run; ```json blocks must parse.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import click
import httpx
import pytest

from skypost.cli import main
from tests.conftest import TEST_KEY, _pg_create
from tests.support.pds import free_port

README = Path(__file__).resolve().parents[1] / "README.md"
SKYPOST = [sys.executable, "-m", "skypost.cli"]
RUN = ("sh", "python")
NOT_RUN = re.compile(r"<!--\s*not run:\s*(.+?)\s*-->")
FENCE = re.compile(r"^```(\S*)\s*$")


@dataclass(frozen=True)
class Block:
    lang: str
    code: str
    line: int  # of the opening fence, for messages
    not_run: str | None  # the reason given in the README


def readme_blocks(text: str) -> list[Block]:
    """The fenced blocks of a Markdown text, with the `not run` reason written before each."""
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        before = next((line for line in reversed(lines[:i]) if line.strip()), "")
        reason = NOT_RUN.search(before)
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        blocks.append(Block(opening.group(1), "\n".join(lines[i + 1:end]) + "\n", i + 1,
                            reason.group(1) if reason else None))
        i = end + 1
    return blocks


def test_the_block_reader_honours_the_not_run_marker():
    text = "a\n\n<!-- not run: serves forever -->\n```sh\nmake run\n```\n\n```python\nx = 1\n```\n"
    first, second = readme_blocks(text)
    assert (first.lang, first.code, first.not_run) == ("sh", "make run\n", "serves forever")
    assert (second.lang, second.code, second.not_run) == ("python", "x = 1\n", None)


# --- running the blocks ------------------------------------------------------------------

LAUNCHER = '''#!{python}
"""skypost for the README's blocks (see tests/test_readme.py)."""
import os, signal, subprocess, sys, time, urllib.request

args = sys.argv[1:]
command = [sys.executable, "-m", "skypost.cli", *args]
name = next((a for a in args if not a.startswith("-")), "")
if name not in ("serve", "worker") or "--burst" in args:
    os.execv(sys.executable, command)
port = None
if name == "serve" and "--port" not in args:
    port = os.environ["README_SERVE_PORT"]
    command += ["--port", port]
proc = subprocess.Popen(command)
started = time.monotonic()
while True:
    assert proc.poll() is None, f"skypost {{name}} exited with {{proc.returncode}}"
    if port is None:  # a worker: up when it is still running two seconds later
        if time.monotonic() - started > 2:
            break
    else:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{{port}}/healthz", timeout=1) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        assert time.monotonic() - started < 30, f"skypost {{name}} did not come up"
    time.sleep(0.2)
proc.send_signal(signal.SIGTERM)
code = proc.wait(timeout=60)
print(f"(README test: skypost {{name}} came up and stopped with exit {{code}})", file=sys.stderr)
sys.exit(code)
'''

FEED = """<?xml version="1.0"?><rss version="2.0"><channel><title>Example blog</title>
<link>https://blog.example.com/</link><description>Posts</description>
<item><title>An older post</title><link>https://blog.example.com/older</link>
<guid>https://blog.example.com/older</guid><pubDate>Mon, 30 Nov 2026 10:00:00 GMT</pubDate></item>
<item><title>The newest post</title><link>https://blog.example.com/newest</link>
<guid>https://blog.example.com/newest</guid><pubDate>Tue, 01 Dec 2026 10:00:00 GMT</pubDate></item>
</channel></rss>"""


@pytest.fixture
def feed_url() -> Iterator[str]:
    """A feed with two entries on a loopback port."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            body = FEED.encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/rss+xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/feed.xml"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def pg_url() -> Iterator[str]:
    url, drop = _pg_create()
    try:
        yield url
    finally:
        drop()


def cli_env(folder: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKYPOST_")}
    env.update(PATH=f"{folder / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}",
               SKYPOST_ALLOW_PRIVATE_URLS="1", SKYPOST_POLL_INTERVAL="0.1",
               README_SERVE_PORT=str(free_port()))
    return env


def wait_serving(base: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            # not /healthz: on SQLite its probe reads the database file with open()/close(),
            # which drops the server's SQLite locks, and the CLI's writes can then corrupt it
            if httpx.get(base + "/login", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)


def run_block(block: Block, index: int, folder: Path, env: dict[str, str],
              placeholders: dict[str, str]) -> str:
    code = block.code
    for placeholder, value in placeholders.items():
        code = code.replace(placeholder, value)
    if block.lang == "python":
        script = folder / f"readme_block_{index}.py"
        command = [sys.executable, str(script)]
    else:
        script = folder / f"readme_block_{index}.sh"
        command = ["bash", "-e", "-o", "pipefail", str(script)]
    script.write_text(code)
    result = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True,
                            timeout=180)
    assert result.returncode == 0, (f"README.md line {block.line} ({block.lang}) failed with "
                                    f"{result.returncode}:\n{code}\n--- stdout\n{result.stdout}\n"
                                    f"--- stderr\n{result.stderr}")
    return result.stdout


def test_every_shell_and_python_block_runs(tmp_path, make_account, pds, proxy, feed_url, pg_url):
    blocks = readme_blocks(README.read_text())
    runnable = [b for b in blocks if b.lang in RUN and b.not_run is None]
    assert len(runnable) >= 5, "the README lost its examples"
    for block in blocks:
        if block.lang == "json":
            json.loads(block.code)
    account = make_account("readme")
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    launcher = tmp_path / ".venv" / "bin" / "skypost"
    launcher.write_text(LAUNCHER.format(python=sys.executable))
    launcher.chmod(0o755)
    env = cli_env(tmp_path)

    # what `make run` does in this folder: init, then serve (API, dashboard, a worker)
    init = subprocess.run([str(launcher), "init"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=60)
    assert init.returncode == 0, init.stderr
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        server = subprocess.Popen(SKYPOST + ["serve", "--port", str(port)], cwd=tmp_path, env=env,
                                  stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_serving(base, server, log)
        placeholders = {
            "you.bsky.social": account.handle,
            "xxxx-xxxx-xxxx-xxxx": account.app_password,
            "https://bsky.social": proxy.url,  # the account's PDS: the local one
            "https://HOST": base,  # the server that `make run` started
            "https://blog.example.com/feed.xml": feed_url,
            "postgresql://skypost@db.internal/skypost": pg_url,
            "SKYPOST_SECRET_KEY=...": f"SKYPOST_SECRET_KEY={TEST_KEY}",
            "--host 0.0.0.0": "--host 127.0.0.1",  # tests listen on loopback only
        }
        outputs = {b.line: run_block(b, i, tmp_path, env, placeholders)
                   for i, b in enumerate(runnable)}
        assert any(out.strip().splitlines()[:1] == ["pending"] for out in outputs.values()), outputs
        # what the blocks did is real: the embedded worker published the posts they submitted
        deadline = time.monotonic() + 60
        while True:
            statuses = {pid: status_of(tmp_path, env, pid) for pid in ("42", "43", "hook-1")}
            if all(s == "completed" for s in statuses.values()):
                break
            assert time.monotonic() < deadline, statuses
            time.sleep(0.5)
    finally:
        server.terminate()
        server.wait(timeout=60)
    texts = [p["value"]["text"] for p in pds.list_posts(account.did)]
    assert any("Hello Bluesky" in t for t in texts) and any("From a webhook" in t for t in texts)
    assert any("The newest post" in t for t in texts)  # the feed's --backfill 1
    assert not any("An older post" in t for t in texts)


def status_of(folder: Path, env: dict[str, str], post_id: str) -> str | None:
    result = subprocess.run(SKYPOST + ["status", post_id, "--json"], cwd=folder, env=env,
                            capture_output=True, text=True, timeout=60)
    return json.loads(result.stdout)["status"] if result.returncode == 0 else None


# --- the synopsis --------------------------------------------------------------------------

OPTION = re.compile(r"--[a-z][a-z-]*")


def synopsis_block(text: str) -> str:
    """The fenced block of the section "The command line"."""
    section = text.split("## The command line", 1)[1]
    return readme_blocks(section)[0].code


def synopsis(code: str) -> dict[tuple[str, ...], tuple[set[str], bool]]:
    """Each command path → (the options the synopsis shows, whether it elides some)."""
    entries: list[str] = []
    for line in code.splitlines():
        if line.startswith(" ") and entries:
            entries[-1] += " " + line.strip()  # a continuation
        elif line.strip():
            entries.append(line.strip())
    found: dict[tuple[str, ...], tuple[set[str], bool]] = {}
    for entry in entries:
        entry = re.split(r"\s{2,}\(", entry, maxsplit=1)[0]  # a trailing comment
        for part in entry.split(" | "):
            words = part.removeprefix("skypost ").split()
            path = resolve(words)
            elided = "..." in words or "(the" in part
            options, was_elided = found.get(path, (set(), False))
            found[path] = (options | set(OPTION.findall(part)), was_elided or elided)
    return found


def resolve(words: list[str]) -> tuple[str, ...]:
    """The longest command path named by the leading words."""
    command: click.Command = main
    path: list[str] = []
    with click.Context(main) as ctx:
        for word in words:
            if not isinstance(command, click.Group):
                break
            sub = command.get_command(ctx, word)
            if sub is None:
                break
            command, path = sub, [*path, word]
    assert path, f"no command in {' '.join(words)!r}"
    return tuple(path)


CommandPath = tuple[str, ...]


def leaf_commands(group: click.Group, path: CommandPath = ()) -> dict[CommandPath, click.Command]:
    out: dict[CommandPath, click.Command] = {}
    with click.Context(group) as ctx:
        for name in group.list_commands(ctx):
            command = group.get_command(ctx, name)
            assert command is not None
            if isinstance(command, click.Group):
                out.update(leaf_commands(command, (*path, name)))
            else:
                out[(*path, name)] = command
    return out


def help_text(path: tuple[str, ...]) -> str:
    result = subprocess.run(SKYPOST + [*path, "--help"], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "COLUMNS": "100"})
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_command_line_synopsis_matches_the_help():
    shown = synopsis(synopsis_block(README.read_text()))
    commands = leaf_commands(main)
    missing = set(commands) - set(shown)
    assert not missing, f"commands missing from the README: {sorted(missing)}"
    for path, (options, elided) in shown.items():
        assert path in commands, f"the README names {' '.join(path)}, which is not a command"
        text = help_text(path)
        for option in options:
            assert re.search(rf"(^|[\s,/]){re.escape(option)}(?![\w-])", text, re.M), \
                f"skypost {' '.join(path)} --help has no {option}"
        if elided:
            continue
        own = {opt for p in commands[path].params if isinstance(p, click.Option)
               for opt in [*p.opts, *p.secondary_opts] if opt.startswith("--")} - {"--help"}
        lacking = sorted(own - options)
        assert not lacking, f"the README's skypost {' '.join(path)} lacks {lacking}"
