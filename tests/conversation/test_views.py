"""Showing a post's conversation: the interactions JSON, the counts in the status JSON, the
`skypost interactions` command, the API route and the dashboard, over rows stored as the
backfeed stores them (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Iterator

import pytest
from click.testing import CliRunner

from skypost import Skypost
from skypost.cli import main
from skypost.store.db import Conn
from tests.conversation.interaction_rows import add_interaction, subject_uri
from skypost.web import create_app
from skypost.web.tokens import create_token
from tests.web.conftest import TestClient, Web

T = 1_780_000_000.0
HOSTILE_NAME = "<script>alert(1)</script>\x1b]0;pwned\x07Eve"
HOSTILE_TEXT = "hi\x1b[31m there <img src=x onerror=alert(1)>\nsecond line https://example.com/a?b=1&c=2"
SITE = "https://blog.example.com/"


@dataclass
class Talk:
    app: Skypost
    uris: dict[str, str]


def submit(app: Skypost, post_id: str) -> None:
    # no account: the post is stored (skipped), which is all the display needs
    app.submit({"id": post_id, "title": f"Post {post_id}", "url": SITE + post_id})


def build(app: Skypost) -> Talk:
    submit(app, "42")
    submit(app, "43")
    u: dict[str, str] = {}
    u["r1"] = add_interaction(app, "42", "reply", "r1", did="did:plc:alice", handle="alice.test",
                              display_name="Alice", text="First! https://example.com/read-more",
                              created_at=T + 100)
    u["r2"] = add_interaction(app, "42", "reply", "r2", did="did:plc:bob", handle="bob.test",
                              display_name=None, text="Answering Alice", parent=u["r1"], created_at=T + 200)
    u["r3"] = add_interaction(app, "42", "reply", "r3", did="did:plc:carol", handle="carol.test",
                              text="And answering Bob", parent=u["r2"], created_at=T + 300)
    u["r4"] = add_interaction(app, "42", "reply", "r4", did="did:plc:eve", handle="eve.test",
                              display_name=HOSTILE_NAME, avatar="javascript:alert(1)", text=HOSTILE_TEXT,
                              created_at=T + 150)
    u["r5"] = add_interaction(app, "42", "reply", "r5", did="did:plc:dave", handle="dave.test",
                              text="Something I regret", created_at=T + 250, removed_at=T + 400)
    u["q1"] = add_interaction(app, "42", "quote", "q1", did="did:plc:erin", handle="erin.test",
                              text="Look at this", created_at=T + 120)
    u["l1"] = add_interaction(app, "42", "like", "l1", did="did:plc:frank", handle="frank.test",
                              created_at=T + 130)
    u["l2"] = add_interaction(app, "42", "like", "l2", did="did:plc:grace", handle="grace.test",
                              created_at=T + 135, removed_at=T + 500)
    # the same second as l1, stored later: after it
    u["l3"] = add_interaction(app, "42", "like", "l3", did="did:plc:ivan", handle="ivan.test",
                              created_at=T + 130, text="stray text on a like")
    u["p1"] = add_interaction(app, "42", "repost", "p1", did="did:plc:heidi", handle=None,
                              display_name=None, avatar=None, created_at=T + 140)
    u["o1"] = add_interaction(app, "43", "like", "o1", did="did:plc:alice", handle="alice.test",
                              created_at=T + 10)
    return Talk(app, u)


@pytest.fixture
def web(db_url: str, make_app: Any) -> Iterator[Web]:
    """The web application over the engine's database, with one API token."""
    app = make_app(db_url)
    token = create_token(app.db, "tests", now=app.clock())
    with TestClient(create_app(app), follow_redirects=False) as client:
        yield Web(app, client, token)


@pytest.fixture
def talk(db_url: str, make_app: Any) -> Talk:
    return build(make_app(db_url))


def test_the_json_lists_every_interaction_oldest_first_with_its_bsky_link(talk: Talk) -> None:
    data = talk.app.interactions("42")
    assert data is not None and data["id"] == "42"
    items = data["interactions"]
    assert [i["uri"] for i in items] == [talk.uris[k] for k in
                                         ("r1", "q1", "l1", "l3", "l2", "p1", "r4", "r2", "r5", "r3")]
    assert items[0] == {
        "kind": "reply", "uri": talk.uris["r1"], "cid": "bafyr1", "account": "site.test",
        "author": {"did": "did:plc:alice", "handle": "alice.test", "display_name": "Alice",
                   "avatar": "https://cdn.example/avatar/fan.jpg"},
        "text": "First! https://example.com/read-more", "parent_uri": subject_uri("42"),
        "created_at": "2026-05-28T20:28:20Z", "url": "https://bsky.app/profile/did:plc:alice/post/r1",
        "removed": False,
    }
    by = {i["uri"]: i for i in items}
    assert by[talk.uris["r2"]]["parent_uri"] == talk.uris["r1"]
    assert by[talk.uris["q1"]]["url"] == "https://bsky.app/profile/did:plc:erin/post/q1"
    like = by[talk.uris["l3"]]
    assert like["text"] is None and like["parent_uri"] is None  # likes carry no text
    assert like["url"] == "https://bsky.app/profile/did:plc:ivan"
    assert by[talk.uris["p1"]]["author"] == {"did": "did:plc:heidi", "handle": None, "display_name": None,
                                             "avatar": None}
    assert [i["removed"] for i in items].count(True) == 2
    assert by[talk.uris["r5"]]["removed"] and by[talk.uris["l2"]]["removed"]
    assert by[talk.uris["r4"]]["text"] == HOSTILE_TEXT  # the JSON keeps the data exactly
    assert talk.app.interactions("43")["interactions"][0]["kind"] == "like"  # type: ignore[index]
    assert talk.app.interactions("no-such-post") is None
    assert talk.app.interactions("bad\x00id") is None


def test_the_status_json_counts_live_interactions_per_kind(talk: Talk) -> None:
    counts = {"reply": 4, "quote": 1, "like": 2, "repost": 1}
    assert talk.app.status("42")["interactions"] == counts  # type: ignore[index]
    assert talk.app.status("43")["interactions"] == {"reply": 0, "quote": 0, "like": 1, "repost": 0}  # type: ignore[index]
    listed = {p["id"]: p["interactions"] for p in talk.app.list_posts()}
    assert listed == {"42": counts, "43": {"reply": 0, "quote": 0, "like": 1, "repost": 0}}
    submit(talk.app, "44")
    fresh = talk.app.submit({"id": "45", "title": "New", "url": SITE + "45"})
    assert fresh["interactions"] == {"reply": 0, "quote": 0, "like": 0, "repost": 0}
    # a known id submitted again answers its stored status, counts included
    assert talk.app.submit({"id": "42", "title": "Post 42", "url": SITE + "42"})["interactions"] == counts


def test_the_posts_list_counts_with_one_query_whatever_the_page_size(
        talk: Talk, monkeypatch: pytest.MonkeyPatch) -> None:
    for n in range(30):
        submit(talk.app, f"more-{n}")
        add_interaction(talk.app, f"more-{n}", "like", f"m{n}", did=f"did:plc:m{n}")
    statements: list[str] = []
    original = Conn.all

    def counting(self: Conn, sql: str, params: Any = None) -> list[dict[str, Any]]:
        statements.append(sql)
        return original(self, sql, params)

    monkeypatch.setattr(Conn, "all", counting)
    small = talk.app.list_posts(limit=3)
    few = len(statements)
    statements.clear()
    page = talk.app.list_posts(limit=32)
    assert len(statements) == few  # not one more statement per post
    assert sum("FROM interactions" in s for s in statements) == 1
    assert len(small) == 3 and len(page) == 32
    assert all(p["interactions"]["like"] == 1 for p in page if p["id"].startswith("more-"))


def test_the_command_shows_a_readable_thread_and_the_exact_json(talk: Talk) -> None:
    runner = CliRunner()
    url = talk.app.settings.database_url
    human = runner.invoke(main, ["--database-url", url, "interactions", "42"])
    assert human.exit_code == 0, human.output
    out = human.output
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", out), repr(out)  # no terminal controls
    lines = out.splitlines()
    assert lines[0] == "post 42: 4 replies, 1 quote, 2 likes, 1 repost"
    alice = lines.index("  Alice (@alice.test), 2026-05-28 20:28:20 UTC")
    assert lines[alice + 1:alice + 3] == ["    First! https://example.com/read-more",
                                          "    https://bsky.app/profile/did:plc:alice/post/r1"]
    # nested: Bob answers Alice, Carol answers Bob, each one level further in
    assert lines[alice + 3] == "    ↳ @bob.test, 2026-05-28 20:30:00 UTC"
    assert lines[alice + 6] == "      ↳ A Fan (@carol.test), 2026-05-28 20:31:40 UTC"
    assert "    (removed on Bluesky)" in lines and "Something I regret" not in out
    assert any(line.startswith("  <script>alert(1)</script>]0;pwnedEve (@eve.test)") for line in lines)
    assert "    hi[31m there <img src=x onerror=alert(1)>" in lines
    assert "    second line https://example.com/a?b=1&c=2" in lines
    assert lines.index("quotes:") > lines.index("replies:")
    assert "liked by (2): @frank.test, @ivan.test" in lines
    assert "reposted by (1): did:plc:heidi" in lines

    as_json = runner.invoke(main, ["--database-url", url, "interactions", "42", "--json"])
    assert as_json.exit_code == 0
    assert json.loads(as_json.output) == talk.app.interactions("42")
    assert "\x1b]0;pwned" in json.loads(as_json.output)["interactions"][6]["author"]["display_name"]

    empty = runner.invoke(main, ["--database-url", url, "interactions", "45-unknown"])
    assert empty.exit_code == 2
    assert "error: unknown post id '45-unknown'" in empty.output
    submit(talk.app, "quiet")
    quiet = runner.invoke(main, ["--database-url", url, "interactions", "quiet"])
    assert quiet.exit_code == 0 and quiet.output == "post quiet: no reactions yet\n"


def test_the_api_serves_the_json_and_the_counts(web: Web) -> None:
    talk = build(web.app)
    r = web.get("/api/v1/posts/42/interactions")
    assert r.status_code == 200 and r.json() == talk.app.interactions("42")
    assert web.get("/api/v1/posts/nope/interactions").status_code == 404
    assert web.get("/api/v1/posts/nope/interactions").json() == {"error": "no post with this id"}
    assert web.client.get("/api/v1/posts/42/interactions").status_code == 401
    assert web.client.get("/api/v1/posts/42/interactions",
                          headers={"Authorization": "Bearer skp_wrong"}).status_code == 401
    status = web.get("/api/v1/posts/42").json()
    assert status["interactions"] == {"reply": 4, "quote": 1, "like": 2, "repost": 1}
    items = web.get("/api/v1/posts").json()["items"]
    assert {p["id"]: p["interactions"]["like"] for p in items} == {"42": 2, "43": 1}
    # an id that itself ends in "/interactions" still names that post
    submit(web.app, "a/interactions")
    own = web.get("/api/v1/posts/a%2Finteractions")
    assert own.status_code == 200 and own.json()["id"] == "a/interactions"
    submit(web.app, "b")
    add_interaction(web.app, "b", "reply", "rb", text="to b")
    assert web.get("/api/v1/posts/b/interactions").json()["interactions"][0]["text"] == "to b"
    doc = web.get("/api/v1/openapi.json").json()
    assert "/api/v1/posts/{post_id}/interactions" in doc["paths"]
    assert "interactions" in doc["components"]["schemas"]["PostStatus"]["required"]


def test_the_dashboard_shows_the_thread_and_the_counts(web: Web) -> None:
    from tests.web.test_dashboard import log_in

    build(web.app)
    log_in(web)
    page = web.client.get("/posts/42")
    assert page.status_code == 200
    html = page.text
    assert "<script>alert(1)</script>" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "javascript:" not in html  # a hostile avatar is not shown
    assert ('<img class="avatar" src="https://cdn.example/avatar/fan.jpg" alt="" width="32" height="32" '
            'loading="lazy" referrerpolicy="no-referrer">') in html
    assert 'href="https://bsky.app/profile/did:plc:alice/post/r1"' in html
    assert '<a href="https://example.com/read-more" rel="noopener">' in html  # the text's links
    assert "4 replies, 1 quote, 2 likes, 1 repost" in html
    depths = re.findall(r'class="reaction depth-(\d)[^"]*" data-depth="(\d+)"', html)
    assert [d for _, d in depths] == ["0", "1", "2", "0", "0"]  # Alice > Bob > Carol, Eve, Dave
    assert "removed on Bluesky" in html and "Something I regret" not in html
    assert "Liked by" in html and "@frank.test" in html and "@grace.test" not in html
    assert "img-src 'self' data: https:" in page.headers["content-security-policy"]
    home = web.client.get("/").text
    assert 'title="4 replies"' in home and 'title="1 like"' in home
