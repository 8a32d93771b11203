"""CLI manners, as a person meets them: a hidden password prompt on a terminal, advice for a
password that is not an app password, a status overview that starts with a sentence, retries
that say when there is nothing to retry, a second Ctrl-C that exits at once, help text that is
complete and never cut, refusals that say how to allow private addresses, re-submits that say
what happened, and --backfill. Real processes against the local PDS."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time

import click
import httpx
import pytest

from skypost.cli import main
from tests.conftest import TEST_KEY
from tests.support.faultproxy import delay
from tests.support.pds import free_port

SKYPOST = [sys.executable, "-m", "skypost.cli"]
CREATE = "com.atproto.repo.createRecord"


@pytest.fixture
def env(tmp_path):
    """This process's environment (PYTHONPATH reaches the child), a fresh SQLite database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKYPOST_")}
    env.update(
        SKYPOST_DATABASE_URL=f"sqlite:///{tmp_path}/skypost.db",
        SKYPOST_SECRET_KEY=TEST_KEY,
        SKYPOST_ALLOW_PRIVATE_URLS="1",
        SKYPOST_POLL_INTERVAL="0.1",
        SKYPOST_JOB_LEASE="5",
        COLUMNS="80",
    )
    assert run(env, "init").returncode == 0
    return env


def run(env, *args, stdin=None, timeout=60):
    return subprocess.run(
        SKYPOST + list(args), env=env, input=stdin, capture_output=True, text=True, timeout=timeout
    )


def add(env, account, proxy):
    result = run(
        env,
        "account",
        "add",
        account.handle,
        "--password-stdin",
        "--service",
        proxy.url,
        stdin=account.app_password + "\n",
    )
    assert result.returncode == 0, result.stderr
    return result


def read_until(fd: int, needle: bytes, timeout: float = 30) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while needle not in seen:
        assert time.monotonic() < deadline, seen
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # the child closed the terminal
                break
            seen += chunk
    return seen


def test_account_add_prompts_for_the_password_on_a_terminal_without_echo(env, make_account, proxy):
    alice = make_account("tty")
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        SKYPOST + ["account", "add", alice.handle, "--service", proxy.url],
        env=env,
        stdin=follower,
        stdout=follower,
        stderr=follower,
        close_fds=True,
    )
    os.close(follower)
    try:
        read_until(leader, b"App password")
        os.write(leader, alice.app_password.encode() + b"\n")
        rest = read_until(leader, b"added @")
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(leader)
    assert alice.app_password.encode() not in rest  # the terminal did not echo it
    assert b"does not look like an app password" not in rest
    listed = json.loads(run(env, "account", "list", "--json").stdout)
    assert [a["handle"] for a in listed] == [alice.handle]
    # without a terminal and without --password-stdin: refused, with the way out
    piped = run(env, "account", "add", "bob.test", "--service", proxy.url, stdin="")
    assert piped.returncode == 2 and "--password-stdin" in piped.stderr


def test_a_main_password_gets_a_warning_pointing_to_app_passwords(env, make_account, proxy):
    alice = make_account("mainpw")
    result = run(
        env,
        "account",
        "add",
        alice.handle,
        "--password-stdin",
        "--service",
        proxy.url,
        stdin="my main password\n",
    )
    assert result.returncode == 2  # the PDS refuses it; nothing stored
    assert "does not look like an app password" in result.stderr
    assert "Settings → Privacy and security → App passwords" in result.stderr
    assert "my main password" not in result.stdout + result.stderr
    assert "does not look like" not in add(env, alice, proxy).stderr


def test_status_overview_starts_with_a_sentence_about_the_worker(env):
    first = run(env, "status").stdout.splitlines()[0]
    assert first == "worker: never seen; run `skypost worker` (or `skypost serve`)"
    worker = subprocess.Popen(
        SKYPOST + ["worker"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            first = run(env, "status").stdout.splitlines()[0]
            if first.startswith("worker: running"):
                break
            assert time.monotonic() < deadline, first
            time.sleep(0.2)
        assert re.fullmatch(r"worker: running, last heartbeat \d+ s ago", first), first
        assert run(env, "pause").returncode == 0
        paused = run(env, "status").stdout.splitlines()[0]
        assert paused.endswith("; syndication paused until `skypost resume`"), paused
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0


def test_retry_with_nothing_to_retry_says_so(env, make_account, pds, proxy):
    alice = make_account("noretry")
    add(env, alice, proxy)
    assert (
        run(env, "submit", "--id", "1", "--title", "Done", "--url", "https://e.com/1").returncode
        == 0
    )
    assert (
        run(
            env,
            "submit",
            "--id",
            "2",
            "--title",
            "Kept",
            "--url",
            "https://e.com/2",
            "--no-syndicate",
        ).returncode
        == 0
    )
    assert run(env, "worker", "--burst").returncode == 0
    done = run(env, "retry", "1")
    assert done.returncode == 0
    assert "nothing to retry: post 1 is already live on every account" in done.stdout
    kept = run(env, "retry", "2")
    assert "nothing to retry: post 2 stays skipped (" in kept.stdout
    assert len(pds.list_posts(alice.did)) == 1


def test_resubmitting_a_known_id_with_other_content_says_it_was_not_updated(env):
    first = run(env, "submit", "--id", "7", "--title", "First", "--url", "https://e.com/7")
    assert first.returncode == 0 and "already" not in first.stderr
    same = run(env, "submit", "--id", "7", "--title", "First", "--url", "https://e.com/7")
    assert same.stderr.strip() == "post 7: already submitted"
    other = run(
        env, "submit", "--id", "7", "--title", "Edited", "--url", "https://e.com/7", "--json"
    )
    assert other.returncode == 0 and "already submitted; content not updated" in other.stderr
    assert json.loads(other.stdout)["id"] == "7"  # --json stays JSON on stdout
    assert "Edited" not in run(env, "status").stdout


def test_submit_backfill_sends_a_post_dated_before_activation(env, make_account, proxy):
    add(env, make_account("backfill"), proxy)
    old = ["--published-at", "2001-02-03T04:05:06Z", "--url", "https://e.com/old", "--json"]
    refused = json.loads(run(env, "submit", "--id", "old-1", "--title", "Old", *old).stdout)
    assert refused["status"] == "skipped" and "activated" in refused["reason"]
    forced = json.loads(
        run(env, "submit", "--id", "old-2", "--title", "Old", *old, "--backfill").stdout
    )
    assert forced["status"] == "pending", forced


def test_private_address_refusals_say_how_to_allow_them(env):
    strict = {k: v for k, v in env.items() if k != "SKYPOST_ALLOW_PRIVATE_URLS"}
    hint = "set SKYPOST_ALLOW_PRIVATE_URLS=1 to allow private addresses"
    service = run(
        strict,
        "account",
        "add",
        "x.test",
        "--password-stdin",
        "--service",
        "http://127.0.0.1:9",
        stdin="abcd-efgh-ijkl-mnop\n",
    )
    assert service.returncode == 2 and hint in service.stderr
    feed = run(strict, "feed", "add", "http://10.0.0.1:9/feed.xml")
    assert feed.returncode == 2 and hint in feed.stderr, feed.stderr
    preview = run(strict, "preview", "--id", "p", "--title", "T", "--url", "http://192.168.0.1:9/p")
    assert preview.returncode == 0 and hint in preview.stderr, preview.stderr


def commands(group: click.Group, ctx: click.Context, path: tuple[str, ...] = ()):
    yield path, group
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None
        if isinstance(command, click.Group):
            yield from commands(command, ctx, (*path, name))
        else:
            yield (*path, name), command


def test_every_option_has_help_and_no_help_line_is_cut(env):
    with click.Context(main) as ctx:
        found = list(commands(main, ctx))
    assert len(found) > 20
    for path, command in found:
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help, f"skypost {' '.join(path)} {param.opts[0]} has no help text"
        shown = run(env, *path, "--help")  # COLUMNS=80, as in a narrow terminal
        assert shown.returncode == 0, shown.stderr
        for line in shown.stdout.splitlines():
            assert not line.endswith("...") or line.startswith("Usage:"), (path, line)


def wait_running(proc: subprocess.Popen, seconds: float) -> None:
    """The process is still running `seconds` later (a graceful stop is waiting)."""
    time.sleep(seconds)
    assert proc.poll() is None


@pytest.mark.parametrize("command", ["worker", "serve"])
def test_a_second_ctrl_c_exits_at_once(env, make_account, proxy, command):
    add(env, make_account("ctrlc"), proxy)
    proxy.add_rule(CREATE, delay(30), times=1)  # the delivery in hand takes 30 s
    assert (
        run(env, "submit", "--id", "1", "--title", "Slow", "--url", "https://e.com/1").returncode
        == 0
    )
    args = ["serve", "--port", str(free_port())] if command == "serve" else ["worker"]
    proc = subprocess.Popen(
        SKYPOST + args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        assert proxy.wait_for_calls(CREATE, 1, timeout=30)
        proc.send_signal(signal.SIGINT)
        wait_running(proc, 1.5)  # the first Ctrl-C waits for the delivery in hand
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=10)
        assert time.monotonic() - started < 5
    finally:
        if proc.poll() is None:
            proc.kill()
    output = proc.stdout.read()
    assert code == 130, output
    assert "Ctrl-C again to exit at once" in output and "second Ctrl-C: exiting now" in output


def test_a_single_ctrl_c_stops_serve_gracefully(env):
    port = free_port()
    proc = subprocess.Popen(
        SKYPOST + ["serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
