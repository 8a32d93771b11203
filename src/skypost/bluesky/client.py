"""One account's connection to its PDS, on the atproto SDK.

It reuses a stored session, refreshes it when the server says the access token
expired (and repeats the call), and logs in with the app password only when no
session or refresh token works: Bluesky allows very few logins a day.
Every response's headers are handed to `on_response` for the rate limiter.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Callable, Mapping, Sequence, TypeVar
from urllib.parse import urlencode, urlsplit

import httpx
from atproto import Client, SessionEvent, models
from atproto_client.exceptions import (
    AtProtocolError,
    BadRequestError,
    LoginRequiredError,
    RequestErrorBase,
)
from atproto_client.request import Request

from skypost.resilience import TOKEN_ERRORS

POST_COLLECTION = "app.bsky.feed.post"
# records that share a post's record key and go with it: who may reply, who may quote
GATE_COLLECTIONS = ("app.bsky.feed.threadgate", "app.bsky.feed.postgate")
T = TypeVar("T")


class CallError(Exception):
    """A failed XRPC call as plain values: HTTP status (None: no answer), error code, message, headers."""

    def __init__(self, status: int | None, error: str | None, message: str,
                 headers: dict[str, str] | None = None, method: str | None = None):
        self.status = status
        self.error = error
        self.message = message
        self.headers = headers or {}
        self.method = method
        super().__init__(message)

    def __str__(self) -> str:
        where = f"{self.method}: " if self.method else ""
        code = f"HTTP {self.status}" if self.status else "no response"
        detail = f" {self.error}" if self.error else ""
        return f"{where}{code}{detail}: {self.message}"


def translate(exc: BaseException, method: str | None = None) -> CallError:
    """Turn whatever the SDK or httpx raised into a CallError."""
    if isinstance(exc, CallError):
        return exc
    if isinstance(exc, RequestErrorBase) and exc.response is not None:
        response = exc.response
        error = message = None
        content = response.content
        if hasattr(content, "error"):
            error, message = content.error, content.message
        elif isinstance(content, (bytes, str)) and content:
            text = content.decode(errors="replace") if isinstance(content, bytes) else content
            try:
                parsed = json.loads(text)
                error, message = parsed.get("error"), parsed.get("message")
            except (ValueError, AttributeError):
                message = text[:300]
        return CallError(response.status_code, error, message or error or f"HTTP {response.status_code}",
                         dict(response.headers or {}), method)
    if isinstance(exc, LoginRequiredError):
        return CallError(401, "AuthenticationRequired", "no valid session", None, method)
    cause = exc.__cause__ or exc.__context__ if isinstance(exc, AtProtocolError) else exc
    detail = type(cause).__name__ if cause is not None else type(exc).__name__
    text = str(cause) if cause is not None and str(cause) else detail
    return CallError(None, None, f"network error ({detail}): {text}"[:500], None, method)


def _method_of(url: str) -> str:
    path = urlsplit(url).path
    return path.rsplit("/", 1)[-1] if "/xrpc/" in path else path


@dataclasses.dataclass
class Created:
    uri: str
    cid: str


class BlueskyClient:
    """Talks to one account's PDS. Not thread-safe: one per delivery attempt."""

    def __init__(
        self,
        *,
        service: str,
        handle: str,
        password: str,
        session_string: str | None = None,
        on_session: Callable[[str], None] | None = None,
        on_response: Callable[[str, int, dict[str, str]], None] | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ):
        self.handle = handle
        self._password = password
        self._session_string = session_string
        self._on_session = on_session
        self._on_response = on_response
        self.logins = 0
        self.refreshes = 0
        hooks = {"response": [self._observe]}
        kwargs: dict[str, Any] = {"timeout": timeout, "event_hooks": hooks}
        if transport is not None:
            kwargs["transport"] = transport  # shared: close() must leave it open
        self._owns_transport = transport is None
        self._client = Client(base_url=service, request=Request(**kwargs))
        self._client.on_session_change(self._session_changed)
        self._ready = False

    # --- session ---------------------------------------------------------------

    @property
    def did(self) -> str:
        self.ensure_session()
        assert self._client._session is not None
        return self._client._session.did

    def _observe(self, response: httpx.Response) -> None:
        if self._on_response is not None:
            self._on_response(_method_of(str(response.request.url)), response.status_code,
                              dict(response.headers))

    def _session_changed(self, event: SessionEvent, _session: Any) -> None:
        if event in (SessionEvent.CREATE, SessionEvent.REFRESH) and self._on_session is not None:
            self._on_session(self._client.export_session_string())

    def login(self) -> str:
        """createSession with the app password; returns the DID."""
        self.logins += 1
        try:
            self._client.login(self.handle, self._password, fetch_bsky_profile=False)
        except Exception as exc:  # noqa: BLE001 - translated for the classifier
            raise translate(exc, "com.atproto.server.createSession") from exc
        self._ready = True
        assert self._client._session is not None
        return self._client._session.did

    def ensure_session(self) -> None:
        if self._ready:
            return
        if self._session_string:
            try:
                self._client.login(session_string=self._session_string, fetch_bsky_profile=False)
                self._ready = True
                return
            except Exception:  # noqa: BLE001 - an unusable stored session: log in instead
                pass
        self.login()

    def _refresh(self) -> None:
        self.refreshes += 1
        try:
            self._client._refresh_and_set_session()
            return
        except (BadRequestError, LoginRequiredError, RequestErrorBase) as exc:
            error = translate(exc, "com.atproto.server.refreshSession")
            if error.status is None or error.status >= 500 or error.status == 429:
                raise error from exc
        # the refresh token is gone too: only now spend a login
        self.login()

    def _call(self, method: str, fn: Callable[[], T]) -> T:
        self.ensure_session()
        try:
            try:
                return fn()
            except BadRequestError as exc:
                error = translate(exc, method)
                if error.error not in TOKEN_ERRORS:
                    raise
                self._refresh()
                return fn()
        except CallError:
            raise
        except Exception as exc:  # noqa: BLE001
            error = translate(exc, method)
            if error.error in TOKEN_ERRORS:
                # the refreshed token was refused as well: the session is beyond repair
                raise CallError(401, "AuthenticationRequired", error.message, error.headers, method) from exc
            raise error from exc

    # --- calls -------------------------------------------------------------------

    def create_post(self, record: dict[str, Any], rkey: str) -> Created:
        def call() -> Created:
            body = {"repo": self.did, "collection": POST_COLLECTION, "rkey": rkey, "record": record}
            response = self._client.invoke_procedure(
                "com.atproto.repo.createRecord",
                content=json.dumps(body, ensure_ascii=False).encode(),
                headers={"Content-Type": "application/json"},
            )
            content = response.content
            assert isinstance(content, dict)
            return Created(content["uri"], content["cid"])

        return self._call("com.atproto.repo.createRecord", call)

    def delete_post(self, rkey: str) -> None:
        """Remove the post and any gate with its record key.

        One deleteRecord per collection, not one applyWrites: the PDS answers 200 to a
        deleteRecord of a record that does not exist (what a retry after a lost answer
        meets), but fails a whole applyWrites with 500 when one of its deletes finds nothing.
        The post goes first: what people see disappears even if a gate's delete fails."""
        for collection in (POST_COLLECTION, *GATE_COLLECTIONS):
            self._delete_record(collection, rkey)

    def _delete_record(self, collection: str, rkey: str) -> None:
        def call() -> None:
            body = {"repo": self.did, "collection": collection, "rkey": rkey}
            self._client.invoke_procedure(
                "com.atproto.repo.deleteRecord", content=json.dumps(body).encode(),
                headers={"Content-Type": "application/json"})

        self._call("com.atproto.repo.deleteRecord", call)

    def apply_writes(self, writes: list[dict[str, Any]]) -> list[Created]:
        """Several creates in one atomic commit (a post and its gates); one result per write."""

        def call() -> list[Created]:
            body = {"repo": self.did, "writes": writes}
            response = self._client.invoke_procedure(
                "com.atproto.repo.applyWrites",
                content=json.dumps(body, ensure_ascii=False).encode(),
                headers={"Content-Type": "application/json"},
            )
            content = response.content
            assert isinstance(content, dict)
            results = content.get("results") or []
            return [Created(r["uri"], r["cid"]) for r in results if isinstance(r, dict) and "uri" in r]

        return self._call("com.atproto.repo.applyWrites", call)

    def get_record(self, uri: str) -> tuple[str, dict[str, Any]] | None:
        """(cid, value) of any record by its AT-URI, read through this account's PDS; None
        when it does not exist."""
        did, collection, rkey = uri.removeprefix("at://").split("/", 2)

        def call() -> tuple[str, dict[str, Any]] | None:
            try:
                response = self._client.invoke_query(
                    "com.atproto.repo.getRecord",
                    params=models.ComAtprotoRepoGetRecord.Params(repo=did, collection=collection, rkey=rkey))
            except BadRequestError as exc:
                if translate(exc).error == "RecordNotFound":
                    return None
                raise
            content = response.content
            if not isinstance(content, dict) or not isinstance(content.get("cid"), str):
                return None
            value = content.get("value")
            return content["cid"], value if isinstance(value, dict) else {}

        return self._call("com.atproto.repo.getRecord", call)

    def get_post(self, rkey: str) -> Created | None:
        """The record this rkey names, if an earlier attempt created it."""

        def call() -> Created | None:
            try:
                result = self._client.com.atproto.repo.get_record(
                    params={"repo": self.did, "collection": POST_COLLECTION, "rkey": rkey}
                )
            except BadRequestError as exc:
                if translate(exc).error == "RecordNotFound":
                    return None
                raise
            return Created(result.uri, result.cid or "")

        return self._call("com.atproto.repo.getRecord", call)

    def upload_blob(self, data: bytes, mime: str) -> dict[str, Any]:
        def call() -> dict[str, Any]:
            response = self._client.invoke_procedure(
                "com.atproto.repo.uploadBlob", content=data, headers={"Content-Type": mime})
            content = response.content
            assert isinstance(content, dict)
            return content["blob"]  # already the JSON blob ref a record embeds

        return self._call("com.atproto.repo.uploadBlob", call)

    def resolve_handle(self, handle: str) -> str | None:
        try:
            result = self._call(
                "com.atproto.identity.resolveHandle",
                lambda: self._client.com.atproto.identity.resolve_handle(params={"handle": handle}),
            )
        except CallError as exc:
            if exc.status == 400:
                return None
            raise
        return result.did

    # --- reads (the backfeed): app.bsky.* goes through the account's PDS to its AppView ----

    def query(self, method: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """One XRPC query with this account's session; the answer's JSON object (an empty
        dict when it is not one). List values repeat the parameter (`reasons=a&reasons=b`)."""
        pairs = [(k, v) for k, value in params.items() if value is not None
                 for v in (value if isinstance(value, (list, tuple)) else [value])]

        def call() -> dict[str, Any]:
            suffix = "?" + urlencode(pairs) if pairs else ""
            response = self._client.invoke_query(method + suffix)
            content = response.content
            return content if isinstance(content, dict) else {}

        return self._call(method, call)

    def list_notifications(self, *, reasons: Sequence[str], cursor: str | None = None,
                           limit: int = 100) -> dict[str, Any]:
        return self.query("app.bsky.notification.listNotifications",
                          {"reasons": list(reasons), "cursor": cursor, "limit": limit})

    def list_records(self, collection: str, *, cursor: str | None = None, limit: int = 100) -> dict[str, Any]:
        """The account's own records of a collection, newest first."""
        return self.query("com.atproto.repo.listRecords",
                          {"repo": self.did, "collection": collection, "cursor": cursor, "limit": limit})

    def get_posts(self, uris: Sequence[str]) -> dict[str, Any]:
        return self.query("app.bsky.feed.getPosts", {"uris": list(uris)})

    def get_post_thread(self, uri: str, *, depth: int) -> dict[str, Any]:
        return self.query("app.bsky.feed.getPostThread", {"uri": uri, "depth": depth, "parentHeight": 0})

    def get_likes(self, uri: str, *, cursor: str | None = None, limit: int = 100) -> dict[str, Any]:
        return self.query("app.bsky.feed.getLikes", {"uri": uri, "cursor": cursor, "limit": limit})

    def get_reposted_by(self, uri: str, *, cursor: str | None = None, limit: int = 100) -> dict[str, Any]:
        return self.query("app.bsky.feed.getRepostedBy", {"uri": uri, "cursor": cursor, "limit": limit})

    def get_quotes(self, uri: str, *, cursor: str | None = None, limit: int = 100) -> dict[str, Any]:
        return self.query("app.bsky.feed.getQuotes", {"uri": uri, "cursor": cursor, "limit": limit})

    def close(self) -> None:
        if self._owns_transport:
            self._client.request.close()


def post_url(did: str, rkey: str) -> str:
    """The bsky.app address of a post, from its author's DID and record key."""
    return f"https://bsky.app/profile/{did}/post/{rkey}"
