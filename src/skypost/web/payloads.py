"""Webhook payloads → post documents.

- generic: the post document itself (the same JSON as POST /api/v1/posts); its id is kept.
- ghost: Ghost's `post.published` payload, `{"post": {"current": {...}}}`; id "ghost:<id>".
- wordpress: a WordPress REST API post object; id "wordpress:<id>".

Ghost and WordPress ids are namespaced by the kind of site so that they cannot
collide with the ids a site sends through the API or the generic hook, and so
that re-creating a hook (a new secret) keeps the same ids: a post is never sent twice.
"""

from __future__ import annotations

import html
import re
from typing import Any, Mapping

from skypost.models import ValidationError

_TAG = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")


class Ignored(Exception):
    """A valid payload that is not a publication (a draft, a scheduled post): nothing to do."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


def deleted_id(kind: str, payload: Any, *, on_unpublish: str = "keep") -> str | None:
    """The id of the post a payload takes off the site, when it asks for its removal from
    Bluesky; None for a payload that publishes (or is ignored). Raises Ignored for an
    unpublish that this hook keeps.

    - ghost: `post.deleted` sends `{"post": {"current": {}, "previous": {...the post}}}`;
      `post.unpublished` sends the post (now a draft) with `previous.status` "published".
    - wordpress: the REST object of a post moved to the trash has `status` "trash".
    - generic: `{"id": ..., "deleted": true}`.
    """
    if not isinstance(payload, Mapping):
        return None
    if kind == "ghost":
        post = payload.get("post")
        if not isinstance(post, Mapping):
            return None
        current, previous = post.get("current"), post.get("previous")
        if not current and isinstance(previous, Mapping) and previous.get("id") is not None:
            return "ghost:" + _identifier(previous.get("id"), "post.previous.id")
        if (isinstance(current, Mapping) and isinstance(previous, Mapping)
                and previous.get("status") == "published" and current.get("status") not in (None, "published")):
            if on_unpublish != "delete":
                raise Ignored("the Ghost post was unpublished; this hook keeps its Bluesky post "
                              "(skypost hook add --on-unpublish delete)")
            return "ghost:" + _identifier(current.get("id"), "post.current.id")
        return None
    if kind == "wordpress":
        if payload.get("status") == "trash":
            return "wordpress:" + _identifier(payload.get("id"), "id")
        return None
    if kind == "generic" and "deleted" in payload:
        if payload["deleted"] is not True and payload["deleted"] is not False:
            raise ValidationError({"deleted": "must be true or false"})
        if payload["deleted"]:
            return _identifier(payload.get("id"), "id")
    return None


def to_document(kind: str, payload: Any, *, accounts: tuple[str, ...] = ()) -> dict[str, Any]:
    """The post document for a payload of this kind; the hook's accounts apply when it names none."""
    if kind == "ghost":
        doc = from_ghost(payload)
    elif kind == "wordpress":
        doc = from_wordpress(payload)
    elif kind == "generic":
        if not isinstance(payload, Mapping):
            raise ValidationError({"body": "must be a JSON object (a post document)"})
        doc = {k: v for k, v in payload.items() if not (k == "deleted" and v is False)}
    else:  # pragma: no cover - kinds are checked when a hook is added
        raise ValueError(f"unknown hook kind {kind!r}")
    if accounts and not doc.get("accounts"):
        doc["accounts"] = list(accounts)
    return doc


def text_of(fragment: str) -> str:
    """Plain text of an HTML fragment: tags dropped, entities decoded, spaces collapsed."""
    return _SPACE.sub(" ", html.unescape(_TAG.sub(" ", fragment))).strip()


def _string(value: Any, where: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValidationError({where: "must be a string"})
    return value


def _identifier(value: Any, where: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip():
        raise ValidationError({where: "is required (a string or a number)"})
    return str(value).strip()


# --- Ghost ---------------------------------------------------------------------------------

def from_ghost(payload: Any) -> dict[str, Any]:
    post = payload.get("post") if isinstance(payload, Mapping) else None
    current = post.get("current") if isinstance(post, Mapping) else None
    if not isinstance(current, Mapping) or not current:
        raise ValidationError({"post.current": "is required (a Ghost post.published payload)"})
    status = current.get("status")
    if status is not None and status != "published":
        raise Ignored(f"the Ghost post is {status!r}, not published")
    names, public = [], []
    tags = current.get("tags") or []
    if not isinstance(tags, list):
        raise ValidationError({"post.current.tags": "must be a list"})
    for tag in tags:
        name = tag.get("name") if isinstance(tag, Mapping) else None
        if isinstance(name, str) and name.strip():
            names.append(name.strip())
            # internal tags ("#no-bluesky") are for category rules, never hashtags
            if tag.get("visibility", "public") == "public" and not name.startswith("#"):
                public.append(name.strip())
    excerpt = _string(current.get("custom_excerpt"), "post.current.custom_excerpt") or \
        _string(current.get("excerpt"), "post.current.excerpt")
    return {
        "id": "ghost:" + _identifier(current.get("id"), "post.current.id"),
        "title": _string(current.get("title"), "post.current.title"),
        "url": _string(current.get("url"), "post.current.url"),
        "excerpt": excerpt,
        "content_html": _string(current.get("html"), "post.current.html"),
        "image_url": _string(current.get("feature_image"), "post.current.feature_image"),
        "categories": names,
        "tags": public,
        "published_at": _string(current.get("published_at"), "post.current.published_at") or None,
    }


# --- WordPress -----------------------------------------------------------------------------

def _rendered(value: Any, where: str) -> str:
    """WordPress sends {"rendered": "..."} (or a plain string from some plugins)."""
    if isinstance(value, Mapping):
        value = value.get("rendered")
        where += ".rendered"
    return _string(value, where)


def _names(value: Any) -> list[str]:
    """Term names when present (plain ids cannot be resolved without calling the site)."""
    out = []
    for item in value if isinstance(value, list) else []:
        name = item.get("name") if isinstance(item, Mapping) else item
        if isinstance(name, str) and name.strip():
            out.append(html.unescape(name.strip()))
    return out


def _embedded_terms(payload: Mapping[str, Any], taxonomy: str) -> list[str]:
    groups = (payload.get("_embedded") or {}).get("wp:term") if isinstance(payload.get("_embedded"), Mapping) else None
    names: list[str] = []
    for group in groups if isinstance(groups, list) else []:
        for term in group if isinstance(group, list) else []:
            if isinstance(term, Mapping) and term.get("taxonomy") == taxonomy:
                names.extend(_names([term]))
    return names


def _wordpress_image(payload: Mapping[str, Any]) -> str:
    jetpack = payload.get("jetpack_featured_media_url")
    if isinstance(jetpack, str) and jetpack:
        return jetpack
    yoast = payload.get("yoast_head_json")
    images = yoast.get("og_image") if isinstance(yoast, Mapping) else None
    if isinstance(images, list) and images and isinstance(images[0], Mapping):
        url = images[0].get("url")
        if isinstance(url, str) and url:
            return url
    embedded = payload.get("_embedded")
    media = embedded.get("wp:featuredmedia") if isinstance(embedded, Mapping) else None
    if isinstance(media, list) and media and isinstance(media[0], Mapping):
        url = media[0].get("source_url")
        if isinstance(url, str) and url:
            return url
    return ""


def from_wordpress(payload: Any) -> dict[str, Any]:
    if not isinstance(payload, Mapping):
        raise ValidationError({"body": "must be a JSON object (a WordPress REST API post)"})
    status = payload.get("status")
    if status is not None and status != "publish":
        raise Ignored(f"the WordPress post is {status!r}, not published")
    post_type = payload.get("type", "post")
    date = _string(payload.get("date_gmt"), "date_gmt")
    doc: dict[str, Any] = {
        "id": "wordpress:" + _identifier(payload.get("id"), "id"),
        "title": text_of(_rendered(payload.get("title"), "title")),
        "url": _string(payload.get("link"), "link"),
        "excerpt": text_of(_rendered(payload.get("excerpt"), "excerpt")),
        "content_html": _rendered(payload.get("content"), "content"),
        "image_url": _wordpress_image(payload),
        "categories": _names(payload.get("categories")) or _embedded_terms(payload, "category"),
        "tags": _names(payload.get("tags")) or _embedded_terms(payload, "post_tag"),
        # date_gmt has no zone: it is UTC
        "published_at": date or None,
    }
    if isinstance(post_type, str) and post_type != "post":
        doc["post_type"] = post_type
    return doc


# where each field of the post document came from, to name it in an error
_SOURCES = {
    "ghost": {"id": "post.current.id", "title": "post.current.title", "url": "post.current.url",
              "excerpt": "post.current.custom_excerpt", "content_html": "post.current.html",
              "image_url": "post.current.feature_image", "published_at": "post.current.published_at",
              "tags": "post.current.tags", "categories": "post.current.tags"},
    "wordpress": {"id": "id", "title": "title.rendered", "url": "link", "excerpt": "excerpt.rendered",
                  "content_html": "content.rendered", "image_url": "jetpack_featured_media_url",
                  "published_at": "date_gmt", "post_type": "type"},
}


def source_errors(kind: str, errors: Mapping[str, str]) -> dict[str, str]:
    """Field errors of the post document, named as in the payload that was sent."""
    names = _SOURCES.get(kind, {})
    return {names.get(key, key): why for key, why in errors.items()}
