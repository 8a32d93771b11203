"""Webhooks: signatures (good → 202; bad or missing → 401 and nothing written), payload mapping."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from skypost.cli import main
from skypost.web import hooks
from tests.conftest import TEST_KEY

GHOST = {"post": {"current": {
    "id": "65f1c0ffee", "uuid": "b8f0", "title": "Ghost &amp; friends", "slug": "ghost", "status": "published",
    "url": "https://ghost.example.com/ghost-friends/", "html": "<p>Hello <b>world</b></p>",
    "custom_excerpt": None, "excerpt": "Hello world, from Ghost.",
    "feature_image": "https://ghost.example.com/content/images/cover.jpg",
    "tags": [{"name": "News", "visibility": "public"}, {"name": "#no-card", "visibility": "internal"}],
    "published_at": "2026-05-01T10:00:00.000Z",
}, "previous": {"status": "draft"}}}

WORDPRESS = {
    "id": 123, "date_gmt": "2026-05-01T10:00:00", "status": "publish", "type": "post",
    "link": "https://wp.example.com/2026/05/hello/",
    "title": {"rendered": "Hello &#8211; &#8220;WordPress&#8221;"},
    "content": {"rendered": "<p>Body</p>", "protected": False},
    "excerpt": {"rendered": "<p>An excerpt &amp; more&#8230;</p>\n", "protected": False},
    "categories": [4, 7], "tags": [9],
    "yoast_head_json": {"og_image": [{"url": "https://wp.example.com/og.png", "width": 1200}]},
    "_embedded": {"wp:term": [[{"id": 4, "name": "News", "taxonomy": "category"},
                               {"id": 7, "name": "Tech &amp; Science", "taxonomy": "category"}],
                              [{"id": 9, "name": "python", "taxonomy": "post_tag"}]]},
}


def add_hook(app, name, kind, accounts=()):
    return hooks.add_hook(app.db, app.cipher(), name=name, kind=kind, accounts=accounts, now=app.clock())


def send(web, name, payload, secret=None, headers=None):
    body = json.dumps(payload).encode() if not isinstance(payload, bytes) else payload
    sig = {"X-Skypost-Signature": hooks.sign(secret, body)} if secret else {}
    return web.client.post(f"/hooks/{name}", content=body,
                           headers={"Content-Type": "application/json", **sig, **(headers or {})})


def stored(app, post_id):
    rows = [p for p in app.list_posts(limit=200) if p["id"] == post_id]
    assert rows, post_id
    with app.db.connect() as conn:
        return conn.one("SELECT document, source FROM posts WHERE post_id = :id", {"id": post_id})


def nothing_written(app):
    assert app.list_posts() == []
    assert not [e for e in app.events() if e["kind"] in ("submitted", "skipped")]


def test_a_signed_generic_post_is_accepted_once(web):
    secret = add_hook(web.app, "site", "generic")
    doc = {"id": "7", "title": "From a hook", "url": "https://blog.example.com/7"}
    r = send(web, "site", doc, secret)
    assert r.status_code == 202, r.text
    assert r.headers["location"] == "/api/v1/posts/7" and r.json()["id"] == "7"
    assert stored(web.app, "7")["source"] == "hook:site"
    again = send(web, "site", doc, secret)
    assert again.status_code == 200 and again.json()["id"] == "7"
    assert len(web.app.list_posts()) == 1


def test_bad_or_missing_signatures_are_401_and_write_nothing(web):
    secret = add_hook(web.app, "site", "generic")
    doc = {"id": "7", "title": "Forged", "url": "https://blog.example.com/7"}
    body = json.dumps(doc).encode()
    other = json.dumps({**doc, "title": "Other"}).encode()
    cases = [
        {},
        {"X-Skypost-Signature": ""},
        {"X-Skypost-Signature": hooks.sign("wrong secret", body)},
        {"X-Skypost-Signature": hooks.sign(secret, other)},              # signature of another body
        {"X-Skypost-Signature": hooks.sign(secret, body).replace("sha256=", "sha1=")},
        {"X-Skypost-Signature": hooks.sign(secret, body)[:-2]},
        {"X-Skypost-Signature": hooks.sign(secret, body) + "00"},
        {"X-Ghost-Signature": hooks.sign_ghost(secret, body, int(web.app.clock() * 1000) - 3_600_000)},  # stale
        {"X-Ghost-Signature": hooks.sign_ghost("wrong", body, int(web.app.clock() * 1000))},
        {"X-Ghost-Signature": "sha256=zz, t=abc"},
        {"Authorization": f"Bearer {web.token}"},  # an API token is not a signature
    ]
    for headers in cases:
        r = web.client.post("/hooks/site", content=body, headers={"Content-Type": "application/json", **headers})
        assert r.status_code == 401, (headers, r.text)
        assert "signature" in r.json()["error"]
    # a bad signature is refused before the body is looked at
    assert send(web, "site", b"{not json", "wrong secret").status_code == 401
    nothing_written(web.app)
    assert send(web, "nope", doc, secret).status_code == 404
    huge = json.dumps({**doc, "content_html": "x" * 1_100_000}).encode()
    assert send(web, "site", huge, secret).status_code == 413
    nothing_written(web.app)


def test_a_timestamped_signature_is_accepted_only_within_five_minutes(web, clock):
    secret = add_hook(web.app, "site", "generic")
    now = int(web.app.clock())

    def stamped(doc_id, ts, signed_ts=None):
        body = json.dumps({"id": doc_id, "title": "Stamped", "url": f"https://e.com/{doc_id}"}).encode()
        signature = hooks.sign(secret, body, ts if signed_ts is None else signed_ts)
        return web.client.post("/hooks/site", content=body, headers={
            "Content-Type": "application/json", "X-Skypost-Signature": signature,
            "X-Skypost-Timestamp": str(ts)})

    assert stamped("fresh", now).status_code == 202
    assert stamped("late-but-ok", now - 299).status_code == 202
    assert stamped("early-but-ok", now + 299).status_code == 202
    for doc_id, ts in (("old", now - 301), ("future", now + 301), ("ancient", 0)):
        r = stamped(doc_id, ts)
        assert r.status_code == 401 and "timestamp" in r.json()["error"], (doc_id, r.text)
    # the timestamp is signed: a fresh one on an old signature does not pass
    r = stamped("tampered", now, signed_ts=now - 3600)
    assert r.status_code == 401 and "signature" in r.json()["error"]
    # a signature of the body alone does not pass once a timestamp is sent
    body = json.dumps({"id": "unstamped", "title": "t", "url": "https://e.com/u"}).encode()
    r = web.client.post("/hooks/site", content=body, headers={
        "X-Skypost-Signature": hooks.sign(secret, body), "X-Skypost-Timestamp": str(now)})
    assert r.status_code == 401
    for bad in ("", " ", "1e9", "-5", f"{now}.5", "9" * 5000):
        r = web.client.post("/hooks/site", content=body, headers={
            "X-Skypost-Signature": hooks.sign(secret, body), "X-Skypost-Timestamp": bad})
        assert r.status_code == 401, (bad, r.text)
    # a replay of an accepted request is refused once the window has passed
    late = stamped("fresh", now)
    assert late.status_code == 200  # within the window: the known id, nothing new
    clock.advance(301)
    assert stamped("fresh", now).status_code == 401
    assert sorted(p["id"] for p in web.app.list_posts()) == ["early-but-ok", "fresh", "late-but-ok"]


def test_a_ghost_timestamp_of_thousands_of_digits_is_401_not_500(web, caplog):
    add_hook(web.app, "blog", "ghost")
    body = json.dumps(GHOST).encode()
    for t in ("9" * 5000, "1" * 17, "0" * 100_000 + "1"):
        r = web.client.post("/hooks/blog", content=body, headers={
            "Content-Type": "application/json", "X-Ghost-Signature": f"sha256={'0' * 64}, t={t}"})
        assert r.status_code == 401, r.text[:300]
        assert set(r.json()) == {"error"} and "Traceback" not in r.text and len(r.text) < 500
    assert "Traceback" not in caplog.text and "unhandled" not in caplog.text
    nothing_written(web.app)


def test_a_ghost_post_published_payload_is_mapped(web):
    secret = add_hook(web.app, "blog", "ghost")
    body = json.dumps(GHOST).encode()
    r = web.client.post("/hooks/blog", content=body, headers={
        "Content-Type": "application/json",
        "X-Ghost-Signature": hooks.sign_ghost(secret, body, int(web.app.clock() * 1000))})
    assert r.status_code == 202, r.text
    assert r.json()["id"] == "ghost:65f1c0ffee"
    doc = stored(web.app, "ghost:65f1c0ffee")["document"]
    assert doc["title"] == "Ghost &amp; friends"  # Ghost titles are plain text, kept as sent
    assert doc["url"] == "https://ghost.example.com/ghost-friends/"
    assert doc["excerpt"] == "Hello world, from Ghost."
    assert doc["content_html"] == "<p>Hello <b>world</b></p>"
    assert doc["image_url"] == "https://ghost.example.com/content/images/cover.jpg"
    assert doc["tags"] == ["News"] and doc["categories"] == ["News", "#no-card"]
    assert doc["published_at"].startswith("2026-05-01T10:00:00")
    # our own signature header works for Ghost payloads too; a custom excerpt wins
    custom = json.loads(body)
    custom["post"]["current"].update(id="second", custom_excerpt="Custom words")
    assert send(web, "blog", custom, secret).status_code == 202
    assert stored(web.app, "ghost:second")["document"]["excerpt"] == "Custom words"


def test_ghost_drafts_are_ignored_and_bad_payloads_name_the_field(web):
    secret = add_hook(web.app, "blog", "ghost")
    draft = json.loads(json.dumps(GHOST))
    draft["post"]["current"]["status"] = "draft"
    r = send(web, "blog", draft, secret)
    assert r.status_code == 200 and "draft" in r.json()["ignored"]
    no_url = json.loads(json.dumps(GHOST))
    del no_url["post"]["current"]["url"]
    r = send(web, "blog", no_url, secret)
    assert r.status_code == 422 and "post.current.url" in r.json()["errors"]
    r = send(web, "blog", {"member": {}}, secret)
    assert r.status_code == 422 and "post.current" in r.json()["errors"]
    r = send(web, "blog", b"[1, 2", secret)
    assert r.status_code == 422 and "body" in r.json()["errors"]
    nothing_written(web.app)


def test_a_wordpress_rest_post_is_mapped(web):
    secret = add_hook(web.app, "wp", "wordpress")
    r = send(web, "wp", WORDPRESS, secret)
    assert r.status_code == 202, r.text
    assert r.json()["id"] == "wordpress:123"
    doc = stored(web.app, "wordpress:123")["document"]
    assert doc["title"] == "Hello – “WordPress”"
    assert doc["excerpt"] == "An excerpt & more…"
    assert doc["url"] == "https://wp.example.com/2026/05/hello/"
    assert doc["content_html"] == "<p>Body</p>"
    assert doc["image_url"] == "https://wp.example.com/og.png"
    assert doc["categories"] == ["News", "Tech & Science"] and doc["tags"] == ["python"]
    assert doc["published_at"].startswith("2026-05-01T10:00:00")
    # names given directly, and Jetpack's image, win
    direct = {**WORDPRESS, "id": 124, "categories": ["Direct"],
              "jetpack_featured_media_url": "https://wp.example.com/j.png"}
    assert send(web, "wp", direct, secret).status_code == 202
    doc = stored(web.app, "wordpress:124")["document"]
    assert doc["categories"] == ["Direct"] and doc["image_url"] == "https://wp.example.com/j.png"
    # drafts are ignored; a page is recorded as skipped (only posts are syndicated)
    r = send(web, "wp", {**WORDPRESS, "id": 125, "status": "draft"}, secret)
    assert r.status_code == 200 and "ignored" in r.json()
    page = send(web, "wp", {**WORDPRESS, "id": 126, "type": "page"}, secret)
    assert page.status_code == 202 and page.json()["status"] == "skipped"
    r = send(web, "wp", {**WORDPRESS, "id": None}, secret)
    assert r.status_code == 422 and "id" in r.json()["errors"]
    r = send(web, "wp", {**WORDPRESS, "id": 127, "link": "nope"}, secret)
    assert r.status_code == 422 and "link" in r.json()["errors"]


def test_a_hook_sends_to_its_accounts(web):
    web.app.add_account("alice.test", "pw", service="http://127.0.0.1:9", verify=False)
    web.app.add_account("bob.test", "pw", service="http://127.0.0.1:9", verify=False)
    secret = add_hook(web.app, "bob-only", "generic", accounts=["@Bob.test"])
    r = send(web, "bob-only", {"id": "1", "title": "For Bob", "url": "https://e.com/1"}, secret)
    assert [d["account"] for d in r.json()["deliveries"]] == ["bob.test"]
    # a document that names its accounts keeps them
    r = send(web, "bob-only", {"id": "2", "title": "Both", "url": "https://e.com/2",
                               "accounts": ["alice.test"]}, secret)
    assert [d["account"] for d in r.json()["deliveries"]] == ["alice.test"]


@pytest.fixture
def cli(sqlite_url, monkeypatch):
    for key in ("SKYPOST_DATABASE_URL", "SKYPOST_CONFIG", "SKYPOST_SECRET_KEY_FILE"):
        monkeypatch.delenv(key, raising=False)
    runner = CliRunner(env={"SKYPOST_SECRET_KEY": TEST_KEY})

    def run(*args):
        return runner.invoke(main, ["--database-url", sqlite_url, *args], catch_exceptions=False)

    return run


def test_hook_cli_prints_the_secret_once_and_never_again(cli, sqlite_web):
    added = cli("hook", "add", "site", "--kind", "wordpress")
    assert added.exit_code == 0, added.output
    secret = added.stdout.strip()
    assert len(secret) == 64 and added.stdout == secret + "\n"
    listed = cli("hook", "list")
    assert "site" in listed.stdout and "wordpress" in listed.stdout and secret not in listed.output
    assert secret not in cli("hook", "list", "--json").output
    with sqlite_web.app.db.connect() as conn:
        assert secret not in json.dumps(conn.all("SELECT * FROM hooks"))  # stored encrypted
    assert send(sqlite_web, "site", WORDPRESS, secret).status_code == 202
    assert cli("hook", "add", "site").exit_code == 2
    for args in (("hook", "add", "Bad Name"), ("hook", "add", "x", "--account", "nobody.test"),
                 ("hook", "add", "y", "--kind", "rss"), ("hook", "remove", "nope")):
        result = cli(*args)
        assert result.exit_code == 2 and "rror" in result.stderr, (args, result.output)
    assert cli("hook", "remove", "site").exit_code == 0
    assert send(sqlite_web, "site", WORDPRESS, secret).status_code == 404
