"""Webmention (W3C Recommendation), the sending side: discover the endpoint a target page
advertises, then POST `source` and `target` to it.

Discovery follows the specification: fetch the target (GET, redirects followed); the first
HTTP `Link` header with rel="webmention" wins; else, in an HTML document, the first `<link>`
or `<a>` element with rel="webmention" in document order. A relative endpoint is resolved
against the final URL of the target (after redirects); an empty href names that page
itself; the endpoint's query string is kept (and source/target go in the body only).
Every request goes through skypost.fetch (address checks, size cap, deadline).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any
from urllib.parse import urlencode, urljoin

from selectolax.lexbor import LexborHTMLParser

from skypost.fetch import SafeFetcher

# a target page is read up to this size to find the endpoint
MAX_PAGE_BYTES = 2_000_000
_REL_SPLIT = re.compile(r"\s+")
_PARAM = re.compile(r"\s*([A-Za-z0-9!#$&+\-.^_`|~*]+)\s*(=\s*)?")
_TOKEN = re.compile(r"[^;,\s]*")


@dataclasses.dataclass(frozen=True)
class Discovery:
    endpoint: str | None
    page_url: str  # the target's final URL, after redirects


def _link_header_endpoints(values: list[str]) -> list[str]:
    """The URLs of `Link` header values whose rel includes "webmention", in order.

    A header value is a comma-separated list of `<uri>; param=value; ...`; commas may also
    appear inside the <uri> and inside quoted parameter values."""
    found: list[str] = []
    for value in values:
        pos = 0
        while True:
            start = value.find("<", pos)
            if start < 0:
                break
            end = value.find(">", start)
            if end < 0:
                break
            uri = value[start + 1:end]
            params, pos = _link_params(value, end + 1)
            rel = params.get("rel")
            if rel is not None and "webmention" in _REL_SPLIT.split(rel.strip().lower()):
                found.append(uri.strip())
    return found


def _link_params(value: str, pos: int) -> tuple[dict[str, str], int]:
    """The `;param=value` list after a link's <uri>, up to the next top-level comma."""
    params: dict[str, str] = {}
    n = len(value)
    while pos < n:
        while pos < n and value[pos] in " \t":
            pos += 1
        if pos >= n or value[pos] == ",":
            return params, pos + 1
        if value[pos] != ";":
            pos += 1
            continue
        pos += 1
        match = _PARAM.match(value, pos)
        if not match:
            continue
        name = match.group(1).lower()
        pos = match.end()
        param = ""
        if match.group(2) is not None:
            if pos < n and value[pos] == '"':
                pos += 1
                chars: list[str] = []
                while pos < n and value[pos] != '"':
                    if value[pos] == "\\" and pos + 1 < n:
                        pos += 1
                    chars.append(value[pos])
                    pos += 1
                pos += 1
                param = "".join(chars)
            else:
                token = _TOKEN.match(value, pos)
                assert token is not None
                param = token.group(0)
                pos = token.end()
        params.setdefault(name, param)  # the first occurrence counts
    return params, pos


def _html_endpoint(content: bytes) -> str | None:
    """The href of the first <link> or <a> with rel="webmention" in document order
    ("" for an empty href); None when there is none. Elements without href are skipped."""
    tree = LexborHTMLParser(content)
    for node in tree.css("link[rel], a[rel]"):
        rel = node.attributes.get("rel") or ""
        if "webmention" not in _REL_SPLIT.split(rel.strip().lower()):
            continue
        if "href" not in node.attributes:
            continue
        return (node.attributes.get("href") or "").strip()
    return None


def _is_html(content_type: str | None) -> bool:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media in ("text/html", "application/xhtml+xml", "")


def discover(fetcher: SafeFetcher, target: str, *, max_bytes: int = MAX_PAGE_BYTES) -> Discovery:
    """Find the Webmention endpoint of `target`; raises skypost.fetch.FetchError when the page
    cannot be had."""
    page = fetcher.get(target, max_bytes=max_bytes, headers={"Accept": "text/html, */*;q=0.5"})
    found = _link_header_endpoints(page.headers.get_list("link"))
    href: str | None = found[0] if found else None
    if href is None and _is_html(page.headers.get("content-type")):
        href = _html_endpoint(page.content)
    if href is None:
        return Discovery(None, page.url)
    # urljoin keeps the endpoint's own query string, and "" gives the page itself
    endpoint = urljoin(page.url, href) if href else page.url
    endpoint = endpoint.split("#", 1)[0]
    return Discovery(endpoint, page.url)


def send(fetcher: SafeFetcher, endpoint: str, *, source: str, target: str) -> Any:
    """POST the Webmention (form-encoded); returns skypost.fetch's FetchResult (any status)."""
    body = urlencode({"source": source, "target": target}).encode()
    return fetcher.post(endpoint, content=body, headers={
        "Content-Type": "application/x-www-form-urlencoded", "Accept": "*/*"})

