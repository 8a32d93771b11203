"""Fixtures for the web tests: the Starlette app over a Skypost from make_app, a TestClient, a token."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import warnings

import pytest

with warnings.catch_warnings():  # Starlette suggests httpx2; httpx (a project dependency) works the same
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from skypost import Skypost
from skypost.web import create_app
from skypost.web.tokens import create_token


@dataclass
class Web:
    app: Skypost
    client: TestClient
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.client.get(path, headers={**self.auth, **kwargs.pop("headers", {})}, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.client.post(path, headers={**self.auth, **kwargs.pop("headers", {})}, **kwargs)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.client.request(method, path, headers={**self.auth, **kwargs.pop("headers", {})}, **kwargs)


@pytest.fixture
def web(db_url: str, make_app: Any) -> Iterator[Web]:
    """The app on SQLite and on PostgreSQL, with one API token."""
    app = make_app(db_url)
    token = create_token(app.db, "tests", now=app.clock())
    with TestClient(create_app(app), follow_redirects=False) as client:
        yield Web(app, client, token)


@pytest.fixture
def sqlite_web(sqlite_url: str, make_app: Any) -> Iterator[Web]:
    """The same on SQLite only (for the slower, engine-independent tests)."""
    app = make_app(sqlite_url)
    token = create_token(app.db, "tests", now=app.clock())
    with TestClient(create_app(app), follow_redirects=False) as client:
        yield Web(app, client, token)
