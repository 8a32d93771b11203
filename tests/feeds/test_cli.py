"""`skypost feed …` as a user runs it: real processes, the documented exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from skypost import Skypost
from skypost.config import load_settings
from tests.conftest import TEST_KEY
from tests.feeds.builders import E, entries, rss, ts

SKYPOST = [sys.executable, "-m", "skypost.cli"]


@pytest.fixture
def cli_env(db_url):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKYPOST_")}
    env.update(SKYPOST_DATABASE_URL=db_url, SKYPOST_SECRET_KEY=TEST_KEY, SKYPOST_ALLOW_PRIVATE_URLS="1")
    return env


def run(env, *args):
    return subprocess.run(SKYPOST + list(args), env=env, capture_output=True, text=True, timeout=60)


def test_feed_commands(cli_env, db_url, feed_server, tmp_path):
    import time

    now = time.time()
    backlog = entries(3, start=now)
    feed_server.set("/feed.xml", rss(backlog))
    url = feed_server.url()
    with Skypost(load_settings(env={}, database_url=db_url, secret_key=TEST_KEY)) as app:
        app.add_account("alice.example.com", "pw", service="https://pds.invalid", verify=False)

    bad = [
        (["feed", "add", "ftp://example.com/feed"], "url: must be an http:// or https:// URL"),
        (["feed", "add", url, "--account", "nobody.example.com"], "unknown account @nobody.example.com"),
        (["feed", "add", feed_server.url("/missing")], "cannot fetch the feed: HTTP 404"),
        (["feed", "add", url, "--interval", "1"], "interval: must be at least 60 seconds"),
        (["feed", "remove", url], "no feed"),
        (["feed", "poll", url], "no feed"),
    ]
    for args, message in bad:
        result = run(cli_env, *args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert message in result.stderr, (args, result.stderr)
    assert json.loads(run(cli_env, "feed", "list", "--json").stdout) == []

    added = run(cli_env, "feed", "add", url, "--account", "@Alice.example.com", "--interval", "600",
                "--backfill", "1")
    assert added.returncode == 0, added.stderr
    assert f"added feed 1: {url} (Test blog)" in added.stdout
    assert "3 entr(ies) already there" in added.stdout and "backfill: feed:1:" in added.stdout
    again = run(cli_env, "feed", "add", url)
    assert again.returncode == 2 and "already added" in again.stderr

    fresh = E(guid="urn:post:4", title="Fresh post", link="https://blog.example.com/post/4", published=ts(now + 5))
    feed_server.set("/feed.xml", rss([fresh] + backlog))
    polled = run(cli_env, "feed", "poll", url)
    assert polled.returncode == 0, polled.stderr
    assert "4 entr(ies), 1 new, 1 submitted" in polled.stdout
    assert "submitted feed:1:" in polled.stdout and "(pending) Fresh post" in polled.stdout
    assert "not modified" in run(cli_env, "feed", "poll").stdout  # all feeds; a 304 now

    feed_server.set("/feed.xml", b"<html><body>maintenance</body></html>", content_type="text/html")
    broken = run(cli_env, "feed", "poll", url, "--json")
    assert broken.returncode == 0
    assert "HTML page" in json.loads(broken.stdout)[0]["error"]

    listed = json.loads(run(cli_env, "feed", "list", "--json").stdout)
    assert len(listed) == 1
    info = listed[0]
    assert info["url"] == url and info["accounts"] == ["alice.example.com"] and info["interval"] == 600
    assert info["entries_submitted"] == 2 and info["error_count"] == 1 and "HTML page" in info["last_error"]
    assert info["enabled"] is True and info["next_poll_at"] and info["last_polled_at"]
    human = run(cli_env, "feed", "list").stdout
    assert url in human and "error (1 in a row)" in human

    status = json.loads(run(cli_env, "status", "--json").stdout)
    feed_posts = [p for p in status["posts"] if p["id"].startswith("feed:1:")]
    assert sorted(p["title"] for p in feed_posts) == ["Fresh post", "Post number 3"]
    assert all(p["deliveries"][0]["account"] == "alice.example.com" for p in feed_posts)

    removed = run(cli_env, "feed", "remove", url)
    assert removed.returncode == 0 and f"removed feed 1: {url}" in removed.stdout
    assert json.loads(run(cli_env, "feed", "list", "--json").stdout) == []
    assert "no feeds yet" in run(cli_env, "feed", "list").stdout
