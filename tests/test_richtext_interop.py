"""Facets and grapheme counts against Bluesky's own: the detection cases of the atproto
repository and the outputs of the @atproto/api detector on skypost's cases (both read
from the shared interop corpus). Where skypost is deliberately better, the case says how."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from skypost.bluesky.compose import detect_facets
from skypost.bluesky.text import grapheme_len, truncate, utf8_len

# the shared fixtures lie beside the checkout (never copied into it)
INTEROP = Path(__file__).resolve().parents[1].parent / "shared" / "interop"
RICHTEXT = json.loads((INTEROP / "bluesky_richtext_tests.json").read_text(encoding="utf-8"))
ORACLE = json.loads((INTEROP / "bluesky_facets_oracle.json").read_text(encoding="utf-8"))["cases"]

Facet = tuple[int, int, str, str]  # byteStart, byteEnd, kind, uri/tag/handle

# Where the app's detector is wrong and skypost is not: what skypost writes instead.
BETTER: dict[str, list[Facet]] = {
    # trailing punctuation is stripped repeatedly, brackets only when unbalanced
    "Done https://example.com/path...": [(5, 29, "link", "https://example.com/path")],
    "Cut https://example.com/a… more": [(4, 25, "link", "https://example.com/a")],
    "Aside (see https://en.wikipedia.org/wiki/Foo_(bar))": [
        (11, 50, "link", "https://en.wikipedia.org/wiki/Foo_(bar)")
    ],
    "closing https://example.com/x))": [(8, 29, "link", "https://example.com/x")],
    "japanese https://example.com/a。": [(9, 30, "link", "https://example.com/a")],
    # a link right after an opening quote or bracket is still a link
    "quote 'https://example.com/single'": [(7, 33, "link", "https://example.com/single")],
    'quote "https://example.com/double"': [(7, 33, "link", "https://example.com/double")],
    "curly “https://example.com/curly”": [(9, 34, "link", "https://example.com/curly")],
    "guillemets «https://example.com/g»": [(13, 34, "link", "https://example.com/g")],
    "angle <https://example.com/angle>": [(7, 32, "link", "https://example.com/angle")],
    "bracket [https://example.com/b]": [(9, 30, "link", "https://example.com/b")],
    # a scheme in capitals is a scheme
    "HTTPS://EXAMPLE.COM/UPPER": [(0, 25, "link", "HTTPS://EXAMPLE.COM/UPPER")],
    # handles are case-insensitive: the resolver, not the spelling, decides
    "@Alice.Bsky.Social": [(0, 18, "mention", "alice.bsky.social")],
}


def fake_did(handle: str) -> str:
    return "did:fake:" + handle


def flat(facets: list[dict[str, Any]]) -> list[Facet]:
    out = []
    for facet in facets:
        (feature,) = facet["features"]
        kind = feature["$type"].rsplit("#", 1)[1]
        value = feature.get("uri") or feature.get("tag") or feature["did"].removeprefix("did:fake:")
        out.append((facet["index"]["byteStart"], facet["index"]["byteEnd"], kind, value))
    return out


def segments(text: str, facets: list[dict[str, Any]]) -> list[list[str]]:
    """RichText.segments(): plain runs as [text], faceted runs as [text, uri-or-did]."""
    raw = text.encode("utf-8")
    out: list[list[str]] = []
    pos = 0
    for facet in facets:
        start, end = facet["index"]["byteStart"], facet["index"]["byteEnd"]
        if start > pos:
            out.append([raw[pos:start].decode("utf-8")])
        feature = facet["features"][0]
        out.append([raw[start:end].decode("utf-8"), feature.get("uri") or feature.get("did")])
        pos = end
    if pos < len(raw):
        out.append([raw[pos:].decode("utf-8")])
    return out


def test_the_corpora_are_there() -> None:
    assert len(RICHTEXT["segments"]) >= 40 and len(RICHTEXT["cashtags"]) >= 18
    assert len(ORACLE) >= 100
    assert set(BETTER) <= {case["input"] for case in ORACLE}


@pytest.mark.parametrize("case", RICHTEXT["segments"], ids=lambda c: c["input"][:40])
def test_links_and_mentions_as_the_app_detects_them(case: dict[str, Any]) -> None:
    text = case["input"]
    assert segments(text, detect_facets(text, fake_did)) == case["segments"]


@pytest.mark.parametrize(
    "case", RICHTEXT["tags"] + RICHTEXT["cashtags"], ids=lambda c: c["input"][:40]
)
def test_hashtags_and_cashtags_as_the_app_detects_them(case: dict[str, Any]) -> None:
    facets = detect_facets(case["input"])
    assert [f["features"][0]["tag"] for f in facets] == case["tags"]
    assert [f["index"] for f in facets] == case["indices"]
    assert all(f["features"][0]["$type"] == "app.bsky.richtext.facet#tag" for f in facets)


@pytest.mark.parametrize("case", RICHTEXT["graphemes"], ids=lambda c: c["text"])
def test_grapheme_counts_as_the_server_counts(case: dict[str, Any]) -> None:
    assert grapheme_len(case["text"]) == case["graphemes"]
    if "utf8" in case:
        assert utf8_len(case["text"]) == case["utf8"]


@pytest.mark.parametrize("case", ORACLE, ids=lambda c: c["input"][:40])
def test_facets_match_the_app_oracle(case: dict[str, Any]) -> None:
    text = case["input"]
    expected = BETTER.get(text, flat(case["facets"]))
    assert flat(detect_facets(text, fake_did)) == expected
    assert grapheme_len(text) == case["graphemeLength"]
    assert utf8_len(text) == case["length"]


def test_bare_domains() -> None:
    text = "See example.com/path, docs.python.org. Not e.g. or file.jpg or my-site.notatld."
    assert flat(detect_facets(text)) == [
        (4, 20, "link", "https://example.com/path"),
        (22, 37, "link", "https://docs.python.org"),
    ]
    # inside an address, a handle or a tag it is not a link
    assert flat(detect_facets("mail bob@example.com #example.com @example.com")) == [
        (21, 33, "tag", "example.com")
    ]
    assert flat(detect_facets("«example.com»")) == [(2, 13, "link", "https://example.com")]


def test_a_cashtag_inside_a_link_stays_part_of_the_link() -> None:
    text = "https://x.example/($AAPL) ($AAPL)"
    assert flat(detect_facets(text)) == [
        (0, 25, "link", "https://x.example/($AAPL)"),
        (27, 32, "tag", "$AAPL"),
    ]


def test_indic_conjuncts_count_and_cut_as_one() -> None:
    assert grapheme_len("नमस्ते") == 3
    assert grapheme_len("क्षत्रिय") == 3
    word = "क्ष" * 400
    out = truncate(word, 300, 3000)
    assert grapheme_len(out) == 300 and out == "क्ष" * 299 + "…"
