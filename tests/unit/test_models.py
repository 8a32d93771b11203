"""The post document: every bad field is named, nothing is guessed."""

import pytest

from skypost.models import (
    Delivery,
    DeliveryStatus,
    PostStatus,
    ValidationError,
    normalize_handle,
    overall_status,
    parse_post_document,
)


def test_minimal_document():
    post = parse_post_document({"id": "42", "title": "Hello", "url": "https://blog.example.com/hello"})
    assert post.id == "42" and post.title == "Hello"


def test_numeric_id_is_accepted_as_text():
    assert parse_post_document({"id": 7, "title": "t", "url": "https://e.com"}).id == "7"


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"title": "t", "url": "https://e.com"}, "id"),
        ({"id": "", "title": "t", "url": "https://e.com"}, "id"),
        ({"id": "1", "title": "t"}, "url"),
        ({"id": "1", "title": "t", "url": "ftp://e.com"}, "url"),
        ({"id": "1", "title": "t", "url": "https://"}, "url"),
        ({"id": "1", "title": "t", "url": "https://e.com", "color": "red"}, "color"),
        ({"id": "1", "title": "t", "url": "https://e.com", "langs": ["en", "fr", "de", "it"]}, "langs"),
        ({"id": "1", "title": "t", "url": "https://e.com", "langs": ["not a lang"]}, "langs"),
        ({"id": "1", "title": "t", "url": "https://e.com", "published_at": "yesterday"}, "published_at"),
        ({"id": "1", "title": "t", "url": "https://e.com", "dont_syndicate": "yes"}, "dont_syndicate"),
        ({"id": "1", "title": "t", "url": "https://e.com", "categories": [1, 2]}, "categories"),
        ({"id": "1", "title": "t", "url": "https://e.com", "accounts": ["not a handle!"]}, "accounts"),
        ({"id": "1", "url": "https://e.com"}, "title"),
    ],
)
def test_bad_fields_are_named(doc, field):
    with pytest.raises(ValidationError) as err:
        parse_post_document(doc)
    assert field in err.value.errors


def test_not_an_object():
    with pytest.raises(ValidationError):
        parse_post_document(["id"])


def test_handles_normalised():
    assert normalize_handle("@Alice.BSKY.social") == "alice.bsky.social"
    with pytest.raises(ValidationError):
        normalize_handle("alice")


def d(status):
    return Delivery(id=1, post_seq=1, account_id=1, account="a", did="d", status=DeliveryStatus(status),
                    attempts=0, next_attempt_at=None, rkey="r")


@pytest.mark.parametrize(
    ("statuses", "paused", "expected"),
    [
        (["completed", "completed"], False, PostStatus.COMPLETED),
        (["completed", "failed"], False, PostStatus.PARTIAL),
        (["failed", "failed"], False, PostStatus.FAILED),
        (["completed", "pending"], False, PostStatus.PENDING),  # over every targeted account
        (["completed", "retrying"], False, PostStatus.RETRYING),
        (["rate_limited", "pending"], False, PostStatus.RATE_LIMITED),
        (["circuit_open", "completed"], False, PostStatus.CIRCUIT_OPEN),
        (["pending", "completed"], True, PostStatus.PAUSED),
        (["completed"], True, PostStatus.COMPLETED),
        ([], False, PostStatus.SKIPPED),
    ],
)
def test_overall_status(statuses, paused, expected):
    assert overall_status([d(s) for s in statuses], paused=paused) is expected
