"""The dashboard in a real browser (Playwright + Debian's Chromium) against `skypost serve`
running as a real process, with a real PDS account behind the fault proxy."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect, sync_playwright

from tests.conftest import TEST_KEY
from tests.support.faultproxy import delay, error
from tests.support.pds import free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CREATE = "com.atproto.repo.createRecord"
SKYPOST = [sys.executable, "-m", "skypost.cli"]


def run(env, *args, stdin=None):
    result = subprocess.run(SKYPOST + list(args), env=env, input=stdin, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture
def server(tmp_path, make_account, proxy):
    """`skypost serve` on a free loopback port, with one account and one token."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKYPOST_")}
    env.update(SKYPOST_DATABASE_URL=f"sqlite:///{tmp_path}/skypost.db", SKYPOST_SECRET_KEY=TEST_KEY,
               SKYPOST_ALLOW_PRIVATE_URLS="1", SKYPOST_POLL_INTERVAL="0.1", SKYPOST_JOB_LEASE="5",
               SKYPOST_RETRY_DELAYS="1,1,1")
    alice = make_account("web")
    run(env, "init")
    run(env, "account", "add", alice.handle, "--password-stdin", "--service", proxy.url, stdin=alice.app_password)
    token = run(env, "token", "create", "browser").strip()
    port = free_port()
    log = open(tmp_path / "serve.log", "w")
    proc = subprocess.Popen(SKYPOST + ["serve", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.1)
        yield base, token, alice
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
            log.close()
        assert code == 0, (tmp_path / "serve.log").read_text()  # a graceful shutdown


def test_dashboard_follows_a_post_live_and_retries_a_failed_one(server, proxy, pds):
    base, token, alice = server
    api = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    ARTIFACTS.mkdir(exist_ok=True)
    expect.set_options(timeout=20_000)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(20_000)
            page.goto(base + "/")
            expect(page).to_have_url(base + "/login?next=%2F")
            page.fill("#token", token)
            page.click("button:has-text('Sign in')")
            expect(page).to_have_url(base + "/")
            expect(page.locator("h1")).to_have_text("Posts")

            # a post through the API, slowed down at the PDS so that it is seen while pending
            proxy.add_rule(CREATE, delay(3), times=1)
            r = api.post("/api/v1/posts", json={"id": "hello-1", "title": "Hello from skypost serve",
                                                "url": "https://blog.example.com/hello",
                                                "excerpt": "Syndicated in the background, exactly once."})
            assert r.status_code == 202, r.text
            page.goto(base + r.headers["location"].replace("/api/v1", ""))
            page.evaluate("window.__same_page = true")  # lost if the page reloads
            status = page.locator("#post-status")
            expect(status).to_contain_text("Syndicating to Bluesky…")
            expect(status).to_have_attribute("data-status", "completed")
            expect(status).to_contain_text("Live on Bluesky")
            assert page.evaluate("window.__same_page") is True
            link = page.locator("a", has_text="View on Bluesky")
            assert link.get_attribute("href").startswith(f"https://bsky.app/profile/{alice.did}/post/")

            # a post that Bluesky refuses once: it turns failed live, and Retry publishes it in place
            proxy.add_rule(CREATE, error(400, {"error": "InvalidRequest", "message": "Invalid record (once)"}),
                           times=1)
            assert api.post("/api/v1/posts", json={"id": "second", "title": "A second post, retried",
                                                   "url": "https://blog.example.com/second"}).status_code == 202
            page.goto(base + "/posts/second")
            page.evaluate("window.__same_page = true")
            expect(status).to_have_attribute("data-status", "failed")
            expect(status).to_contain_text("Invalid record (once)")
            page.click("#retry")
            expect(status).to_have_attribute("data-status", "completed")
            assert page.evaluate("window.__same_page") is True
            assert len(pds.list_posts(alice.did)) == 2

            api.post("/api/v1/posts", json={"id": "draft-7", "title": "Kept on the site only",
                                            "url": "https://blog.example.com/draft", "dont_syndicate": True})
            page.goto(base + "/")
            expect(page.locator("table.posts tbody tr")).to_have_count(3)
            page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
            page.goto(base + "/accounts")
            expect(page.locator("h2", has_text=alice.handle)).to_be_visible()
        finally:
            browser.close()
    api.close()
