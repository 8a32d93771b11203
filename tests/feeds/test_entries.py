"""Feed documents → entries → posts (pure: no database, no network)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from skypost.models import ValidationError
from skypost.sources.entries import (
    FeedParseError,
    entry_post_id,
    entry_to_post,
    matches_categories,
    newest_first,
    parse_feed,
)
from tests.feeds.builders import E, atom, rss, ts

BASE = "https://blog.example.com/feed.xml"
T0 = 1_700_000_000.0


def one(items, kind=rss, **kwargs):
    parsed = parse_feed(kind(items, **kwargs), base_url=BASE)
    assert len(parsed.entries) == len(items)
    return parsed


@pytest.mark.parametrize("kind", [rss, atom])
def test_generated_feed_maps_every_field(kind):
    item = E(guid="urn:x:1", title="Hello <world>", link="https://blog.example.com/hello",
             published=ts(T0), summary="<p>A <b>short</b> summary &amp; more.</p>",
             content="<p>The full text.</p>", categories=("Cats", "Dogs"), image="https://img.example.com/1.jpg")
    parsed = one([item], kind, language="fr-CA")
    assert parsed.version in ("rss20", "atom10")
    assert parsed.title == "Test blog" and parsed.link == "https://blog.example.com/"
    entry = parsed.entries[0]
    assert entry.key == "id:urn:x:1"
    assert entry.link_key == "link:https://blog.example.com/hello"
    assert entry.title == "Hello <world>"
    assert entry.url == "https://blog.example.com/hello"
    assert entry.excerpt == "A short summary & more."
    assert entry.content_html == "<p>The full text.</p>"
    assert entry.categories == ("Cats", "Dogs")
    assert entry.image_url == "https://img.example.com/1.jpg"
    assert entry.langs == ("fr-CA",)
    assert entry.published_at == datetime.fromtimestamp(T0, timezone.utc)

    post = entry_to_post(entry, feed_id=7, accounts=["Alice.example.com"])
    assert post.id == entry_post_id(7, "id:urn:x:1")
    assert post.id.startswith("feed:7:") and len(post.id) == len("feed:7:") + 16
    assert post.url == entry.url and post.title == entry.title and post.excerpt == entry.excerpt
    assert post.content_html == entry.content_html and post.image_url == entry.image_url
    assert post.categories == ("Cats", "Dogs") and post.langs == ("fr-CA",)
    assert post.accounts == ("alice.example.com",)
    assert post.published_at == entry.published_at


def test_post_id_is_stable_and_depends_on_feed_and_key():
    assert entry_post_id(1, "id:a") == entry_post_id(1, "id:a")
    assert entry_post_id(1, "id:a") != entry_post_id(2, "id:a")
    assert entry_post_id(1, "id:a") != entry_post_id(1, "id:b")


MEDIA_RSS = b"""<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0" xmlns:media="http://search.yahoo.com/mrss/">
<channel><title>M</title><link>https://m.example.com/</link>
<item><title>content</title><link>https://m.example.com/1</link>
  <media:content url="https://m.example.com/video.mp4" type="video/mp4"/>
  <media:content url="https://m.example.com/pic.jpg" medium="image"/>
  <media:thumbnail url="https://m.example.com/thumb.jpg"/></item>
<item><title>thumbnail</title><link>https://m.example.com/2</link>
  <media:thumbnail url="https://m.example.com/thumb2.jpg"/>
  <enclosure url="https://m.example.com/e.png" type="image/png" length="1"/></item>
<item><title>enclosure</title><link>https://m.example.com/3</link>
  <enclosure url="https://m.example.com/a.mp3" type="audio/mpeg" length="1"/>
  <enclosure url="https://m.example.com/e3.png" type="image/png" length="1"/></item>
<item><title>audio only</title><link>https://m.example.com/4</link>
  <enclosure url="https://m.example.com/b.mp3" type="audio/mpeg" length="1"/></item>
</channel></rss>"""


def test_image_from_media_content_thumbnail_or_image_enclosure_else_empty():
    parsed = parse_feed(MEDIA_RSS, base_url="https://m.example.com/feed")
    assert [e.image_url for e in parsed.entries] == [
        "https://m.example.com/pic.jpg", "https://m.example.com/thumb2.jpg", "https://m.example.com/e3.png", ""]
    # no guid: the link is the key
    assert [e.key for e in parsed.entries][0] == "link:https://m.example.com/1"
    assert parsed.entries[0].link_key is None


RSS10 = b"""<?xml version="1.0"?>
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns="http://purl.org/rss/1.0/"
         xmlns:dc="http://purl.org/dc/elements/1.1/">
<channel rdf:about="https://r.example.com/"><title>R</title><link>https://r.example.com/</link>
  <description>d</description><dc:language>de</dc:language></channel>
<item rdf:about="https://r.example.com/1"><title>Eins</title><link>https://r.example.com/1</link>
  <description>Erster Beitrag</description><dc:date>2024-01-02T03:04:05Z</dc:date><dc:subject>katzen</dc:subject></item>
</rdf:RDF>"""

RSS091 = b"""<?xml version="1.0"?>
<rss version="0.91"><channel><title>Old</title><link>https://o.example.com/</link><description>d</description>
<language>en-us</language>
<item><title>First &amp; only</title><link>/posts/first</link><description>Some &lt;i&gt;text&lt;/i&gt;</description></item>
</channel></rss>"""


def test_rss_1_0_and_0_91():
    r10 = parse_feed(RSS10, base_url="https://r.example.com/feed.rdf")
    assert r10.version == "rss10"
    e = r10.entries[0]
    assert (e.key, e.title, e.url, e.excerpt) == ("id:https://r.example.com/1", "Eins", "https://r.example.com/1",
                                                  "Erster Beitrag")
    assert e.categories == ("katzen",) and e.langs == ("de",)
    assert e.published_at == datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)

    r091 = parse_feed(RSS091, base_url="https://o.example.com/rss")
    assert r091.version.startswith("rss09")
    e = r091.entries[0]
    # a relative link is resolved against the feed's URL; no guid: the link is the key
    assert e.url == "https://o.example.com/posts/first" and e.key == "link:https://o.example.com/posts/first"
    assert e.title == "First & only" and e.excerpt == "Some text" and e.langs == ("en-us",)
    assert e.published_at is None
    entry_to_post(e, feed_id=1)  # a valid post


def test_atom_html_title_entry_language_and_title_less_entries():
    doc = b"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xml:lang="en"><title>A</title><id>urn:a</id>
<updated>2024-01-01T00:00:00Z</updated><link href="https://a.example.com/"/>
<entry xml:lang="fr"><title type="html">Un &lt;em&gt;titre&lt;/em&gt;</title><id>urn:a:1</id>
  <link rel="alternate" href="https://a.example.com/1"/><updated>2024-01-03T00:00:00Z</updated>
  <published>2024-01-02T00:00:00Z</published><content type="html">&lt;p&gt;Bonjour&lt;/p&gt;</content></entry>
<entry><id>urn:a:2</id><link href="https://a.example.com/2"/><updated>2024-01-04T00:00:00Z</updated>
  <content type="html">&lt;p&gt;Just a short note, no title.&lt;/p&gt;</content></entry>
<entry><id>urn:a:3</id><link href="https://a.example.com/"/><title>Links home</title>
  <updated>2024-01-05T00:00:00Z</updated></entry>
<entry><title>No id, no link</title><updated>2024-01-06T00:00:00Z</updated></entry>
</feed>"""
    parsed = parse_feed(doc, base_url="https://a.example.com/atom")
    assert parsed.ignored == 1
    first, second, third = parsed.entries
    assert first.title == "Un titre" and first.langs == ("fr",)
    assert first.published_at == datetime(2024, 1, 2, tzinfo=timezone.utc)  # published, not updated
    assert second.title == "Just a short note, no title." and second.langs == ("en",)
    assert second.published_at == datetime(2024, 1, 4, tzinfo=timezone.utc)
    # a link to the site's home page does not identify an entry
    assert third.link_key is None
    assert [e.key for e in newest_first(parsed.entries)] == ["id:urn:a:3", "id:urn:a:2", "id:urn:a:1"]


def test_category_filter_is_case_insensitive_and_empty_means_all():
    entry = parse_feed(rss([E(guid="g", title="t", link="https://e.com/1", published=ts(T0),
                              categories=("Cats",))]), base_url=BASE).entries[0]
    assert matches_categories(entry, [])
    assert matches_categories(entry, ["dogs", "CATS"])
    assert not matches_categories(entry, ["dogs"])


def test_an_entry_without_an_http_link_is_not_a_valid_post():
    doc = b"""<?xml version="1.0"?><rss version="2.0"><channel><title>T</title><link>https://e.com/</link>
<item><title>t</title><guid isPermaLink="false">only-a-guid</guid></item></channel></rss>"""
    entry = parse_feed(doc, base_url=BASE).entries[0]
    assert entry.key == "id:only-a-guid" and entry.url == ""
    with pytest.raises(ValidationError) as info:
        entry_to_post(entry, feed_id=1)
    assert "url" in info.value.errors


def test_a_very_long_guid_is_stored_as_a_digest():
    guid = "urn:" + "x" * 600
    entry = parse_feed(rss([E(guid=guid, title="t", link="https://e.com/1", published=ts(T0))]),
                       base_url=BASE).entries[0]
    assert entry.key.startswith("sha1:") and len(entry.key) <= 512


def test_html_entities_in_a_feed_are_accepted():
    doc = b"""<?xml version="1.0"?><rss version="2.0"><channel><title>T&nbsp;x</title><link>https://e.com/</link>
<item><title>A&nbsp;b</title><link>https://e.com/1</link></item></channel></rss>"""
    assert parse_feed(doc, base_url=BASE).entries[0].title == "A b"  # whitespace collapsed


@pytest.mark.parametrize("doc, content_type, expected", [
    (b"", None, "empty"),
    (b'<?xml version="1.0"?><rss version="2.0"><channel><title>T</title><item><title>A</title>'
     b"<link>https://e.com/1</link></item></chanel></rss>", None, "malformed feed: the XML is not well-formed"),
    (b'<?xml version="1.0"?><rss version="2.0"><channel><title>T</title><item><title>A</ti', None,
     "malformed feed"),
    (b'<!DOCTYPE html><html><head><link rel="alternate" type="application/rss+xml" href="/feed.xml">'
     b"</head><body><p>Hi</body></html>", "text/html",
     "HTML page; it links to the feed https://blog.example.com/feed.xml"),
    (b'<?xml version="1.0"?><config><a>1</a></config>', "application/xml", "not an RSS or Atom feed"),
])
def test_documents_that_are_not_usable_feeds(doc, content_type, expected):
    with pytest.raises(FeedParseError) as info:
        parse_feed(doc, base_url="https://blog.example.com/blog/", content_type=content_type)
    assert expected in info.value.reason


@pytest.mark.parametrize("prefix", [b"\n", b"\r\n\r\n  \t", b"\xef\xbb\xbf\n "])
def test_whitespace_before_the_xml_declaration_is_accepted(prefix):
    entry = E(guid="urn:ws:1", title="Spaced", link="https://blog.example.com/ws", published=ts(T0))
    doc = prefix + rss([entry])
    parsed = parse_feed(doc, base_url=BASE)
    assert [e.title for e in parsed.entries] == ["Spaced"]


def test_whitespace_before_the_root_element_alone_is_unchanged():
    doc = rss([E(guid="urn:ws:2", title="Plain", link="https://blog.example.com/p",
                 published=ts(T0))])
    without_declaration = b"\n  " + doc.split(b"?>", 1)[1]
    assert [e.title for e in parse_feed(without_declaration, base_url=BASE).entries] == ["Plain"]


def test_a_body_that_names_a_local_file_is_not_opened(tmp_path):
    local = tmp_path / "secret-feed.xml"
    local.write_bytes(rss([E(guid="urn:local:1", title="Local secret", published=ts(T0),
                            link="https://blog.example.com/s")]))
    name = str(local).encode()
    for body in (name, name + b"\n", b"file://" + name):
        with pytest.raises(FeedParseError) as info:
            parse_feed(body, base_url=BASE)
        assert "not an RSS or Atom feed" in info.value.reason
