"""The JSON API under /api/v1 (bearer token required; see openapi.py for the contract)."""

from __future__ import annotations

from typing import Any, Mapping
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from skypost.app import DEFAULT_SERVICE, Skypost
from skypost.models import AccountError, PostStatus, ValidationError, normalize_handle, printable, reply_rules
from skypost.replies import UnknownPost
from skypost.web import openapi
from skypost.web.http import Offload, field_errors, json_error, post_response, read_json
from skypost.web.submission import submit_document

MAX_PAGE = 200
ACCOUNT_FIELDS = ("handle", "app_password", "service", "auto_syndicate", "include_categories", "exclude_categories",
                  "replies", "quotes")
REPLY_FIELDS = ("id", "text", "parent", "account")
STATUSES = tuple(s.value for s in PostStatus)


def _int_param(params: Mapping[str, str], name: str, default: int | None, low: int, high: int) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationError({name: f"{raw!r} is not an integer"}) from None
    if not low <= value <= high:
        raise ValidationError({name: f"must be between {low} and {high}"})
    return value


def account_error(exc: AccountError) -> JSONResponse:
    """A refused login names the password; an unreachable service names the service."""
    message = str(exc)
    field = ("app_password" if "refused the login" in message
             else "service" if "could not reach" in message else "account")
    return field_errors({field: message})


def parse_account_body(body: Any, *, creating: bool) -> dict[str, Any]:
    """The account fields of a request body, checked; raises ValidationError naming each bad one."""
    if not isinstance(body, Mapping):
        raise ValidationError({"body": "must be a JSON object"})
    errors: dict[str, str] = {key: "unknown field" for key in body if key not in ACCOUNT_FIELDS}
    values: dict[str, Any] = {}
    for key in ("handle", "app_password", "service"):
        if key in body and not isinstance(body[key], str):
            errors[key] = "must be a string"
        elif key in body:
            values[key] = body[key]
    if "replies" in body:
        try:
            values["replies"] = reply_rules(body["replies"])
        except ValidationError as exc:
            errors.update(exc.errors)
    if "quotes" in body:
        if isinstance(body["quotes"], bool):
            values["quotes"] = body["quotes"]
        else:
            errors["quotes"] = "must be true or false"
    if "auto_syndicate" in body:
        if isinstance(body["auto_syndicate"], bool):
            values["auto_syndicate"] = body["auto_syndicate"]
        else:
            errors["auto_syndicate"] = "must be true or false"
    for key in ("include_categories", "exclude_categories"):
        if key in body:
            value = body[key]
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                values[key] = value
            else:
                errors[key] = "must be a list of strings"
    if creating:
        for key in ("handle", "app_password"):
            if key not in body:
                errors[key] = "is required"
        if "app_password" in values and not values["app_password"].strip():
            errors["app_password"] = "must not be empty"
    else:
        if "handle" in body:
            errors["handle"] = "cannot be changed (remove the account and add it again)"
        if "app_password" in values and not values["app_password"].strip():
            errors["app_password"] = "must not be empty"
        if not body:
            errors["body"] = "nothing to change"
    if errors:
        raise ValidationError(errors)
    return values


def accounts_with_health(skypost: Skypost) -> list[dict[str, Any]]:
    """Each account (never its password) with its breaker, rate budget and re-auth state."""
    health = {a["handle"]: a for a in skypost.health()["accounts"]}
    out = []
    for account in skypost.accounts():
        h = health.get(account["handle"], {})
        out.append({**account, "health": {k: h.get(k) for k in (
            "needs_reauth", "session_valid", "breaker", "breaker_open_until", "rate_remaining",
            "rate_reset_at", "last_error")}})
    return out


def routes(skypost: Skypost, offload: Offload) -> list[BaseRoute]:
    """The API routes, relative to the /api/v1 mount."""

    async def create_post(request: Request) -> Response:
        try:
            document = await read_json(request)
            code, status = await offload(submit_document, skypost, document, source="api")
        except ValidationError as exc:
            return field_errors(exc.errors)
        return post_response(code, status)

    async def list_posts(request: Request) -> Response:
        params = request.query_params
        try:
            unknown = [k for k in params if k not in ("status", "limit", "before")]
            if unknown:
                raise ValidationError({unknown[0]: "unknown query parameter"})
            status = params.get("status") or None
            if status is not None and status not in STATUSES:
                raise ValidationError({"status": f"must be one of {', '.join(STATUSES)}"})
            limit = _int_param(params, "limit", 50, 1, MAX_PAGE)
            before = _int_param(params, "before", None, 1, 2**62)
        except ValidationError as exc:
            return field_errors(exc.errors)
        assert limit is not None
        items = await offload(skypost.list_posts, status=status, limit=limit, before=before)
        next_before = items[-1]["seq"] if len(items) == limit else None
        next_url = None
        if next_before is not None:
            query = f"limit={limit}&before={next_before}" + (f"&status={status}" if status else "")
            next_url = f"/api/v1/posts?{query}"
        return JSONResponse({"items": items, "next_before": next_before, "next": next_url})

    async def get_post(request: Request) -> Response:
        status = await offload(skypost.status, request.path_params["post_id"])
        if status is None:
            return json_error(404, "no post with this id")
        return JSONResponse(status)

    async def post_interactions(request: Request) -> Response:
        post_id = request.path_params["post_id"]
        raw = request.scope.get("raw_path")
        if raw is not None and not raw.endswith(b"/interactions"):
            # the id itself ends in "%2Finteractions": the status of that post is asked for
            status = await offload(skypost.status, post_id + "/interactions")
            return JSONResponse(status) if status else json_error(404, "no post with this id")
        data = await offload(skypost.interactions, post_id)
        if data is None:
            return json_error(404, "no post with this id")
        return JSONResponse(data)

    async def retry_post(request: Request) -> Response:
        account = None
        repost = False
        try:
            if (await request.body()).strip():
                body = await read_json(request)
                if not isinstance(body, Mapping):
                    raise ValidationError({"body": "must be a JSON object, e.g. {\"account\": \"alice.bsky.social\"}"})
                unknown = [k for k in body if k not in ("account", "repost")]
                if unknown:
                    raise ValidationError({unknown[0]: "unknown field"})
                account = body.get("account")
                if account is not None and not isinstance(account, str):
                    raise ValidationError({"account": "must be a string"})
                repost = body.get("repost", False)
                if not isinstance(repost, bool):
                    raise ValidationError({"repost": "must be true or false"})
            status = await offload(skypost.retry, request.path_params["post_id"], account or None, repost=repost)
        except ValidationError as exc:
            return field_errors(exc.errors)
        if status is None:
            return json_error(404, "no post with this id")
        return JSONResponse(status)

    async def delete_post(request: Request) -> Response:
        status = await offload(skypost.delete, request.path_params["post_id"])
        if status is None:
            return json_error(404, "no post with this id")
        return JSONResponse(status, status_code=202)

    async def create_reply(request: Request) -> Response:
        post_id = request.path_params["post_id"]
        try:
            body = await read_json(request)
            if not isinstance(body, Mapping):
                raise ValidationError({"body": 'must be a JSON object, e.g. {"id": "c1", "text": "Thanks!"}'})
            unknown = [k for k in body if k not in REPLY_FIELDS]
            if unknown:
                raise ValidationError({printable(str(unknown[0]))[:100]: "unknown field"})
            status, created = await offload(skypost.reply_state, post_id, body.get("id"), body.get("text"),
                                            parent=body.get("parent"), account=body.get("account"))
        except ValidationError as exc:
            return field_errors(exc.errors)
        except UnknownPost:
            return json_error(404, "no post with this id")
        return JSONResponse(status, status_code=202 if created else 200)

    async def list_replies(request: Request) -> Response:
        items = await offload(skypost.replies, request.path_params["post_id"])
        if items is None:
            return json_error(404, "no post with this id")
        return JSONResponse({"items": items})

    async def pause(request: Request) -> Response:
        await offload(skypost.pause)
        return JSONResponse({"paused": True})

    async def resume(request: Request) -> Response:
        await offload(skypost.resume)
        return JSONResponse({"paused": False})

    def find_account(handle: str) -> dict[str, Any] | None:
        try:
            handle = normalize_handle(handle)
        except ValidationError:
            return None
        return next((a for a in accounts_with_health(skypost) if a["handle"] == handle), None)

    async def list_accounts(request: Request) -> Response:
        return JSONResponse({"items": await offload(accounts_with_health, skypost)})

    async def get_account(request: Request) -> Response:
        account = await offload(find_account, request.path_params["handle"])
        if account is None:
            return json_error(404, "no such account")
        return JSONResponse(account)

    async def add_account(request: Request) -> Response:
        try:
            values = parse_account_body(await read_json(request), creating=True)
            account = await offload(
                skypost.add_account, values["handle"], values["app_password"],
                service=values.get("service", DEFAULT_SERVICE), auto_syndicate=values.get("auto_syndicate", True),
                include_categories=values.get("include_categories"),
                exclude_categories=values.get("exclude_categories"),
                replies=values.get("replies"), quotes=values.get("quotes"))
        except ValidationError as exc:
            return field_errors(exc.errors)
        except AccountError as exc:
            return account_error(exc)
        return JSONResponse(account, status_code=201,
                            headers={"Location": "/api/v1/accounts/" + quote(account["handle"], safe="")})

    async def update_account(request: Request) -> Response:
        handle = request.path_params["handle"]
        try:
            values = parse_account_body(await read_json(request), creating=False)
            if await offload(find_account, handle) is None:
                return json_error(404, "no such account")
            if "app_password" in values:
                values["password"] = values.pop("app_password")
            account = await offload(skypost.update_account, handle, **values)
        except ValidationError as exc:
            # the Python API names it `password`; this body calls it `app_password`
            return field_errors({("app_password" if k == "password" else k): v for k, v in exc.errors.items()})
        except AccountError as exc:
            return account_error(exc)
        return JSONResponse(account)

    async def remove_account(request: Request) -> Response:
        handle = request.path_params["handle"]
        if await offload(find_account, handle) is None:
            return json_error(404, "no such account")
        try:
            failed = await offload(skypost.remove_account, handle)
        except ValidationError:
            return json_error(404, "no such account")
        return JSONResponse({"removed": normalize_handle(handle), "failed_deliveries": failed})

    async def health(request: Request) -> Response:
        return JSONResponse(await offload(skypost.health))

    async def events(request: Request) -> Response:
        params = request.query_params
        try:
            unknown = [k for k in params if k not in ("limit", "post_id")]
            if unknown:
                raise ValidationError({unknown[0]: "unknown query parameter"})
            limit = _int_param(params, "limit", 50, 1, 1000)
        except ValidationError as exc:
            return field_errors(exc.errors)
        items = await offload(skypost.events, limit=limit or 50, post_id=params.get("post_id") or None)
        return JSONResponse({"items": items})

    async def schema(request: Request) -> Response:
        return JSONResponse(openapi.schema())

    return [
        Route("/openapi.json", schema, methods=["GET"]),
        Route("/posts", create_post, methods=["POST"]),
        Route("/posts", list_posts, methods=["GET"]),
        # ids may contain "/" (sent as %2F): the retry route is matched first
        Route("/posts/{post_id:path}/retry", retry_post, methods=["POST"]),
        Route("/posts/{post_id:path}/interactions", post_interactions, methods=["GET"]),
        Route("/posts/{post_id:path}/replies", create_reply, methods=["POST"]),
        Route("/posts/{post_id:path}/replies", list_replies, methods=["GET"]),
        Route("/posts/{post_id:path}", get_post, methods=["GET"]),
        Route("/posts/{post_id:path}", delete_post, methods=["DELETE"]),
        Route("/pause", pause, methods=["POST"]),
        Route("/resume", resume, methods=["POST"]),
        Route("/accounts", list_accounts, methods=["GET"]),
        Route("/accounts", add_account, methods=["POST"]),
        Route("/accounts/{handle}", get_account, methods=["GET"]),
        Route("/accounts/{handle}", update_account, methods=["PATCH", "PUT"]),
        Route("/accounts/{handle}", remove_account, methods=["DELETE"]),
        Route("/health", health, methods=["GET"]),
        Route("/events", events, methods=["GET"]),
    ]
