"""The Bluesky post record of a Post: text, facets, link card and thumbnail.

Text rules (DESIGN.md, "The record"):

* the custom ``post.text`` when given (cut with "…" when over the limits, never
  refused); else the title and, where room is left, the excerpt (``post.excerpt``, else
  the text of ``post.content_html``) cut at a word with "…";
* limits are 300 grapheme clusters **and** 3000 UTF-8 bytes; counting and cutting use
  the ``grapheme`` package (extended grapheme clusters: emoji ZWJ sequences, flags,
  skin tones, combining marks, Hangul). It predates Unicode 15.1's Indic conjunct rule
  (GB9c), so it counts "क्ष" as 2 where a 15.1 segmenter says 1: our count is never
  lower than the server's, and cuts never land right after a virama or a ZWJ;
* ``include_url`` appends the URL after a blank line, counted in the budget and never
  cut (the title/excerpt are cut to make room); a URL too long to fit at all is left out;
* text is cleaned first: lone surrogates become U+FFFD, CR/CRLF become LF, other control
  characters (except tab and LF) and BOMs are dropped, outer whitespace is stripped;
  titles and excerpts also get HTML entities decoded and whitespace collapsed to single
  spaces (an excerpt that contains tags goes through :func:`html_to_text`).

:func:`html_to_text` keeps paragraph breaks as single newlines (one line per block
element or ``<br>``), with the whitespace inside a line collapsed to single spaces.
"""

from __future__ import annotations

import html as _html
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import urlsplit

import grapheme
from selectolax.lexbor import LexborHTMLParser

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
ELLIPSIS = "…"
_MIN_EXCERPT_GRAPHEMES = 20  # below this, a cut excerpt is not worth adding
_MAX_WORD_DROP = 30  # a cut at a word may always drop this many graphemes (else at most half)
_URL_SEPARATOR = "\n\n"
_TITLE_SEPARATOR = "\n\n"

# --- counting and cutting -----------------------------------------------------


def utf8_len(text: str) -> int:
    """UTF-8 length in bytes (lone surrogates counted as 3 bytes instead of failing)."""
    return len(text.encode("utf-8", "surrogatepass"))


def grapheme_len(text: str) -> int:
    """The number of extended grapheme clusters (what Bluesky calls graphemes)."""
    if text.isascii():
        # ASCII: one cluster per character, except CR LF which is one.
        return len(text) - text.count("\r\n")
    return grapheme.length(text)


def _fits(text: str, max_graphemes: int, max_bytes: int) -> bool:
    return utf8_len(text) <= max_bytes and grapheme_len(text) <= max_graphemes


# Closing/opening punctuation that looks wrong right before an ellipsis.
_TRAILING_CUT = frozenset(",;:-–—([{«“‘„‚/\\&")


def _joins_next(cluster: str) -> bool:
    """A cluster ending in a virama or a ZWJ: Unicode 15.1 joins it with what follows."""
    last = cluster[-1]
    return last == "\u200d" or unicodedata.combining(last) == 9


def truncate(text: str, max_graphemes: int, max_bytes: int, ellipsis: str = ELLIPSIS) -> str:
    """``text`` unchanged when it fits, else its longest prefix that fits with ``ellipsis``.

    The cut is at a word (the last whitespace) unless that would drop more than half of
    what fits and more than 30 graphemes (a very long word, or a script without spaces:
    then the cut is where the budget ends); it is always on a grapheme
    cluster boundary. Whitespace and dangling punctuation before the ellipsis are dropped.
    Returns "" when not even the ellipsis fits."""
    if _fits(text, max_graphemes, max_bytes):
        return text
    budget_g = max_graphemes - grapheme_len(ellipsis)
    budget_b = max_bytes - utf8_len(ellipsis)
    if budget_g < 0 or budget_b < 0:
        return ""
    # At most budget_b code points can fit in budget_b bytes: segment only that prefix.
    prefix = text[: budget_b + 1]
    clusters = list(grapheme.graphemes(prefix))
    if len(prefix) < len(text) and clusters:
        clusters.pop()  # the last cluster of a prefix may be incomplete
    count = 0
    used = 0
    for cluster in clusters:
        size = utf8_len(cluster)
        if count + 1 > budget_g or used + size > budget_b:
            break
        count += 1
        used += size
    cut = count
    if cut < len(clusters):
        word_cut = next((i for i in range(cut, 0, -1) if clusters[i].isspace()), 0)
        if word_cut > 0 and cut - word_cut <= max(cut // 2, _MAX_WORD_DROP):
            cut = word_cut
        else:
            while cut > 0 and _joins_next(clusters[cut - 1]):
                cut -= 1
    while cut > 0 and (clusters[cut - 1].isspace() or clusters[cut - 1] in _TRAILING_CUT):
        cut -= 1
    return "".join(clusters[:cut]) + ellipsis


# --- cleaning -------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ufeff\ufff9-\ufffb]")
_HTML_TAG = re.compile(r"<[A-Za-z/!?]")
_HTML_ENTITY = re.compile(r"&(#\d+|#[xX][0-9a-fA-F]+|[A-Za-z][A-Za-z0-9]*);?")


def clean_text(text: str | None) -> str:
    """Fix lone surrogates, normalise newlines, drop control characters, strip."""
    if not text:
        return ""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub("", text)
    return text.strip()


def _single_line(text: str) -> str:
    return " ".join(text.split())


def post_title_text(post: Post) -> str:
    """The title as it goes into the text and the card: entities decoded, one line."""
    title = clean_text(post.title)
    if "&" in title and _HTML_ENTITY.search(title):
        title = _html.unescape(title)
    return _single_line(clean_text(title))


def post_excerpt_text(post: Post) -> str:
    """The excerpt (or the text of content_html) as one line of plain text."""
    excerpt = clean_text(post.excerpt)
    if excerpt:
        if _HTML_TAG.search(excerpt):
            excerpt = html_to_text(excerpt)
        elif "&" in excerpt and _HTML_ENTITY.search(excerpt):
            excerpt = _html.unescape(excerpt)
    elif post.content_html:
        excerpt = html_to_text(post.content_html)
    return _single_line(clean_text(excerpt))


_DROP_TAGS = ["script", "style", "noscript", "template", "head", "svg", "math", "iframe", "object", "embed"]
_BLOCK_SELECTOR = ", ".join(
    (
        "address", "article", "aside", "blockquote", "dd", "details", "dialog", "div", "dl", "dt",
        "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6",
        "header", "hgroup", "hr", "li", "main", "nav", "ol", "p", "pre", "section", "summary",
        "table", "tr", "ul", "caption", "title",
    )
)


def html_to_text(html: str) -> str:
    """Plain text of an HTML fragment or page.

    Drops script/style/noscript/template (and head, svg, math, iframe, object, embed),
    strips tags, decodes entities; every block element and ``<br>`` starts a new line;
    whitespace inside a line is collapsed to single spaces; empty lines are dropped.
    Lines are joined with a single "\\n"."""
    if not html or not html.strip():
        return ""
    html = clean_text(html.replace("\x00", ""))
    tree = LexborHTMLParser(html)
    tree.strip_tags(_DROP_TAGS)  # detaches the elements with their content
    # U+2029 PARAGRAPH SEPARATOR marks the breaks; newlines in the source are spaces.
    for node in tree.css("br"):
        node.replace_with("\u2029")
    for node in tree.css(_BLOCK_SELECTOR):
        node.insert_before("\u2029")
        node.insert_after("\u2029")
    for node in tree.css("td, th"):
        node.insert_after(" ")
    root = tree.body if tree.body is not None else tree.root
    raw = root.text(deep=True) if root is not None else ""
    lines = (" ".join(line.split()) for line in raw.split("\u2029"))
    return "\n".join(line for line in lines if line)


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
        if _fits(text, MAX_GRAPHEMES, MAX_BYTES) or budget_g <= 0 or budget_b <= 0:
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
    if _fits(excerpt, room_g, room_b):
        return f"{title}{_TITLE_SEPARATOR}{excerpt}"
    if room_g < _MIN_EXCERPT_GRAPHEMES:
        return title
    cut = truncate(excerpt, room_g, room_b)
    if not cut or cut == ELLIPSIS:
        return title
    return f"{title}{_TITLE_SEPARATOR}{cut}"


# --- facets ---------------------------------------------------------------------

# Whitespace as the official client's detection sees it (JavaScript's \s).
_WS = "\t\n\v\f\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
_URL_RE = re.compile(rf"(?:^|(?<=[{_WS}(\[<\"'«“‘「]))(https?://[^{_WS}]+)", re.IGNORECASE)
_MENTION_RE = re.compile(rf"(?:^|(?<=[{_WS}(]))@([a-zA-Z0-9.-]+)\b", re.ASCII)
_TAG_RE = re.compile(rf"(?:^|(?<=[{_WS}]))[#＃]((?!\ufe0f)[^{_WS}\u00ad\u2060\u200b\u200c\u200d\u20e2]+)")
_URL_TRAILING = frozenset(".,;:!?'\"»”’>…。、，！？")
_PAIRS = {")": "(", "]": "[", "}": "{"}
_RESERVED_TLDS = frozenset({"local", "arpa", "invalid", "localhost", "internal", "example", "alt", "onion"})


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
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname) and not parts.netloc.startswith("/")


def _find_links(text: str) -> list[tuple[int, int, dict[str, Any]]]:
    found = []
    for match in _URL_RE.finditer(text):
        start = match.start(1)
        uri = _strip_url_end(match.group(1))
        if _valid_link(uri):
            found.append((start, start + len(uri), {"$type": "app.bsky.richtext.facet#link", "uri": uri}))
    return found


def _find_mentions(
    text: str, resolve_handle: Callable[[str], str | None] | None
) -> list[tuple[int, int, dict[str, Any]]]:
    if resolve_handle is None:
        return []
    found = []
    resolved: dict[str, str | None] = {}
    for match in _MENTION_RE.finditer(text):
        handle = match.group(1).lower()
        if len(handle) > 253 or not HANDLE.match(handle) or handle.rsplit(".", 1)[-1] in _RESERVED_TLDS:
            continue
        if handle not in resolved:
            did = resolve_handle(handle)  # exceptions propagate: the caller classifies them
            resolved[handle] = did if isinstance(did, str) and did.startswith("did:") else None
        did = resolved[handle]
        if did:
            found.append(
                (match.start(0), match.end(1), {"$type": "app.bsky.richtext.facet#mention", "did": did})
            )
    return found


def _find_tags(text: str) -> list[tuple[int, int, dict[str, Any]]]:
    found = []
    for match in _TAG_RE.finditer(text):
        tag = match.group(1)
        while tag and _is_punctuation(tag[-1]):
            tag = tag[:-1]
        if not tag or not any(not ch.isspace() and ch not in "0123456789" and not _is_punctuation(ch) for ch in tag):
            continue
        if grapheme_len(tag) > MAX_TAG_GRAPHEMES or utf8_len(tag) > MAX_TAG_BYTES:
            continue
        start = match.start(0)
        found.append((start, match.start(1) + len(tag), {"$type": "app.bsky.richtext.facet#tag", "tag": tag}))
    return found


def detect_facets(text: str, resolve_handle: Callable[[str], str | None] | None = None) -> list[dict]:
    """Facets for the links, mentions and hashtags in ``text``.

    Byte offsets are UTF-8, end exclusive, on character boundaries, sorted and
    non-overlapping (links win over mentions, mentions over tags). A mention gets a facet
    only when ``resolve_handle(handle)`` returns a DID; None (unknown handle) leaves it plain
    text. Each handle is looked up once; exceptions from ``resolve_handle`` propagate, like
    those of ``upload_blob``, so that the caller can classify and retry them."""
    if not text:
        return []
    candidates = _find_links(text) + _find_mentions(text, resolve_handle) + _find_tags(text)
    # Links first at equal starts; a later (lower-priority) candidate overlapping an
    # accepted one is dropped.
    priority = {"app.bsky.richtext.facet#link": 0, "app.bsky.richtext.facet#mention": 1}
    candidates.sort(key=lambda c: (c[0], priority.get(c[2]["$type"], 2)))
    accepted: list[tuple[int, int, dict[str, Any]]] = []
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
        facets.append({"index": {"byteStart": byte_start, "byteEnd": byte_pos}, "features": [feature]})
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
    """post.tags for the record's ``tags``: without '#', non-empty, unique, ≤ 64 graphemes, at most 8."""
    out: list[str] = []
    for raw in tags:
        tag = _single_line(clean_text(raw)).lstrip("#＃").strip()
        if not tag:
            continue
        if not _fits(tag, MAX_TAG_GRAPHEMES, MAX_TAG_BYTES):
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
    """The ``app.bsky.feed.post`` record for ``post`` (see the module and DESIGN.md).

    With ``post.url`` a link card is built (``gather_card``; the page is fetched only
    when the post lacks something and ``fetcher`` is given); its image is fetched and
    prepared when ``fetcher`` is given, and uploaded with ``upload_blob(bytes, mime)``
    when that is given (its exceptions propagate). Card and image problems are warnings.
    ``resolve_handle(handle) -> DID | None`` turns @mentions into facets (its exceptions
    propagate too); without it mentions stay plain text. ``upload_blob`` may return the
    blob ref as a dict or as an atproto SDK ``BlobRef`` (dumped by alias)."""
    from skypost.bluesky.card import fetch_thumbnail, gather_card

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
                    warnings.append("the card image was not fetched (no network access in this run)")
                else:
                    thumb, thumb_warnings = fetch_thumbnail(card.image_url, fetcher)
                    warnings.extend(thumb_warnings)
                    if thumb is not None and upload_blob is not None:
                        external["thumb"] = _blob_dict(upload_blob(thumb[0], thumb[1]))
            record["embed"] = {"$type": "app.bsky.embed.external", "external": external}
    return ComposedRecord(record=record, warnings=warnings, thumb=thumb)
