"""POST /hooks/{name}: a signed payload from the site becomes a submitted post.

The signature is checked on the raw body before anything is parsed or written.
"""

from __future__ import annotations

import json
import logging

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from skypost.app import Skypost
from skypost.models import ValidationError
from skypost.web import hooks, payloads
from skypost.web.http import Offload, field_errors, json_error, post_response
from skypost.web.submission import submit_document

log = logging.getLogger("skypost.web.hooks")


def routes(skypost: Skypost, offload: Offload) -> list[BaseRoute]:

    async def receive(request: Request) -> Response:
        name = request.path_params["name"]
        body = await request.body()
        hook = await offload(hooks.load_hook, skypost.db, skypost.cipher(), name)
        if hook is None:
            return json_error(404, "no such hook")
        problem = hooks.signature_problem(hook.secret, body, request.headers, now=skypost.clock())
        if problem is not None:
            log.warning("webhook %r refused, nothing written: %s", name, problem)
            return json_error(401, problem)
        try:
            try:
                payload = json.loads(body)
            except (ValueError, RecursionError) as exc:  # bad JSON or UTF-8, huge numbers, deep nesting
                raise ValidationError({"body": f"is not valid JSON ({type(exc).__name__}: {str(exc)[:200]})"}) from None
            gone = payloads.deleted_id(hook.kind, payload, on_unpublish=hook.on_unpublish)
            if gone is not None:
                status = await offload(skypost.delete, gone)
                if status is None:
                    return JSONResponse({"ignored": f"no post with id {gone!r}: nothing was syndicated"})
                return JSONResponse(status, status_code=202)
            document = payloads.to_document(hook.kind, payload, accounts=hook.accounts)
            code, status = await offload(submit_document, skypost, document, source=f"hook:{hook.name}")
        except payloads.Ignored as exc:
            return JSONResponse({"ignored": exc.reason})
        except ValidationError as exc:
            return field_errors(payloads.source_errors(hook.kind, exc.errors))
        return post_response(code, status)

    return [Route("/hooks/{name}", receive, methods=["POST"])]
