"""Hypothesis strategies shared by the fuzz tests: JSON values, raw JSON text, post documents
that are almost right, and the pieces of text that break naive code (grapheme clusters,
lone surrogates, control characters, links, mentions, hashtags)."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from skypost.models import POST_FIELDS

def fuzz_settings(examples: int, *, fixtures: bool = False) -> settings:
    """`examples` per test (times SKYPOST_FUZZ_SCALE, e.g. 20 for a long local run), no deadline."""
    scale = float(os.environ.get("SKYPOST_FUZZ_SCALE") or 1)
    suppress = [HealthCheck.too_slow, HealthCheck.data_too_large]
    if fixtures:  # one fixture (an app) shared by the examples of a test, on purpose
        suppress.append(HealthCheck.function_scoped_fixture)
    return settings(max_examples=max(1, int(examples * scale)), deadline=None, suppress_health_check=suppress)


# every code point, lone surrogates and unassigned ones included
ANY_CHAR = st.characters(exclude_categories=())
any_text = st.text(ANY_CHAR, max_size=40)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
    | any_text
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12) | any_text, inner, max_size=5),
    max_leaves=25,
)

PIECES = [
    "\U0001F468\u200D\U0001F469\u200D\U0001F467\u200D\U0001F466",  # family (ZWJ)
    "\U0001F3F3\uFE0F\u200D\U0001F308", "\U0001F1EB\U0001F1F7", "\U0001F1E9",  # flags, a lone regional indicator
    "e\u0301\u0323", "Z\u0351\u0352\u0353\u0354\u0355", "\u1100\u1161\u11a8", "क्षत्रिय", "日本語", "مرحبا",
    "\u200f", "\u200d", "\ufeff", "\u00ad", "\u2028", "\u2029", "\x00", "\x1b", "\r\n", "\r", "\n", "\t", " ",
    "\u00a0", "\u3000", "\ud800", "\udfff", "\U000e0067", "&amp;", "&#8230;", "&bogus;", "<p>", "</p>",
    "<br>", "<script>x</script>", "https://example.com/a?b=c#d", "http://bücher.example/straße",
    "https://example.com/(x)", "http://[::1]:80/", "http://a:99999/", "@alice.test", "@bob.bsky.social",
    "@x", "#tag", "#日本", "＃全角", "#123", "#" + "x" * 70, "...", "…", "(", ")", ",", "word", "longerword",
]
pieces_text = st.lists(st.sampled_from(PIECES) | any_text, max_size=12).map("".join)
text_like = pieces_text | any_text | st.text(max_size=400)


def _iso(dt: datetime, offset_minutes: int | None, sep: str, z: bool) -> str:
    text = dt.isoformat(sep=sep)
    if z:
        return text + "Z"
    if offset_minutes is None:
        return text
    sign = "+" if offset_minutes >= 0 else "-"
    hours, minutes = divmod(abs(offset_minutes), 60)
    return f"{text}{sign}{hours:02d}:{minutes:02d}"


# date-times as sites send them, including the first and last representable days with an offset
iso_datetimes = st.builds(
    _iso,
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59))
    | st.sampled_from([datetime(1, 1, 1), datetime(9999, 12, 31, 23, 59, 59), datetime(1970, 1, 1)]),
    st.none() | st.integers(-23 * 60 - 59, 23 * 60 + 59),
    st.sampled_from(["T", " ", "t"]),
    st.booleans(),
)

SCHEMES = ["http", "https", "HTTP", "ftp", "javascript", "", "mailto"]
HOSTS = ["example.com", "bücher.example", "[::1]", "[::1", "127.0.0.1", "", "a..b", "-x-.com", "xn--nxasmq6b",
         "host:80", "host:0", "host:65536", "host:-1", "host: 80", "user:pw@host", "ex ample.com", "@"]
urls = st.builds(
    lambda scheme, slashes, host, path: f"{scheme}{slashes}{host}{path}",
    st.sampled_from(SCHEMES).map(lambda s: f"{s}:" if s else ""),
    st.sampled_from(["//", "/", "///", ""]),
    st.sampled_from(HOSTS) | st.text(max_size=15),
    st.text(max_size=20) | st.sampled_from(["/", "/a b", "/\x00", "/\ud800", "?q=1", "#f", "/" + "x" * 3000]),
) | st.text(max_size=30)

handles = st.sampled_from(["alice.test", "Alice.Example.com", "@bob.bsky.social", "no_dots", "a" * 300 + ".com",
                           "", " ", "x.y", "-a.com", "a.-b", "日本.jp"]) | st.text(max_size=20)
langs = st.sampled_from(["en", "fr-CA", "zh-Hant-TW", "e", "english", "en_US", "123", "", " en "]) | st.text(max_size=8)


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """The field's plausible values most of the time, anything JSON sometimes."""
    return st.one_of(strategy, strategy, strategy, json_values)


FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "id": maybe(st.text(min_size=1, max_size=20) | any_text | st.integers() | st.text(min_size=250, max_size=260)),
    "title": maybe(text_like),
    "url": maybe(urls),
    "excerpt": maybe(text_like),
    "content_html": maybe(text_like),
    "image_url": maybe(urls),
    "text": maybe(text_like),
    "categories": maybe(st.lists(text_like, max_size=4) | text_like),
    "tags": maybe(st.lists(text_like, max_size=10) | text_like),
    "langs": maybe(st.lists(langs, max_size=5) | langs),
    "published_at": maybe(iso_datetimes | st.text(max_size=30)),
    "accounts": maybe(st.lists(handles, max_size=4) | handles),
    "dont_syndicate": maybe(st.booleans()),
    "post_type": maybe(st.sampled_from(["post", "page", ""]) | st.text(max_size=10)),
}

post_documents = st.fixed_dictionaries(
    {}, optional={**FIELD_VALUES, "unknown": json_values, "": json_values}
)
# a valid core that the optional fields then may spoil one at a time
near_valid_documents = st.builds(
    lambda base, extra: {**base, **extra},
    st.fixed_dictionaries({"id": st.text(min_size=1, max_size=20).filter(str.strip), "title": st.just("A title"),
                           "url": st.just("https://blog.example.com/a")}),
    st.fixed_dictionaries({}, optional=FIELD_VALUES),
)
# documents whose every field is plausible (most are valid): what is accepted must be usable
good_urls = st.builds(
    lambda scheme, host, path: f"{scheme}://{host}/{path}",
    st.sampled_from(["http", "https", "HTTPS"]),
    st.sampled_from(["example.com", "bücher.example", "127.0.0.1", "[::1]", "a.b.c.example:8080"]),
    pieces_text | st.text(max_size=20),
)
valid_ish_documents = st.fixed_dictionaries(
    {"id": st.text(ANY_CHAR, min_size=1, max_size=20) | st.integers(), "title": pieces_text | text_like,
     "url": good_urls},
    optional={
        "excerpt": text_like, "content_html": text_like, "text": text_like, "image_url": good_urls | st.just(""),
        "categories": st.lists(text_like, max_size=4), "tags": st.lists(pieces_text, max_size=10),
        "langs": st.lists(st.sampled_from(["en", "fr-CA", "zh-Hant-TW", "pt-BR"]), max_size=3),
        "published_at": iso_datetimes, "accounts": st.lists(st.sampled_from(["alice.test", "Bob.Example.com",
                                                                             "@carol.bsky.social"]), max_size=3),
        "dont_syndicate": st.booleans(), "post_type": st.sampled_from(["post", "page"]),
    },
)
documents = post_documents | near_valid_documents | valid_ish_documents


def json_text(value: Any) -> bytes:
    """JSON text of `value` as a client would send it (lone surrogates as \\u escapes)."""
    return json.dumps(value, ensure_ascii=True, allow_nan=True).encode()


raw_json_bodies = st.one_of(
    st.builds(json_text, documents),
    st.builds(json_text, json_values),
    # JSON that the json module accepts but that is unusual
    st.sampled_from([
        b'{"id": "1", "title": "t", "url": "https://e.com", "published_at": "0001-01-01T00:00:00+01:00"}',
        b'{"id": "2", "title": "\\ud800", "url": "https://e.com"}',
        b'{"id": "3", "title": "t", "url": "https://e.com", "x\\udc00": 1}',
        b'{"id": 1' + b"0" * 5000 + b', "title": "t", "url": "https://e.com"}',
        b"[" * 5000 + b"]" * 5000,
        b'{"id": NaN, "title": Infinity, "url": -Infinity}',
        b'{"id": "4", "id": "5", "title": "t", "url": "https://e.com"}',
        b'\xef\xbb\xbf{"id": "6", "title": "t", "url": "https://e.com"}',
        b'{"id": "7\\u0000", "title": "t", "url": "https://e.com"}',
        b'{"id": "8", "title": "t\\u0000", "url": "https://e.com"}',
        b"",
        b"   ",
        b"null",
    ]),
    st.binary(max_size=200),
    st.text(max_size=100).map(lambda s: s.encode("utf-8", "surrogatepass")),
)

# the newest and oldest instants a UTC datetime holds, as offsets a site could send
EDGE_DATES = [
    (datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1)))).isoformat(),
    (datetime(9999, 12, 31, 23, 59, tzinfo=timezone(timedelta(hours=-1)))).isoformat(),
]

__all__ = [
    "ANY_CHAR", "EDGE_DATES", "fuzz_settings", "FIELD_VALUES", "PIECES", "any_text", "documents", "handles", "iso_datetimes",
    "json_text", "json_values", "langs", "near_valid_documents", "pieces_text", "valid_ish_documents", "good_urls", "post_documents",
    "raw_json_bodies", "text_like", "urls", "POST_FIELDS",
]
