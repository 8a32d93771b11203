"""Replies and reply rules from the CLI (real processes), on the full network."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import TEST_KEY

SKYPOST = [sys.executable, "-m", "skypost.cli"]


@pytest.fixture
def cli_env(db_url):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKYPOST_")}
    env.update(SKYPOST_DATABASE_URL=db_url, SKYPOST_SECRET_KEY=TEST_KEY, SKYPOST_ALLOW_PRIVATE_URLS="1",
               SKYPOST_JOB_LEASE="2", SKYPOST_POLL_INTERVAL="0.1", SKYPOST_RETRY_DELAYS="1,1,1")
    return env


def run(env, *args, stdin=None):
    return subprocess.run(SKYPOST + list(args), env=env, input=stdin, capture_output=True, text=True,
                          timeout=120)


def test_cli_reply_and_reply_rules(cli_env, network):
    alice = network.create_account("clireply")
    assert run(cli_env, "init").returncode == 0
    bad = run(cli_env, "account", "add", alice.handle, "--password-stdin", "--service", network.pds_url,
              "--replies", "friends", stdin=alice.app_password + "\n")
    assert bad.returncode == 2 and "replies" in bad.stderr and "friends" in bad.stderr
    added = run(cli_env, "account", "add", alice.handle, "--password-stdin", "--service", network.pds_url,
                "--replies", "mentioned", "--no-quotes", stdin=alice.app_password + "\n")
    assert added.returncode == 0, added.stderr
    listed = json.loads(run(cli_env, "account", "list", "--json").stdout)
    assert listed[0]["replies"] == ["mentioned"] and listed[0]["quotes"] is False
    updated = run(cli_env, "account", "update", alice.handle, "--replies", "following", "--quotes")
    assert updated.returncode == 0, updated.stderr
    listed = json.loads(run(cli_env, "account", "list", "--json").stdout)
    assert listed[0]["replies"] == ["following"] and listed[0]["quotes"] is True

    for flags in (["--replies", "nobody", "--replies", "following"], ["--replies", "all"]):
        out = run(cli_env, "submit", "--id", "x", "--title", "T", "--url", "https://blog.example.com/x", *flags)
        assert out.returncode == 2 and "replies" in out.stderr, out.stderr
    preview = run(cli_env, "preview", "--id", "p", "--text", "Hi", "--url", "https://blog.example.com/p",
                  "--replies", "nobody", "--no-quotes")
    assert preview.returncode == 0, preview.stderr
    writes = json.loads(preview.stdout)["writes"]
    assert [w["collection"] for w in writes] == [
        "app.bsky.feed.post", "app.bsky.feed.threadgate", "app.bsky.feed.postgate"]
    assert writes[1]["value"]["allow"] == [] and len({w["rkey"] for w in writes}) == 1

    out = run(cli_env, "submit", "--id", "42", "--title", "Hello", "--url", "https://blog.example.com/42",
              "--replies", "nobody")
    assert out.returncode == 0, out.stderr
    reply = run(cli_env, "reply", "42", "--reply-id", "c1", "--text", "From the comments", "--json")
    assert reply.returncode == 0, reply.stderr
    data = json.loads(reply.stdout)
    assert data["id"] == "c1" and data["reply_to"] == "42" and data["status"] == "pending"
    for args, field in ((["nope", "--reply-id", "c1", "--text", "x"], "unknown post"),
                        (["42", "--reply-id", "c2", "--text", " "], "text"),
                        (["42", "--reply-id", "c2", "--text", "x", "--parent", "nope"], "parent")):
        out = run(cli_env, "reply", *args)
        assert out.returncode == 2 and field in out.stderr, (args, out.stderr)
    worker = run(cli_env, "worker", "--burst")
    assert worker.returncode == 0, worker.stderr
    again = run(cli_env, "reply", "42", "--reply-id", "c1", "--text", "From the comments", "--json")
    assert again.returncode == 0 and "already submitted" in again.stderr
    assert json.loads(again.stdout)["status"] == "completed"
    status = run(cli_env, "status", "42")
    assert "reply c1: completed" in status.stdout, status.stdout
    overview = run(cli_env, "status", "--json")
    assert [p["id"] for p in json.loads(overview.stdout)["posts"]] == ["42"]  # replies are not listed
    post = json.loads(run(cli_env, "status", "42", "--json").stdout)["deliveries"][0]
    gate = network.wait_for(lambda: network.appview("app.bsky.feed.getPostThread", uri=post["uri"])
                            .get("threadgate"))
    assert gate["record"]["allow"] == []
    assert len(list(network.iter_records(alice.did, "app.bsky.feed.post"))) == 2
