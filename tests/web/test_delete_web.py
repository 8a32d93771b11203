"""Delete over HTTP: the API, the signed webhooks (Ghost, WordPress, generic), the dashboard."""

from __future__ import annotations

import copy
import json
import re
import time
from pathlib import Path

import pytest

from skypost.web import hooks

INTEROP = Path(__file__).resolve().parents[2] / ".." / "shared" / "interop" / "payloads"
DELETE = "com.atproto.repo.deleteRecord"


def fixture(name):
    return json.loads((INTEROP / name).read_text())["payload"]


def add_hook(app, name, kind, on_unpublish="keep"):
    return hooks.add_hook(app.db, app.cipher(), name=name, kind=kind, now=app.clock(), on_unpublish=on_unpublish)


def send(web, name, payload, secret, ghost=False):
    body = json.dumps(payload).encode()
    if ghost:  # Ghost signs with its own header: body + milliseconds
        headers = {hooks.GHOST_HEADER: hooks.sign_ghost(secret, body, int(web.app.clock() * 1000))}
    else:
        headers = {"X-Skypost-Signature": hooks.sign(secret, body)}
    return web.client.post(f"/hooks/{name}", content=body, headers={"Content-Type": "application/json", **headers})


def published_account(web, make_account, proxy):
    account = make_account("webdel")
    web.app.add_account(account.handle, account.app_password, service=proxy.url)
    return account


def test_api_delete_is_202_then_404_and_needs_a_token(web, make_account, proxy, pds):
    account = published_account(web, make_account, proxy)
    assert web.post("/api/v1/posts", json={"id": "a/1", "title": "T", "url": "https://e.example/1"}).status_code == 202
    web.app.run_worker(burst=True)
    assert len(pds.list_posts(account.did)) == 1
    assert web.client.delete("/api/v1/posts/a%2F1").status_code == 401
    r = web.request("DELETE", "/api/v1/posts/a%2F1")
    assert r.status_code == 202 and r.json()["status"] == "deleting"
    assert r.json()["deliveries"][0]["status"] == "deleting"
    web.app.run_worker(burst=True)
    again = web.request("DELETE", "/api/v1/posts/a%2F1")
    assert again.status_code == 202 and again.json()["status"] == "deleted"
    assert web.request("DELETE", "/api/v1/posts/nope").status_code == 404
    assert pds.list_posts(account.did) == []
    refused = web.post("/api/v1/posts/a%2F1/retry")
    assert refused.status_code == 422 and "--repost" in refused.text
    reposted = web.post("/api/v1/posts/a%2F1/retry", json={"repost": True})
    assert reposted.status_code == 200 and reposted.json()["status"] == "pending"
    web.app.run_worker(burst=True)
    assert web.get("/api/v1/posts/a%2F1").json()["status"] == "completed"
    assert len(pds.list_posts(account.did)) == 1
    web.request("DELETE", "/api/v1/posts/a%2F1")
    web.app.run_worker(burst=True)
    assert pds.list_posts(account.did) == []


def now_iso(app):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(app.clock() + 1))


def ghost_published(app):
    payload = fixture("ghost_post_published_variant.json")
    # published after skypost was activated (older posts are the backlog, never syndicated)
    payload["post"]["current"]["published_at"] = now_iso(app) + ".000Z"
    return payload, "ghost:" + payload["post"]["current"]["id"]


def test_ghost_post_deleted_removes_the_post(web, make_account, proxy, pds):
    account = published_account(web, make_account, proxy)
    secret = add_hook(web.app, "ghost", "ghost")
    payload, post_id = ghost_published(web.app)
    assert send(web, "ghost", payload, secret, ghost=True).status_code == 202
    web.app.run_worker(burst=True)
    assert len(pds.list_posts(account.did)) == 1
    # Ghost's post.deleted: the post as it was in `previous`, nothing in `current`
    deleted = {"post": {"current": {}, "previous": copy.deepcopy(payload["post"]["current"])}}
    r = send(web, "ghost", deleted, secret, ghost=True)
    assert r.status_code == 202 and r.json()["id"] == post_id
    web.app.run_worker(burst=True)
    assert web.app.status(post_id)["status"] == "deleted"
    assert pds.list_posts(account.did) == []
    # published again on the site: never syndicated again
    assert send(web, "ghost", payload, secret, ghost=True).json()["status"] == "deleted"
    web.app.run_worker(burst=True)
    assert pds.list_posts(account.did) == []


@pytest.mark.parametrize("setting", ["keep", "delete"])
def test_ghost_post_unpublished_follows_the_hook_setting(web, make_account, proxy, pds, setting):
    account = published_account(web, make_account, proxy)
    secret = add_hook(web.app, "ghost", "ghost", on_unpublish=setting)
    payload, post_id = ghost_published(web.app)
    send(web, "ghost", payload, secret, ghost=True)
    web.app.run_worker(burst=True)
    unpublished = copy.deepcopy(payload)
    unpublished["post"]["current"]["status"] = "draft"
    unpublished["post"]["previous"] = {"status": "published", "updated_at": "2024-05-14T10:20:30.000Z"}
    r = send(web, "ghost", unpublished, secret, ghost=True)
    web.app.run_worker(burst=True)
    if setting == "keep":
        assert r.status_code == 200 and "keeps" in r.json()["ignored"]
        assert web.app.status(post_id)["status"] == "completed"
        assert len(pds.list_posts(account.did)) == 1
        web.app.delete(post_id)  # leave no record behind
        web.app.run_worker(burst=True)
    else:
        assert r.status_code == 202
        assert web.app.status(post_id)["status"] == "deleted"
    assert pds.list_posts(account.did) == []


def test_wordpress_trash_and_generic_deleted(web, make_account, proxy, pds):
    account = published_account(web, make_account, proxy)
    wp_secret = add_hook(web.app, "wp", "wordpress")
    generic_secret = add_hook(web.app, "site", "generic")
    wp = {**fixture("wordpress_post_variant.json"), "date_gmt": now_iso(web.app)}
    assert send(web, "wp", wp, wp_secret).status_code == 202
    doc = {"id": "g1", "title": "Generic", "url": "https://blog.example.com/g1"}
    assert send(web, "site", doc, generic_secret).status_code == 202
    web.app.run_worker(burst=True)
    assert len(pds.list_posts(account.did)) == 2
    trashed = {**wp, "status": "trash"}
    assert send(web, "wp", trashed, wp_secret).status_code == 202
    assert send(web, "site", {"id": "g1", "deleted": True}, generic_secret).status_code == 202
    unknown = send(web, "site", {"id": "never-sent", "deleted": True}, generic_secret)
    assert unknown.status_code == 200 and "ignored" in unknown.json()
    web.app.run_worker(burst=True)
    assert web.app.status(f"wordpress:{wp['id']}")["status"] == "deleted"
    assert web.app.status("g1")["status"] == "deleted"
    assert pds.list_posts(account.did) == []


def login(web):
    page = web.client.get("/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    r = web.client.post("/login", data={"token": web.token, "csrf": csrf, "next": "/"})
    assert r.status_code == 303


def test_dashboard_delete_button_asks_then_deletes(web, make_account, proxy, pds):
    account = published_account(web, make_account, proxy)
    web.app.submit({"id": "d1", "title": "Dashboard", "url": "https://blog.example.com/d1"})
    web.app.run_worker(burst=True)
    login(web)
    page = web.client.get("/posts/d1")
    assert 'href="/posts/d1/delete"' in page.text
    confirm = web.client.get("/posts/d1/delete")
    assert confirm.status_code == 200 and "Delete from Bluesky" in confirm.text
    csrf = re.search(r'name="csrf" value="([^"]+)"', confirm.text).group(1)
    assert web.client.post("/posts/d1/delete", data={"csrf": "forged"}).status_code == 403
    assert web.app.status("d1")["status"] == "completed"
    r = web.client.post("/posts/d1/delete", data={"csrf": csrf})
    assert r.status_code == 303 and r.headers["location"] == "/posts/d1"
    web.app.run_worker(burst=True)
    page = web.client.get("/posts/d1")
    assert "Removed from Bluesky" in page.text and 'href="/posts/d1/delete"' not in page.text
    assert pds.list_posts(account.did) == []
