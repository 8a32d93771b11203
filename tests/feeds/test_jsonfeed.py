"""JSON Feed 1.0/1.1 documents → entries (pure: no database, no network), against the
feed-rs corpus in the shared interop directory and against hostile documents."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from skypost.sources.entries import (
    FeedParseError,
    discover_feed_links,
    entry_to_post,
    feed_alternates,
    parse_feed,
)
from tests.feeds.builders import E, json_feed, rss, ts

BASE = "https://blog.example.com/feed.json"
T0 = 1_700_000_000.0
# the shared fixtures lie beside the checkout (never copied into it)
FEED_RS = Path(__file__).resolve().parents[2].parent / "shared" / "interop" / "feeds" / "feed-rs"
EXPECTED = json.loads((FEED_RS / "expected.json").read_text(encoding="utf-8"))["feeds"]
JSON_CASES = sorted(name for name in EXPECTED if EXPECTED[name]["feed_type"] == "JSON")


def doc(**fields) -> bytes:
    return json.dumps({"version": "https://jsonfeed.org/version/1.1", **fields}).encode()


def _same_url(ours: str, theirs: str) -> bool:
    # feed-rs normalises an empty path to "/"
    return ours == theirs or ours + "/" == theirs


def test_the_corpus_has_json_feeds():
    assert len(JSON_CASES) == 3


@pytest.mark.parametrize("name", JSON_CASES)
def test_feed_rs_corpus(name):
    body = (FEED_RS / "input" / name).read_bytes()
    parsed = parse_feed(body, base_url="https://feeds.example/" + name,
                        content_type="application/json")
    expected = EXPECTED[name]["entries"]
    assert parsed.version in ("json10", "json11")
    assert len(parsed.entries) == len(expected) and parsed.ignored == 0
    for entry, want in zip(parsed.entries, expected):
        assert entry.title == want["title"]
        assert _same_url(entry.url, want["link"])
        published = want["published"] or want["updated"]
        assert entry.published_at == (
            datetime.fromisoformat(published.replace("Z", "+00:00")) if published else None)
        # an item without an id is known by its url, as an RSS item without a guid
        assert entry.key in ("id:" + want["id"], "link:" + entry.url)
        entry_to_post(entry, feed_id=1)  # a valid post


def test_every_field_is_mapped():
    body = doc(
        title="A  blog", home_page_url="https://blog.example.com/", language="fr-CA",
        items=[{
            "id": "urn:j:1", "url": "/posts/1", "external_url": "https://elsewhere.example/x",
            "title": "Hello\n world", "summary": "The  summary.",
            "content_html": "<p>The <b>body</b></p>", "content_text": "ignored when there is HTML",
            "date_published": "2024-05-01T10:00:00+02:00",
            "date_modified": "2024-06-01T10:00:00Z", "tags": ["Cats", "Dogs", "Cats", 7, ""],
            "image": "//img.example.com/1.jpg", "banner_image": "https://img.example.com/b.jpg",
            "language": "de",
        }],
    )
    parsed = parse_feed(body, base_url=BASE, content_type="application/feed+json")
    assert (parsed.version, parsed.title, parsed.link, parsed.language) == (
        "json11", "A blog", "https://blog.example.com/", "fr-CA")
    (entry,) = parsed.entries
    assert entry.key == "id:urn:j:1" and entry.link_key == "link:https://blog.example.com/posts/1"
    assert entry.url == "https://blog.example.com/posts/1"  # url first, resolved against the feed
    assert entry.title == "Hello world"
    assert entry.excerpt == "The summary."
    assert entry.content_html == "<p>The <b>body</b></p>"
    assert entry.published_at == datetime(2024, 5, 1, 8, 0, tzinfo=timezone.utc)
    assert entry.categories == ("Cats", "Dogs")
    assert entry.image_url == "https://img.example.com/1.jpg"
    assert entry.langs == ("de",)
    post = entry_to_post(entry, feed_id=3)
    assert post.categories == ("Cats", "Dogs") and post.excerpt == "The summary."


def test_fallbacks():
    items = [
        # no title (a micro-blog): the text is the title; no url: external_url; modified date
        {"id": 42, "external_url": "https://elsewhere.example/a", "content_text": "Just  a note",
         "date_modified": "Fri, 31 May 2019 12:17:58 -0700",
         "banner_image": "https://i.example/b.png"},
        # HTML text, an image attachment
        {"id": "b", "url": "https://blog.example.com/b", "content_html": "<p>Some <i>html</i></p>",
         "attachments": [{"url": "https://i.example/a.mp3", "mime_type": "audio/mpeg"},
                         {"url": "https://i.example/a.jpg", "mime_type": "image/jpeg"}]},
        # no id: known by its url; a date-only date
        {"url": "https://blog.example.com/c", "title": "C", "date_published": "2024-01-02"},
        # neither id nor url: cannot be tracked
        {"title": "untrackable"},
        "not an object",
    ]
    parsed = parse_feed(doc(items=items), base_url=BASE)
    a, b, c = parsed.entries
    assert parsed.ignored == 2 and parsed.language == ""
    assert (a.key, a.url, a.title, a.excerpt, a.content_html) == (
        "id:42", "https://elsewhere.example/a", "Just a note", "Just a note", "")
    assert a.published_at == datetime(2019, 5, 31, 19, 17, 58, tzinfo=timezone.utc)
    assert a.image_url == "https://i.example/b.png"
    assert (b.excerpt, b.image_url) == ("Some html", "https://i.example/a.jpg")
    assert (c.key, c.link_key, c.published_at) == (
        "link:https://blog.example.com/c", None, datetime(2024, 1, 2, tzinfo=timezone.utc))


def test_json_feed_is_recognised_by_type_or_by_body():
    one = E(guid="urn:1", title="One", link="https://blog.example.com/1", published=ts(T0))
    body = json_feed([one])
    for content_type in ("application/feed+json", "application/json; charset=utf-8", "text/plain",
                         "application/rss+xml", None):
        parsed = parse_feed(body, base_url=BASE, content_type=content_type)
        assert [e.title for e in parsed.entries] == ["One"]
    version_1 = doc(items=[]).replace(b"version/1.1", b"version/1")
    assert parse_feed(b"\xef\xbb\xbf \n" + version_1, base_url=BASE).version == "json10"
    # an RSS document served as JSON is still read as RSS
    xml = rss([E(guid="urn:2", title="Two", link="https://blog.example.com/2", published=ts(T0))])
    assert parse_feed(xml, base_url=BASE, content_type="application/json").version == "rss20"


@pytest.mark.parametrize("body, expected", [
    (b"{", "not a JSON Feed: the JSON is not well-formed"),
    (b'{"items": []}', "not a JSON Feed: the JSON has no version"),
    (b'{"version": "https://example.com/version/1", "items": []}', "has no version"),
    (b'{"version": ["https://jsonfeed.org/version/1"], "items": []}', "has no version"),
    (b'{"version": "https://jsonfeed.org/version/1"}', "`items` is missing or not a list"),
    (b'{"version": "https://jsonfeed.org/version/1", "items": {"a": 1}}', "not a list"),
    (b"[]", "not a JSON object"),
    (b'"https://jsonfeed.org/version/1"', "not a JSON object"),
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    (b'{"a":' * 50_000 + b"1" + b"}" * 50_000, "nested too deeply"),
    (b'{"version": "https://jsonfeed.org/version/1", "items": []}\xff', "not UTF-8"),
    (b'{"version": "https://jsonfeed.org/version/1", "items": [], "x": 1} {}', "not well-formed"),
])
def test_documents_that_are_not_json_feeds(body, expected):
    with pytest.raises(FeedParseError) as info:
        parse_feed(body, base_url=BASE, content_type="application/feed+json")
    assert expected in info.value.reason


def test_hostile_values_are_absent_not_fatal():
    huge = "9" * 1_000_000
    body = (
        b'{"version": "https://jsonfeed.org/version/1.1", "title": 5, "language": {"x": 1},'
        b' "home_page_url": "javascript:alert(1)", "n": NaN, "i": -Infinity, "f": 1e999999,'
        b' "big": ' + huge.encode() + b', "items": ['
        b'{"id": ' + huge.encode() + b', "url": "https://e.example/1", "title": ["x"],'
        b' "date_published": "9999-12-31T23:59:59-05:00", "tags": "not a list",'
        b' "image": "ftp://x/y"},'
        b'{"id": "\\u0000two\\ud800", "url": "http://[::1", "external_url": "https://e.example/2",'
        b' "date_published": "' + b"2024-01-01T00:00:00Z" * 10 + b'", "summary": "\\ud83d"},'
        b'{"id": true, "url": 12, "title": "no key"}'
        b"]}"
    )
    parsed = parse_feed(body, base_url=BASE)
    assert (parsed.title, parsed.link, parsed.language) == ("", "", "")
    first, second = parsed.entries
    assert parsed.ignored == 1
    assert (first.key, first.title, first.published_at, first.categories, first.image_url) == (
        "link:https://e.example/1", "https://e.example/1", None, (), "")
    assert second.key == "id:two\ufffd" and second.url == ""  # the bad URL is left out
    assert second.published_at is None and second.excerpt == "\ufffd"
    for entry in parsed.entries:
        entry.key.encode("utf-8")  # storable


def test_discovery_names_xml_feeds_and_lists_json_ones_to_be_read():
    page = (b'<!doctype html><html><head>'
            b'<link rel="alternate" type="application/json" href="/wp-json/wp/v2/pages/2">'
            b'<link rel="alternate" type="application/feed+json" href="/feed.json">'
            b'<link rel="alternate" type="application/rss+xml" href="/feed.xml">'
            b'<link rel="alternate" type="application/feed+json" href="/feed.json">'
            b'<link rel="stylesheet" type="application/json" href="/not-alternate.json">'
            b"</head><body>hi</body></html>")
    base = "https://blog.example.com/"
    assert feed_alternates(page, base) == [
        ("https://blog.example.com/wp-json/wp/v2/pages/2", "application/json"),
        ("https://blog.example.com/feed.json", "application/feed+json"),
        ("https://blog.example.com/feed.xml", "application/rss+xml"),
    ]
    assert discover_feed_links(page, base) == ["https://blog.example.com/feed.xml"]
    with pytest.raises(FeedParseError) as info:
        parse_feed(page, base_url=base, content_type="text/html")
    assert info.value.reason.endswith(
        "it links to the feed https://blog.example.com/feed.xml: add that URL")
    assert len(info.value.alternates) == 3
    rss_link = b'<link rel="alternate" type="application/rss+xml" href="/feed.xml">'
    json_only = page.replace(rss_link, b"")
    with pytest.raises(FeedParseError) as info:
        parse_feed(json_only, base_url=base, content_type="text/html")
    assert info.value.reason == "not an RSS or Atom feed: the URL serves an HTML page"
    assert info.value.alternates == ("https://blog.example.com/wp-json/wp/v2/pages/2",
                                     "https://blog.example.com/feed.json")
