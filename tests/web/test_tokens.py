"""`skypost token create | list | revoke`: shown once, stored hashed, revocation is immediate."""

from __future__ import annotations

import hashlib
import json
import re

import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient

from skypost.cli import main
from skypost.web import create_app
from tests.conftest import TEST_KEY


@pytest.fixture
def cli(db_url, monkeypatch):
    for key in ("SKYPOST_DATABASE_URL", "SKYPOST_CONFIG", "SKYPOST_SECRET_KEY_FILE"):
        monkeypatch.delenv(key, raising=False)
    runner = CliRunner(env={"SKYPOST_SECRET_KEY": TEST_KEY})

    def run(*args):
        return runner.invoke(main, ["--database-url", db_url, *args], catch_exceptions=False)

    return run


def test_token_lifecycle(cli, db_url, make_app):
    assert cli("init").exit_code == 0  # commands other than init and serve need a database
    created = cli("token", "create", "ci")
    assert created.exit_code == 0, created.output
    token = created.stdout.strip()
    assert created.stdout == token + "\n" and created.stderr == ""  # the token alone, once
    assert re.fullmatch(r"skp_[A-Za-z0-9_-]{43}", token)

    app = make_app(db_url)
    with app.db.connect() as conn:
        rows = conn.all("SELECT * FROM tokens")
    assert rows[0]["token_hash"] == hashlib.sha256(token.encode()).hexdigest()
    assert token not in json.dumps(rows)

    for args in (("token", "list"), ("token", "list", "--json")):
        listed = cli(*args)
        assert listed.exit_code == 0 and "ci" in listed.stdout
        assert token not in listed.output and rows[0]["token_hash"] not in listed.output
    assert json.loads(cli("token", "list", "--json").stdout)[0]["active"] is True

    with TestClient(create_app(app)) as client:
        auth = {"Authorization": f"Bearer {token}"}
        assert client.get("/api/v1/health", headers=auth).status_code == 200
        assert cli("token", "create", "ci").exit_code == 2  # one active token per name
        revoked = cli("token", "revoke", "ci")
        assert revoked.exit_code == 0 and token not in revoked.output
        r = client.get("/api/v1/health", headers=auth)
        assert r.status_code == 401 and r.json() == {"error": "invalid or revoked token"}
        assert "revoked" in cli("token", "list").stdout
        assert cli("token", "revoke", "ci").exit_code == 2
        # the name can be used again, with a new token; the old one stays dead
        renewed = cli("token", "create", "ci").stdout.strip()
        assert renewed != token
        assert client.get("/api/v1/health", headers={"Authorization": f"Bearer {renewed}"}).status_code == 200
        assert client.get("/api/v1/health", headers=auth).status_code == 401

    for name in ("", "has space", ".dot", "x" * 65):
        bad = cli("token", "create", name)
        assert bad.exit_code == 2 and "name" in bad.stderr and bad.stdout == ""
