"""Fuzz: the composer (bluesky/compose.py compose_post_record, offline: fetcher=None,
upload_blob=None) on arbitrary Posts — built directly, so nothing is cleaned on the way in.
The record always fits Bluesky's limits (300 graphemes, 3000 UTF-8 bytes), is valid Unicode
and JSON, and its facets lie inside the text, on character boundaries, in order, without
overlap, each naming what its bytes say."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone

import regex
from hypothesis import given
from hypothesis import strategies as st

from skypost.bluesky.compose import MAX_BYTES, MAX_GRAPHEMES, compose_post_record
from skypost.models import Post
from tests.fuzz.strategies import any_text, fuzz_settings, pieces_text, text_like, urls

FUZZ = fuzz_settings(1000)
NOW = datetime(2026, 5, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)
LINK = "app.bsky.richtext.facet#link"
MENTION = "app.bsky.richtext.facet#mention"
TAG = "app.bsky.richtext.facet#tag"
_CLUSTER = regex.compile(r"\X")


def _graphemes(text: str) -> int:
    return len(_CLUSTER.findall(text))

long_text = st.builds(lambda piece, n: piece * n, pieces_text | st.sampled_from(["word ", "日本", "👍🏽", "e\u0301"]),
                      st.integers(1, 400))
texts = text_like | long_text | st.just("")
def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# URLs are used as given (the card's uri): parse_post_document must have refused invalid Unicode
post_urls = (
    urls | st.sampled_from(["https://blog.example.com/a", "https://example.com/" + "x" * 400, ""])
).filter(_utf8)
posts = st.builds(
    Post,
    id=st.text(min_size=1, max_size=10),
    title=texts,
    url=post_urls,
    excerpt=texts,
    content_html=texts | st.builds(lambda t: f"<article><h1>{t}</h1><p>{t}</p><script>{t}</script></article>", texts),
    image_url=post_urls,
    text=st.just("") | texts,
    categories=st.lists(any_text, max_size=3).map(tuple),
    tags=st.lists(texts, max_size=12).map(tuple),
    # langs and categories as parse_post_document lets them through (BCP-47 tags; any text)
    langs=st.lists(st.sampled_from(["en", "fr-CA", "ja", "zh-Hant-TW", "pt-BR"]), max_size=5, unique=True).map(tuple),
)


def resolver(handle: str) -> str | None:
    """Some handles exist (a DID), others do not (None)."""
    return None if handle.startswith(("x", "nobody")) else "did:plc:" + re.sub(r"[^a-z0-9]", "", handle)[:24]


def check_record(post: Post, composed) -> None:
    record = composed.record
    json.dumps(record, ensure_ascii=False).encode("utf-8")  # JSON, and valid Unicode throughout
    assert record["$type"] == "app.bsky.feed.post"
    assert record["createdAt"] == "2026-05-01T12:00:00.123Z"
    text = record["text"]
    data = text.encode("utf-8")  # no lone surrogates
    assert _graphemes(text) <= MAX_GRAPHEMES, _graphemes(text)
    assert len(data) <= MAX_BYTES
    assert text == text.strip()
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", text), "control characters in the text"
    langs = record.get("langs", [])
    assert len(langs) <= 3 and all(isinstance(x, str) and x for x in langs)
    tags = record.get("tags", [])
    assert len(tags) <= 8 and len(set(tags)) == len(tags)
    assert all(t and _graphemes(t) <= 64 and not t.startswith(("#", "＃")) for t in tags)
    end = 0
    for facet in record.get("facets", []):
        start, stop = facet["index"]["byteStart"], facet["index"]["byteEnd"]
        assert end <= start < stop <= len(data), (facet, len(data))
        end = stop
        piece = data[start:stop].decode("utf-8")  # raises if a boundary splits a character
        [feature] = facet["features"]
        if feature["$type"] == LINK:
            # a bare domain (example.com/x) links to https://
            assert feature["uri"] in (piece, "https://" + piece)
            assert feature["uri"].lower().startswith(("http://", "https://"))
        elif feature["$type"] == MENTION:
            assert piece.startswith("@") and feature["did"].startswith("did:")
        else:
            assert feature["$type"] == TAG
            if piece.startswith("$"):  # a cashtag: the ticker in capitals
                assert feature["tag"] == piece.upper() and 2 <= len(piece) <= 6
            else:
                assert piece[0] in "#＃" and piece[1:] == feature["tag"] and feature["tag"]
    embed = record.get("embed")
    if embed is not None:
        external = embed["external"]
        assert embed["$type"] == "app.bsky.embed.external"
        assert external["uri"] and external["title"]
        assert "thumb" not in external  # offline: nothing was fetched or uploaded


@FUZZ
@given(posts)
def test_any_post_composes_within_limits(post):
    check_record(post, compose_post_record(post, now=NOW, fetcher=None, upload_blob=None))


@FUZZ
@given(posts, st.lists(st.sampled_from(["@alice.test ", "@xnobody.test ", "@bob.example.com", "@a.b.c.d ",
                                        "@" + "h" * 70 + ".com ", "#tag ", "https://e.com/x) ",
                                        "e.com/x). ", "$aapl, ", "($BTC) ", "README.md "]), max_size=6))
def test_mentions_resolved_and_not(post, extra):
    from dataclasses import replace

    post = replace(post, text=post.text + " " + "".join(extra))
    check_record(post, compose_post_record(post, now=NOW, fetcher=None, upload_blob=None, resolve_handle=resolver))
