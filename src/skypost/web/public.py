"""GET /i/{id}: the public page of one interaction, marked up as an h-entry.

It is the `source` of the Webmention skypost sends to the post's page: a Webmention
receiver fetches it, checks that it links to the post, and reads the reply, like, repost
or quote from its microformats (as it would from Bridgy's pages). No login: the content is
public on Bluesky already. A removed reaction answers 410 Gone, without its content.
Every value is escaped: names and texts come from strangers.
"""

from __future__ import annotations

import re
from html import escape
from typing import Any, Mapping

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from skypost.app import Skypost
from skypost.conversation.outbox import post_ref
from skypost.conversation.views import interaction_json, reaction_url as bsky_url
from skypost.store import queries_outbox as qo
from skypost.web.http import Offload

# the property that points at the site's post, per kind (as Bridgy marks them up)
TARGET_CLASS = {"reply": "u-in-reply-to", "quote": "u-in-reply-to", "like": "u-like-of",
                "repost": "u-repost-of"}
VERB = {"reply": "replied to", "quote": "quoted", "like": "liked", "repost": "reposted"}
_URL = re.compile(r"https?://[^\s<>\"']+")
_TRAILING = ".,;:!?)]}'\""
_MAX_ID_DIGITS = 18


def linkify(text: str) -> str:
    """`text` HTML-escaped, with its http(s) URLs as links."""
    out: list[str] = []
    pos = 0
    for match in _URL.finditer(text):
        url = match.group(0)
        stripped = url.rstrip(_TRAILING)
        end = match.start() + len(stripped)
        out.append(escape(text[pos:match.start()]))
        out.append(f'<a href="{escape(stripped, quote=True)}">{escape(stripped)}</a>')
        pos = end
    out.append(escape(text[pos:]))
    return "".join(out).replace("\n", "<br>\n")


def _safe_url(value: Any) -> str | None:
    return value if isinstance(value, str) and value.startswith(("https://", "http://")) else None


def render_entry(row: Mapping[str, Any], post_url: str) -> str:
    """The h-entry page of a live interaction."""
    data = interaction_json(row)
    author = data["author"]
    name = author["display_name"] or author["handle"] or author["did"]
    profile = f"https://bsky.app/profile/{author['did']}"
    avatar = _safe_url(author["avatar"])
    kind = row["kind"]
    reaction_url = bsky_url(kind, row["uri"], row["author_did"])
    verb = VERB.get(kind, "reacted to")
    photo = f'<img class="u-photo" src="{escape(avatar, quote=True)}" alt="" width="48" height="48"> ' if avatar else ""
    content = (f'  <div class="e-content">{linkify(row["text"])}</div>\n' if row["text"] else "")
    published = data["created_at"] or ""
    e = escape
    return (
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{e(name)} {e(verb)} a post</title>\n"
        "<meta name=\"robots\" content=\"noindex\">\n</head>\n<body>\n"
        f"<article class=\"h-entry\">\n"
        f"  <div class=\"p-author h-card\"><a class=\"u-url\" href=\"{e(profile, quote=True)}\">{photo}"
        f"<span class=\"p-name\">{e(name)}</span></a></div>\n"
        f"  <p>{e(verb)} <a class=\"{TARGET_CLASS.get(kind, 'u-mention-of')}\" href=\"{e(post_url, quote=True)}\">"
        f"{e(post_url)}</a></p>\n"
        f"{content}"
        f"  <p><time class=\"dt-published\" datetime=\"{e(published, quote=True)}\">{e(published)}</time>"
        f" · <a class=\"u-url u-syndication\" href=\"{e(reaction_url, quote=True)}\">on Bluesky</a></p>\n"
        "</article>\n</body>\n</html>\n"
    )


GONE = ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Gone</title></head>"
        "<body><p>This reaction was removed on Bluesky.</p></body></html>\n")
NOT_FOUND = ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Not found</title></head>"
             "<body><p>No such page.</p></body></html>\n")


def page(skypost: Skypost, raw_id: str) -> tuple[int, str]:
    """(HTTP status, HTML) of /i/{raw_id}."""
    if not raw_id.isascii() or not raw_id.isdigit() or len(raw_id) > _MAX_ID_DIGITS:
        return 404, NOT_FOUND
    with skypost.db.connect() as conn:
        row = qo.interaction_with_post(conn, int(raw_id))
    if row is None:
        return 404, NOT_FOUND
    if row["removed_at"] is not None:
        return 410, GONE
    post_url = post_ref(row)["url"]
    if post_url is None:
        return 404, NOT_FOUND
    return 200, render_entry(row, post_url)


def routes(skypost: Skypost, offload: Offload) -> list[BaseRoute]:

    async def interaction_page(request: Request) -> Response:
        status, body = await offload(page, skypost, request.path_params["id"])
        return HTMLResponse(body, status_code=status, headers={"Cache-Control": "public, max-age=60"})

    return [Route("/i/{id}", interaction_page, methods=["GET", "HEAD"])]
