"""The JSON API under /api/v1, on SQLite and PostgreSQL."""

from __future__ import annotations

import json

from tests.support.faultproxy import error

CREATE = "com.atproto.repo.createRecord"
DOC = {"id": "42", "title": "Hello Bluesky", "url": "https://blog.example.com/hello"}


def test_every_route_but_healthz_needs_a_token(web):
    c = web.client
    assert c.get("/healthz").status_code == 200
    routes = [("GET", "/api/v1/posts"), ("POST", "/api/v1/posts"), ("GET", "/api/v1/posts/42"),
              ("POST", "/api/v1/posts/42/retry"), ("POST", "/api/v1/pause"), ("POST", "/api/v1/resume"),
              ("GET", "/api/v1/accounts"), ("POST", "/api/v1/accounts"), ("PATCH", "/api/v1/accounts/a.test"),
              ("DELETE", "/api/v1/accounts/a.test"), ("GET", "/api/v1/health"), ("GET", "/api/v1/events"),
              ("GET", "/api/v1/openapi.json"), ("GET", "/api/v1/no-such-route"), ("GET", "/metrics")]
    for method, path in routes:
        for headers in ({}, {"Authorization": "Bearer skp_wrong"}, {"Authorization": f"Basic {web.token}"},
                        {"Authorization": "Bearer"}):
            r = c.request(method, path, headers=headers, json=DOC if method == "POST" else None)
            assert r.status_code == 401, (method, path, headers, r.text)
            assert r.headers["www-authenticate"].startswith("Bearer")
            assert "error" in r.json()
    assert not web.app.list_posts() and not web.app.paused  # nothing happened


def test_submit_is_202_then_200_for_a_known_id(web, make_account, proxy):
    alice = make_account("api")
    web.app.add_account(alice.handle, alice.app_password, service=proxy.url)
    proxy.reset_counts()
    r = web.post("/api/v1/posts", json=DOC)
    assert r.status_code == 202, r.text
    assert r.headers["location"] == "/api/v1/posts/42"
    body = r.json()
    assert body["status"] == "pending" and body["deliveries"][0]["account"] == alice.handle
    assert set(body) == {"id", "status", "reason", "deliveries", "interactions"}
    assert proxy.calls() == 0  # no network call on submit

    again = web.post("/api/v1/posts", json={**DOC, "title": "changed"})
    assert again.status_code == 200 and again.json()["id"] == "42"
    assert again.headers["location"] == "/api/v1/posts/42"

    web.app.run_worker(burst=True)
    status = web.get(r.headers["location"]).json()
    assert status["status"] == "completed"
    assert status["deliveries"][0]["url"].startswith(f"https://bsky.app/profile/{alice.did}/post/")
    assert web.post("/api/v1/posts", json=DOC).status_code == 200
    assert len(web.app.list_posts()) == 1


def test_bad_documents_are_422_naming_the_field_and_write_nothing(web):
    cases = [
        ({"id": "1", "title": "t"}, "url"),
        ({"id": "1", "title": "t", "url": "not a url"}, "url"),
        ({"title": "t", "url": "https://e.com"}, "id"),
        ({"id": "1", "title": "t", "url": "https://e.com", "colour": "red"}, "colour"),
        ({"id": "1", "title": "t", "url": "https://e.com", "accounts": ["nobody.test"]}, "accounts"),
        ({"id": "1", "title": "t", "url": "https://e.com", "published_at": "yesterday"}, "published_at"),
        ({"id": "1", "title": "t", "url": "https://e.com", "tags": [1, 2]}, "tags"),
        (["not", "an", "object"], "document"),
    ]
    for doc, field in cases:
        r = web.post("/api/v1/posts", json=doc)
        assert r.status_code == 422, (doc, r.text)
        assert field in r.json()["errors"], (doc, r.json())
    for raw in (b"{not json", b"", b"\xff\xfe"):
        r = web.post("/api/v1/posts", content=raw, headers={"Content-Type": "application/json"})
        assert r.status_code == 422 and "body" in r.json()["errors"]
    assert web.app.list_posts() == []
    assert [e for e in web.app.events() if e["kind"] in ("submitted", "skipped")] == []


def test_a_body_over_the_limit_is_413(web):
    big = {**DOC, "content_html": "x" * 1_100_000}
    r = web.post("/api/v1/posts", json=big)
    assert r.status_code == 413
    assert "error" in r.json()
    assert web.app.list_posts() == []
    def chunks():  # no Content-Length: counted as it streams in
        for _ in range(12):
            yield b"x" * 100_000

    r = web.post("/api/v1/posts", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "error" in r.json()
    assert web.app.list_posts() == []
    # under the limit is fine
    assert web.post("/api/v1/posts", json={**DOC, "content_html": "x" * 900_000}).status_code == 202


def test_list_posts_is_paginated_with_before(web):
    for n in range(7):
        assert web.post("/api/v1/posts", json={"id": f"p{n}", "title": f"Post {n}",
                                                 "url": f"https://e.com/{n}"}).status_code == 202
    seen, url, pages = [], "/api/v1/posts?limit=3", 0
    while url:
        page = web.get(url)
        assert page.status_code == 200, page.text
        data = page.json()
        seen += [item["id"] for item in data["items"]]
        assert all({"seq", "title", "url", "submitted_at", "status", "deliveries"} <= set(i) for i in data["items"])
        url, pages = data["next"], pages + 1
    assert seen == [f"p{n}" for n in reversed(range(7))] and pages == 3
    first = web.get("/api/v1/posts?limit=2").json()
    second = web.get(f"/api/v1/posts?limit=2&before={first['next_before']}").json()
    assert [i["id"] for i in second["items"]] == ["p4", "p3"]
    # no account: every post was recorded as skipped
    assert len(web.get("/api/v1/posts?status=skipped").json()["items"]) == 7
    assert web.get("/api/v1/posts?status=completed").json() == {"items": [], "next_before": None, "next": None}
    for query, field in (("status=bogus", "status"), ("limit=0", "limit"), ("limit=x", "limit"),
                         ("limit=1000", "limit"), ("before=-1", "before"), ("colour=red", "colour")):
        r = web.get(f"/api/v1/posts?{query}")
        assert r.status_code == 422 and field in r.json()["errors"], (query, r.text)


def test_unknown_posts_are_404(web):
    assert web.get("/api/v1/posts/nope").status_code == 404
    assert web.post("/api/v1/posts/nope/retry").status_code == 404


def test_ids_with_a_slash_work(web):
    r = web.post("/api/v1/posts", json={**DOC, "id": "2024/05/hello"})
    assert r.status_code == 202 and r.headers["location"] == "/api/v1/posts/2024%2F05%2Fhello"
    got = web.get(r.headers["location"])
    assert got.status_code == 200 and got.json()["id"] == "2024/05/hello"
    assert web.post(r.headers["location"] + "/retry").status_code == 200


def test_retry_a_failed_post_and_pause_resume(web, make_account, pds, proxy):
    alice = make_account("retry")
    web.app.add_account(alice.handle, alice.app_password, service=proxy.url)
    proxy.add_rule(CREATE, error(400, {"error": "InvalidRequest", "message": "Invalid app.bsky.feed.post record"}),
                   times=1)
    web.post("/api/v1/posts", json=DOC)
    web.app.run_worker(burst=True)
    failed = web.get("/api/v1/posts/42").json()
    assert failed["status"] == "failed" and "Invalid app.bsky.feed.post record" in failed["deliveries"][0]["error"]

    for body in ({"account": 7}, {"acount": alice.handle}, ["x"]):
        r = web.post("/api/v1/posts/42/retry", json=body)
        assert r.status_code == 422, r.text
    assert web.post("/api/v1/posts/42/retry", json={"account": "other.test"}).status_code == 422
    r = web.post("/api/v1/posts/42/retry", json={"account": alice.handle})
    assert r.status_code == 200 and r.json()["status"] == "pending"
    web.app.run_worker(burst=True)
    assert web.get("/api/v1/posts/42").json()["status"] == "completed"

    assert web.post("/api/v1/pause").json() == {"paused": True}
    assert web.post("/api/v1/posts", json={**DOC, "id": "43"}).json()["status"] == "paused"
    web.app.run_worker(burst=True)
    assert web.get("/api/v1/posts/43").json()["status"] == "paused"
    assert web.get("/api/v1/health").json()["paused"] is True
    assert web.post("/api/v1/resume").json() == {"paused": False}
    web.app.run_worker(burst=True)
    assert web.get("/api/v1/posts/43").json()["status"] == "completed"
    assert len(pds.list_posts(alice.did)) == 2
    kinds = [e["kind"] for e in web.get("/api/v1/events?limit=100").json()["items"]]
    assert {"paused", "resumed", "retry", "published", "delivery_failed"} <= set(kinds)
    only = web.get("/api/v1/events?post_id=43").json()["items"]
    assert only and all(e["post_id"] == "43" for e in only)
    assert web.get("/api/v1/events?limit=0").status_code == 422


def test_accounts_crud_never_returns_the_password(web, make_account, pds, proxy):
    alice = make_account("crud")
    responses = []

    def call(method, path, **kw):
        r = web.request(method, path, **kw)
        responses.append(r)
        return r

    # bad input: which field, and why; nothing written
    assert "app_password" in call("POST", "/api/v1/accounts", json={"handle": alice.handle}).json()["errors"]
    bad = call("POST", "/api/v1/accounts", json={"handle": alice.handle, "app_password": "x", "password": "x",
                                                  "auto_syndicate": "yes", "include_categories": "news"}).json()
    assert set(bad["errors"]) == {"password", "auto_syndicate", "include_categories"}
    assert "handle" in call("POST", "/api/v1/accounts", json={"handle": "not a handle", "app_password": "x"}
                            ).json()["errors"]
    wrong = call("POST", "/api/v1/accounts", json={"handle": alice.handle, "app_password": "aaaa-bbbb-cccc-dddd",
                                                   "service": proxy.url})
    assert wrong.status_code == 422 and "refused the login" in wrong.json()["errors"]["app_password"]
    assert call("GET", "/api/v1/accounts").json() == {"items": []}

    created = call("POST", "/api/v1/accounts", json={
        "handle": alice.handle, "app_password": alice.app_password, "service": proxy.url,
        "include_categories": ["news"], "exclude_categories": ["private"]})
    assert created.status_code == 201, created.text
    assert created.headers["location"] == f"/api/v1/accounts/{alice.handle}"
    account = created.json()
    assert account["did"] == alice.did and account["include_categories"] == ["news"]
    assert call("POST", "/api/v1/accounts", json={"handle": alice.handle, "app_password": alice.app_password,
                                                  "service": proxy.url}).status_code == 422  # already there
    listed = call("GET", "/api/v1/accounts").json()["items"]
    assert [a["handle"] for a in listed] == [alice.handle]
    assert listed[0]["health"]["breaker"] == "closed" and listed[0]["health"]["needs_reauth"] is False
    assert call("GET", f"/api/v1/accounts/{alice.handle}").json()["handle"] == alice.handle
    assert call("GET", "/api/v1/accounts/nobody.test").status_code == 404

    patched = call("PATCH", f"/api/v1/accounts/{alice.handle}", json={
        "auto_syndicate": False, "include_categories": [], "exclude_categories": []})
    assert patched.status_code == 200 and patched.json()["auto_syndicate"] is False
    put = call("PUT", f"/api/v1/accounts/{alice.handle}", json={"auto_syndicate": True})
    assert put.status_code == 200 and put.json()["auto_syndicate"] is True
    for body, field in (({}, "body"), ({"handle": "x.test"}, "handle"), ({"app_password": ""}, "app_password"),
                        ({"service": "ftp://x"}, "service"), ({"auto_syndicate": 1}, "auto_syndicate")):
        r = call("PATCH", f"/api/v1/accounts/{alice.handle}", json=body)
        assert r.status_code == 422 and field in r.json()["errors"], (body, r.text)
    assert call("PATCH", "/api/v1/accounts/nobody.test", json={"auto_syndicate": True}).status_code == 404

    # revoked credentials: the account needs re-auth; a new password through the API retries
    proxy.add_rule(CREATE, error(401, {"error": "AuthenticationRequired", "message": "Token has been revoked"}),
                   times=1)
    web.post("/api/v1/posts", json=DOC)
    web.app.run_worker(burst=True)
    assert web.get("/api/v1/posts/42").json()["status"] == "needs_reauth"
    assert call("GET", f"/api/v1/accounts/{alice.handle}").json()["health"]["needs_reauth"] is True
    fixed = call("PATCH", f"/api/v1/accounts/{alice.handle}", json={"app_password": alice.app_password})
    assert fixed.status_code == 200, fixed.text
    assert fixed.json()["state"] == "active" and fixed.json()["requeued"] == 1
    web.app.run_worker(burst=True)
    assert web.get("/api/v1/posts/42").json()["status"] == "completed"
    assert len(pds.list_posts(alice.did)) == 1

    removed = call("DELETE", f"/api/v1/accounts/{alice.handle}")
    assert removed.status_code == 200 and removed.json() == {"removed": alice.handle, "failed_deliveries": 0}
    assert call("DELETE", f"/api/v1/accounts/{alice.handle}").status_code == 404
    assert call("GET", "/api/v1/accounts").json() == {"items": []}

    for r in responses:
        assert alice.app_password not in r.text and "password_enc" not in r.text
        assert "app_password" not in (r.json() if r.status_code < 300 else {})
    assert alice.app_password not in json.dumps(web.get("/api/v1/events?limit=1000").json())


def test_openapi_schema_is_served(web):
    schema = web.get("/api/v1/openapi.json").json()
    assert schema["openapi"].startswith("3.")
    assert {"/api/v1/posts", "/api/v1/posts/{post_id}", "/api/v1/posts/{post_id}/retry", "/api/v1/pause",
            "/api/v1/resume", "/api/v1/accounts", "/api/v1/health", "/api/v1/events", "/hooks/{name}",
            "/metrics", "/healthz"} <= set(schema["paths"])


def test_healthz_is_503_when_the_database_is_gone_or_broken(web, db_url, tmp_path):
    import psycopg

    from tests.conftest import PG_ADMIN_URL

    c = web.client
    assert c.get("/healthz").json() == {"status": "ok"}
    if web.app.db.is_sqlite:
        db = tmp_path / "skypost.db"
        saved = db.read_bytes()
        db.write_bytes(b"this is not a database" * 300)  # broken under the open connections
        r = c.get("/healthz")
        assert r.status_code == 503 and r.json() == {"error": "the database cannot be reached"}
        for suffix in ("", "-wal", "-shm"):
            (tmp_path / f"skypost.db{suffix}").unlink(missing_ok=True)
        assert c.get("/healthz").status_code == 503  # gone
        assert not db.exists()  # and the probe did not make a new one
        db.write_bytes(saved)
    else:
        name = db_url.rsplit("/", 1)[1]
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        assert c.get("/healthz").status_code == 503
        assert c.get("/healthz").status_code == 503  # a reconnect fails too
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')  # an empty database: no schema
        r = c.get("/healthz")
        assert r.status_code == 503 and "run skypost init" in r.json()["error"]


def test_an_unknown_field_named_with_a_lone_surrogate_is_a_422(web):
    # found by the fuzzer: the field name is echoed in the error, and UTF-8 cannot encode it
    web.post("/api/v1/posts", json=DOC)
    r = web.client.post("/api/v1/posts/42/retry", content=b'{"\\ud800x": 1}',
                        headers={**web.auth, "Content-Type": "application/json"})
    assert r.status_code == 422 and list(r.json()["errors"]) == ["?x"], r.text
