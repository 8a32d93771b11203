"""The CLI as a user runs it: real processes, a real PDS, the documented exit codes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import TEST_KEY
from tests.support.faultproxy import delay

SKYPOST = [sys.executable, "-m", "skypost.cli"]
CREATE = "com.atproto.repo.createRecord"


@pytest.fixture
def cli_env(db_url, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKYPOST_")}
    env.update(SKYPOST_DATABASE_URL=db_url, SKYPOST_SECRET_KEY=TEST_KEY, SKYPOST_ALLOW_PRIVATE_URLS="1",
               SKYPOST_JOB_LEASE="2", SKYPOST_POLL_INTERVAL="0.1", SKYPOST_RETRY_DELAYS="1,1,1")
    return env


def run(env, *args, stdin=None, cwd=None, timeout=60):
    return subprocess.run(SKYPOST + list(args), env=env, input=stdin, capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)


def test_cli_end_to_end(cli_env, make_account, pds, proxy, tmp_path):
    alice = make_account("cli")
    assert run(cli_env, "init").returncode == 0
    added = run(cli_env, "account", "add", alice.handle, "--password-stdin", "--service", proxy.url,
                stdin=alice.app_password + "\n")
    assert added.returncode == 0, added.stderr
    assert alice.app_password not in added.stdout + added.stderr
    listed = json.loads(run(cli_env, "account", "list", "--json").stdout)
    assert listed[0]["handle"] == alice.handle and listed[0]["did"] == alice.did
    assert "password" not in json.dumps(listed)

    proxy.reset_counts()
    t0 = time.perf_counter()
    out = run(cli_env, "submit", "--id", "42", "--title", "Hello from the CLI", "--url",
              "https://blog.example.com/hello", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["status"] == "pending"
    assert proxy.calls() == 0  # no network call on submit
    assert time.perf_counter() - t0 < 30

    doc = tmp_path / "post.json"
    doc.write_text(json.dumps({"id": "43", "title": "From a file", "url": "https://blog.example.com/file"}))
    assert run(cli_env, "submit", "--json-file", str(doc)).returncode == 0

    worker = run(cli_env, "worker", "--burst")
    assert worker.returncode == 0, worker.stderr
    status = json.loads(run(cli_env, "status", "42", "--json").stdout)
    assert status["status"] == "completed"
    assert set(status) == {"id", "status", "reason", "deliveries", "interactions"}
    assert set(status["deliveries"][0]) == {"account", "did", "status", "attempts", "next_attempt_at", "uri",
                                            "cid", "url", "error"}
    assert len(pds.list_posts(alice.did)) == 2
    log = json.loads(run(cli_env, "log", "--json", "--limit", "100").stdout)
    assert any(e["kind"] == "published" for e in log)
    assert alice.app_password not in run(cli_env, "log").stdout


def test_cli_bad_input_exits_2_and_writes_nothing(cli_env, make_account, proxy):
    assert run(cli_env, "init").returncode == 0
    cases = [
        ["submit", "--id", "", "--title", "t", "--url", "https://e.com"],
        ["submit", "--id", "1", "--title", "t"],
        ["submit", "--id", "1", "--title", "t", "--url", "not a url"],
        ["submit", "--id", "1", "--title", "t", "--url", "https://e.com", "--account", "nobody.test"],
        ["status", "does-not-exist"],
        ["retry", "does-not-exist"],
        ["account", "add", "not_a_handle", "--password-stdin"],
    ]
    for args in cases:
        result = run(cli_env, *args, stdin="x\n")
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert result.stderr.strip().startswith("error:"), result.stderr
    posts = json.loads(run(cli_env, "status", "--json").stdout)["posts"]
    assert posts == []
    alice = make_account("clibad")
    wrong = run(cli_env, "account", "add", alice.handle, "--password-stdin", "--service", proxy.url,
                stdin="aaaa-bbbb-cccc-dddd\n")
    assert wrong.returncode == 2 and "refused the login" in wrong.stderr
    assert json.loads(run(cli_env, "account", "list", "--json").stdout) == []
    bad_json = run(cli_env, "submit", "--json-file", "-", stdin='{"id": "1", "title": "t", "url": "https://e.com", "x": 1}')
    assert bad_json.returncode == 2 and "x: unknown field" in bad_json.stderr


def test_killed_worker_job_is_recovered_after_lease(cli_env, make_account, pds, proxy):
    """SIGKILL while a create is in flight: after the lease expires another worker
    claims the job, finds the record and the post exists exactly once."""
    alice = make_account("kill")
    assert run(cli_env, "init").returncode == 0
    assert run(cli_env, "account", "add", alice.handle, "--password-stdin", "--service", proxy.url,
               stdin=alice.app_password + "\n").returncode == 0
    proxy.add_rule(CREATE, delay(2.0), times=1)
    assert run(cli_env, "submit", "--id", "1", "--title", "Killed", "--url", "https://e.com/1").returncode == 0
    worker = subprocess.Popen(SKYPOST + ["worker"], env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proxy.wait_for_calls(CREATE, 1, timeout=30)
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        if worker.poll() is None:
            worker.kill()
    status = json.loads(run(cli_env, "status", "1", "--json").stdout)
    assert status["status"] == "pending" and status["deliveries"][0]["attempts"] == 1
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(pds.list_posts(alice.did)) < 1:
        time.sleep(0.2)  # the delayed create reaches the PDS after the worker died
    time.sleep(2.5)  # the 2 s lease runs out
    second = run(cli_env, "worker", "--burst")
    assert second.returncode == 0, second.stderr
    status = json.loads(run(cli_env, "status", "1", "--json").stdout)
    assert status["status"] == "completed", status
    assert len(pds.list_posts(alice.did)) == 1
    assert proxy.calls(CREATE) == 1  # found by getRecord, not created again


def test_sigterm_finishes_the_delivery_in_hand(cli_env, make_account, pds, proxy):
    alice = make_account("term")
    assert run(cli_env, "init").returncode == 0
    assert run(cli_env, "account", "add", alice.handle, "--password-stdin", "--service", proxy.url,
               stdin=alice.app_password + "\n").returncode == 0
    proxy.add_rule(CREATE, delay(1.0), times=1)
    assert run(cli_env, "submit", "--id", "1", "--title", "Term", "--url", "https://e.com/1").returncode == 0
    worker = subprocess.Popen(SKYPOST + ["worker"], env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    try:
        assert proxy.wait_for_calls(CREATE, 1, timeout=30)
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == 0, err
    status = json.loads(run(cli_env, "status", "1", "--json").stdout)
    assert status["status"] == "completed"
    assert len(pds.list_posts(alice.did)) == 1


def test_status_warns_when_no_worker_runs(cli_env, make_account, proxy):
    alice = make_account("warn")
    run(cli_env, "init")
    run(cli_env, "account", "add", alice.handle, "--password-stdin", "--service", proxy.url,
        stdin=alice.app_password + "\n")
    run(cli_env, "submit", "--id", "1", "--title", "Waiting", "--url", "https://e.com/1")
    result = run(cli_env, "status")
    assert result.returncode == 0
    assert "no worker has been seen recently" in result.stderr


def test_pause_resume_cli(cli_env, make_account, pds, proxy):
    alice = make_account("clipause")
    run(cli_env, "init")
    run(cli_env, "account", "add", alice.handle, "--password-stdin", "--service", proxy.url,
        stdin=alice.app_password + "\n")
    assert run(cli_env, "pause").returncode == 0
    run(cli_env, "submit", "--id", "1", "--title", "Paused", "--url", "https://e.com/1")
    run(cli_env, "worker", "--burst")
    assert json.loads(run(cli_env, "status", "1", "--json").stdout)["status"] == "paused"
    assert run(cli_env, "resume").returncode == 0
    run(cli_env, "worker", "--burst")
    assert json.loads(run(cli_env, "status", "1", "--json").stdout)["status"] == "completed"


def test_retry_sends_a_post_skipped_for_want_of_an_account(cli_env, make_account, pds, proxy):
    """Submitted before any account existed: `retry` judges it again against today's accounts."""
    assert run(cli_env, "init").returncode == 0
    first = run(cli_env, "submit", "--id", "1", "--title", "Early bird", "--url", "https://e.com/1", "--json")
    assert json.loads(first.stdout)["status"] == "skipped"
    assert run(cli_env, "submit", "--id", "2", "--title", "Not for Bluesky", "--url", "https://e.com/2",
               "--no-syndicate").returncode == 0
    still = run(cli_env, "retry", "1")
    assert still.returncode == 0 and "skipped (no account configured" in still.stdout
    assert json.loads(run(cli_env, "submit", "--id", "1", "--title", "Early bird", "--url",
                          "https://e.com/1", "--json").stdout)["status"] == "skipped"  # a re-submit is known

    alice = make_account("late")
    assert run(cli_env, "account", "add", alice.handle, "--password-stdin", "--service", proxy.url,
               stdin=alice.app_password + "\n").returncode == 0
    retried = run(cli_env, "retry", "1")
    assert retried.returncode == 0, retried.stderr
    assert "post 1: pending" in retried.stdout and f"@{alice.handle}: pending" in retried.stdout
    assert "skipped" in run(cli_env, "retry", "2").stdout  # skipped for what it is: stays skipped
    assert run(cli_env, "worker", "--burst").returncode == 0
    status = json.loads(run(cli_env, "status", "1", "--json").stdout)
    assert status["status"] == "completed" and status["reason"] is None, status
    assert json.loads(run(cli_env, "status", "2", "--json").stdout)["status"] == "skipped"
    assert run(cli_env, "retry", "1").returncode == 0
    assert run(cli_env, "worker", "--burst").returncode == 0
    posts = pds.list_posts(alice.did)
    assert len(posts) == 1 and "Early bird" in json.dumps(posts)
