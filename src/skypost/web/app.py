"""create_app: the Starlette application of `skypost serve`, built from a Skypost.

    /healthz            liveness, no token
    /api/v1/...         the JSON API (bearer token)
    /metrics            Prometheus (bearer token)
    /hooks/{name}       webhooks (HMAC signature of the body)
    /i/{id}             the public h-entry page of an interaction (no login: the Webmention source)
    /static/...         CSS and htmx
    /, /login, ...      the dashboard (session cookie from a login with a token)
"""

from __future__ import annotations

import contextlib
from html import escape
import logging
from pathlib import Path
from typing import Any, AsyncIterator, Protocol, Sequence

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from skypost.app import Skypost
from skypost.store.db import SCHEMA_HEAD, DatabaseError
from skypost.web import api, cookies, dashboard, metrics, public, session, webhooks
from skypost.web.auth import BearerAuth
from skypost.web.http import BodyLimit, Offload, SecurityHeaders, json_error

log = logging.getLogger("skypost.web")

MAX_BODY_BYTES = 1_000_000
STATIC = Path(__file__).with_name("static")
# paths that answer in JSON; everything else is the dashboard (HTML)
_MACHINE_PREFIXES = ("/api/", "/hooks/", "/metrics", "/healthz")


class Service(Protocol):
    """Something that runs beside the server (the embedded worker)."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


def create_app(skypost: Skypost, *, services: Sequence[Service] = (), max_body_bytes: int = MAX_BODY_BYTES,
               secure_cookies: bool | None = None, trusted_proxies: Sequence[str] | None = None,
               session_max_age: int = 7 * 24 * 3600, threads: int = 8) -> Starlette:
    """The web application. `services` start with the server and stop (in reverse) when it shuts down.

    `secure_cookies` and `trusted_proxies` default to the settings (cookie_secure,
    trusted_proxies)."""
    settings = skypost.settings
    always_secure = settings.cookie_secure if secure_cookies is None else secure_cookies
    proxies = cookies.parse_networks(settings.trusted_proxies if trusted_proxies is None
                                     else trusted_proxies)
    offload = Offload(threads)
    templates = dashboard.make_templates()

    async def healthz(request: Request) -> Response:
        try:
            revision = await offload(skypost.db.probe)
        except DatabaseError as exc:
            log.error("health check: %s", exc)  # the details stay in the log: no token here
            return json_error(503, "the database cannot be reached")
        if revision != SCHEMA_HEAD:
            return json_error(503, "the database schema is not current: run skypost init")
        return JSONResponse({"status": "ok"})

    async def metrics_endpoint(request: Request) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        body = await offload(metrics.render, skypost.db, skypost.clock)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        headers = dict(exc.headers or {})
        if request.url.path.startswith(_MACHINE_PREFIXES):
            return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=headers)
        return HTMLResponse(f"<!doctype html><title>{exc.status_code}</title>"
                            "<link rel=stylesheet href=/static/style.css>"
                            f"<main><section class='card narrow'><h1>{exc.status_code}</h1><p>{escape(exc.detail)}</p>"
                            "<p><a href='/'>Back to the posts</a></p></section></main>",
                            status_code=exc.status_code, headers=headers)

    def server_error(request: Request, exc: Exception) -> Response:
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"error": "internal error (see the server log)"}, status_code=500)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        started: list[Service] = []
        try:
            for service in services:
                service.start()
                started.append(service)
            yield
        finally:
            for service in reversed(started):
                service.stop()
            offload.shutdown()

    bearer = [Middleware(BearerAuth, skypost=skypost, offload=offload)]
    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Mount("/api/v1", routes=api.routes(skypost, offload), middleware=bearer),
        Route("/metrics", metrics_endpoint, methods=["GET"], middleware=bearer),
        *webhooks.routes(skypost, offload),
        *public.routes(skypost, offload),
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
        *dashboard.routes(skypost, offload, templates, session_lifetime=session_max_age),
    ]
    middleware = [
        Middleware(cookies.TrustedProxyScheme, trusted=proxies),
        Middleware(SecurityHeaders),
        Middleware(BodyLimit, limit=max_body_bytes),
        Middleware(cookies.SessionCookies, always_secure=always_secure,
                   secret_key=session.session_secret(skypost), session_cookie=session.SESSION_COOKIE,
                   max_age=session_max_age, same_site="lax"),
    ]
    exception_handlers: dict[Any, Any] = {HTTPException: http_error, Exception: server_error}
    return Starlette(routes=routes, middleware=middleware, exception_handlers=exception_handlers, lifespan=lifespan)
