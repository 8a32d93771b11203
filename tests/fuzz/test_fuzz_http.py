"""Fuzz: the HTTP surfaces that take a body from outside — POST /api/v1/posts, POST
/api/v1/posts/{id}/retry and the signed webhooks (generic, Ghost, WordPress) — through
Starlette's TestClient, on SQLite and PostgreSQL. Whatever the body: never a 5xx; a
refusal is a 4xx naming the bad fields; an accepted post can be read back at its Location.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from typing import Any, Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from skypost import Skypost
from skypost.config import load_settings
from skypost.web import create_app, hooks
from skypost.web.tokens import create_token
from tests.conftest import TEST_KEY, _pg_create
from tests.fuzz.strategies import (
    documents,
    fuzz_settings,
    iso_datetimes,
    json_text,
    json_values,
    pieces_text,
    raw_json_bodies,
    text_like,
    urls,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

FUZZ = fuzz_settings(200)
ACCEPTED = (200, 202)


@dataclass
class Site:
    client: TestClient
    token: str
    secrets: dict[str, str]  # hook kind -> secret (the hook is named after its kind)

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def site(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """One app per engine for the whole module (its state grows as examples run: that is fine)."""
    if request.param == "sqlite":
        url, drop = f"sqlite:///{tmp_path_factory.mktemp('fuzz-http')}/skypost.db", None
    else:
        url, drop = _pg_create()
    settings = load_settings(env={}, config_file=None, database_url=url, secret_key=TEST_KEY, poll_interval=0.05)
    app = Skypost(settings)
    try:
        app.add_account("alice.test", "app-pass-word", service="https://pds.example.com", verify=False)
        app.add_account("bob.example.com", "app-pass-word", service="https://pds.example.com", verify=False,
                        include_categories=["news"])
        token = create_token(app.db, "fuzz", now=app.clock())
        secrets = {kind: hooks.add_hook(app.db, app.cipher(), name=kind, kind=kind, now=app.clock())
                   for kind in hooks.KINDS}
        with TestClient(create_app(app, threads=2), raise_server_exceptions=False,
                        follow_redirects=False) as client:
            yield Site(client, token, secrets)
    finally:
        app.close()
        if drop is not None:
            drop()


def check_answer(site: Site, response: Any, *, allowed: tuple[int, ...]) -> None:
    body = response.text
    assert response.status_code < 500, f"HTTP {response.status_code}: {body[:500]}"
    assert response.status_code in allowed, f"HTTP {response.status_code}: {body[:500]}"
    data = response.json()
    if response.status_code == 422:
        errors = data["errors"]
        assert isinstance(errors, dict) and errors
        assert all(isinstance(k, str) and isinstance(v, str) and v for k, v in errors.items())
    elif response.status_code in ACCEPTED and "ignored" not in data:
        assert set(data) == {"id", "status", "reason", "deliveries", "interactions"}, data
        location = response.headers["location"]
        if "%" in data["id"]:
            return  # Starlette's TestClient decodes the path twice: %25xx would read another post's id
        again = site.client.get(location, headers=site.auth)
        assert again.status_code == 200, (location, again.status_code, again.text[:300])
        assert again.json().get("id") == data["id"], (location, again.text[:300])


def post(site: Site, body: bytes, content_type: str = "application/json") -> Any:
    return site.client.post("/api/v1/posts", content=body, headers={**site.auth, "Content-Type": content_type})


@FUZZ
@given(documents)
def test_api_post_documents(site, doc):
    check_answer(site, post(site, json_text(doc)), allowed=(200, 202, 422))


@FUZZ
@given(raw_json_bodies, st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded",
                                         "multipart/form-data", ""]))
def test_api_post_raw_bodies(site, body, content_type):
    check_answer(site, post(site, body, content_type), allowed=(200, 202, 422))


@FUZZ
@given(st.text(max_size=30) | pieces_text.filter(lambda s: s == s.encode("utf-8", "replace").decode("utf-8")), raw_json_bodies | st.builds(json_text, json_values))
def test_api_retry_bodies(site, post_id, body):
    from urllib.parse import quote

    response = site.client.post(f"/api/v1/posts/{quote(post_id, safe='')}/retry", content=body,
                                headers={**site.auth, "Content-Type": "application/json"})
    assert response.status_code < 500, f"HTTP {response.status_code}: {response.text[:500]}"
    assert response.status_code in (200, 404, 422), response.text[:300]


path_ids = (st.text(max_size=30) | st.sampled_from(["a\x00b", "\x00", "..", ".", "%00", "a/b", "\n"])).filter(
    lambda s: s == s.encode("utf-8", "replace").decode("utf-8"))


@FUZZ
@given(path_ids)
def test_lookups_by_any_id(site, ident):
    """Ids and names in the path or the query (GET a post, its events, a hook by name): never a 5xx."""
    from urllib.parse import quote

    for method, path, params in (("GET", f"/api/v1/posts/{quote(ident, safe='')}", None),
                                 ("GET", "/api/v1/events", {"post_id": ident}),
                                 ("GET", "/api/v1/posts", {"status": ident}),
                                 ("GET", f"/api/v1/accounts/{quote(ident, safe='')}", None),
                                 ("POST", f"/hooks/{quote(ident, safe='')}", None)):
        response = site.client.request(method, path, params=params, headers=site.auth)
        assert response.status_code < 500, (method, path, params, response.status_code, response.text[:300])


# --- webhooks -----------------------------------------------------------------------------------

def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(strategy, strategy, strategy, json_values)


ghost_tags = st.lists(st.fixed_dictionaries({}, optional={
    "name": maybe(text_like), "visibility": maybe(st.sampled_from(["public", "internal"]))}) | json_values,
    max_size=4)
ghost_payloads = st.builds(
    lambda current, previous: {"post": {"current": current, "previous": previous}},
    st.fixed_dictionaries({}, optional={
        "id": maybe(st.text(max_size=24) | st.integers()), "title": maybe(text_like), "url": maybe(urls),
        "html": maybe(text_like), "custom_excerpt": maybe(text_like), "excerpt": maybe(text_like),
        "feature_image": maybe(urls), "tags": maybe(ghost_tags), "published_at": maybe(iso_datetimes),
        "status": maybe(st.sampled_from(["published", "draft", "scheduled"])),
    }),
    json_values,
)
rendered = st.fixed_dictionaries({}, optional={"rendered": maybe(text_like), "protected": st.booleans()})
wp_terms = st.lists(st.integers() | st.fixed_dictionaries({}, optional={
    "name": maybe(text_like), "taxonomy": maybe(st.sampled_from(["category", "post_tag"]))}), max_size=4)
wordpress_payloads = st.fixed_dictionaries({}, optional={
    "id": maybe(st.integers() | st.text(max_size=10)), "date_gmt": maybe(iso_datetimes),
    "status": maybe(st.sampled_from(["publish", "draft", "future"])), "type": maybe(st.sampled_from(["post", "page"])),
    "link": maybe(urls), "title": maybe(rendered | text_like), "content": maybe(rendered | text_like),
    "excerpt": maybe(rendered | text_like), "categories": maybe(wp_terms), "tags": maybe(wp_terms),
    "jetpack_featured_media_url": maybe(urls),
    "yoast_head_json": maybe(st.fixed_dictionaries({}, optional={"og_image": maybe(st.lists(
        st.fixed_dictionaries({}, optional={"url": maybe(urls)}), max_size=2))})),
    "_embedded": maybe(st.fixed_dictionaries({}, optional={
        "wp:term": maybe(st.lists(wp_terms, max_size=3)),
        "wp:featuredmedia": maybe(st.lists(st.fixed_dictionaries({}, optional={"source_url": maybe(urls)}),
                                           max_size=2))})),
})
hook_bodies = {
    "generic": st.builds(json_text, documents) | raw_json_bodies,
    "ghost": st.builds(json_text, ghost_payloads) | raw_json_bodies,
    "wordpress": st.builds(json_text, wordpress_payloads) | raw_json_bodies,
}


@pytest.mark.parametrize("kind", hooks.KINDS)
@FUZZ
@given(data=st.data())
def test_signed_webhook_bodies(site, kind, data):
    body = data.draw(hook_bodies[kind], label="body")
    response = site.client.post(f"/hooks/{kind}", content=body, headers={
        "Content-Type": "application/json", "X-Skypost-Signature": hooks.sign(site.secrets[kind], body)})
    check_answer(site, response, allowed=(200, 202, 422))


header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7e), max_size=120)
signatures = header_text | st.builds(lambda h, t: f"sha256={h}, t={t}", st.text("0123456789abcdefABCDEF", max_size=70),
                                     st.integers(-10**30, 10**30).map(str) | header_text)


@FUZZ
@given(st.sampled_from(hooks.KINDS), st.binary(max_size=200),
       st.sampled_from(["X-Skypost-Signature", "X-Ghost-Signature"]), signatures)
def test_badly_signed_webhooks_are_refused(site, kind, body, header, value):
    response = site.client.post(f"/hooks/{kind}", content=body, headers={header: value})
    assert response.status_code == 401, (response.status_code, response.text[:300])
    assert response.json()["error"]


# digit strings up to thousands long (int() refuses more than 4300 digits)
digits = (st.text("0123456789", min_size=1, max_size=40)
          | st.integers(0, 6000).map(lambda n: "9" * n + "1"))
timestamps = (digits | header_text | st.integers(-10**20, 10**20).map(str)
              | st.builds(lambda t, f: f"{t}.{f}", st.integers(0, 2**40), st.integers(0, 999)))
ghost_pieces = st.sampled_from(["sha256=", "t=", "t", "=", "sha256=0", "t=1"]) | header_text
ghost_values = (signatures
                | st.builds(lambda h, t: f"sha256={h}, t={t}",
                            st.text("0123456789abcdef", max_size=70), digits)
                | st.lists(ghost_pieces, max_size=6).map(", ".join))
signature_headers = st.fixed_dictionaries({}, optional={
    "X-Skypost-Signature": signatures, "X-Skypost-Timestamp": timestamps,
    "X-Ghost-Signature": ghost_values})


@FUZZ
@given(st.sampled_from(hooks.KINDS), st.binary(max_size=200), signature_headers)
def test_signature_headers_never_cause_a_5xx(site, kind, body, headers):
    """Any combination of the three signature headers, without the secret: always a 401."""
    response = site.client.post(f"/hooks/{kind}", content=body, headers=headers)
    assert response.status_code == 401, (headers, response.status_code, response.text[:300])
    assert set(response.json()) == {"error"} and "Traceback" not in response.text


@FUZZ
@given(st.sampled_from(hooks.KINDS), st.integers(-10**6, 10**6), st.booleans())
def test_signed_timestamps_are_checked_against_the_window(site, kind, offset, in_ms):
    """Signed with the secret: accepted (or refused for its content) inside the window, 401
    outside it; never a 5xx. The app's clock is the real one, hence the margin."""
    import time

    if abs(abs(offset) - hooks.REPLAY_WINDOW) < 30:
        offset += 60 if offset > 0 else -60
    body = json_text({"id": f"ts-{offset}", "title": "t", "url": "https://e.com/ts"})
    secret = site.secrets[kind]
    if in_ms:
        stamp = int((time.time() + offset) * 1000)
        headers = {"X-Ghost-Signature": hooks.sign_ghost(secret, body, stamp)}
    else:
        stamp = int(time.time()) + offset
        headers = {"X-Skypost-Signature": hooks.sign(secret, body, stamp),
                   "X-Skypost-Timestamp": str(stamp)}
    response = site.client.post(f"/hooks/{kind}", content=body,
                                headers={"Content-Type": "application/json", **headers})
    assert response.status_code < 500, response.text[:300]
    if abs(offset) > hooks.REPLAY_WINDOW:
        assert response.status_code == 401, response.text[:300]
    else:
        assert response.status_code in (200, 202, 422), response.text[:300]


# --- what the fuzzing found, kept as fixed cases ----------------------------------------------------

DOC = b'"title": "t", "url": "https://e.com/a"'
FOUND = [
    pytest.param("api", b'{"id": "1", "published_at": "0001-01-01T00:00:00+01:00", ' + DOC + b"}",
                 id="api-published_at-0001-01-01+01:00-OverflowError"),
    pytest.param("api", b'{"id": 1' + b"0" * 5000 + b", " + DOC + b"}", id="api-5000-digit-int-ValueError"),
    pytest.param("api", b"[" * 5000 + b"]" * 5000, id="api-deep-nesting-RecursionError"),
    pytest.param("api", b'{"id": "2", "title": "\\ud800", "url": "https://e.com/a"}', id="api-lone-surrogate-title"),
    pytest.param("api", b'{"id": "3\\udc80", ' + DOC + b"}", id="api-lone-surrogate-id"),
    pytest.param("api", b'{"id": "4", "x\\udc00": 1, ' + DOC + b"}", id="api-lone-surrogate-unknown-key"),
    pytest.param("api", b'{"id": "5\\u0000", ' + DOC + b"}", id="api-NUL-in-id"),
    pytest.param("api", b'{"id": "6\\n6", ' + DOC + b"}", id="api-newline-in-id-Location-404"),
    pytest.param("api", b'{"id": "..", ' + DOC + b"}", id="api-id-dotdot-Location-normalised-away"),
    pytest.param("api", b'{"id": ".", ' + DOC + b"}", id="api-id-dot-Location-is-the-list"),
    pytest.param("retry", b'{"account": 1' + b"0" * 5000 + b"}", id="retry-5000-digit-int"),
    pytest.param("generic", b'{"id": 1' + b"0" * 5000 + b", " + DOC + b"}", id="hook-generic-5000-digit-int"),
    pytest.param("ghost", json.dumps({"post": {"current": {"id": "g1", "title": "t", "url": "https://e.com/g",
                                                           "published_at": "0001-01-01T00:00:00+01:00"}}}).encode(),
                 id="hook-ghost-published_at-OverflowError"),
    pytest.param("wordpress", json.dumps({"id": 7, "link": "https://e.com/w", "title": {"rendered": "t"},
                                          "date_gmt": "9999-12-31T23:59:59-01:00"}).encode(),
                 id="hook-wordpress-date_gmt-OverflowError"),
]


@pytest.mark.parametrize("method, path", [
    ("GET", "/api/v1/posts/a%00b"),
    ("POST", "/api/v1/posts/a%00b/retry"),
    ("GET", "/api/v1/events?post_id=a%00b"),
    ("POST", "/hooks/a%00b"),  # no token needed: anyone can cause it
])
def test_found_paths(site, method, path):
    """A NUL in an id or a hook name: PostgreSQL refuses the query (DataError), the answer is a 500."""
    response = site.client.request(method, path, headers=site.auth)
    assert response.status_code < 500, (response.status_code, response.text[:300])


@pytest.mark.parametrize("target, body", FOUND)
def test_found_bodies(site, target, body):
    if target == "api":
        response = post(site, body)
    elif target == "retry":
        response = site.client.post("/api/v1/posts/p/retry", content=body, headers=site.auth)
        assert response.status_code < 500, response.text[:300]
        return
    else:
        response = site.client.post(f"/hooks/{target}", content=body, headers={
            "Content-Type": "application/json", "X-Skypost-Signature": hooks.sign(site.secrets[target], body)})
    check_answer(site, response, allowed=(200, 202, 422))


@pytest.mark.parametrize("headers", [
    {"X-Ghost-Signature": "sha256=" + "0" * 64 + ", t=" + "9" * 5000},
    {"X-Ghost-Signature": "sha256=" + "0" * 64 + ", t=" + "0" * 10_000 + "1"},
    {"X-Skypost-Signature": "sha256=" + "0" * 64, "X-Skypost-Timestamp": "9" * 5000},
], ids=["ghost-t-5000-digits-ValueError", "ghost-t-10000-zeros", "skypost-timestamp-5000-digits"])
def test_found_signature_headers(site, headers):
    """int() of more than 4300 digits raises ValueError: an unauthenticated 500 with a traceback."""
    response = site.client.post("/hooks/ghost", content=b"{}", headers=headers)
    assert response.status_code == 401, (response.status_code, response.text[:300])
    assert "Traceback" not in response.text


def test_webhook_json_is_checked_after_the_signature(site):
    """The raw body is what is signed: the same document re-serialised is refused."""
    body = json.dumps({"id": "x", "title": "t", "url": "https://e.com"}).encode()
    other = json.dumps(json.loads(body), indent=1).encode()
    response = site.client.post("/hooks/generic", content=other,
                                headers={"X-Skypost-Signature": hooks.sign(site.secrets["generic"], body)})
    assert response.status_code == 401
