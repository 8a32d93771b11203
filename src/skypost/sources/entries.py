"""Feed documents (RSS 0.9x/1.0/2.0, Atom, JSON Feed 1.0/1.1) → entries → Posts. Pure: no I/O.

An entry's identity is its *key*: ``id:<guid or atom:id>``, else ``link:<url>``. When the
key is a guid, the link is a second key (``link_key``): a site that regenerates its
guids (a CMS migration) keeps its links, and the entry is still recognised as seen.
"""

from __future__ import annotations

import calendar
import dataclasses
import hashlib
import io
import re
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping, Sequence
from urllib.parse import urljoin

import feedparser

from skypost.models import Post, check_http_url, parse_post_document
from skypost.sources.jsonfeed import (
    JSON_FEED_TYPES,
    JsonFeedError,
    JsonItem,
    looks_like_json,
    parse_json_feed,
)

MAX_KEY = 512  # feed_entries.entry_key
MAX_EXCERPT = 2000  # the record holds 300 graphemes: more is never used
MAX_TITLE = 300
_LANG = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$")
_IMAGE_EXT = re.compile(r"\.(jpe?g|png|gif|webp|avif)$", re.IGNORECASE)
_XML_FEED_TYPES = ("application/rss+xml", "application/atom+xml", "application/rdf+xml")
HTML_PAGE = "not an RSS or Atom feed: the URL serves an HTML page"
# expat errors that the loose parser recovers from without losing anything: HTML
# entities such as &nbsp; are common in real feeds and feedparser decodes them
_BENIGN_XML_ERRORS = ("undefined entity",)
_UTF8_BOM = b"\xef\xbb\xbf"


class FeedParseError(ValueError):
    """The document is not a usable feed; `reason` says why, for the feed's last_error.
    For an HTML page, `alternates` are the feeds it advertises (not checked)."""

    def __init__(self, reason: str, alternates: tuple[str, ...] = ()):
        super().__init__(reason)
        self.reason = reason
        self.alternates = alternates


@dataclasses.dataclass(frozen=True)
class Entry:
    key: str  # the stored key: "id:…" or "link:…" (or "sha1:…" when too long)
    link_key: str | None  # "link:…" when `key` is a guid and the link identifies the entry
    title: str
    url: str
    excerpt: str
    content_html: str
    image_url: str
    categories: tuple[str, ...]
    langs: tuple[str, ...]
    published_at: datetime | None
    position: int  # in the document, 0 first


@dataclasses.dataclass(frozen=True)
class ParsedFeed:
    version: str  # feedparser's name (rss20, rss10, rss091u, atom10, …), or json10/json11
    title: str
    link: str
    language: str
    entries: tuple[Entry, ...]
    ignored: int  # entries without an id or a link: they cannot be tracked


def parse_feed(content: bytes, *, base_url: str, content_type: str | None = None) -> ParsedFeed:
    """Parse a feed document; raise FeedParseError when it is not a well-formed feed.

    `base_url` resolves relative links. Pass the feed's *configured* URL, not the URL
    after redirects: feedparser resolves permalink guids against it, and keys must not
    change when a site starts redirecting."""
    if not content or not content.strip():
        raise FeedParseError("the response is empty, not a feed")
    if looks_like_json(content, content_type):
        return _parse_json(content, base_url)
    headers = {"content-location": base_url, "content-type": content_type or "application/xml"}
    try:
        # a stream, never bytes or str: feedparser opens those as a file name or a URL first,
        # so a body such as "/etc/passwd" or "/dev/zero" would be read from this machine
        parsed = feedparser.parse(io.BytesIO(_trim_prolog(content)), response_headers=headers)
    except (ValueError, OverflowError, LookupError, UnicodeError) as exc:
        # feedparser lets some broken documents escape as exceptions: bad character
        # references (&#xD800;, &#x110000;), an unknown or mangled encoding, NUL bytes
        raise FeedParseError(f"the feed cannot be decoded ({type(exc).__name__}: {str(exc)[:200]})") from None
    if not parsed.get("version"):
        raise _not_a_feed(content, base_url, content_type)
    problem = _xml_problem(parsed)
    if problem:
        raise FeedParseError(problem)
    feed = parsed.get("feed", {})
    site_link = _http(feed.get("link")) or ""
    feed_lang = _lang(feed.get("language"))
    entries: list[Entry] = []
    ignored = 0
    for position, raw in enumerate(parsed.get("entries", [])):
        entry = _entry(raw, position, site_link=site_link, feed_lang=feed_lang)
        if entry is None:
            ignored += 1
        else:
            entries.append(entry)
    return ParsedFeed(
        version=str(parsed.version), title=_plain(feed.get("title") or "", feed.get("title_detail")),
        link=site_link, language=feed_lang or "", entries=tuple(entries), ignored=ignored,
    )


def _trim_prolog(content: bytes) -> bytes:
    """Without the whitespace some sites send before ``<?xml`` (a theme's stray newline),
    which XML forbids but feed readers accept."""
    bom = _UTF8_BOM if content.startswith(_UTF8_BOM) else b""
    rest = content[len(bom):]
    trimmed = rest.lstrip(b" \t\r\n")
    if len(trimmed) == len(rest) or not trimmed.startswith(b"<?xml"):
        return content
    return bom + trimmed


def _xml_problem(parsed: Mapping[str, Any]) -> str | None:
    if not parsed.get("bozo"):
        return None
    exc = parsed.get("bozo_exception")
    get_message = getattr(exc, "getMessage", None)
    if get_message is None:  # encoding and content-type notices: the document parsed
        return None
    message = str(get_message())
    if message in _BENIGN_XML_ERRORS:
        return None
    where = ""
    if hasattr(exc, "getLineNumber"):
        where = f" at line {exc.getLineNumber()}, column {exc.getColumnNumber()}"
    return f"malformed feed: the XML is not well-formed ({message}{where})"


def _not_a_feed(content: bytes, base_url: str, content_type: str | None) -> FeedParseError:
    head = content[:2048].lstrip().lower()
    kind = (content_type or "").split(";")[0].strip().lower()
    is_html = kind in ("text/html", "application/xhtml+xml") \
        or head.startswith((b"<!doctype html", b"<html"))
    if not is_html:
        return FeedParseError(
            "not an RSS or Atom feed (the document has no rss, rdf:RDF or feed root element)")
    alternates = feed_alternates(content, base_url)
    # an RSS or Atom link is named as it is; a JSON one only once read (feeds.add_feed)
    xml = [url for url, of_type in alternates if of_type in _XML_FEED_TYPES]
    hint = f"; it links to the feed {xml[0]}: add that URL" if xml else ""
    return FeedParseError(HTML_PAGE + hint, tuple(url for url, _ in alternates))


def discover_feed_links(html: bytes, base_url: str) -> list[str]:
    """The RSS and Atom feeds an HTML page advertises (<link rel="alternate"
    type="application/rss+xml">). JSON ones are in :func:`feed_alternates`."""
    return [url for url, of_type in feed_alternates(html, base_url) if of_type in _XML_FEED_TYPES]


def feed_alternates(html: bytes, base_url: str) -> list[tuple[str, str]]:
    """Every feed an HTML page advertises, as (absolute URL, type), in page order: RSS,
    Atom, and JSON (application/feed+json, or application/json as micro.blog writes it —
    which is also what a WordPress page's REST link says, so JSON ones must be read
    before they are offered)."""
    from selectolax.lexbor import LexborHTMLParser

    tree = LexborHTMLParser(html.decode("utf-8", "replace"))
    found: dict[str, str] = {}
    for node in tree.css("link[href]"):
        rel = (node.attributes.get("rel") or "").lower().split()
        kind = (node.attributes.get("type") or "").lower().split(";")[0].strip()
        if "alternate" in rel and kind in _XML_FEED_TYPES + JSON_FEED_TYPES:
            url = _absolute(base_url, (node.attributes.get("href") or "").strip())
            if url:
                found.setdefault(url, kind)
    return list(found.items())


# --- JSON Feed ----------------------------------------------------------------------------

def _parse_json(content: bytes, base_url: str) -> ParsedFeed:
    try:
        feed = parse_json_feed(content)
    except JsonFeedError as exc:
        raise FeedParseError(exc.reason) from None
    site_link = _absolute(base_url, feed.home_page_url)
    feed_lang = _lang(feed.language)
    entries: list[Entry] = []
    ignored = feed.ignored
    for position, item in enumerate(feed.items):
        entry = _json_entry(item, position, base_url=base_url, site_link=site_link,
                            feed_lang=feed_lang)
        if entry is None:
            ignored += 1
        else:
            entries.append(entry)
    return ParsedFeed(
        version=feed.version, title=_cut(" ".join(feed.title.split()), MAX_TITLE * 4),
        link=site_link, language=feed_lang or "", entries=tuple(entries), ignored=ignored,
    )


def _json_entry(item: JsonItem, position: int, *, base_url: str, site_link: str,
                feed_lang: str | None) -> Entry | None:
    # summary and content_text are plain text; content_html is HTML
    excerpt = " ".join(item.summary.split()) or html_text(item.content_html) \
        or " ".join(item.content_text.split())
    lang = _lang(item.language) or feed_lang
    return _make_entry(
        guid=item.id, link=_absolute(base_url, item.url), site_link=site_link,
        title=_cut(" ".join(item.title.split()), MAX_TITLE * 4), excerpt=_cut(excerpt, MAX_EXCERPT),
        content_html=item.content_html, image_url=_absolute(base_url, item.image),
        categories=item.tags, langs=(lang,) if lang else (), published_at=item.published_at,
        position=position,
    )


def _absolute(base_url: str, url: str) -> str:
    if not url or len(url) > 2048:
        return ""
    try:
        return _http(urljoin(base_url, url)) or ""
    except ValueError:  # an invalid IPv6 host, for one
        return ""


# --- one entry --------------------------------------------------------------------------

def _entry(raw: Mapping[str, Any], position: int, *, site_link: str,
           feed_lang: str | None) -> Entry | None:
    summary_html = raw.get("summary") or ""
    content_html = _content_html(raw)
    return _make_entry(
        guid=(raw.get("id") or "").strip(), link=_http(raw.get("link")) or "", site_link=site_link,
        title=_plain(raw.get("title") or "", raw.get("title_detail")),
        excerpt=_cut(html_text(summary_html or content_html), MAX_EXCERPT),
        content_html=content_html if content_html != summary_html else "",
        image_url=entry_image(raw), categories=_categories(raw.get("tags") or ()),
        langs=_entry_langs(raw, feed_lang), published_at=_date(raw), position=position,
    )


def _make_entry(*, guid: str, link: str, site_link: str, title: str, excerpt: str,
                content_html: str, image_url: str, categories: tuple[str, ...],
                langs: tuple[str, ...], published_at: datetime | None,
                position: int) -> Entry | None:
    """The keys and the title fallback, the same for every feed format."""
    if guid:
        key = stored_key("id:" + guid)
        # a link shared by many entries (the site's home page) does not identify one
        same_as_site = link and site_link and link.rstrip("/") == site_link.rstrip("/")
        link_key = stored_key("link:" + link) if link and not same_as_site else None
    elif link:
        key, link_key = stored_key("link:" + link), None
    else:
        return None
    if not title:  # title-less entries (micro-blogs): the text is the post
        title = _cut(excerpt, MAX_TITLE) or link
    return Entry(
        key=key, link_key=link_key, title=title, url=link, excerpt=excerpt,
        content_html=content_html, image_url=image_url, categories=categories, langs=langs,
        published_at=published_at, position=position,
    )


def stored_key(key: str) -> str:
    """The key as stored: itself, or a digest when it does not fit the column."""
    if len(key) <= MAX_KEY:
        return key
    return "sha1:" + hashlib.sha1(key.encode("utf-8")).hexdigest()


def entry_post_id(feed_id: int, key: str) -> str:
    """Stable and short: the same entry of the same feed always gets the same post id."""
    return f"feed:{feed_id}:{hashlib.sha1(key.encode('utf-8')).hexdigest()[:16]}"


def _content_html(raw: Mapping[str, Any]) -> str:
    contents = raw.get("content") or []
    for wanted in ("text/html", "application/xhtml+xml", None):
        for item in contents:
            if wanted is None or item.get("type") == wanted:
                value = item.get("value") or ""
                if value.strip():
                    return value
    return ""


def html_text(html: str) -> str:
    """One line of plain text from an HTML fragment (tags stripped, entities decoded)."""
    if not html or not html.strip():
        return ""
    if "<" not in html and "&" not in html:
        return " ".join(html.split())
    from skypost.bluesky.text import html_to_text

    return " ".join(html_to_text(html).split())


def _plain(value: str, detail: Mapping[str, Any] | None) -> str:
    kind = (detail or {}).get("type") or "text/plain"
    text = html_text(value) if kind in ("text/html", "application/xhtml+xml") else " ".join(value.split())
    return _cut(text, MAX_TITLE * 4)


def _cut(text: str, limit: int) -> str:
    """At most `limit` characters, cut at a word, with "…"."""
    if len(text) <= limit:
        return text
    head = text[: limit - 1]
    space = head.rfind(" ")
    if space > limit // 2:
        head = head[:space]
    return head.rstrip() + "…"


def _categories(tags: Iterable[Mapping[str, Any]]) -> tuple[str, ...]:
    found: dict[str, None] = {}
    for tag in tags:
        term = (tag.get("term") or tag.get("label") or "").strip()
        if term:
            found.setdefault(term, None)
    return tuple(found)


def _lang(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    value = value.strip().replace("_", "-")
    return value if _LANG.match(value) else None


def _entry_langs(raw: Mapping[str, Any], feed_lang: str | None) -> tuple[str, ...]:
    candidates = [raw.get("language")]
    candidates += [c.get("language") for c in raw.get("content") or []]
    candidates += [(raw.get(k) or {}).get("language") for k in ("summary_detail", "title_detail")]
    for value in candidates:
        lang = _lang(value)
        if lang:
            return (lang,)
    return (feed_lang,) if feed_lang else ()


def _date(raw: Mapping[str, Any]) -> datetime | None:
    # published first: an edit bumps `updated`, never the publication date
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        value = raw.get(key)
        if value:
            try:
                return datetime.fromtimestamp(calendar.timegm(value), timezone.utc)
            except (OverflowError, ValueError, TypeError):
                continue
    return None


def entry_image(raw: Mapping[str, Any]) -> str:
    """media:content (an image), media:thumbnail, an image enclosure; else "" (the card
    then uses the page's og:image)."""
    for media in raw.get("media_content") or []:
        url = _http(media.get("url"))
        kind = (media.get("type") or "").lower()
        medium = (media.get("medium") or "").lower()
        if url and (medium == "image" or kind.startswith("image/")
                    or (not medium and not kind and _IMAGE_EXT.search(url.split("?")[0]))):
            return url
    for thumb in raw.get("media_thumbnail") or []:
        url = _http(thumb.get("url"))
        if url:
            return url
    for link in list(raw.get("enclosures") or []) + [
            lk for lk in raw.get("links") or [] if lk.get("rel") == "enclosure"]:
        url = _http(link.get("href") or link.get("url"))
        if url and (link.get("type") or "").lower().startswith("image/"):
            return url
    return ""


def _http(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value if value and len(value) <= 2048 and check_http_url(value) is None else None


# --- entries → posts ---------------------------------------------------------------------

def matches_categories(entry: Entry, include: Sequence[str]) -> bool:
    """No filter → yes; else the entry needs one of the categories (case-insensitive)."""
    if not include:
        return True
    wanted = {c.casefold() for c in include}
    return any(c.casefold() in wanted for c in entry.categories)


def entry_to_post(entry: Entry, *, feed_id: int, accounts: Sequence[str] = ()) -> Post:
    """The Post of an entry, validated like any post document (raises ValidationError)."""
    document = {
        "id": entry_post_id(feed_id, entry.key),
        "title": entry.title,
        "url": entry.url,
        "excerpt": entry.excerpt,
        "content_html": entry.content_html,
        "image_url": entry.image_url,
        "categories": list(entry.categories),
        "langs": list(entry.langs),
        "published_at": entry.published_at.isoformat() if entry.published_at else None,
        "accounts": list(accounts),
    }
    return parse_post_document(document)


def newest_first(entries: Sequence[Entry]) -> list[Entry]:
    """By publication date when every entry has one; else in document order (feeds list
    their newest entries first)."""
    if entries and all(e.published_at is not None for e in entries):
        return sorted(entries, key=lambda e: (-e.published_at.timestamp(), e.position))  # type: ignore[union-attr]
    return sorted(entries, key=lambda e: e.position)


def unique_entries(entries: Iterable[Entry]) -> list[Entry]:
    """The first entry of each key (a feed may list one entry twice)."""
    seen: set[str] = set()
    out = []
    for entry in entries:
        if entry.key not in seen:
            seen.add(entry.key)
            out.append(entry)
    return out
