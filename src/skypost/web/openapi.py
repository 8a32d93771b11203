"""The OpenAPI 3.1 description of the HTTP API, written by hand (served at /api/v1/openapi.json)."""

from __future__ import annotations

from typing import Any

from skypost.models import INTERACTION_KINDS, DeliveryStatus, PostStatus

_STR = {"type": "string"}
_NSTR = {"type": ["string", "null"]}
_STRS = {"type": "array", "items": {"type": "string"}}
_TIME = {"type": ["string", "null"], "format": "date-time"}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        out["headers"] = headers
    return out


_ERROR = _json(_ref("Error"), "Error")
_INVALID = _json(_ref("FieldErrors"), "Bad input: which field, and why; nothing was written")
_UNAUTHORIZED = _json(_ref("Error"), "Missing, invalid or revoked bearer token")
_TOO_LARGE = _json(_ref("Error"), "The body is larger than the limit (1 MB)")
_LOCATION = {"Location": {"schema": _STR, "description": "The URL of the post's status"}}
_POST_ID = {"name": "post_id", "in": "path", "required": True, "schema": _STR,
            "description": "The site's id of the post (percent-encoded)"}
_HANDLE = {"name": "handle", "in": "path", "required": True, "schema": _STR}

_REPLIES = {"type": ["array", "null"], "items": {"type": "string",
                                                  "enum": ["everyone", "nobody", "following", "mentioned"]},
            "description": "Who may reply: everyone (no gate), nobody, or following and/or mentioned "
                           "(a threadgate written with the post); default: the account's setting"}

SCHEMAS: dict[str, Any] = {
    "Error": {"type": "object", "required": ["error"], "properties": {"error": _STR}},
    "FieldErrors": {
        "type": "object", "required": ["errors"],
        "properties": {"errors": {"type": "object", "additionalProperties": _STR}},
    },
    "PostDocument": {
        "type": "object", "required": ["id", "url"], "additionalProperties": False,
        "description": "A title or a custom text is required; `accounts` must name configured accounts.",
        "properties": {
            "id": {"anyOf": [{"type": "string", "minLength": 1, "maxLength": 255, "pattern": "\\S"},
                             {"type": "integer"}], "description": "The site's own, stable id"},
            "title": _NSTR, "url": {"type": "string", "pattern": "^https?://[^\\s/?#]+[^\\s]*$"},
            "excerpt": _NSTR, "content_html": _NSTR,
            "image_url": _NSTR, "text": {"type": ["string", "null"], "description": "Custom text"},
            "categories": _STRS, "tags": _STRS, "langs": _STRS, "accounts": _STRS,
            "published_at": {"type": ["string", "null"], "format": "date-time"},
            "dont_syndicate": {"type": ["boolean", "null"]},
            "post_type": {"type": ["string", "null"]},
            "replies": _REPLIES,
            "quotes": {"type": ["boolean", "null"],
                       "description": "false: a postgate disables quoting (default: the account's)"},
        },
    },
    "Delivery": {
        "type": "object",
        "required": ["account", "did", "status", "attempts", "next_attempt_at", "uri", "cid", "url", "error"],
        "properties": {
            "account": _STR, "did": _STR, "status": {"type": "string", "enum": [s.value for s in DeliveryStatus]},
            "attempts": {"type": "integer"}, "next_attempt_at": _TIME, "uri": _NSTR, "cid": _NSTR,
            "url": {"type": ["string", "null"], "description": "The post on bsky.app"}, "error": _NSTR,
        },
    },
    "PostStatus": {
        "type": "object", "required": ["id", "status", "reason", "deliveries", "interactions"],
        "properties": {
            "id": _STR, "status": {"type": "string", "enum": [s.value for s in PostStatus]}, "reason": _NSTR,
            "deliveries": {"type": "array", "items": _ref("Delivery")},
            "interactions": _ref("InteractionCounts"),
        },
    },
    "InteractionCounts": {
        "type": "object", "required": list(INTERACTION_KINDS), "additionalProperties": False,
        "description": "Live reactions on Bluesky per kind (removed ones are not counted)",
        "properties": {kind: {"type": "integer", "minimum": 0} for kind in INTERACTION_KINDS},
    },
    "Interaction": {
        "type": "object",
        "required": ["kind", "uri", "cid", "account", "author", "text", "parent_uri", "created_at", "url",
                     "removed"],
        "properties": {
            "kind": {"type": "string", "enum": list(INTERACTION_KINDS)},
            "uri": {"type": "string", "description": "The reaction's AT-URI"}, "cid": _NSTR,
            "account": {"type": "string", "description": "The skypost account whose post it reacts to"},
            "author": {
                "type": "object", "required": ["did", "handle", "display_name", "avatar"],
                "properties": {"did": _STR, "handle": _NSTR, "display_name": _NSTR,
                               "avatar": {"type": ["string", "null"], "description": "The avatar's URL"}},
            },
            "text": {"type": ["string", "null"],
                     "description": "Replies and quotes, links spelt out in full; null for likes and reposts"},
            "parent_uri": {"type": ["string", "null"], "description": "A reply: the AT-URI it answers"},
            "created_at": _TIME,
            "url": {"type": "string", "description": "On bsky.app: the reply or quote; a like's or "
                                                     "repost's author"},
            "removed": {"type": "boolean", "description": "Deleted or undone on Bluesky since"},
        },
    },
    "Interactions": {
        "type": "object", "required": ["id", "interactions"],
        "properties": {"id": _STR, "interactions": {"type": "array", "items": _ref("Interaction")}},
    },
    "PostListItem": {
        "allOf": [_ref("PostStatus"), {
            "type": "object", "required": ["seq", "title", "url", "submitted_at"],
            "properties": {"seq": {"type": "integer"}, "title": _STR, "url": _STR, "submitted_at": _TIME},
        }],
    },
    "PostList": {
        "type": "object", "required": ["items", "next_before", "next"],
        "properties": {
            "items": {"type": "array", "items": _ref("PostListItem")},
            "next_before": {"type": ["integer", "null"], "description": "Pass as `before` for the next page"},
            "next": _NSTR,
        },
    },
    "Account": {
        "type": "object",
        "required": ["handle", "did", "service", "auto_syndicate", "include_categories", "exclude_categories",
                     "state"],
        "properties": {
            "handle": _STR, "did": _STR, "service": _STR, "auto_syndicate": {"type": "boolean"},
            "include_categories": _STRS, "exclude_categories": _STRS,
            "state": {"type": "string", "enum": ["active", "needs_reauth"]},
            "replies": _STRS, "quotes": {"type": "boolean"},
            "requeued": {"type": "integer", "description": "Deliveries queued again (after an update)"},
            "health": {"type": "object"},
        },
    },
    "AccountCreate": {
        "type": "object", "required": ["handle", "app_password"], "additionalProperties": False,
        "properties": {
            "handle": _STR, "app_password": {"type": "string", "writeOnly": True},
            "service": {"type": "string", "format": "uri", "default": "https://bsky.social"},
            "auto_syndicate": {"type": "boolean", "default": True},
            "include_categories": _STRS, "exclude_categories": _STRS,
            "replies": _REPLIES, "quotes": {"type": "boolean", "default": True},
        },
    },
    "AccountUpdate": {
        "type": "object", "additionalProperties": False, "minProperties": 1,
        "properties": {
            "app_password": {"type": "string", "writeOnly": True,
                             "description": "A new app password; failed deliveries that waited for it are retried"},
            "service": {"type": "string", "format": "uri"}, "auto_syndicate": {"type": "boolean"},
            "include_categories": _STRS, "exclude_categories": _STRS,
            "replies": _REPLIES, "quotes": {"type": "boolean"},
        },
    },
    "ReplyRequest": {
        "type": "object", "required": ["id", "text"], "additionalProperties": False,
        "properties": {
            "id": {"anyOf": [{"type": "string", "minLength": 1, "maxLength": 200}, {"type": "integer"}],
                   "description": "The site's id of the comment: the same id is never published twice"},
            "text": {"type": "string", "minLength": 1,
                     "description": "Composed like a post's custom text: cut to 300 graphemes with \u2026, "
                                    "facets for links, mentions and hashtags"},
            "parent": {"type": ["string", "null"],
                       "description": "The AT-URI of the record to answer, in the post's thread (a reply the "
                                      "backfeed stored, or any post whose root is the post); default: the post"},
            "account": {"type": ["string", "null"],
                        "description": "Only as this account (default: every account the post went to)"},
        },
    },
    "ReplyStatus": {
        "allOf": [_ref("PostStatus"), {
            "type": "object", "required": ["reply_to"],
            "properties": {"id": {"type": "string", "description": "The comment id"},
                           "reply_to": {"type": "string", "description": "The post's id"},
                           "parent": {"type": "string", "description": "The record answered, when not the post"}},
        }],
    },
    "Event": {
        "type": "object",
        "properties": {"id": {"type": "integer"}, "ts": _TIME, "level": _STR, "kind": _STR, "post_id": _NSTR,
                       "account": _NSTR, "message": _STR},
    },
}


def _op(summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"summary": summary, "responses": {**responses, "401": _UNAUTHORIZED}, **extra}


PATHS: dict[str, Any] = {
    "/api/v1/posts": {
        "post": _op("Submit a post (returns at once; a worker syndicates it)", {
            "202": _json(_ref("PostStatus"), "Accepted: a new post", _LOCATION),
            "200": _json(_ref("PostStatus"), "The id is already known: its status, nothing sent again", _LOCATION),
            "413": _TOO_LARGE, "422": _INVALID,
        }, requestBody={"required": True, "content": {"application/json": {"schema": _ref("PostDocument")}}}),
        "get": _op("List posts, newest first", {"200": _json(_ref("PostList"), "A page of posts"), "422": _INVALID},
                   parameters=[
                       {"name": "status", "in": "query", "schema": {"type": "string",
                                                                    "enum": [s.value for s in PostStatus]}},
                       {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 200,
                                                                   "default": 50}},
                       {"name": "before", "in": "query", "description": "Cursor: `next_before` of the previous page",
                        "schema": {"type": "integer", "minimum": 1}},
                   ]),
    },
    "/api/v1/posts/{post_id}": {
        "get": _op("The status of a post", {"200": _json(_ref("PostStatus"), "Its status"), "404": _ERROR},
                   parameters=[_POST_ID]),
        "delete": _op("Remove a post from Bluesky on every account (a worker does it; a second call "
                      "changes nothing); the id is never syndicated again", {
                          "202": _json(_ref("PostStatus"), "Accepted: its status (deleting or deleted)"),
                          "404": _ERROR}, parameters=[_POST_ID]),
    },
    "/api/v1/posts/{post_id}/interactions": {
        "get": _op("What a post gathered on Bluesky: replies, quotes, likes and reposts, oldest first "
                   "(removed ones too, marked `removed`)",
                   {"200": _json(_ref("Interactions"), "Its interactions"), "404": _ERROR},
                   parameters=[_POST_ID]),
    },
    "/api/v1/posts/{post_id}/retry": {
        "post": _op("Queue the failed deliveries of a post again", {
            "200": _json(_ref("PostStatus"), "Its status"), "404": _ERROR, "422": _INVALID, "413": _TOO_LARGE,
        }, parameters=[_POST_ID], requestBody={"required": False, "content": {"application/json": {"schema": {
            "type": "object", "additionalProperties": False,
            "properties": {"account": {"type": "string", "description": "Only this account's delivery"},
                           "repost": {"type": "boolean", "description": "Publish a deleted post again, as new "
                                                                        "records (likes and replies are lost)"}}}}}}),
    },
    "/api/v1/posts/{post_id}/replies": {
        "post": _op("Publish a comment of the site as a reply under the post (returns at once)", {
            "202": _json(_ref("ReplyStatus"), "Accepted: a new reply"),
            "200": _json(_ref("ReplyStatus"), "This comment id is already known: its status, nothing sent again"),
            "404": _ERROR, "413": _TOO_LARGE, "422": _INVALID,
        }, parameters=[_POST_ID],
            requestBody={"required": True, "content": {"application/json": {"schema": _ref("ReplyRequest")}}}),
        "get": _op("The replies from the site to a post, oldest first", {
            "200": _json({"type": "object", "properties": {"items": {"type": "array",
                                                                     "items": _ref("ReplyStatus")}}}, "Replies"),
            "404": _ERROR}, parameters=[_POST_ID]),
    },
    "/api/v1/pause": {"post": _op("Hold all syndication (nothing is dropped)", {
        "200": _json({"type": "object", "properties": {"paused": {"type": "boolean"}}}, "Paused")})},
    "/api/v1/resume": {"post": _op("Resume syndication", {
        "200": _json({"type": "object", "properties": {"paused": {"type": "boolean"}}}, "Resumed")})},
    "/api/v1/accounts": {
        "get": _op("Accounts and their health", {"200": _json(
            {"type": "object", "properties": {"items": {"type": "array", "items": _ref("Account")}}}, "Accounts")}),
        "post": _op("Add an account (logs in once to check the app password)", {
            "201": _json(_ref("Account"), "Added"), "413": _TOO_LARGE, "422": _INVALID,
        }, requestBody={"required": True, "content": {"application/json": {"schema": _ref("AccountCreate")}}}),
    },
    "/api/v1/accounts/{handle}": {
        "get": _op("One account", {"200": _json(_ref("Account"), "The account"), "404": _ERROR},
                   parameters=[_HANDLE]),
        "patch": _op("Change an account", {
            "200": _json(_ref("Account"), "Updated"), "404": _ERROR, "413": _TOO_LARGE, "422": _INVALID,
        }, parameters=[_HANDLE],
            requestBody={"required": True, "content": {"application/json": {"schema": _ref("AccountUpdate")}}}),
        "put": _op("Change an account (same as PATCH)", {
            "200": _json(_ref("Account"), "Updated"), "404": _ERROR, "413": _TOO_LARGE, "422": _INVALID,
        }, parameters=[_HANDLE],
            requestBody={"required": True, "content": {"application/json": {"schema": _ref("AccountUpdate")}}}),
        "delete": _op("Remove an account (its unfinished deliveries fail)", {
            "200": _json({"type": "object", "properties": {"removed": _STR, "failed_deliveries": {"type": "integer"}}},
                         "Removed"), "404": _ERROR,
        }, parameters=[_HANDLE]),
    },
    "/api/v1/health": {"get": _op("Queue, accounts, breakers, rate budgets, worker heartbeat",
                                  {"200": _json({"type": "object"}, "Health")})},
    "/api/v1/events": {"get": _op("The activity log, newest first", {
        "200": _json({"type": "object", "properties": {"items": {"type": "array", "items": _ref("Event")}}},
                     "Events"), "422": _INVALID,
    }, parameters=[
        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50}},
        {"name": "post_id", "in": "query", "schema": _STR},
    ])},
    "/api/v1/openapi.json": {"get": _op("This document", {"200": _json({"type": "object"}, "OpenAPI 3.1")})},
    "/metrics": {"get": _op("Prometheus metrics", {
        "200": {"description": "Prometheus text format", "content": {"text/plain": {"schema": _STR}}}})},
    "/healthz": {"get": {"summary": "Liveness (no token needed)", "security": [],
                         "responses": {"200": _json({"type": "object"}, "Up"),
                                       "503": _json(_ref("Error"), "The database cannot be reached")}}},
    "/hooks/{name}": {"post": {
        "summary": "A webhook: a post document, a Ghost post.published payload or a WordPress REST post",
        "description": "Signed with the hook's secret instead of a bearer token: `X-Skypost-Signature: "
                       "sha256=<hex HMAC-SHA256 of the raw body>` (or Ghost's own `X-Ghost-Signature`). "
                       "Ghost ids become `ghost:<id>`, WordPress ids `wordpress:<id>`.",
        "security": [],
        "parameters": [{"name": "name", "in": "path", "required": True, "schema": _STR},
                       {"name": "X-Skypost-Signature", "in": "header", "required": False, "schema": _STR}],
        "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}},
        "responses": {
            "202": _json(_ref("PostStatus"), "Accepted", _LOCATION),
            "200": _json({"type": "object"}, "Already known, or not a publication (ignored)"),
            "401": _json(_ref("Error"), "Bad or missing signature: nothing was written"),
            "404": _ERROR, "413": _TOO_LARGE, "422": _INVALID,
        },
    }},
}


def schema() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "skypost", "version": "1",
                 "description": "Syndicate a site's posts to Bluesky. Every route needs `Authorization: Bearer "
                                "TOKEN` (`skypost token create NAME`) except /healthz and the signed webhooks."},
        "paths": PATHS,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }
