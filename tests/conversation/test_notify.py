"""Signed webhooks out: each event reaches a real receiver on 127.0.0.1 once by event id,
through failures and retries on the fake clock, signed the way skypost checks incoming
hooks; final answers fail at once; the CLI manages targets; two workers on PostgreSQL
never send one row twice."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import warnings
from typing import Any

import pytest

with warnings.catch_warnings():  # Starlette suggests httpx2; httpx (a project dependency) works the same
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from skypost.conversation.outbox import post_status_changed
from skypost.conversation import notify
from skypost.models import ValidationError
from skypost.store import queries as q
from skypost.store import queries_outbox as qo
from skypost.syndicator import requeue_post
from skypost.web import create_app
from skypost.web.tokens import create_token
from tests.conftest import TEST_KEY
from tests.conversation.support import (WebhookReceiver, insert_interaction, insert_post, outbox_rows,
                                        remove_interaction, run_until_settled)

SKYPOST = [sys.executable, "-m", "skypost.cli"]


def _events(app: Any, kind: str) -> list[dict[str, Any]]:
    return [e for e in app.events(limit=500) if e["kind"] == kind]


def test_each_event_reaches_the_receiver_once_by_id_through_failures(db_url, make_app, clock):
    app = make_app(db_url, notify_timeout=0.5)
    # what the receiver does with each event's attempts, in order (then "ok")
    scripts: dict[tuple[str, str], list[str]] = {}

    def plan(event: dict[str, Any]) -> str:
        key = (event["type"], event["data"].get("uri") or event["data"].get("id"))
        steps = scripts.get(key, [])
        return steps.pop(0) if steps else "ok"

    receiver = WebhookReceiver(clock, plan, slow_seconds=1.5)
    try:
        receiver.secret = app.add_notify(receiver.url)
        seq = insert_post(app, "p1", "https://blog.example.com/p1")
        reply = insert_interaction(app, seq, "reply", text="Nice post https://example.org/x", name="Bob")
        like = insert_interaction(app, seq, "like")
        repost = insert_interaction(app, seq, "repost")
        uris = {r["id"]: r["uri"] for r in _interactions(app)}
        scripts[("interaction.created", uris[reply])] = ["500", "500"]
        scripts[("interaction.created", uris[like])] = ["drop"]
        scripts[("interaction.created", uris[repost])] = ["slow"]
        remove_interaction(app, reply)
        with app.db.transaction() as conn:
            post_status_changed(conn, post_seq=seq, status="completed", now=app.clock())
        started = clock()

        run_until_settled(app, clock)

        hooks = [r for r in outbox_rows(app) if r["channel"] == "webhook"]
        assert len(hooks) == 5 and {r["status"] for r in hooks} == {"sent"}
        unique = receiver.unique()
        assert set(unique) == {r["event_id"] for r in hooks}  # each event, by id, and nothing else
        assert all(d.signature_problem is None for d in receiver.deliveries), \
            [d.signature_problem for d in receiver.deliveries]
        for d in receiver.deliveries:  # every retry carries the same id and the same document
            assert d.body == unique[d.event_id].body
            body = json.loads(d.body)
            assert body["id"] == d.event_id and body["type"] == d.event_type
        by_type = {(json.loads(d.body)["type"], json.loads(d.body)["data"].get("uri")): d
                   for d in unique.values()}
        created = json.loads(by_type[("interaction.created", uris[reply])].body)
        assert created["data"]["kind"] == "reply" and created["data"]["text"] == "Nice post https://example.org/x"
        assert created["data"]["post"] == {"id": "p1", "url": "https://blog.example.com/p1"}
        assert created["data"]["author"]["display_name"] == "Bob" and created["data"]["removed"] is False
        assert json.loads(by_type[("interaction.removed", uris[reply])].body)["data"]["removed"] is True
        status = json.loads(by_type[("post.status", None)].body)
        assert status["data"]["id"] == "p1" and status["data"]["status"] == "completed"
        # the failures really happened, and were retried on the schedule
        attempts = {r["event_id"]: r["attempts"] for r in hooks}
        reply_created = by_type[("interaction.created", uris[reply])].event_id
        assert attempts[reply_created] == 3
        assert sorted(attempts.values()) == [1, 1, 2, 2, 3]
        assert clock() - started >= 60 + 120
        # the removal went after its creation was done
        order = [(json.loads(d.body)["type"], d.answered) for d in receiver.deliveries
                 if json.loads(d.body)["data"].get("uri") == uris[reply]]
        assert order == [("interaction.created", "500"), ("interaction.created", "500"),
                         ("interaction.created", "ok"), ("interaction.removed", "ok")]
        assert len(_events(app, "notify_retry")) == 4 and len(_events(app, "notify_sent")) == 5
    finally:
        receiver.close()


def _interactions(app: Any) -> list[dict[str, Any]]:
    with app.db.connect() as conn:
        return conn.all("SELECT * FROM interactions ORDER BY id")


def test_final_answers_fail_at_once_and_exhausted_retries_fail(db_url, make_app, clock):
    app = make_app(db_url, notify_timeout=0.5)
    gone = WebhookReceiver(clock, lambda event: "410")
    missing = WebhookReceiver(clock, lambda event: "404")
    broken = WebhookReceiver(clock, lambda event: "503")
    try:
        for r in (gone, missing, broken):
            r.secret = app.add_notify(r.url, events=["interaction.created"])
        seq = insert_post(app, "p1", "https://blog.example.com/p1")
        insert_interaction(app, seq, "like")

        run_until_settled(app, clock)

        rows = {r["target"]: r for r in outbox_rows(app) if r["channel"] == "webhook"}
        assert rows[gone.url]["status"] == "failed" and rows[gone.url]["attempts"] == 1
        assert rows[missing.url]["status"] == "failed" and rows[missing.url]["attempts"] == 1
        assert rows[broken.url]["status"] == "failed" and rows[broken.url]["attempts"] == 4  # 3 retries
        assert len(gone.deliveries) == 1 and len(missing.deliveries) == 1 and len(broken.deliveries) == 4
        assert "HTTP 410" in rows[gone.url]["last_error"]
        failed = _events(app, "notify_failed")
        assert len(failed) == 3 and all(e["level"] == "error" and e["post_id"] == "p1" for e in failed)
        assert any("gave up after 4 attempt(s)" in e["message"] for e in failed)
        listed = {t["url"]: t for t in app.notify_targets()}
        assert listed[gone.url]["failed"] == 1 and listed[gone.url]["sent"] == 0
        assert listed[gone.url]["events"] == ["interaction.created"]
    finally:
        for r in (gone, missing, broken):
            r.close()


def test_targets_only_get_the_events_they_asked_for_and_removed_targets_nothing(sqlite_url, make_app, clock):
    app = make_app(sqlite_url)
    statuses = WebhookReceiver(clock)
    everything = WebhookReceiver(clock)
    try:
        statuses.secret = app.add_notify(statuses.url, events="post.status")
        everything.secret = app.add_notify(everything.url)
        seq = insert_post(app, "p1", "https://blog.example.com/p1")
        insert_interaction(app, seq, "like")
        with app.db.transaction() as conn:
            post_status_changed(conn, post_seq=seq, status="failed", now=app.clock())
        app.remove_notify(everything.url)
        run_until_settled(app, clock)
        assert [json.loads(d.body)["type"] for d in statuses.deliveries] == ["post.status"]
        assert everything.deliveries == []
        assert {r["status"] for r in outbox_rows(app) if r["target"] == everything.url} == {"skipped"}
    finally:
        statuses.close()
        everything.close()


def test_a_status_change_in_the_pipeline_queues_post_status(sqlite_url, make_app, clock):
    """The wiring: a post skipped on retry (no account takes it) tells the targets."""
    app = make_app(sqlite_url)
    app.add_notify("http://127.0.0.1:9/hook", events=["post.status"])
    seq = insert_post(app, "p1", "https://blog.example.com/p1")
    with app.db.transaction() as conn:
        q.set_post_status(conn, seq, "failed", None, app.clock())
        requeue_post(conn, seq, app.clock())
    rows = outbox_rows(app)
    assert [(r["type"], json.loads(r["payload"])["data"]["status"]) for r in rows] == [("post.status", "pending")]


def test_the_python_api_refuses_bad_targets(sqlite_url, make_app):
    app = make_app(sqlite_url)
    app.settings = app.settings.replace(allow_private_urls=False)
    for url, why in [("ftp://example.com/x", "only http"), ("http://127.0.0.1:8000/x", "loopback"),
                     ("http://10.1.2.3/x", "private"), ("http://[::1]/x", "loopback"), ("", "empty")]:
        with pytest.raises(ValidationError) as exc:
            app.add_notify(url)
        assert why in exc.value.errors["url"], exc.value.errors
    with pytest.raises(ValidationError) as exc:
        app.add_notify("https://example.com/x", events=["interaction.created", "nope"])
    assert "nope" in exc.value.errors["events"]
    assert app.notify_targets() == []


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(SKYPOST + list(args), env=env, capture_output=True, text=True, timeout=60)


def test_notify_cli_prints_the_secret_once_and_never_lists_it(tmp_path):
    env = {**os.environ, "SKYPOST_DATABASE_URL": f"sqlite:///{tmp_path}/s.db", "SKYPOST_SECRET_KEY": TEST_KEY,
           "SKYPOST_ALLOW_PRIVATE_URLS": "0", "PYTHONPATH": os.pathsep.join(sys.path)}
    assert _cli(env, "init").returncode == 0
    added = _cli(env, "notify", "add", "https://example.com/hook", "--events", "interaction.created,post.status")
    assert added.returncode == 0, added.stderr
    secret = added.stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", secret)
    again = _cli(env, "notify", "add", "https://example.com/hook")
    assert again.returncode == 2 and "already" in again.stderr
    private = _cli(env, "notify", "add", "http://127.0.0.1:8000/hook")
    assert private.returncode == 2 and "error: url: refused: 127.0.0.1 is a loopback address" in private.stderr
    bad = _cli(env, "notify", "add", "https://example.com/other", "--events", "interaction.liked")
    assert bad.returncode == 2 and "error: events:" in bad.stderr
    listed = _cli(env, "notify", "list")
    as_json = _cli(env, "notify", "list", "--json")
    assert listed.returncode == 0 and as_json.returncode == 0
    assert secret not in listed.stdout + as_json.stdout
    assert json.loads(as_json.stdout) == [{"url": "https://example.com/hook",
                                           "events": ["interaction.created", "post.status"],
                                           "created_at": json.loads(as_json.stdout)[0]["created_at"],
                                           "sent": 0, "pending": 0, "failed": 0}]
    assert "https://example.com/hook" in listed.stdout
    assert secret.encode() not in (tmp_path / "s.db").read_bytes()  # stored encrypted
    assert _cli(env, "notify", "remove", "https://example.com/nope").returncode == 2
    removed = _cli(env, "notify", "remove", "https://example.com/hook")
    assert removed.returncode == 0 and json.loads(_cli(env, "notify", "list", "--json").stdout) == []
    log = json.loads(_cli(env, "log", "--json").stdout)
    assert {"notify_added", "notify_removed"} <= {e["kind"] for e in log}


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_two_workers_on_postgresql_send_each_event_once(db_url, make_app, clock):
    first = make_app(db_url)
    second = make_app(db_url)
    receiver = WebhookReceiver(clock)
    count = 300
    try:
        receiver.secret = first.add_notify(receiver.url, events=["interaction.created"])
        seq = insert_post(first, "p1", "https://blog.example.com/p1")
        for _ in range(count):
            insert_interaction(first, seq, "like")
        with first.db.transaction() as conn:  # a second notify job, so that both workers drain at once
            q.insert_job(conn, kind="notify", args={}, run_at=first.clock(), now=first.clock())
        ran: list[int] = []
        started = time.perf_counter()
        threads = [threading.Thread(target=lambda a=a: ran.append(a.run_worker(burst=True)))
                   for a in (first, second)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        elapsed = time.perf_counter() - started
        hooks = [r for r in outbox_rows(first) if r["channel"] == "webhook"]
        assert len(hooks) == count and {r["status"] for r in hooks} == {"sent"}
        assert {r["attempts"] for r in hooks} == {1}
        assert len(receiver.deliveries) == count == len(receiver.unique())  # not one twice
        assert len(ran) == 2 and sum(ran) >= 2  # both workers ran notify jobs
        print(f"\n{count} webhooks (+{count} Webmention rows skipped) by two workers in {elapsed:.2f} s: "
              f"{count / elapsed:.0f} events/s")
    finally:
        receiver.close()


def test_the_dashboard_lists_targets_and_recent_deliveries(sqlite_url, make_app, clock):
    app = make_app(sqlite_url)
    failing = WebhookReceiver(clock, lambda event: "404")
    try:
        secret = app.add_notify(failing.url, events=["interaction.created"])
        failing.secret = secret
        insert_interaction(app, insert_post(app, "p1", "https://blog.example.com/p1"), "like")
        run_until_settled(app, clock)
        token = create_token(app.db, "tests", now=app.clock())
        with TestClient(create_app(app), follow_redirects=False) as client:
            assert client.get("/notifications").status_code == 303  # login first
            login = client.get("/login").text
            csrf = re.search(r'name="csrf" value="([^"]+)"', login).group(1)
            client.post("/login", data={"csrf": csrf, "token": token, "next": "/notifications"})
            page = client.get("/notifications")
        assert page.status_code == 200
        assert failing.url in page.text and "HTTP 404" in page.text and "failed" in page.text
        assert "SKYPOST_PUBLIC_URL</code> is not set" in page.text
        assert secret not in page.text
    finally:
        failing.close()


def test_a_worker_that_dies_after_sending_leaves_the_event_to_be_sent_again_with_the_same_id(
        db_url, make_app, clock):
    app = make_app(db_url)
    receiver = WebhookReceiver(clock)
    try:
        receiver.secret = app.add_notify(receiver.url, events=["interaction.created"])
        insert_interaction(app, insert_post(app, "p1", "https://blog.example.com/p1"), "reply", text="hi")
        fetcher = notify.make_fetcher(app)
        claimed = notify.claim(app, owner="dead-worker", lease=60)  # claimed and sent, never recorded
        assert claimed is not None and claimed[0].channel == "webhook"
        row = claimed[0]
        assert notify.send_one(app, fetcher, *claimed).status == "sent"
        fetcher.close()
        app.run_worker(burst=True)
        assert len(receiver.deliveries) == 1  # its lease holds: nobody else sends it meanwhile
        clock.advance(61)
        run_until_settled(app, clock)
        first, second = receiver.deliveries
        assert first.event_id == second.event_id and first.body == second.body
        assert len(receiver.unique()) == 1
        sent = [r for r in outbox_rows(app) if r["channel"] == "webhook"]
        assert [(r["status"], r["attempts"]) for r in sent] == [("sent", 2)]
        with app.db.transaction() as conn:  # the dead worker's late outcome is refused
            assert not qo.finish_event(conn, row.id, owner="dead-worker", status="sent", http_status=200,
                                       error=None, now=app.clock())
    finally:
        receiver.close()
