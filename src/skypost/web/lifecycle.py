"""The dashboard's share of a post's life after publishing: replies from the site, who may reply.

Pure helpers (no request, no database): the reply form's id, the gate settings of a form,
and gates in words. The routes live in dashboard.py and call the same Skypost methods as
the CLI and the API (`reply`, `update_account`, `add_account`).
"""

from __future__ import annotations

import uuid
from typing import Any, Iterable, Mapping, Sequence

from skypost.models import EVERYONE, NOBODY, ValidationError

# the deliveries of a post that a reply can still go under (its record exists or may come)
NO_REPLY = frozenset({"failed", "cancelled", "deleted", "deleting"})
WHO = ("everyone", "nobody", "some")  # the radio of the gate form; "some": the checked rules
SOME_RULES = ("following", "mentioned")


def new_reply_id() -> str:
    """The site id of a reply written in the dashboard, fixed when the form is rendered: a
    second submit of the same form names the same reply, which is never posted twice."""
    return f"dash-{uuid.uuid4().hex}"


def reply_accounts(status: Mapping[str, Any]) -> list[str]:
    """The handles a reply to this post can go out as (none: no reply form)."""
    if status.get("status") in ("deleting", "deleted"):
        return []
    return list(dict.fromkeys(str(d["account"]) for d in status.get("deliveries", [])
                              if d.get("account") and d.get("status") not in NO_REPLY))


def field(form: Mapping[str, Any], name: str) -> str | None:
    """A form field's text, None when absent or blank."""
    value = form.get(name)
    return value.strip() or None if isinstance(value, str) else None


def gate_form(form: Any) -> tuple[tuple[str, ...], bool]:
    """(who may reply, quotes allowed) from a form's `who` radio, `rules` checkboxes and
    `quotes` checkbox; ValidationError names the field."""
    who = field(form, "who") or EVERYONE
    if who not in WHO:
        raise ValidationError({"replies": f"{who[:40]!r} is not one of {', '.join(WHO)}"})
    quotes = form.get("quotes") == "on"
    if who != "some":
        return (who,), quotes
    rules = tuple(r for r in SOME_RULES if r in values(form, "rules"))
    if not rules:
        raise ValidationError({"replies": "tick following, mentioned or both (or choose everyone or nobody)"})
    return rules, quotes


def values(form: Any, name: str) -> list[str]:
    getlist = getattr(form, "getlist", None)
    values: Iterable[Any] = getlist(name) if getlist is not None else [form.get(name)]
    return [v for v in values if isinstance(v, str)]


def gate_words(replies: str | Sequence[str] | None, no_quotes: bool) -> str:
    """A gate in words: "replies: following, mentioned; quotes off". `replies` is the stored
    form ("following,mentioned", None for everyone) or a list of rules."""
    if isinstance(replies, str):
        rules = [r for r in replies.split(",") if r]
    else:
        rules = list(replies or [])
    who = ", ".join(rules) if rules else EVERYONE
    return f"replies: {who}; quotes {'off' if no_quotes else 'on'}"


def who_of(replies: Sequence[str] | None) -> str:
    """The radio value of an account's setting."""
    rules = list(replies or [EVERYONE])
    return rules[0] if rules[0] in (EVERYONE, NOBODY) else "some"


def bsky_url(uri: Any) -> str:
    """The bsky.app page of a post's AT-URI ("" if it is not one)."""
    from skypost.conversation.views import reaction_url

    parts = str(uri or "").removeprefix("at://").split("/")
    if not str(uri or "").startswith("at://") or len(parts) != 3:
        return ""
    return reaction_url("reply", str(uri), parts[0])
