"""Text, facets and the post record (skypost.bluesky.compose)."""

from __future__ import annotations

import io
import json
import re
from datetime import datetime, timedelta, timezone

import httpx
import pytest
import regex
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from skypost.bluesky import compose
from skypost.bluesky.compose import (
    MAX_BYTES,
    MAX_GRAPHEMES,
    ComposedRecord,
    clean_text,
    compose_post_record,
    compose_text,
    detect_facets,
    format_datetime,
    grapheme_len,
    html_to_text,
    post_excerpt_text,
    post_title_text,
    record_tags,
    truncate,
    utf8_len,
)
from skypost.fetch import FetchError, FetchResult
from skypost.models import Post

FAMILY = "\U0001F468\u200D\U0001F469\u200D\U0001F467\u200D\U0001F466"  # 👨‍👩‍👧‍👦
RAINBOW_FLAG = "\U0001F3F3\uFE0F\u200D\U0001F308"
FLAG_FR = "\U0001F1EB\U0001F1F7"
FLAG_JP = "\U0001F1EF\U0001F1F5"
ENGLAND = "\U0001F3F4\U000E0067\U000E0062\U000E0065\U000E006E\U000E0067\U000E007F"
THUMBS = "\U0001F44D\U0001F3FD"
HEART_FIRE = "\u2764\ufe0f\u200d\U0001F525"
KEYCAP = "1\ufe0f\u20e3"
COMBINING = "e\u0301\u0323"
ZALGO = "Z\u0351\u0352\u0353\u0354\u0355\u0356\u0357"
HANGUL = "\u1100\u1161\u11a8"
CJK = "日本語のテキスト"
ARABIC = "مرحبا بالعالم"
HEBREW = "שלום עולם"
DEVANAGARI = "क्षत्रिय"
RTL_MARK = "\u200f"

PIECES = [
    FAMILY, RAINBOW_FLAG, FLAG_FR, FLAG_JP, "\U0001F1E9", ENGLAND, THUMBS, HEART_FIRE, KEYCAP,
    COMBINING, ZALGO, HANGUL, CJK, ARABIC, HEBREW, DEVANAGARI, RTL_MARK, " ", "  ", "\n", "\t",
    "word", "longerword", "a", "Ünïcödé", ".", ",", "(", ")", "…", "&amp;", "#tag", "#日本",
    "@alice.test", "https://example.com/path?q=1", "https://bücher.example/straße",
    "\u00a0", "\u3000", "\ufeff",
]

rich_text = st.lists(
    st.one_of(st.sampled_from(PIECES), st.text(max_size=12)), max_size=160
).map("".join)
long_rich_text = st.lists(st.sampled_from(PIECES), min_size=50, max_size=400).map("".join)
# Without whitespace every cut is a hard cut, right where the budget ends.
DENSE_PIECES = [p for p in PIECES if not any(ch.isspace() for ch in p)]
dense_text = st.lists(st.sampled_from(DENSE_PIECES), min_size=30, max_size=400).map("".join)
any_text = st.one_of(rich_text, long_rich_text, dense_text, st.text(max_size=700))
url_chars = st.sampled_from(list("abcdefghijklmnopqrstuvwxyz0123456789-_/~") + ["é", "日", "%20"])
urls = st.builds(
    lambda host, path: f"https://{host}.example/{path}",
    st.sampled_from(["blog", "bücher", "news", "a" * 40]),
    st.lists(url_chars, max_size=120).map("".join),
)


def fits(text: str) -> bool:
    return grapheme_len(text) <= MAX_GRAPHEMES and len(text.encode("utf-8")) <= MAX_BYTES


def boundaries(text: str) -> set[int]:
    """Code point offsets of the grapheme cluster boundaries of ``text``."""
    out = {0}
    pos = 0
    for cluster in regex.findall(r"\X", text):
        pos += len(cluster)
        out.add(pos)
    return out


def assert_cut_prefix(result: str, source: str) -> None:
    """``result`` is ``source``, or a prefix of it on a cluster boundary followed by "…"."""
    if source.startswith(result) and len(result) in boundaries(source):
        return
    assert result.endswith("…"), (result, source)
    kept = result[:-1]
    assert source.startswith(kept), (result, source)
    assert len(kept) in boundaries(source), "a grapheme cluster was split"
    assert kept == "" or not kept[-1].isspace()


# --- grapheme counting ----------------------------------------------------------


@pytest.mark.parametrize(
    "text,count",
    [
        ("", 0),
        ("abc", 3),
        ("a\r\nb", 3),
        (FAMILY, 1),
        (RAINBOW_FLAG, 1),
        (FLAG_FR + FLAG_JP, 2),
        (FLAG_FR + "\U0001F1E9", 2),
        (ENGLAND, 1),
        (THUMBS, 1),
        (HEART_FIRE, 1),
        (KEYCAP, 1),
        (COMBINING, 1),
        (ZALGO, 1),
        (HANGUL, 1),
        (CJK, 8),
        ("\U0001FACE\u200d\U0001F525", 1),  # Unicode 15 emoji in a ZWJ sequence
    ],
)
def test_grapheme_len(text: str, count: int) -> None:
    assert grapheme_len(text) == count


def test_utf8_len_counts_bytes() -> None:
    assert utf8_len("é") == 2
    assert utf8_len(FAMILY) == 25
    assert utf8_len("\ud800") == 3  # a lone surrogate does not crash


# --- truncate -------------------------------------------------------------------


def test_truncate_keeps_fitting_text() -> None:
    assert truncate("hello world", 11, 100) == "hello world"
    assert truncate("x" * 300, 300, 3000) == "x" * 300


def test_truncate_cuts_at_a_word() -> None:
    assert truncate("hello wonderful world", 12, 100) == "hello…"
    assert truncate("one two three four", 14, 100) == "one two three…"  # the cut falls on a space
    assert truncate("one two three four", 13, 100) == "one two…"
    assert truncate("one, two three", 7, 100) == "one…"  # dangling comma dropped


def test_truncate_hard_cut_without_spaces() -> None:
    assert truncate(CJK * 10, 5, 1000) == CJK[:4] + "…"
    assert truncate("a" * 50, 10, 1000) == "a" * 9 + "…"


def test_truncate_bytes_budget() -> None:
    out = truncate("é" * 100, 1000, 21)
    assert out == "é" * 9 + "…"
    assert utf8_len(out) <= 21


def test_truncate_never_splits_clusters() -> None:
    out = truncate(FAMILY * 20, 5, 10_000)
    assert out == FAMILY * 4 + "…"
    out = truncate(FLAG_FR * 20, 5, 10_000)
    assert out == FLAG_FR * 4 + "…"
    out = truncate(FAMILY * 200, 300, 3000)
    assert utf8_len(out) <= 3000
    assert out[:-1] == FAMILY * ((3000 - 3) // 25)


def test_truncate_does_not_cut_a_conjunct_after_the_virama() -> None:
    out = truncate("क्ष" * 50, 6, 1000)
    assert not out[:-1].endswith("\u094d")


def test_truncate_when_nothing_fits() -> None:
    assert truncate("hello", 0, 100) == ""
    assert truncate("hello", 1, 100) == "…"
    assert truncate("hello", 3, 2) == ""


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(text=any_text, max_g=st.integers(1, 400), max_b=st.integers(3, 4000))
def test_truncate_property(text: str, max_g: int, max_b: int) -> None:
    out = truncate(text, max_g, max_b)
    assert grapheme_len(out) <= max_g
    assert utf8_len(out) <= max_b
    assert_cut_prefix(out, text)


# --- cleaning and HTML ------------------------------------------------------------


def test_clean_text() -> None:
    assert clean_text("  a\r\nb\rc\x00d\x07\ufeff ") == "a\nb\ncd"
    assert clean_text("x\ud800y") == "x\ufffdy"
    assert clean_text(None) == ""


def test_html_to_text() -> None:
    html = (
        "<html><head><title>Page</title><style>p{color:red}</style></head><body>"
        "<h1>Title</h1><p>Hello&nbsp;<b>wo</b>rld &amp; co &#8217;s</p>"
        "<p>Two<br>lines   with\n  spaces</p><script>alert(1)</script><noscript>no js</noscript>"
        "<template><p>tpl</p></template><ul><li>one</li><li>two</li></ul>"
        "<table><tr><td>x</td><td>y</td></tr></table></body></html>"
    )
    assert html_to_text(html) == "Title\nHello world & co \u2019s\nTwo\nlines with spaces\none\ntwo\nx y"


def test_html_to_text_fragment_and_empty() -> None:
    assert html_to_text("") == ""
    assert html_to_text("   ") == ""
    assert html_to_text("plain &eacute;t&eacute;") == "plain été"
    assert html_to_text("<div><div><script><script>x</script></script>a</div></div>") == "a"
    assert html_to_text("<p>a<span> b </span>c</p>") == "a b c"


def test_post_title_and_excerpt_cleaning() -> None:
    post = Post(id="1", title="Tom &amp; Jerry&#8217;s\n day", excerpt="<p>An <em>excerpt</em></p>\n<p>two</p>")
    assert post_title_text(post) == "Tom & Jerry\u2019s day"
    assert post_excerpt_text(post) == "An excerpt two"
    post = Post(id="1", title="I <3 AT&T", content_html="<p>From&nbsp;the <b>content</b></p><p>more</p>")
    assert post_title_text(post) == "I <3 AT&T"
    assert post_excerpt_text(post) == "From the content more"


# --- compose_text -----------------------------------------------------------------


def test_custom_text_wins_and_is_cut_not_refused() -> None:
    post = Post(id="1", title="Title", excerpt="Excerpt", text="My own words")
    assert compose_text(post, include_url=False) == "My own words"
    long = " ".join(["word"] * 200)
    out = compose_text(Post(id="1", text=long), include_url=False)
    assert fits(out) and out.endswith("word…")
    assert grapheme_len(out) <= 300


def test_title_then_excerpt() -> None:
    post = Post(id="1", title="A title", excerpt="A short excerpt.")
    assert compose_text(post, include_url=False) == "A title\n\nA short excerpt."
    post = Post(id="1", title="A title", excerpt=" ".join(["lorem"] * 100))
    out = compose_text(post, include_url=False)
    assert out.startswith("A title\n\nlorem lorem")
    assert out.endswith("lorem…") and grapheme_len(out) <= 300
    assert grapheme_len(out) > 280  # the room is used


def test_excerpt_from_content_html() -> None:
    post = Post(id="1", title="T", content_html="<p>First <b>para</b>.</p><script>x</script><p>Second.</p>")
    assert compose_text(post, include_url=False) == "T\n\nFirst para. Second."


def test_long_title_is_cut_and_excerpt_dropped() -> None:
    post = Post(id="1", title="t" * 500, excerpt="excerpt")
    out = compose_text(post, include_url=False)
    assert out == "t" * 299 + "…"


def test_tiny_room_left_adds_no_stub_excerpt() -> None:
    post = Post(id="1", title="x " * 145 + "end", excerpt="a long excerpt that cannot fit in what is left")
    out = compose_text(post, include_url=False)
    assert out == post.title


def test_include_url_keeps_url_whole_and_in_budget() -> None:
    url = "https://blog.example.com/2024/01/a-very-long-slug-" + "x" * 100
    post = Post(id="1", title="Title " * 80, url=url)
    out = compose_text(post, include_url=True)
    assert out.endswith("\n\n" + url)
    assert fits(out)
    assert compose_text(post, include_url=False).find(url) == -1
    facets = detect_facets(out)
    assert facets[-1]["features"][0]["uri"] == url
    assert out.encode()[facets[-1]["index"]["byteStart"]:facets[-1]["index"]["byteEnd"]].decode() == url


def test_include_url_with_custom_text_already_containing_it() -> None:
    post = Post(id="1", text="read https://x.example/a now", url="https://x.example/a")
    assert compose_text(post, include_url=True) == "read https://x.example/a now"


def test_url_longer_than_the_budget_is_left_out() -> None:
    post = Post(id="1", title="T", url="https://x.example/" + "a" * 400)
    assert compose_text(post, include_url=True) == "T"


def test_empty_post_gives_empty_text() -> None:
    assert compose_text(Post(id="1"), include_url=False) == ""
    assert compose_text(Post(id="1", url="https://x.example/"), include_url=True) == "https://x.example/"


@settings(max_examples=120, suppress_health_check=[HealthCheck.too_slow])
@given(text=any_text, url=st.one_of(st.just(""), urls), include_url=st.booleans())
def test_compose_custom_text_property(text: str, url: str, include_url: bool) -> None:
    post = Post(id="1", title="ignored", text=text, url=url)
    out = compose_text(post, include_url=include_url)
    assert fits(out)
    source = clean_text(text)
    if not source:
        return  # falls back to the title
    body = out
    if include_url and url and url not in source:
        assert out == url or out.endswith("\n\n" + url)
        body = "" if out == url else out[: -len(url) - 2]
    assert_cut_prefix(body, source)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(
    title=any_text,
    excerpt=any_text,
    use_html=st.booleans(),
    url=st.one_of(st.just(""), urls),
    include_url=st.booleans(),
)
def test_compose_title_excerpt_property(title: str, excerpt: str, use_html: bool, url: str, include_url: bool) -> None:
    post = (
        Post(id="1", title=title, content_html=excerpt, url=url)
        if use_html
        else Post(id="1", title=title, excerpt=excerpt, url=url)
    )
    out = compose_text(post, include_url=include_url)
    assert fits(out)
    body = out
    if include_url and url:
        assert out == url or out.endswith("\n\n" + url), "the URL is intact"
        body = "" if out == url else out[: -len(url) - 2]
    t, e = post_title_text(post), post_excerpt_text(post)
    if not t:
        assert_cut_prefix(body, e)
    elif not body.startswith(t) or body == t:
        assert_cut_prefix(body, t)
    else:
        assert_cut_prefix(body, t + "\n\n" + e)


# --- facets -----------------------------------------------------------------------


def facet_texts(text: str, facets: list[dict]) -> list[tuple[str, str]]:
    raw = text.encode("utf-8")
    out = []
    for facet in facets:
        feature = facet["features"][0]
        piece = raw[facet["index"]["byteStart"]:facet["index"]["byteEnd"]].decode("utf-8")
        out.append((feature["$type"].rsplit("#", 1)[1], piece))
    return out


def test_links_with_unicode_and_punctuation() -> None:
    text = "Voir https://bücher.example/straße?q=ä, et (https://en.wikipedia.org/wiki/Foo_(bar)). Fin: http://x.example/a."
    facets = detect_facets(text)
    assert [f["features"][0]["uri"] for f in facets] == [
        "https://bücher.example/straße?q=ä",
        "https://en.wikipedia.org/wiki/Foo_(bar)",
        "http://x.example/a",
    ]
    assert facet_texts(text, facets) == [
        ("link", "https://bücher.example/straße?q=ä"),
        ("link", "https://en.wikipedia.org/wiki/Foo_(bar)"),
        ("link", "http://x.example/a"),
    ]


def test_byte_offsets_after_multibyte_text() -> None:
    text = f"{FAMILY} é https://a.example/ #tag"
    facets = detect_facets(text)
    start = len(f"{FAMILY} é ".encode())
    assert facets[0]["index"] == {"byteStart": start, "byteEnd": start + len("https://a.example/")}
    assert facet_texts(text, facets)[1] == ("tag", "#tag")


def test_not_links() -> None:
    assert detect_facets("ftp://x.example/ http:// https:///nohost xhttps://a.example") == []
    assert detect_facets("mail me at bob@example.com") == []


def test_tags() -> None:
    text = "#one, #two! #3 #日本 ＃full #a1 x#no #️⃣ #" + "l" * 65 + " #ok."
    facets = detect_facets(text)
    assert [f["features"][0]["tag"] for f in facets] == ["one", "two", "日本", "full", "a1", "ok"]
    assert ("tag", "＃full") in facet_texts(text, facets)


def test_tag_inside_url_is_not_a_tag() -> None:
    facets = detect_facets("see https://x.example/#frag")
    assert [f["features"][0]["$type"] for f in facets] == ["app.bsky.richtext.facet#link"]


def test_mentions_need_a_resolved_did() -> None:
    text = "hi @alice.test and @bob.example.com, (@Carol.test) @nobody.test @bad"
    assert detect_facets(text) == []
    resolved = {"alice.test": "did:plc:alice", "carol.test": "did:plc:carol", "bob.example.com": "did:web:bob"}
    calls: list[str] = []

    def resolve(handle: str) -> str | None:
        calls.append(handle)
        return resolved.get(handle)

    facets = detect_facets(text, resolve)
    assert [(f["features"][0]["did"]) for f in facets] == ["did:plc:alice", "did:web:bob", "did:plc:carol"]
    assert facet_texts(text, facets) == [
        ("mention", "@alice.test"),
        ("mention", "@bob.example.com"),
        ("mention", "@Carol.test"),
    ]
    assert "bad" not in calls  # not a handle: never looked up


def test_mention_lookup_errors_propagate_and_non_dids_are_ignored() -> None:
    def boom(handle: str) -> str | None:
        raise ConnectionError("network down")

    with pytest.raises(ConnectionError):
        detect_facets("hi @alice.test", boom)
    with pytest.raises(ConnectionError):
        compose_post_record(Post(id="1", text="hi @alice.test"), now=NOW, fetcher=None, upload_blob=None,
                            resolve_handle=boom)
    assert detect_facets("hi @alice.test", lambda h: "not-a-did") == []


def test_each_handle_is_resolved_once() -> None:
    calls: list[str] = []
    facets = detect_facets("@al.test @AL.test @al.test", lambda h: calls.append(h) or "did:plc:al")
    assert calls == ["al.test"] and len(facets) == 3


def test_facet_features_have_types() -> None:
    facets = detect_facets("https://a.example #t @al.test", lambda h: "did:plc:x")
    assert [f["features"][0]["$type"] for f in facets] == [
        "app.bsky.richtext.facet#link",
        "app.bsky.richtext.facet#tag",
        "app.bsky.richtext.facet#mention",
    ]


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(text=any_text)
def test_facets_property(text: str) -> None:
    facets = detect_facets(text, lambda handle: f"did:plc:{len(handle)}")
    raw = text.encode("utf-8")
    last_end = 0
    for facet in facets:
        start, end = facet["index"]["byteStart"], facet["index"]["byteEnd"]
        assert last_end <= start < end <= len(raw)
        last_end = end
        piece = raw[start:end].decode("utf-8")  # on character boundaries, or this raises
        assert len(facet["features"]) == 1
        feature = facet["features"][0]
        kind = feature["$type"]
        if kind == "app.bsky.richtext.facet#link":
            # a bare domain links to https://
            assert feature["uri"] in (piece, "https://" + piece)
            assert re.match(r"(?i)https?://[^\s/]", feature["uri"])
        elif kind == "app.bsky.richtext.facet#tag":
            assert piece[0] in "#＃" and piece[1:] == feature["tag"]
            assert grapheme_len(feature["tag"]) <= 64
        else:
            assert kind == "app.bsky.richtext.facet#mention"
            assert piece.startswith("@") and feature["did"] == f"did:plc:{len(piece) - 1}"


# --- the record -------------------------------------------------------------------

NOW = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=timezone.utc)


def test_format_datetime() -> None:
    assert format_datetime(NOW) == "2024-05-06T07:08:09.123Z"
    plus_two = timezone(timedelta(hours=2))
    assert format_datetime(datetime(2024, 5, 6, 9, 8, 9, tzinfo=plus_two)) == "2024-05-06T07:08:09.000Z"
    assert format_datetime(datetime(2024, 5, 6, 7, 8, 9)) == "2024-05-06T07:08:09.000Z"


def test_record_tags() -> None:
    assert record_tags(("#one", "two", "one", " ", "x" * 70) + tuple(f"t{i}" for i in range(10))) == [
        "one", "two", "x" * 64, "t0", "t1", "t2", "t3", "t4",
    ]


def test_record_without_url() -> None:
    post = Post(id="1", title="Hello #world", excerpt="see https://x.example/", langs=("en", "fr", "de", "it"))
    result = compose_post_record(post, now=NOW, fetcher=None, upload_blob=None)
    assert isinstance(result, ComposedRecord)
    record = result.record
    assert record["$type"] == "app.bsky.feed.post"
    assert record["text"] == "Hello #world\n\nsee https://x.example/"
    assert record["createdAt"] == "2024-05-06T07:08:09.123Z"
    assert record["langs"] == ["en", "fr", "de"]
    assert "embed" not in record and "tags" not in record
    assert [f["features"][0]["$type"] for f in record["facets"]] == [
        "app.bsky.richtext.facet#tag",
        "app.bsky.richtext.facet#link",
    ]
    assert result.warnings == [] and result.thumb is None


def test_record_minimal_omits_empty_fields() -> None:
    record = compose_post_record(Post(id="1", title="Plain"), now=NOW, fetcher=None, upload_blob=None).record
    assert record == {"$type": "app.bsky.feed.post", "text": "Plain", "createdAt": "2024-05-06T07:08:09.123Z"}


def test_record_with_card_offline() -> None:
    post = Post(
        id="1", title="Card title", excerpt="Card description", url="https://blog.example/p",
        image_url="https://blog.example/i.png", tags=("news",),
    )
    result = compose_post_record(post, now=NOW, fetcher=None, upload_blob=None)
    record = result.record
    assert "https://blog.example/p" not in record["text"]
    assert record["embed"] == {
        "$type": "app.bsky.embed.external",
        "external": {"uri": "https://blog.example/p", "title": "Card title", "description": "Card description"},
    }
    assert record["tags"] == ["news"]
    assert result.thumb is None
    assert any("not fetched" in w for w in result.warnings)


def test_card_title_falls_back_to_url() -> None:
    post = Post(id="1", text="custom only", url="https://blog.example/p")
    record = compose_post_record(post, now=NOW, fetcher=None, upload_blob=None).record
    assert record["embed"]["external"]["title"] == "https://blog.example/p"
    assert record["embed"]["external"]["description"] == ""


def _png(size: tuple[int, int] = (40, 20)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (10, 120, 200)).save(out, "PNG")
    return out.getvalue()


class StubFetcher:
    """Stands in for SafeFetcher: serves fixed answers by URL, no network."""

    def __init__(self, answers: dict[str, tuple[int, str, bytes]]):
        self.answers = answers
        self.calls: list[str] = []

    def get(self, url, *, max_bytes=None, headers=None, accept_statuses=(200,)):
        self.calls.append(url)
        if url not in self.answers:
            raise FetchError(f"cannot connect for {url}", kind="network", url=url)
        status, ctype, body = self.answers[url]
        if status not in accept_statuses:
            raise FetchError(f"HTTP {status} from {url}", kind="status", url=url, status=status)
        return FetchResult(url=url, status=status, headers=httpx.Headers({"content-type": ctype}), content=body)


def test_record_uploads_the_thumbnail() -> None:
    image = _png()
    fetcher = StubFetcher({"https://blog.example/i.png": (200, "image/png", image)})
    uploads: list[tuple[bytes, str]] = []
    blob = {"$type": "blob", "ref": {"$link": "bafkreibme22gw2h7y2h7tg2fhqotaqjucnbc24deqo72b6mkl2egezxhvy"},
            "mimeType": "image/png", "size": len(image)}

    def upload(data: bytes, mime: str) -> dict:
        uploads.append((data, mime))
        return blob

    post = Post(id="1", title="T", excerpt="D", url="https://blog.example/p", image_url="https://blog.example/i.png")
    result = compose_post_record(post, now=NOW, fetcher=fetcher, upload_blob=upload)
    assert fetcher.calls == ["https://blog.example/i.png"]  # nothing missing: the page is not fetched
    assert uploads == [(image, "image/png")]
    assert result.record["embed"]["external"]["thumb"] == blob
    assert result.thumb == (image, "image/png")
    assert result.warnings == []
    json.dumps(result.record)  # plain JSON

    from atproto_client import models  # the SDK accepts the record's shape

    parsed = models.AppBskyFeedPost.Record.model_validate(result.record)
    assert parsed.embed.external.thumb.mime_type == "image/png"


def test_preview_keeps_the_image_but_no_thumb() -> None:
    image = _png()
    fetcher = StubFetcher({"https://blog.example/i.png": (200, "image/png", image)})
    post = Post(id="1", title="T", excerpt="D", url="https://blog.example/p", image_url="https://blog.example/i.png")
    result = compose_post_record(post, now=NOW, fetcher=fetcher, upload_blob=None)
    assert "thumb" not in result.record["embed"]["external"]
    assert result.thumb == (image, "image/png")


def test_upload_errors_propagate() -> None:
    fetcher = StubFetcher({"https://blog.example/i.png": (200, "image/png", _png())})
    post = Post(id="1", title="T", excerpt="D", url="https://blog.example/p", image_url="https://blog.example/i.png")

    def upload(data: bytes, mime: str) -> dict:
        raise ConnectionError("PDS unreachable")

    with pytest.raises(ConnectionError):
        compose_post_record(post, now=NOW, fetcher=fetcher, upload_blob=upload)


def test_upload_returning_an_sdk_blob_ref() -> None:
    from atproto_client.models.blob_ref import BlobRef

    fetcher = StubFetcher({"https://blog.example/i.png": (200, "image/png", _png())})
    ref = BlobRef.model_validate(
        {"$type": "blob", "ref": {"$link": "bafkreibme22gw2h7y2h7tg2fhqotaqjucnbc24deqo72b6mkl2egezxhvy"},
         "mimeType": "image/png", "size": 5}
    )
    post = Post(id="1", title="T", excerpt="D", url="https://blog.example/p", image_url="https://blog.example/i.png")
    result = compose_post_record(post, now=NOW, fetcher=fetcher, upload_blob=lambda d, m: ref)
    assert result.record["embed"]["external"]["thumb"]["ref"] == {
        "$link": "bafkreibme22gw2h7y2h7tg2fhqotaqjucnbc24deqo72b6mkl2egezxhvy"
    }


def test_image_problems_are_warnings() -> None:
    fetcher = StubFetcher({
        "https://blog.example/i.png": (404, "text/html", b"not found"),
        "https://blog.example/p": (200, "text/html", b"<title>x</title>"),
    })
    uploads: list = []
    post = Post(id="1", title="T", excerpt="D", url="https://blog.example/p", image_url="https://blog.example/i.png")
    result = compose_post_record(post, now=NOW, fetcher=fetcher, upload_blob=lambda d, m: uploads.append(d))
    assert uploads == []
    assert "thumb" not in result.record["embed"]["external"]
    assert result.thumb is None
    assert any("404" in w for w in result.warnings)


def test_page_unreachable_is_a_warning() -> None:
    fetcher = StubFetcher({})
    post = Post(id="1", title="T", url="https://blog.example/p")
    result = compose_post_record(post, now=NOW, fetcher=fetcher, upload_blob=None)
    assert result.record["embed"]["external"]["title"] == "T"
    assert any("cannot connect" in w for w in result.warnings)


def test_bad_url_gives_no_card_but_a_warning() -> None:
    post = Post(id="1", title="T", url="ftp://x.example/")
    result = compose_post_record(post, now=NOW, fetcher=None, upload_blob=None)
    assert "embed" not in result.record
    assert result.warnings


def test_mentions_resolved_in_record() -> None:
    post = Post(id="1", text="thanks @alice.test!")
    record = compose_post_record(post, now=NOW, fetcher=None, upload_blob=None,
                                 resolve_handle=lambda h: "did:plc:alice").record
    assert record["facets"] == [{
        "index": {"byteStart": 7, "byteEnd": 18},
        "features": [{"$type": "app.bsky.richtext.facet#mention", "did": "did:plc:alice"}],
    }]


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(title=any_text, excerpt=any_text, text=st.one_of(st.just(""), any_text), tags=st.lists(any_text, max_size=12))
def test_record_property(title: str, excerpt: str, text: str, tags: list[str]) -> None:
    post = Post(id="1", title=title, excerpt=excerpt, text=text, url="https://blog.example/p", tags=tuple(tags))
    result = compose_post_record(post, now=NOW, fetcher=None, upload_blob=None)
    record = result.record
    assert fits(record["text"])
    json.dumps(record, ensure_ascii=False).encode("utf-8")
    assert 0 < grapheme_len(record["embed"]["external"]["title"]) <= 300
    assert grapheme_len(record["embed"]["external"]["description"]) <= 1000
    assert len(record.get("tags", [])) <= 8
    assert all(0 < grapheme_len(t) <= 64 for t in record.get("tags", []))


def test_module_limits() -> None:
    assert compose.MAX_GRAPHEMES == 300 and compose.MAX_BYTES == 3000
