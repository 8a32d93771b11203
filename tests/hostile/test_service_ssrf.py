"""An account's service URL is where skypost sends an app password: the SSRF policy applies to it
(API POST and PATCH, CLI), a foreign server's answer is never echoed, and a new service is a new
login."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
import warnings
from typing import Any, Iterator

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from skypost import Skypost
from skypost.accounts import validate_service
from skypost.config import load_settings
from skypost.models import ValidationError
from skypost.web import create_app
from skypost.web.tokens import create_token
from tests.conftest import TEST_KEY

SECRET = "internal-secret-4242"
ALLOW_HINT = "SKYPOST_ALLOW_PRIVATE_URLS=1"


class Internal:
    """An 'internal' HTTP service on loopback that answers every request with a secret."""

    def __init__(self, status: int, body: bytes, content_type: str = "application/json"):
        self.requests: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                outer.requests.append(self.path)
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def internal() -> Iterator[Internal]:
    server = Internal(401, json.dumps({"error": "AuthenticationRequired", "message": SECRET}).encode())
    yield server
    server.close()


def web_client(url: str, allow_private: bool) -> tuple[Skypost, TestClient, dict[str, str]]:
    settings = load_settings(env={}, database_url=url, secret_key=TEST_KEY, allow_private_urls=allow_private,
                             http_timeout=5.0)
    app = Skypost(settings)
    token = create_token(app.db, "t", now=app.clock())
    return app, TestClient(create_app(app)), {"Authorization": f"Bearer {token}"}


def test_the_service_policy_checks_every_address():
    def resolver(*addresses: str):
        return lambda host, port: list(addresses)

    assert validate_service("https://pds.example/", resolver=resolver("93.184.215.14")) == "https://pds.example"
    for addresses in (("93.184.215.14", "10.0.0.5"), ("169.254.169.254",), ("::1",), ("::ffff:127.0.0.1",),
                      ("fd00::1",), ("0.0.0.0",)):
        with pytest.raises(ValidationError) as refused:
            validate_service("https://pds.example", resolver=resolver(*addresses))
        assert "refused" in refused.value.errors["service"] and ALLOW_HINT in refused.value.errors["service"]
    assert validate_service("http://10.0.0.5:2583", allow_private=True) == "http://10.0.0.5:2583"
    for literal in ("http://127.0.0.1:2583", "http://[::1]/", "http://localhost:2583"):
        with pytest.raises(ValidationError, match="loopback"):
            validate_service(literal)


def test_the_api_refuses_private_services_on_post_and_patch(sqlite_url, internal):
    app, client, auth = web_client(sqlite_url, allow_private=False)
    with app, client:
        r = client.post("/api/v1/accounts", headers=auth, json={
            "handle": "alice.example.com", "app_password": "pw", "service": internal.url})
        assert r.status_code == 422, r.text
        assert "loopback" in r.json()["errors"]["service"] and ALLOW_HINT in r.json()["errors"]["service"]
        assert SECRET not in r.text
        app.add_account("alice.example.com", "pw", service="https://pds.invalid", verify=False)
        r = client.patch("/api/v1/accounts/alice.example.com", headers=auth,
                         json={"service": internal.url + "/", "app_password": "pw"})
        assert r.status_code == 422 and ALLOW_HINT in r.json()["errors"]["service"], r.text
        assert internal.requests == []  # the internal host was never called
        assert app.accounts()[0]["service"] == "https://pds.invalid"


def test_a_failed_login_never_echoes_the_servers_answer(sqlite_url, internal):
    app, client, auth = web_client(sqlite_url, allow_private=True)
    html = Internal(502, f"<html>{SECRET}</html>".encode(), "text/html")
    try:
        with app, client:
            for server, field, shown in ((internal, "app_password", "HTTP 401 AuthenticationRequired"),
                                         (html, "service", "HTTP 502")):
                r = client.post("/api/v1/accounts", headers=auth, json={
                    "handle": "alice.example.com", "app_password": "pw", "service": server.url})
                assert r.status_code == 422, r.text
                assert SECRET not in r.text and shown in r.json()["errors"][field], r.text
                assert server.requests  # it was asked (private addresses allowed here)
            assert app.accounts() == []
    finally:
        html.close()


def test_a_new_service_is_a_new_login(sqlite_url, make_account, pds, proxy):
    alice = make_account("moves")
    app, client, auth = web_client(sqlite_url, allow_private=True)
    with app, client:
        app.add_account(alice.handle, alice.app_password, service=proxy.url)
        path = f"/api/v1/accounts/{alice.handle}"
        r = client.patch(path, headers=auth, json={"service": pds.listen_url})
        assert r.status_code == 422 and "app_password" in r.json()["errors"], r.text
        assert "service changes" in r.json()["errors"]["app_password"]
        assert app.accounts()[0]["service"] == proxy.url
        assert client.patch(path, headers=auth, json={"service": proxy.url + "/"}).status_code == 200  # same
        r = client.patch(path, headers=auth, json={"service": pds.listen_url, "app_password": "wrong-pass"})
        assert r.status_code == 422 and app.accounts()[0]["service"] == proxy.url
        r = client.patch(path, headers=auth, json={"service": pds.listen_url,
                                                   "app_password": alice.app_password})
        assert r.status_code == 200, r.text
        assert r.json()["service"] == pds.listen_url
        events = [e for e in app.events(limit=50) if e["kind"] == "account_service_changed"]
        assert len(events) == 1 and proxy.url in events[0]["message"] and pds.listen_url in events[0]["message"]
        assert alice.app_password not in json.dumps(app.events(limit=100))


def test_the_cli_refuses_private_services(tmp_path, internal):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKYPOST_")}
    env.update(SKYPOST_DATABASE_URL=f"sqlite:///{tmp_path}/skypost.db", SKYPOST_SECRET_KEY=TEST_KEY)

    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "skypost.cli", *args], env=env, input=stdin,
                              capture_output=True, text=True, timeout=60)

    assert run("init").returncode == 0
    added = run("account", "add", "alice.example.com", "--password-stdin", "--service", internal.url,
                stdin="abcd-efgh-ijkl-mnop\n")
    assert added.returncode == 2 and added.stderr.startswith("error: service: refused"), added.stderr
    assert ALLOW_HINT in added.stderr and len(added.stderr.splitlines()) == 1
    assert internal.requests == []
    with Skypost(load_settings(env={}, database_url=env["SKYPOST_DATABASE_URL"], secret_key=TEST_KEY)) as app:
        app.add_account("alice.example.com", "pw", service="https://pds.invalid", verify=False)
    moved = run("account", "update", "alice.example.com", "--service", internal.url)
    assert moved.returncode == 2 and "refused" in moved.stderr, moved.stderr
    moved = run("account", "update", "alice.example.com", "--service", "https://other.invalid")
    assert moved.returncode == 2 and "password: is required when the service changes" in moved.stderr
    env["SKYPOST_ALLOW_PRIVATE_URLS"] = "1"
    allowed = run("account", "add", "bob.example.com", "--password-stdin", "--service", internal.url,
                  stdin="abcd-efgh-ijkl-mnop\n")
    assert allowed.returncode == 2 and "refused the login" in allowed.stderr and SECRET not in allowed.stderr
    assert internal.requests
    listed = json.loads(run("account", "list", "--json").stdout)
    assert [(a["handle"], a["service"]) for a in listed] == [("alice.example.com", "https://pds.invalid")]
