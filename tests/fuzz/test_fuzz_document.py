"""Fuzz: the post-document parser (models.parse_post_document), the gate of the CLI, the HTTP
API, the webhooks and the feeds. Any JSON-like value gives a valid Post or a ValidationError
whose non-empty `.errors` names the offending fields; never another exception. An accepted
Post can be stored (UTF-8 text) and parses back to itself from its own document."""

from __future__ import annotations

from typing import Any, Mapping

import pytest
from hypothesis import given
from hypothesis import strategies as st

from skypost.models import (
    POST_FIELDS,
    Post,
    ValidationError,
    _LANG,
    check_http_url,
    normalize_handle,
    parse_post_document,
)
from tests.fuzz.strategies import EDGE_DATES, documents, fuzz_settings, json_values, valid_ish_documents

FUZZ = fuzz_settings(700)
FIELDS = set(POST_FIELDS) | {"post_type"}
BASE = {"id": "1", "title": "A title", "url": "https://blog.example.com/a"}


def _utf8(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_post(post: Post) -> None:
    assert isinstance(post, Post)
    assert isinstance(post.id, str) and post.id == post.id.strip() and 1 <= len(post.id) <= 255
    assert check_http_url(post.url) is None
    assert post.image_url == "" or check_http_url(post.image_url) is None
    assert post.title.strip() or post.text.strip()
    assert len(post.langs) <= 3 and all(_LANG.match(lang) for lang in post.langs)
    assert all(normalize_handle(a) == a for a in post.accounts)
    for name in ("categories", "tags", "langs", "accounts"):
        items = getattr(post, name)
        assert isinstance(items, tuple) and all(isinstance(v, str) and v == v.strip() and v for v in items)
        assert len(set(items)) == len(items)
    if post.published_at is not None:
        assert post.published_at.utcoffset() is not None and post.published_at.utcoffset().total_seconds() == 0
    assert isinstance(post.dont_syndicate, bool)
    # what is accepted is stored (SQLite, PostgreSQL) and sent (JSON): it must be valid Unicode text
    strings = [post.id, post.title, post.url, post.excerpt, post.content_html, post.image_url, post.text,
               post.post_type, *post.categories, *post.tags, *post.langs, *post.accounts]
    bad = [s for s in strings if not _utf8(s)]
    assert not bad, f"accepted text that is not valid Unicode (lone surrogates): {bad!r}"
    # its own document parses back to it
    assert parse_post_document(post.to_document()) == post


def check_errors(exc: ValidationError, doc: Any) -> None:
    assert isinstance(exc.errors, dict) and exc.errors, "a ValidationError must name at least one field"
    known = set(FIELDS) | {"document"}
    if isinstance(doc, Mapping):  # an unknown key is named as sent (or made printable / valid UTF-8)
        for k in doc:
            name = str(k)
            known |= {name, repr(name), name.encode("utf-8", "replace").decode("utf-8"),
                      name.encode("utf-8", "backslashreplace").decode("utf-8"),
                      name.encode("utf-16", "surrogatepass").decode("utf-16", "replace")}
    for key, why in exc.errors.items():
        assert isinstance(key, str) and key in known, f"error for {key!r}, which is not a field of the document"
        assert isinstance(why, str) and why.strip()
    if not isinstance(doc, Mapping):
        assert set(exc.errors) == {"document"}


def parse(doc: Any) -> None:
    try:
        post = parse_post_document(doc)
    except ValidationError as exc:
        check_errors(exc, doc)
    else:
        check_post(post)


@FUZZ
@given(json_values)
def test_any_json_value(doc):
    parse(doc)


@FUZZ
@given(documents)
def test_post_documents(doc):
    parse(doc)


@FUZZ
@given(valid_ish_documents)
def test_plausible_documents(doc):
    parse(doc)


# what the fuzzing found, kept as fixed cases
@pytest.mark.parametrize("doc", [
    pytest.param({**BASE, "published_at": EDGE_DATES[0]}, id="0001-01-01T00:00:00+01:00-OverflowError"),
    pytest.param({**BASE, "published_at": EDGE_DATES[1]}, id="9999-12-31T23:59:00-01:00-OverflowError"),
    pytest.param({**BASE, "title": "\ud800"}, id="lone-surrogate-in-title-accepted"),
    pytest.param({**BASE, "tags": ["ok", "\udfff"]}, id="lone-surrogate-in-tags-accepted"),
    pytest.param({**BASE, "id": "a\udc80"}, id="lone-surrogate-in-id-accepted"),
    pytest.param({**BASE, "id": 10 ** 5000}, id="huge-int-id-ValueError"),
])
def test_found_documents(doc):
    parse(doc)


@FUZZ
@given(st.dictionaries(st.sampled_from(sorted(FIELDS)), json_values, max_size=8), st.sampled_from(sorted(FIELDS)))
def test_one_bad_field_is_named(spoil, field):
    """A valid document with one field set to an arbitrary value: accepted, or that field is named."""
    doc = {**BASE, field: spoil.get(field)}
    try:
        post = parse_post_document(doc)
    except ValidationError as exc:
        check_errors(exc, doc)
        # the base fields are fine: only the spoiled field (or the title rule it affects) is named
        assert set(exc.errors) <= {field, "title"}, exc.errors
    else:
        check_post(post)
