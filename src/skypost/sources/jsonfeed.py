"""JSON Feed 1.0 and 1.1 documents → plain, typed items. Pure: no I/O.

The document is hostile until read: it must be UTF-8 JSON whose root is an object with a
``version`` of https://jsonfeed.org/version/1… and an ``items`` list. Every field is
read at a known place with its expected type; a field of another type counts as absent.
Huge numbers and NaN/Infinity are not materialised, nesting deeper than the decoder
allows is refused, strings lose lone surrogates and NUL characters (neither can be
stored). Anything wrong with the document as a whole is a :class:`JsonFeedError`.
"""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Mapping

__all__ = [
    "JSON_FEED_TYPES",
    "JsonFeedError",
    "JsonFeed",
    "JsonItem",
    "looks_like_json",
    "parse_json_feed",
]

JSON_FEED_TYPES = ("application/feed+json", "application/json")
# the spec writes https; a few generators wrote http
_VERSIONS = ("https://jsonfeed.org/version/1", "http://jsonfeed.org/version/1")
_MAX_INT_DIGITS = 20  # larger integers are never a field skypost reads
_MAX_DATE = 64  # characters: longer is not a date
_MAX_TAGS = 100
_UTF8_BOM = b"\xef\xbb\xbf"
_DROP = re.compile(r"[\x00\ud800-\udfff]")


class JsonFeedError(ValueError):
    """Not a usable JSON Feed; `reason` says why."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class JsonItem:
    id: str
    url: str  # url, else external_url, as written (may be relative)
    title: str
    summary: str  # plain text
    content_html: str
    content_text: str
    published_at: datetime | None  # date_published, else date_modified
    tags: tuple[str, ...]
    image: str  # image, banner_image, else the first image attachment
    language: str


@dataclasses.dataclass(frozen=True)
class JsonFeed:
    version: str  # "json10" or "json11"
    title: str
    home_page_url: str
    language: str
    items: tuple[JsonItem, ...]
    ignored: int  # items that are not objects


def looks_like_json(content: bytes, content_type: str | None) -> bool:
    """A body that opens like a JSON document, or one served as JSON that is not XML."""
    head = content[:64]
    if head.startswith(_UTF8_BOM):
        head = head[len(_UTF8_BOM):]
    head = head.lstrip(b" \t\r\n")
    if head.startswith((b"{", b"[")):
        return True
    kind = (content_type or "").split(";")[0].strip().lower()
    return kind in JSON_FEED_TYPES and not head.startswith(b"<")


def parse_json_feed(content: bytes) -> JsonFeed:
    """Decode and check a JSON Feed; raise JsonFeedError when it is not one."""
    if content.startswith(_UTF8_BOM):
        content = content[len(_UTF8_BOM):]
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as exc:
        reason = f"not a JSON Feed: the document is not UTF-8 (at byte {exc.start})"
        raise JsonFeedError(reason) from None
    try:
        root = json.loads(text, parse_int=_bounded_int, parse_constant=_no_constant)
    except RecursionError:
        raise JsonFeedError("not a JSON Feed: the JSON is nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, and numbers the decoder refuses
        reason = f"not a JSON Feed: the JSON is not well-formed ({str(exc)[:200]})"
        raise JsonFeedError(reason) from None
    if not isinstance(root, dict):
        raise JsonFeedError("not a JSON Feed: the document is not a JSON object")
    version = _str(root, "version")
    if not version.startswith(_VERSIONS):
        raise JsonFeedError(
            "not a JSON Feed: the JSON has no version https://jsonfeed.org/version/1 or 1.1"
        )
    raw_items = root.get("items")
    if not isinstance(raw_items, list):
        raise JsonFeedError("malformed JSON Feed: `items` is missing or not a list")
    items = [_item(raw) for raw in raw_items if isinstance(raw, dict)]
    return JsonFeed(
        version="json11" if version.rstrip("/").endswith("/1.1") else "json10",
        title=_str(root, "title"), home_page_url=_str(root, "home_page_url"),
        language=_str(root, "language"), items=tuple(items), ignored=len(raw_items) - len(items),
    )


def _item(raw: Mapping[str, Any]) -> JsonItem:
    return JsonItem(
        id=_id(raw.get("id")),
        url=_str(raw, "url") or _str(raw, "external_url"),
        title=_str(raw, "title"),
        summary=_str(raw, "summary"),
        content_html=_str(raw, "content_html"),
        content_text=_str(raw, "content_text"),
        # published first: an edit bumps date_modified, never the publication date
        published_at=_date(_str(raw, "date_published")) or _date(_str(raw, "date_modified")),
        tags=_tags(raw.get("tags")),
        image=_str(raw, "image") or _str(raw, "banner_image") or _attached_image(raw),
        language=_str(raw, "language"),
    )


def _bounded_int(digits: str) -> int | None:
    # never materialise a huge integer (a denial of service), whatever field it is in
    return int(digits) if len(digits) <= _MAX_INT_DIGITS else None


def _no_constant(name: str) -> None:
    return None  # NaN, Infinity, -Infinity: not JSON, and never a field skypost reads


def _clean(value: str) -> str:
    return _DROP.sub(lambda m: "" if m.group() == "\x00" else "\ufffd", value)


def _str(raw: Mapping[str, Any], key: str) -> str:
    value = raw.get(key)
    return _clean(value).strip() if isinstance(value, str) else ""


def _id(value: Any) -> str:
    # the spec asks readers to take a numeric id as its string
    if isinstance(value, bool):
        return ""
    if isinstance(value, int):
        return str(value)
    return _clean(value).strip() if isinstance(value, str) else ""


def _tags(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    found: dict[str, None] = {}
    for tag in value:
        if isinstance(tag, str) and _clean(tag).strip():
            found.setdefault(_clean(tag).strip(), None)
            if len(found) == _MAX_TAGS:
                break
    return tuple(found)


def _attached_image(raw: Mapping[str, Any]) -> str:
    attachments = raw.get("attachments")
    if not isinstance(attachments, list):
        return ""
    for attachment in attachments[:_MAX_TAGS]:
        if not isinstance(attachment, dict):
            continue
        if _str(attachment, "mime_type").lower().startswith("image/") and _str(attachment, "url"):
            return _str(attachment, "url")
    return ""


def _date(value: str) -> datetime | None:
    """RFC 3339 as the spec says, else RFC 822 as some generators write; naive means UTC."""
    if not value or len(value) > _MAX_DATE:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    try:
        return when.astimezone(timezone.utc)
    except (OverflowError, ValueError):
        return None
