"""The words of skypost: posts, accounts, deliveries and their statuses.

Plain dataclasses and enums. No I/O happens here; parsing a post document
(the JSON accepted by the CLI, the HTTP API and webhooks) is pure validation.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from datetime import datetime, timezone
from typing import Any, Mapping
from urllib.parse import urlsplit


class PostStatus(str, enum.Enum):
    NEEDS_REAUTH = "needs_reauth"
    PENDING = "pending"
    RETRYING = "retrying"
    RATE_LIMITED = "rate_limited"
    CIRCUIT_OPEN = "circuit_open"
    PAUSED = "paused"
    COMPLETED = "completed"
    PARTIAL = "partial"
    FAILED = "failed"
    SKIPPED = "skipped"
    # removed from Bluesky on request: never syndicated again under this id
    DELETING = "deleting"
    DELETED = "deleted"
    DELETE_FAILED = "delete_failed"


class DeliveryStatus(str, enum.Enum):
    PENDING = "pending"
    RETRYING = "retrying"
    RATE_LIMITED = "rate_limited"
    CIRCUIT_OPEN = "circuit_open"
    # waits for a person to re-enter the app password; goes on by itself after that
    NEEDS_REAUTH = "needs_reauth"
    COMPLETED = "completed"
    FAILED = "failed"
    # a delete was requested: shown for a delivery waiting for its record to be removed
    # (stored as pending with intent "delete")
    DELETING = "deleting"
    DELETED = "deleted"  # the record was removed, or never existed
    CANCELLED = "cancelled"  # never reached Bluesky: nothing to remove

    @property
    def finished(self) -> bool:
        return self in (DeliveryStatus.COMPLETED, DeliveryStatus.FAILED, DeliveryStatus.DELETED,
                        DeliveryStatus.CANCELLED)

    @property
    def parked(self) -> bool:
        """Unfinished, but no job works on it until something outside changes."""
        return self is DeliveryStatus.NEEDS_REAUTH


FINISHED_DELIVERY = (DeliveryStatus.COMPLETED.value, DeliveryStatus.FAILED.value, DeliveryStatus.DELETED.value,
                     DeliveryStatus.CANCELLED.value)
# finished, or waiting for a person: nothing for a worker to do
IDLE_DELIVERY = FINISHED_DELIVERY + (DeliveryStatus.NEEDS_REAUTH.value,)


class Intent(str, enum.Enum):
    """What a delivery's attempts do: create its record, or remove it."""

    PUBLISH = "publish"
    DELETE = "delete"


class DeliveryFailure(str, enum.Enum):
    """Why a delivery stopped: what recovery looks for (never the message text)."""

    TRANSIENT_EXHAUSTED = "transient_exhausted"  # every retry failed: queued again when the service is back
    AUTH = "auth"  # the app password was refused: queued again when it is re-entered
    PERMANENT = "permanent"  # Bluesky refused the record, or a rule no longer allows it
    REMOVED = "removed"  # the account was removed


class AccountState(str, enum.Enum):
    ACTIVE = "active"
    NEEDS_REAUTH = "needs_reauth"


class AccountError(Exception):
    """An account could not be added or updated (wrong password, unreachable service)."""


REAUTH_PREFIX = "re-enter the app password"


def reauth_message(handle: str) -> str:
    return f"{REAUTH_PREFIX} for @{handle} (skypost account update {handle} --password-stdin)"


EVERYONE = "everyone"
NOBODY = "nobody"
REPLY_RULES = (EVERYONE, NOBODY, "following", "mentioned")


class ValidationError(ValueError):
    """Bad input: `errors` maps each offending field to why it was refused."""

    def __init__(self, errors: Mapping[str, str]):
        self.errors = dict(errors)
        super().__init__("; ".join(f"{k}: {v}" for k, v in self.errors.items()))


@dataclasses.dataclass(frozen=True)
class Post:
    """What the site published. `id` is the site's own stable identifier."""

    id: str
    title: str = ""
    url: str = ""
    excerpt: str = ""
    content_html: str = ""
    image_url: str = ""
    text: str = ""
    categories: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    langs: tuple[str, ...] = ()
    published_at: datetime | None = None
    accounts: tuple[str, ...] = ()
    dont_syndicate: bool = False
    post_type: str = "post"
    # who may reply (None: the account's setting) and whether quoting is allowed (None: the
    # account's setting); see reply_rules()
    replies: tuple[str, ...] | None = None
    quotes: bool | None = None

    def to_document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "id": self.id,
            "title": self.title,
            "url": self.url,
            "excerpt": self.excerpt,
            "content_html": self.content_html,
            "image_url": self.image_url,
            "text": self.text,
            "categories": list(self.categories),
            "tags": list(self.tags),
            "langs": list(self.langs),
            "published_at": self.published_at.isoformat() if self.published_at else None,
            "accounts": list(self.accounts),
            "dont_syndicate": self.dont_syndicate,
        }
        if self.post_type != "post":
            doc["post_type"] = self.post_type
        if self.replies is not None:
            doc["replies"] = list(self.replies)
        if self.quotes is not None:
            doc["quotes"] = self.quotes
        return doc


@dataclasses.dataclass(frozen=True)
class Account:
    handle: str
    did: str = ""
    service: str = "https://bsky.social"
    auto_syndicate: bool = True
    include_categories: tuple[str, ...] = ()
    exclude_categories: tuple[str, ...] = ()
    state: AccountState = AccountState.ACTIVE
    id: int | None = None
    replies: tuple[str, ...] = (EVERYONE,)  # who may reply to its posts (reply_rules())
    quotes: bool = True  # False: its posts get a postgate that disables quoting

    def to_json(self) -> dict[str, Any]:
        return {
            "handle": self.handle,
            "did": self.did,
            "service": self.service,
            "auto_syndicate": self.auto_syndicate,
            "include_categories": list(self.include_categories),
            "exclude_categories": list(self.exclude_categories),
            "state": self.state.value,
            "replies": list(self.replies),
            "quotes": self.quotes,
        }


@dataclasses.dataclass
class Delivery:
    """One post to one account."""

    id: int
    post_seq: int
    account_id: int
    account: str  # handle
    did: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime | None
    rkey: str
    uri: str | None = None
    cid: str | None = None
    url: str | None = None
    error: str | None = None
    intent: Intent = Intent.PUBLISH

    def to_json(self) -> dict[str, Any]:
        return {
            "account": self.account,
            "did": self.did,
            "status": self.status.value,
            "attempts": self.attempts,
            "next_attempt_at": iso(self.next_attempt_at),
            "uri": self.uri,
            "cid": self.cid,
            "url": self.url,
            "error": self.error,
        }


# what a syndicated post gathers on Bluesky, in the order the status JSON counts them
INTERACTION_KINDS = ("reply", "quote", "like", "repost")


def no_interactions() -> dict[str, int]:
    return {kind: 0 for kind in INTERACTION_KINDS}


@dataclasses.dataclass
class PostState:
    """The status JSON of a post, as printed by the CLI and served by the API."""

    id: str
    status: PostStatus
    reason: str | None
    deliveries: list[Delivery]
    # live reactions per kind (removed ones are not counted)
    interactions: dict[str, int] = dataclasses.field(default_factory=no_interactions)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status.value,
            "reason": self.reason,
            "deliveries": [d.to_json() for d in self.deliveries],
            "interactions": dict(self.interactions),
        }


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def deletion_status(deliveries: list[Delivery]) -> PostStatus:
    """The status of a post whose removal from Bluesky was requested."""
    if any(not d.status.finished for d in deliveries):
        return PostStatus.DELETING
    if any(d.status is DeliveryStatus.FAILED for d in deliveries):
        return PostStatus.DELETE_FAILED
    return PostStatus.DELETED


def overall_status(deliveries: list[Delivery], *, paused: bool) -> PostStatus:
    """Rule 12: the status of a post over every targeted account."""
    if not deliveries:
        return PostStatus.SKIPPED
    unfinished = [d.status for d in deliveries if not d.status.finished]
    if unfinished:
        if paused:
            return PostStatus.PAUSED
        for candidate in (
            DeliveryStatus.NEEDS_REAUTH,
            DeliveryStatus.CIRCUIT_OPEN,
            DeliveryStatus.RATE_LIMITED,
            DeliveryStatus.RETRYING,
        ):
            if candidate in unfinished:
                return PostStatus(candidate.value)
        return PostStatus.PENDING
    done = sum(1 for d in deliveries if d.status is DeliveryStatus.COMPLETED)
    if done == len(deliveries):
        return PostStatus.COMPLETED
    return PostStatus.PARTIAL if done else PostStatus.FAILED


# --- the post document -------------------------------------------------------

POST_FIELDS = (
    "id", "title", "url", "excerpt", "content_html", "image_url", "text",
    "categories", "tags", "langs", "published_at", "accounts", "dont_syndicate",
    "replies", "quotes",
)
_EXTRA_FIELDS = ("post_type",)
_STRING_FIELDS = ("title", "excerpt", "content_html", "text")
_LIST_FIELDS = ("categories", "tags", "langs", "accounts")
_MAX_ID = 255
_MAX_TEXT = 1_000_000
_LANG = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$")
HANDLE = re.compile(
    r"^([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)+[a-zA-Z]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$"
)


def normalize_handle(handle: str) -> str:
    """Lower-case, without a leading @; raises ValidationError when malformed."""
    value = (handle or "").strip().lstrip("@").lower()
    if len(value) > 253 or not HANDLE.match(value):
        raise ValidationError({"handle": f"{handle!r} is not a valid handle (e.g. alice.bsky.social)"})
    return value


def check_http_url(value: str) -> str | None:
    """Why `value` is not an absolute http(s) URL, or None when it is."""
    if not value:
        return "is required"
    if any(ch.isspace() for ch in value):
        return "must not contain whitespace"
    try:
        parts = urlsplit(value)
        parts.port  # raises on a bad port
    except ValueError as exc:
        return f"is not a valid URL ({exc})"
    if parts.scheme not in ("http", "https"):
        return "must be an http:// or https:// URL"
    if not parts.hostname:
        return "must include a host name"
    return None


def parse_datetime(value: str) -> datetime:
    text = value.strip()
    if text.endswith("Z") or text.endswith("z"):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


def parse_post_document(doc: Any, *, allow_extra: bool = False) -> Post:
    """Validate a post document; raise ValidationError naming every bad field."""
    if not isinstance(doc, Mapping):
        raise ValidationError({"document": "must be a JSON object"})
    errors: dict[str, str] = {}
    allowed = POST_FIELDS + _EXTRA_FIELDS
    for key in doc:
        if key not in allowed:
            # the name goes back in a JSON answer: make it printable whatever it was
            errors[printable(str(key))[:100]] = "unknown field"
    values: dict[str, Any] = {}

    raw_id = doc.get("id")
    if isinstance(raw_id, int) and not isinstance(raw_id, bool) and abs(raw_id) < 10**18:
        raw_id = str(raw_id)  # numeric ids (WordPress, Ghost) as text
    if not isinstance(raw_id, str) or not raw_id.strip():
        errors["id"] = "is required and must be a non-empty string"
    elif len(raw_id) > _MAX_ID:
        errors["id"] = f"must be at most {_MAX_ID} characters"
    elif not valid_id(raw_id.strip()):
        errors["id"] = "must not contain control characters, lone surrogates, or be only dots"
    else:
        values["id"] = raw_id.strip()

    for name in _STRING_FIELDS:
        value = doc.get(name, "")
        if value is None:
            value = ""
        if not isinstance(value, str):
            errors[name] = "must be a string"
        elif len(value) > _MAX_TEXT:
            errors[name] = f"must be at most {_MAX_TEXT} characters"
        else:
            values[name] = value

    url = doc.get("url", "")
    url = "" if url is None else url
    problem = check_http_url(url) if isinstance(url, str) else "must be a string"
    if problem:
        errors["url"] = problem
    else:
        values["url"] = url

    image_url = doc.get("image_url", "") or ""
    if not isinstance(image_url, str):
        errors["image_url"] = "must be a string"
    elif image_url and (problem := check_http_url(image_url)):
        errors["image_url"] = problem
    else:
        values["image_url"] = image_url

    for name in _LIST_FIELDS:
        value = doc.get(name, []) or []
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            errors[name] = "must be a list of strings"
            continue
        cleaned = tuple(dict.fromkeys(v.strip() for v in value if v.strip()))
        values[name] = cleaned

    if "langs" in values:
        bad = [lang for lang in values["langs"] if not _LANG.match(lang)]
        if bad:
            errors["langs"] = f"{bad[0]!r} is not a BCP-47 language tag"
        elif len(values["langs"]) > 3:
            errors["langs"] = "at most 3 languages"
    if "accounts" in values:
        handles = []
        for handle in values["accounts"]:
            try:
                handles.append(normalize_handle(handle))
            except ValidationError:
                errors["accounts"] = f"{handle!r} is not a valid handle"
                break
        values["accounts"] = tuple(dict.fromkeys(handles))

    published = doc.get("published_at")
    if published not in (None, ""):
        if not isinstance(published, str):
            errors["published_at"] = "must be an ISO 8601 date-time string"
        else:
            try:
                values["published_at"] = parse_datetime(published)
            except (ValueError, OverflowError):
                errors["published_at"] = f"{published!r} is not an ISO 8601 date-time"

    dont = doc.get("dont_syndicate", False)
    if dont is None:
        dont = False
    if not isinstance(dont, bool):
        errors["dont_syndicate"] = "must be true or false"
    else:
        values["dont_syndicate"] = dont

    if doc.get("replies") is not None:
        try:
            values["replies"] = reply_rules(doc["replies"], field="replies")
        except ValidationError as exc:
            errors.update(exc.errors)
    quotes = doc.get("quotes")
    if quotes is not None:
        if isinstance(quotes, bool):
            values["quotes"] = quotes
        else:
            errors["quotes"] = "must be true or false"

    post_type = doc.get("post_type", "post") or "post"
    if not isinstance(post_type, str):
        errors["post_type"] = "must be a string"
    else:
        values["post_type"] = post_type

    if "title" in values and "text" in values and not values["title"].strip() and not values["text"].strip():
        errors["title"] = "a title (or a custom text) is required"

    for name, value in values.items():
        texts = value if isinstance(value, tuple) else (value,)
        if name not in errors and any(isinstance(t, str) and not _encodable(t) for t in texts):
            errors[name] = "is not valid Unicode text (it contains lone surrogates)"

    if errors:
        raise ValidationError(errors)
    return Post(**values)


def reply_rules(value: Any, *, field: str = "replies") -> tuple[str, ...]:
    """Who may reply: ("everyone",) (no gate), ("nobody",), or some of following/mentioned."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ValidationError({field: "must be a list of strings"})
    rules = tuple(dict.fromkeys(v.strip().lower() for v in value if v.strip()))
    unknown = [r for r in rules if r not in REPLY_RULES]
    if unknown:
        raise ValidationError({field: f"{printable(unknown[0])[:40]!r} is not one of "
                                      f"{', '.join(REPLY_RULES)}"})
    if not rules:
        raise ValidationError({field: f"must name at least one of {', '.join(REPLY_RULES)}"})
    for alone in (EVERYONE, NOBODY):
        if alone in rules and len(rules) > 1:
            raise ValidationError({field: f"{alone!r} cannot be combined with other values"})
    return rules


def printable(text: str) -> str:
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def valid_id(post_id: str) -> bool:
    """An id that every database, URL and log line can carry."""
    return bool(post_id) and _encodable(post_id) and not _CONTROL.search(post_id) and post_id.strip(".") != ""


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
