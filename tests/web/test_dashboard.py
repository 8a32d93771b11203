"""The dashboard without a browser: login, sessions, CSRF, pages and fragments."""

from __future__ import annotations

import re

from skypost import Skypost
from skypost.config import load_settings
from skypost.web import create_app
from skypost.web.session import SESSION_COOKIE
from skypost.web.tokens import create_token, revoke_token
from tests.conftest import TEST_KEY
from tests.support.faultproxy import error
from tests.web.conftest import TestClient, Web

CREATE = "com.atproto.repo.createRecord"


def csrf_of(html):
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, html[:500]
    return match.group(1)


def log_in(web, token=None):
    page = web.client.get("/login")
    r = web.client.post("/login", data={"csrf": csrf_of(page.text), "token": token or web.token, "next": "/"})
    assert r.status_code == 303 and r.headers["location"] == "/", r.text
    return csrf_of(web.client.get("/").text)


def test_login_needs_a_valid_token_and_a_csrf_token(web):
    c = web.client
    r = c.get("/activity")
    assert r.status_code == 303 and r.headers["location"] == "/login?next=%2Factivity"
    login = c.get("/login?next=/activity")
    assert login.status_code == 200 and "API token" in login.text
    csrf = csrf_of(login.text)
    assert c.post("/login", data={"token": web.token}).status_code == 403  # no CSRF token
    assert c.post("/login", data={"token": web.token, "csrf": "forged"}).status_code == 403
    bad = c.post("/login", data={"token": "skp_nope", "csrf": csrf})
    assert bad.status_code == 401 and "not valid" in bad.text
    ok = c.post("/login", data={"token": web.token, "csrf": csrf, "next": "/activity"})
    assert ok.status_code == 303 and ok.headers["location"] == "/activity"
    assert "httponly" in ok.headers["set-cookie"].lower() and web.token not in ok.headers["set-cookie"]
    assert c.get("/activity").status_code == 200
    # never a redirect to another site
    for target in ("https://evil.example/", "//evil.example/", "/\\evil.example"):
        csrf = csrf_of(c.get("/login").text)  # each login starts a new session, with a new CSRF token
        r = c.post("/login", data={"token": web.token, "csrf": csrf, "next": target})
        assert r.headers["location"] == "/"


def test_a_revoked_token_ends_its_sessions_and_logout_works(web):
    log_in(web)
    assert web.client.get("/").status_code == 200
    revoke_token(web.app.db, "tests", now=web.app.clock())
    assert web.client.get("/").status_code == 303
    other = create_token(web.app.db, "other", now=web.app.clock())
    csrf = log_in(web, other)
    assert web.client.post("/logout", data={}).status_code == 403
    assert web.client.post("/logout", data={"csrf": csrf}).headers["location"] == "/login"
    assert web.client.get("/").status_code == 303


def saved_cookie(web):
    value = web.client.cookies.get(SESSION_COOKIE)
    assert value
    return value


def with_cookie(web, value):
    """The browser of someone who kept a copy of the cookie."""
    web.client.cookies.clear()
    web.client.cookies.set(SESSION_COOKIE, value)
    status = web.client.get("/").status_code
    web.client.cookies.clear()
    return status


def test_a_revoked_token_stays_dead_when_its_name_is_used_again(web):
    log_in(web)
    old_cookie = saved_cookie(web)
    assert with_cookie(web, old_cookie) == 200
    revoke_token(web.app.db, "tests", now=web.app.clock())
    renewed = create_token(web.app.db, "tests", now=web.app.clock())  # the same name (and row)
    assert with_cookie(web, old_cookie) == 303
    assert web.client.get("/api/v1/health", headers=web.auth).status_code == 401  # the old bearer
    assert web.client.get("/api/v1/health",
                          headers={"Authorization": f"Bearer {renewed}"}).status_code == 200
    log_in(web, renewed)
    assert web.client.get("/").status_code == 200


def test_logout_kills_saved_copies_of_the_cookie(web):
    csrf = log_in(web)
    kept = saved_cookie(web)
    assert web.client.post("/logout", data={"csrf": csrf}).headers["location"] == "/login"
    assert with_cookie(web, kept) == 303
    # another session of the same token is not affected
    log_in(web)
    other = saved_cookie(web)
    assert with_cookie(web, kept) == 303 and with_cookie(web, other) == 200


def test_a_session_ends_after_its_lifetime_even_if_the_cookie_is_kept(web, clock):
    log_in(web)
    kept = saved_cookie(web)
    clock.advance(7 * 24 * 3600 - 60)
    assert with_cookie(web, kept) == 200
    clock.advance(61)
    assert with_cookie(web, kept) == 303
    with web.app.db.connect() as conn:
        assert conn.scalar("SELECT COUNT(*) FROM web_sessions") == 1
    log_in(web)  # a login sweeps expired sessions away
    with web.app.db.connect() as conn:
        assert conn.scalar("SELECT COUNT(*) FROM web_sessions") == 1


def test_the_cookie_holds_a_session_id_not_the_token(web):
    log_in(web)
    with web.app.db.connect() as conn:
        rows = conn.all("SELECT * FROM web_sessions")
    assert len(rows) == 1 and len(rows[0]["id_hash"]) == 64
    cookie = saved_cookie(web)
    assert web.token not in cookie and rows[0]["id_hash"] not in cookie


def test_forms_without_the_csrf_token_change_nothing(web):
    csrf = log_in(web)
    for path in ("/pause", "/posts/1/retry", "/accounts/a.test/password", "/accounts"):
        r = web.client.post(path, data={"csrf": "forged"})
        assert r.status_code == 403, path
    assert web.app.paused is False
    r = web.client.post("/pause", data={"csrf": csrf, "next": "/activity"})
    assert r.status_code == 303 and r.headers["location"] == "/activity" and web.app.paused
    page = web.client.get("/activity").text
    assert "Syndication paused" in page and "Resume" in page
    web.client.post("/resume", data={"csrf": csrf})
    assert web.app.paused is False


def test_posts_pages_and_the_live_fragment(web, make_account, proxy):
    alice = make_account("dash")
    web.app.add_account(alice.handle, alice.app_password, service=proxy.url)
    csrf = log_in(web)
    web.app.submit({"id": "a/1", "title": "<script>alert(1)</script> Hello", "url": "https://e.com/1"})
    home = web.client.get("/")
    assert home.status_code == 200
    assert "&lt;script&gt;alert(1)&lt;/script&gt; Hello" in home.text and "<script>alert(1)" not in home.text
    assert 'href="/posts/a%2F1"' in home.text and "badge-pending" in home.text
    assert "<svg" in home.text
    assert home.headers["x-frame-options"] == "DENY" and "script-src 'self'" in home.headers["content-security-policy"]

    page = web.client.get("/posts/a%2F1")
    assert page.status_code == 200 and "Syndicating to Bluesky…" in page.text
    fragment = web.client.get("/posts/a%2F1/status", headers={"HX-Request": "true"})
    assert 'hx-trigger="every 1s"' in fragment.text and "<html" not in fragment.text

    web.app.run_worker(burst=True)
    done = web.client.get("/posts/a%2F1/status").text
    assert "Live on Bluesky" in done and "hx-trigger" not in done  # polling stops when finished
    assert "https://bsky.app/profile/" in done
    assert "1 published, 0 failed" in web.client.get("/").text

    # a failed post shows a Retry button; pressing it (htmx or a plain form) queues it again
    proxy.add_rule(CREATE, error(400, {"error": "InvalidRequest", "message": "bad record"}), times=2)
    web.app.submit({"id": "b", "title": "Fails", "url": "https://e.com/b"})
    web.app.run_worker(burst=True)
    failed = web.client.get("/posts/b").text
    assert "bad record" in failed and 'id="retry"' in failed
    swapped = web.client.post("/posts/b/retry", data={"csrf": csrf}, headers={"HX-Request": "true"})
    assert swapped.status_code == 200 and 'id="post-status"' in swapped.text and "Syndicating" in swapped.text
    web.app.run_worker(burst=True)
    r = web.client.post("/posts/b/retry", data={"csrf": csrf})
    assert r.status_code == 303 and r.headers["location"] == "/posts/b"
    web.app.run_worker(burst=True)
    assert web.app.status("b")["status"] == "completed"
    assert web.client.get("/?status=completed").text.count("badge-completed") >= 2
    assert "2 published, 2 failed" in web.client.get("/").text  # failures count in their hour, even if retried
    assert web.client.get("/posts/nope").status_code == 404
    assert "published to @" in web.client.get("/activity").text


def test_accounts_page_and_the_password_form(web, make_account, proxy):
    alice = make_account("form")
    web.app.add_account(alice.handle, alice.app_password, service=proxy.url)
    csrf = log_in(web)
    page = web.client.get("/accounts").text
    assert f"@{alice.handle}" in page and "Circuit breaker" in page and alice.app_password not in page
    r = web.client.post(f"/accounts/{alice.handle}/password",
                        data={"csrf": csrf, "app_password": "aaaa-bbbb-cccc-dddd"})
    assert r.status_code == 303
    page = web.client.get("/accounts").text
    assert "refused the login" in page and "aaaa-bbbb-cccc-dddd" not in page
    web.client.post(f"/accounts/{alice.handle}/password", data={"csrf": csrf, "app_password": alice.app_password})
    page = web.client.get("/accounts").text
    assert "New app password saved" in page and alice.app_password not in page


def test_adding_an_account_from_the_dashboard_checks_it_like_the_cli(web, make_account, proxy):
    bob = make_account("addform")
    csrf = log_in(web)
    empty = web.client.get("/").text
    assert 'href="/accounts#add-account"' in empty  # a first-time user is shown the way
    form = {"csrf": csrf, "handle": bob.handle, "service": proxy.url}
    refused = web.client.post("/accounts", data={**form, "app_password": "hunter2-not-an-app-pw"})
    assert refused.status_code == 422 and "refused the login" in refused.text
    assert "hunter2-not-an-app-pw" not in refused.text and f'value="{bob.handle}"' in refused.text
    assert "does not look like an app password" in refused.text
    assert web.app.accounts() == []
    assert web.client.post("/accounts", data={**form, "app_password": bob.app_password,
                                              "csrf": "forged"}).status_code == 403
    added = web.client.post("/accounts",
                            data={**form, "app_password": bob.app_password, "manual": "on"})
    assert added.status_code == 303 and added.headers["location"] == "/accounts"
    page = web.client.get("/accounts").text
    assert f"Added @{bob.handle} ({bob.did})" in page and bob.app_password not in page
    assert "not known yet: Bluesky reports it on the first call" in page
    [account] = web.app.accounts()
    assert account["did"] == bob.did and account["auto_syndicate"] is False
    again = web.client.post("/accounts", data={**form, "app_password": bob.app_password})
    assert again.status_code == 422 and "already configured" in again.text


def test_a_private_service_is_refused_with_the_way_to_allow_it(sqlite_url):
    settings = load_settings(env={}, config_file=None, database_url=sqlite_url, secret_key=TEST_KEY,
                             allow_private_urls=False)
    with Skypost(settings) as app:
        token = create_token(app.db, "tests", now=app.clock())
        with TestClient(create_app(app), follow_redirects=False) as client:
            web = Web(app, client, token)
            csrf = log_in(web)
            r = client.post("/accounts", data={"csrf": csrf, "handle": "x.test",
                                               "service": "http://127.0.0.1:9",
                                               "app_password": "abcd-efgh-ijkl-mnop"})
            assert app.accounts() == []
    assert r.status_code == 422 and "SKYPOST_ALLOW_PRIVATE_URLS=1" in r.text


def test_activity_links_are_links_and_nothing_else_is_markup(web, make_account, proxy):
    from skypost.store import queries as q

    alice = make_account("links")
    web.app.add_account(alice.handle, alice.app_password, service=proxy.url)
    log_in(web)
    web.app.submit({"id": "l1", "title": "Linked", "url": "https://e.com/l1"})
    web.app.run_worker(burst=True)
    with web.app.db.transaction() as conn:
        q.add_event(conn, ts=web.app.clock(), kind="note", post_id="l1",
                    message='<b>bold</b> see https://e.com/a?x=1&y="2" (and https://e.com/b).')
    page = web.client.get("/activity").text
    url = web.app.status("l1")["deliveries"][0]["url"]
    assert f'<a href="{url}" rel="noopener">{url}</a>' in page
    assert "&lt;b&gt;bold&lt;/b&gt;" in page and "<b>bold" not in page
    # a quote ends an address
    assert '<a href="https://e.com/a?x=1&amp;y=" rel="noopener">' in page
    assert '<a href="https://e.com/b" rel="noopener">https://e.com/b</a>).' in page


def test_the_live_fragment_carries_the_history_and_skipped_posts_offer_retry(web, make_account,
                                                                              proxy):
    csrf = log_in(web)
    web.app.submit({"id": "early", "title": "Before any account", "url": "https://e.com/early"})
    page = web.client.get("/posts/early").text
    assert 'id="retry"' in page and 'id="post-history"' in page
    htmx = {"HX-Request": "true"}
    nothing = web.client.post("/posts/early/retry", data={"csrf": csrf}, headers=htmx)
    assert "nothing to retry: post early stays skipped (no account configured" in nothing.text
    assert 'id="post-history" hx-swap-oob="true"' in nothing.text

    alice = make_account("revive")
    web.app.add_account(alice.handle, alice.app_password, service=proxy.url)
    revived = web.client.post("/posts/early/retry", data={"csrf": csrf}, headers=htmx)
    assert "Syndicating to Bluesky…" in revived.text and "nothing to retry" not in revived.text
    assert "skipped post judged again on retry" in revived.text  # the history, out of band
    web.app.run_worker(burst=True)
    live = web.client.get("/posts/early/status", headers={"HX-Request": "true"}).text
    assert "Live on Bluesky" in live and "published to @" in live and 'hx-swap-oob="true"' in live
    assert web.client.get("/favicon.ico").headers["location"] == "/static/favicon.svg"
    assert web.client.get("/static/favicon.svg").headers["content-type"].startswith("image/svg+xml")
