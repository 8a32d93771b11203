"""Link card (``app.bsky.embed.external``) data: from the post first, then from its page.

Bluesky never builds link cards itself: the client reads the page's ``og:`` tags,
uploads the image and sends the embed. :func:`gather_card` takes what the post already
has (title; excerpt, else the text of content_html; image_url) and fetches the page
only when something is missing: ``og:title`` (``twitter:title``, ``<title>``),
``og:description`` (``twitter:description``, ``<meta name=description>``), ``og:image``
(``og:image:url``/``og:image:secure_url``, ``twitter:image``), resolved against the page
URL (or its ``<base href>``). :func:`fetch_thumbnail` fetches and prepares the image.
Neither ever raises for a network, page or image problem: those are warnings.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from selectolax.lexbor import LexborHTMLParser

from skypost.bluesky.images import ImageError, prepare_thumbnail, sniff_image_mime
from skypost.bluesky.text import clean_text, post_excerpt_text, post_title_text, truncate
from skypost.fetch import FetchError, SafeFetcher
from skypost.models import Post

__all__ = [
    "CardData",
    "PageMeta",
    "MAX_PAGE_BYTES",
    "MAX_IMAGE_BYTES",
    "gather_card",
    "parse_page_meta",
    "fetch_thumbnail",
]

MAX_PAGE_BYTES = 2_000_000
MAX_IMAGE_BYTES = 15_000_000
MAX_TITLE_GRAPHEMES = 300
MAX_DESCRIPTION_GRAPHEMES = 1000
_HTML_TYPES = ("text/html", "application/xhtml+xml", "text/plain", "application/xml", "text/xml")
_NOT_IMAGE_TYPES = ("text/", "application/json", "application/xml", "application/xhtml", "application/javascript")
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)


@dataclass(frozen=True)
class CardData:
    uri: str
    title: str
    description: str
    image_url: str | None


@dataclass(frozen=True)
class PageMeta:
    title: str = ""
    description: str = ""
    image_url: str | None = None


def _one_line(value: str | None) -> str:
    return " ".join(clean_text(value or "").split())


def _absolute_image(value: str, base: str) -> str | None:
    value = value.strip()
    if not value:
        return None
    try:
        joined = urljoin(base, value)
        parts = urlsplit(joined)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return joined


def _decode(content: bytes, content_type: str) -> str:
    charset = None
    match = re.search(r"charset\s*=\s*[\"']?([A-Za-z0-9_.:-]+)", content_type or "", re.IGNORECASE)
    if match:
        charset = match.group(1)
    else:
        found = _META_CHARSET.search(content[:4096])
        if found:
            charset = found.group(1).decode("ascii", "replace")
    if content.startswith(codecs.BOM_UTF8):
        charset, content = "utf-8", content[len(codecs.BOM_UTF8):]
    if charset:
        try:
            codecs.lookup(charset)
        except LookupError:
            charset = None
    return content.decode(charset or "utf-8", "replace")


def parse_page_meta(html: str, page_url: str) -> PageMeta:
    """Title, description and image URL (absolute) of an HTML page."""
    tree = LexborHTMLParser(html)
    meta: dict[str, str] = {}
    for node in tree.css("meta"):
        attrs = node.attributes
        key = (attrs.get("property") or attrs.get("name") or attrs.get("itemprop") or "").strip().lower()
        content = attrs.get("content")
        if key and content is not None and content.strip() and key not in meta:
            meta[key] = content
    base = page_url
    base_node = tree.css_first("base[href]")
    if base_node is not None:
        base = urljoin(page_url, (base_node.attributes.get("href") or "").strip())
    title_node = tree.css_first("title")
    page_title = title_node.text(deep=True) if title_node is not None else ""

    def first(*keys: str) -> str:
        for key in keys:
            value = _one_line(meta.get(key))
            if value:
                return value
        return ""

    title = first("og:title", "twitter:title") or _one_line(page_title)
    description = first("og:description", "twitter:description", "description")
    image = None
    for key in ("og:image", "og:image:url", "og:image:secure_url", "twitter:image", "twitter:image:src", "image"):
        if key in meta:
            image = _absolute_image(meta[key], base)
            if image:
                break
    return PageMeta(title=title, description=description, image_url=image)


def _limit(value: str, max_graphemes: int) -> str:
    return truncate(value, max_graphemes, max_graphemes * 8)


def gather_card(post: Post, fetcher: SafeFetcher | None) -> tuple[CardData, list[str]]:
    """Card data for ``post.url`` and the warnings met on the way (never raises for
    network or page problems). The title is never empty: it falls back to the URL."""
    warnings: list[str] = []
    uri = (post.url or "").strip()
    title = post_title_text(post)
    description = post_excerpt_text(post)
    image_url = (post.image_url or "").strip() or None
    if image_url and _absolute_image(image_url, uri) != image_url:
        warnings.append(f"the post's image URL {image_url!r} is not an http(s) URL; ignored")
        image_url = None

    if fetcher is not None and uri and not (title and description and image_url):
        page = _fetch_page_meta(uri, fetcher, warnings)
        if page is not None:
            title = title or page.title
            description = description or page.description
            image_url = image_url or page.image_url

    title = _limit(title, MAX_TITLE_GRAPHEMES) or uri
    description = _limit(description, MAX_DESCRIPTION_GRAPHEMES)
    return CardData(uri=uri, title=title, description=description, image_url=image_url), warnings


def _fetch_page_meta(uri: str, fetcher: SafeFetcher, warnings: list[str]) -> PageMeta | None:
    try:
        result = fetcher.get(
            uri,
            max_bytes=MAX_PAGE_BYTES,
            headers={"Accept": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.5"},
        )
    except FetchError as exc:
        warnings.append(f"could not read the page for the link card: {exc.reason}")
        return None
    content_type = result.headers.get("content-type", "")
    mime = content_type.split(";", 1)[0].strip().lower()
    if mime and mime not in _HTML_TYPES:
        warnings.append(f"the page {result.url} is not HTML ({mime}); the link card uses the post's data only")
        return None
    try:
        return parse_page_meta(_decode(result.content, content_type), result.url)
    except Exception as exc:  # a parser failure must not stop the post
        warnings.append(f"could not parse the page {result.url}: {type(exc).__name__}: {exc}")
        return None


def fetch_thumbnail(image_url: str, fetcher: SafeFetcher) -> tuple[tuple[bytes, str] | None, list[str]]:
    """The prepared card image ``(bytes, mime)`` for ``image_url``, or None and a warning."""
    try:
        result = fetcher.get(
            image_url,
            max_bytes=MAX_IMAGE_BYTES,
            headers={"Accept": "image/avif,image/webp,image/png,image/jpeg,image/*;q=0.8"},
        )
    except FetchError as exc:
        return None, [f"no image on the link card: {exc.reason}"]
    mime = result.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    sniffed = sniff_image_mime(result.content)
    if sniffed is None and mime.startswith(_NOT_IMAGE_TYPES):
        return None, [f"no image on the link card: {result.url} is {mime}, not an image"]
    if mime == "image/svg+xml" and sniffed is None:
        return None, [f"no image on the link card: {result.url} is an SVG image, which Bluesky cannot show"]
    try:
        prepared = prepare_thumbnail(result.content)
    except ImageError as exc:
        return None, [f"no image on the link card: {result.url}: {exc}"]
    return prepared, []

