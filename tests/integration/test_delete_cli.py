"""`skypost delete` as a user runs it (real processes, a real PDS), and a worker killed mid-delete."""

from __future__ import annotations

import json
import signal
import subprocess
import time

from tests.integration.test_cli import SKYPOST, cli_env, run  # noqa: F401 - cli_env is a fixture
from tests.support.faultproxy import delay

DELETE = "com.atproto.repo.deleteRecord"


def setup(env, account, proxy):
    assert run(env, "init").returncode == 0
    added = run(env, "account", "add", account.handle, "--password-stdin", "--service", proxy.url,
                stdin=account.app_password + "\n")
    assert added.returncode == 0, added.stderr
    out = run(env, "submit", "--id", "7", "--title", "Take me back", "--url", "https://blog.example.com/7")
    assert out.returncode == 0, out.stderr
    assert run(env, "worker", "--burst").returncode == 0


def test_cli_delete_exit_codes_and_repost(cli_env, make_account, pds, proxy):  # noqa: F811
    alice = make_account("clidel")
    setup(cli_env, alice, proxy)
    assert len(pds.list_posts(alice.did)) == 1
    unknown = run(cli_env, "delete", "nope")
    assert unknown.returncode == 2 and "unknown post id" in unknown.stderr
    out = run(cli_env, "delete", "7")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("post 7: deleting")
    assert run(cli_env, "worker", "--burst").returncode == 0
    data = json.loads(run(cli_env, "delete", "7", "--json").stdout)  # a second delete: its status
    assert data["status"] == "deleted" and data["deliveries"][0]["status"] == "deleted"
    assert pds.list_posts(alice.did) == []
    refused = run(cli_env, "retry", "7")
    assert refused.returncode == 2 and "--repost" in refused.stderr
    logged = json.loads(run(cli_env, "log", "--json").stdout)
    assert {"delete_requested", "record_deleted", "post_deleted"} <= {e["kind"] for e in logged}
    reposted = run(cli_env, "retry", "7", "--repost")
    assert reposted.returncode == 0, reposted.stderr
    assert run(cli_env, "worker", "--burst").returncode == 0
    records = pds.list_posts(alice.did)
    assert len(records) == 1
    assert json.loads(run(cli_env, "status", "7", "--json").stdout)["status"] == "completed"
    assert run(cli_env, "delete", "7").returncode == 0
    assert run(cli_env, "worker", "--burst").returncode == 0
    assert pds.list_posts(alice.did) == []


def test_a_worker_killed_during_the_delete_is_replaced(cli_env, make_account, pds, proxy):  # noqa: F811
    alice = make_account("killdel")
    setup(cli_env, alice, proxy)
    assert run(cli_env, "delete", "7").returncode == 0
    proxy.add_rule(DELETE, delay(2.0), times=1)  # the worker is inside the delete when it dies
    worker = subprocess.Popen(SKYPOST + ["worker"], env=cli_env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        assert proxy.wait_for_calls(DELETE, 1, timeout=30)
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert json.loads(run(cli_env, "status", "7", "--json").stdout)["status"] == "deleting"
    time.sleep(2.5)  # the dead worker's lease (SKYPOST_JOB_LEASE=2) runs out
    for _ in range(20):
        assert run(cli_env, "worker", "--burst").returncode == 0
        status = json.loads(run(cli_env, "status", "7", "--json").stdout)
        if status["status"] == "deleted":
            break
        time.sleep(0.5)
    assert status["status"] == "deleted", status
    assert pds.list_posts(alice.did) == []
