"""Feed documents built with feedgen (RSS 2.0 and Atom) or as JSON (JSON Feed 1.1), and
time helpers."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import datetime, timezone
from email.utils import format_datetime

from feedgen.feed import FeedGenerator


def ts(when: float) -> datetime:
    return datetime.fromtimestamp(when, timezone.utc)


@dataclasses.dataclass
class E:
    """An entry to put in a generated feed."""

    guid: str
    title: str
    published: datetime
    link: str | None = None
    summary: str = ""
    content: str = ""
    categories: tuple[str, ...] = ()
    image: str | None = None  # an image enclosure
    permalink: bool = False


def entries(n: int, *, start: float, prefix: str = "post", step: float = 3600.0,
            base: str = "https://blog.example.com") -> list[E]:
    """n entries, newest first, published every `step` seconds before `start`."""
    return [E(guid=f"urn:{prefix}:{i}", title=f"{prefix.title()} number {i}",
              link=f"{base}/{prefix}/{i}", published=ts(start - (n - i) * step),
              summary=f"The summary of {prefix} {i}.")
            for i in range(n, 0, -1)]


def _generator(title: str, link: str, language: str | None) -> FeedGenerator:
    fg = FeedGenerator()
    fg.id("urn:feed:" + hashlib.sha1(title.encode()).hexdigest()[:8])
    fg.title(title)
    fg.link(href=link, rel="alternate")
    fg.description(f"{title}, a test feed")
    if language:
        fg.language(language)
    return fg


def _add(fg: FeedGenerator, e: E, *, kind: str) -> None:
    fe = fg.add_entry(order="append")
    fe.id(e.guid)
    fe.guid(e.guid, permalink=e.permalink)
    fe.title(e.title)
    if e.link:
        fe.link(href=e.link, rel="alternate")
    fe.published(e.published)
    fe.updated(e.published)
    for c in e.categories:
        fe.category(term=c)
    if kind == "rss":
        if e.summary:
            fe.description(e.summary)
        if e.content:
            fe.content(e.content, type="CDATA")
        if e.image:
            fe.enclosure(e.image, "1234", "image/jpeg")
    else:
        if e.summary:
            fe.summary(e.summary)
        if e.content:
            fe.content(e.content, type="html")
        if e.image:
            fe.link(href=e.image, rel="enclosure", type="image/jpeg", length="1234")


def rss(items: list[E], *, title: str = "Test blog", link: str = "https://blog.example.com/",
        language: str | None = "en") -> bytes:
    fg = _generator(title, link, language)
    for e in items:
        _add(fg, e, kind="rss")
    return fg.rss_str(pretty=True)


def atom(items: list[E], *, title: str = "Test blog", link: str = "https://blog.example.com/",
         language: str | None = "en") -> bytes:
    fg = _generator(title, link, language)
    fg.updated(max((e.published for e in items), default=datetime(2024, 1, 1, tzinfo=timezone.utc)))
    for e in items:
        _add(fg, e, kind="atom")
    xml = fg.atom_str(pretty=True)
    for e in items:  # feedgen 1.0 drops the rel of entry links
        if e.image:
            xml = xml.replace(f'<link href="{e.image}"/>'.encode(),
                              f'<link href="{e.image}" rel="enclosure" type="image/jpeg" length="1234"/>'.encode())
    return xml


def json_feed(items: list[E], *, title: str = "Test blog", link: str = "https://blog.example.com/",
              language: str | None = "en", version: str = "https://jsonfeed.org/version/1.1") -> bytes:
    """A JSON Feed with the same fields as :func:`rss` and :func:`atom`."""
    feed: dict = {"version": version, "title": title, "home_page_url": link,
                  "feed_url": link + "feed.json", "items": []}
    if language:
        feed["language"] = language
    for e in items:
        item: dict = {"id": e.guid, "title": e.title, "date_published": e.published.isoformat(),
                      "date_modified": e.published.isoformat()}
        if e.link:
            item["url"] = e.link
        if e.summary:
            item["summary"] = e.summary
        if e.content:
            item["content_html"] = e.content
        if e.categories:
            item["tags"] = list(e.categories)
        if e.image:
            item["image"] = e.image
        feed["items"].append(item)
    return json.dumps(feed, ensure_ascii=False, indent=1).encode("utf-8")


CONTENT_TYPES = {rss: "application/rss+xml; charset=utf-8", atom: "application/atom+xml",
                 json_feed: "application/feed+json"}


def http_date(when: datetime) -> str:
    return format_datetime(when.astimezone(timezone.utc), usegmt=True)

