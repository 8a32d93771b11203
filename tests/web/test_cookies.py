"""The dashboard cookie's Secure flag: by setting, over HTTPS, and behind a trusted proxy only."""

from __future__ import annotations

import warnings
from typing import Any, Iterator

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from skypost.config import ConfigError, load_settings
from skypost.web import create_app
from skypost.web.tokens import create_token
from tests.web.test_dashboard import csrf_of

PROXY = "203.0.113.7"
STRANGER = "198.51.100.9"


def login_cookie(client: TestClient, token: str) -> str:
    """The Set-Cookie header of a successful login."""
    page = client.get("/login")
    r = client.post("/login", data={"csrf": csrf_of(page.text), "token": token})
    assert r.status_code == 303, r.text
    return r.headers["set-cookie"].lower()


def page_cookie(client: TestClient, headers: dict[str, str] | None = None) -> str:
    """The Set-Cookie header of the login page (its session holds the form's CSRF token)."""
    client.cookies.clear()  # a Secure cookie would not be sent back over http anyway
    r = client.get("/login", headers=headers)
    assert r.status_code == 200
    return r.headers["set-cookie"].lower()


def secure(set_cookie: str) -> bool:
    return "; secure" in set_cookie


@pytest.fixture
def serve(sqlite_url: str, make_app: Any) -> Iterator[Any]:
    """Build the app with some settings; a TestClient whose peer address is chosen."""
    opened: list[TestClient] = []

    def make(peer: str = "127.0.0.1", base_url: str = "http://testserver", **settings: Any):
        app = make_app(sqlite_url, **settings)
        token = create_token(app.db, f"t{len(opened)}", now=app.clock())
        client = TestClient(create_app(app), base_url=base_url, client=(peer, 40000),
                            follow_redirects=False)
        client.__enter__()
        opened.append(client)
        return client, token

    yield make
    for client in opened:
        client.__exit__(None, None, None)


def test_plain_http_on_localhost_gets_no_secure_flag_by_default(serve):
    client, token = serve()
    cookie = login_cookie(client, token)
    assert "httponly" in cookie and "samesite=lax" in cookie and not secure(cookie)


def test_the_setting_marks_every_cookie_secure(serve):
    client, _ = serve(cookie_secure=True)
    assert secure(page_cookie(client))


def test_a_request_over_https_gets_a_secure_cookie(serve):
    client, token = serve(base_url="https://testserver")
    assert secure(login_cookie(client, token))


def test_x_forwarded_proto_is_believed_only_from_trusted_proxies(serve):
    https = {"X-Forwarded-Proto": "https"}
    trusted, token = serve(peer=PROXY, trusted_proxies=(PROXY,))
    assert secure(page_cookie(trusted, https))
    assert not secure(page_cookie(trusted))  # the proxy said nothing: plain http
    assert not secure(page_cookie(trusted, {"X-Forwarded-Proto": "http"}))
    # only the value the trusted proxy itself appended (the last one) counts
    assert not secure(page_cookie(trusted, {"X-Forwarded-Proto": "https, http"}))
    assert secure(page_cookie(trusted, {"X-Forwarded-Proto": "http, https"}))

    network, _ = serve(peer=PROXY, trusted_proxies=("203.0.113.0/24",))
    assert secure(page_cookie(network, https))
    mapped, _ = serve(peer="::ffff:" + PROXY, trusted_proxies=(PROXY,))
    assert secure(page_cookie(mapped, https))

    stranger, _ = serve(peer=STRANGER, trusted_proxies=(PROXY,))
    assert not secure(page_cookie(stranger, https))
    unconfigured, _ = serve(peer=PROXY)  # no trusted proxies configured
    assert not secure(page_cookie(unconfigured, https))


def test_the_settings_come_from_the_environment_and_bad_values_are_refused():
    env = {"SKYPOST_COOKIE_SECURE": "1", "SKYPOST_TRUSTED_PROXIES": "10.0.0.1, 192.168.0.0/16,::1"}
    settings = load_settings(env=env, config_file=None)
    assert settings.cookie_secure is True
    assert settings.trusted_proxies == ("10.0.0.1/32", "192.168.0.0/16", "::1/128")
    assert load_settings(env={}, config_file=None).cookie_secure is False
    for bad in ({"SKYPOST_TRUSTED_PROXIES": "proxy.example.com"},
                {"SKYPOST_COOKIE_SECURE": "maybe"}):
        with pytest.raises(ConfigError):
            load_settings(env=bad, config_file=None)
