"""Bearer-token authentication for the API and /metrics (an ASGI middleware)."""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from skypost.app import Skypost
from skypost.web import tokens
from skypost.web.http import Offload, json_error

CHALLENGE = {"WWW-Authenticate": 'Bearer realm="skypost"'}


class BearerAuth:
    """Every request must carry `Authorization: Bearer TOKEN` of an active token, else 401.

    Applied to whole mounts, so that unknown paths under them answer 401 too (nothing to probe)."""

    def __init__(self, app: ASGIApp, *, skypost: Skypost, offload: Offload):
        self.app = app
        self.skypost = skypost
        self.offload = offload

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token = tokens.bearer_token(Headers(scope=scope).get("authorization"))
        info = None
        if token is not None:
            info = await self.offload(tokens.authenticate, self.skypost.db, token, now=self.skypost.clock())
        if info is None:
            message = ("missing bearer token (Authorization: Bearer TOKEN; create one with `skypost token create NAME`)"
                       if token is None else "invalid or revoked token")
            await json_error(401, message, CHALLENGE)(scope, receive, send)
            return
        scope.setdefault("state", {})["token"] = info
        await self.app(scope, receive, send)
