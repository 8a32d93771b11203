"""Small HTTP helpers shared by the API, the webhooks and the dashboard."""

from __future__ import annotations

import asyncio
import functools
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Mapping, TypeVar
from urllib.parse import quote

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from skypost.models import ValidationError

T = TypeVar("T")


class Offload:
    """Runs the blocking Skypost calls (database, Bluesky logins) off the event loop.

    A fixed pool, not anyio's: Database keeps one connection per thread, and
    threads that come and go would leave their connections behind."""

    def __init__(self, threads: int = 8):
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="skypost-web")

    async def __call__(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def json_error(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=dict(headers or {}))


def field_errors(errors: Mapping[str, str], status: int = 422) -> JSONResponse:
    """Bad input: which field, and why. A field name may come from the client and hold lone
    surrogates, which UTF-8 cannot encode: they become "?", never a 500."""
    return JSONResponse({"errors": {_utf8(k): _utf8(v) for k, v in errors.items()}}, status_code=status)


def _utf8(text: str) -> str:
    return text.encode("utf-8", "replace").decode("utf-8")


async def read_json(request: Request) -> Any:
    """The body as JSON; ValidationError naming `body` when it is not."""
    raw = await request.body()
    if not raw.strip():
        raise ValidationError({"body": "is empty: send a JSON document"})
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:  # bad JSON, bad UTF-8, 5000-digit numbers, deep nesting
        raise ValidationError({"body": f"is not valid JSON ({type(exc).__name__}: {str(exc)[:200]})"}) from None


def post_location(post_id: str) -> str:
    return "/api/v1/posts/" + quote(post_id, safe="")


def post_response(code: int, status: Mapping[str, Any]) -> JSONResponse:
    """202 for a new post, 200 for a known one; both say where its status lives."""
    return JSONResponse(dict(status), status_code=code, headers={"Location": post_location(status["id"])})


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int):
        super().__init__(413, f"the request body is larger than {limit} bytes")


class BodyLimit:
    """413 (JSON) for a request body over `limit` bytes, declared or streamed, before it is read whole."""

    def __init__(self, app: ASGIApp, *, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > self.limit:
            await json_error(413, BodyTooLarge(self.limit).detail)(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise BodyTooLarge(self.limit)  # answered by the HTTPException handler
            return message

        await self.app(scope, limited, send)


SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    # htmx and the CSS are served from here; no inline script anywhere; pictures from https
    # sites too: the avatars of the people who answer on Bluesky (Bluesky's CDN)
    (b"content-security-policy", b"default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                                 b"img-src 'self' data: https:; frame-ancestors 'none'; form-action 'self'; "
                                 b"base-uri 'none'"),
]


class SecurityHeaders:
    """Headers that keep the dashboard out of frames and other sites' scripts out of its pages."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers)
