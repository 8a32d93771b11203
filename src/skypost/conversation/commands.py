"""`skypost interactions ID [--json]`: what a post gathered on Bluesky (loaded lazily by skypost.cli)."""

from __future__ import annotations

import json
from typing import Any, Mapping

import click

from skypost.cli import Ctx, clean, fail, guarded, say
from skypost.conversation.views import conversation, summary, who

INDENT = "  "


def _when(value: str | None) -> str:
    """'2026-05-01 10:00:03 UTC' from the JSON's ISO time."""
    return value.replace("T", " ").replace("Z", " UTC") if value else "time unknown"


def _author(item: Mapping[str, Any]) -> str:
    name = item["author"].get("display_name")
    return f"{clean(name)} ({clean(who(item))})" if name else clean(who(item))


def _entry(item: Mapping[str, Any], depth: int) -> list[str]:
    """A reply or a quote: who and when, the text (each of its lines), its bsky.app link."""
    pad = INDENT * (depth + 1)
    lines = [pad + ("↳ " if depth else "") + f"{_author(item)}, {_when(item['created_at'])}"]
    body = pad + INDENT
    if item["removed"]:
        lines.append(body + "(removed on Bluesky)")
        return lines
    text = item.get("text") or ""
    lines.extend(body + clean(line) for line in text.splitlines() if line.strip())
    lines.append(body + clean(item["url"]))
    return lines


def render(document: Mapping[str, Any]) -> str:
    """The human view: a summary line, the replies as a thread, the quotes, who liked and reposted."""
    talk = conversation(document)
    out = [f"post {clean(document['id'])}: {summary(talk.counts)}"]
    if talk.thread:
        out += ["", "replies:"]
        for depth, reply in talk.thread:
            out += _entry(reply, depth)
    if talk.quotes:
        out += ["", "quotes:"]
        for quote in talk.quotes:
            out += _entry(quote, 0)
    for label, items in (("liked by", talk.likes), ("reposted by", talk.reposts)):
        if items:
            out += ["", f"{label} ({len(items)}): " + ", ".join(clean(who(i)) for i in items)]
    return "\n".join(out)


@click.command()
@click.argument("post_id")
@click.option("--json", "as_json", is_flag=True,
              help="Print the interactions JSON (removed ones included, with \"removed\": true).")
@click.pass_obj
@guarded
def interactions(ctx: Ctx, post_id: str, as_json: bool) -> None:
    """Replies (as a thread), quotes, likes and reposts of a post.

    Gathered on Bluesky by the backfeed."""
    data = ctx.app().interactions(post_id)
    if data is None:
        fail(f"unknown post id {post_id!r}")
    if as_json:
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    say(render(data))
