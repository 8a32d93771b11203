"""`skypost notify …`: signed webhooks out (loaded lazily by skypost.cli)."""

from __future__ import annotations

import json

import click

from skypost.cli import Ctx, guarded
from skypost.conversation.outbox import EVENT_TYPES


@click.group()
def notify() -> None:
    """Signed webhooks telling the site about reactions."""


@notify.command("add")
@click.argument("url")
@click.option("--events", default=None, metavar="E,...",
              help=f"Event types to send, comma-separated (default: all: {','.join(EVENT_TYPES)}).")
@click.pass_obj
@guarded
def notify_add(ctx: Ctx, url: str, events: str | None) -> None:
    """Send events to URL; prints the signing secret, once.

    Each event is a JSON POST signed with X-Skypost-Signature (HMAC-SHA256 of
    timestamp + "." + body) and carries a stable X-Skypost-Event-Id. The secret is printed
    alone on standard output and cannot be shown again."""
    from skypost.conversation import notify as n

    click.echo(n.add_target(ctx.app(), url, events))


@notify.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
@guarded
def notify_list(ctx: Ctx, as_json: bool) -> None:
    """List webhook targets (their secrets are never shown)."""
    from skypost.conversation import notify as n

    rows = n.list_targets(ctx.app())
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no notify targets yet: skypost notify add URL")
    for r in rows:
        click.echo(f"{r['url']}  {','.join(r['events'])}  sent {r['sent']}, pending {r['pending']}, "
                   f"failed {r['failed']}")


@notify.command("remove")
@click.argument("url")
@click.pass_obj
@guarded
def notify_remove(ctx: Ctx, url: str) -> None:
    """Stop sending events to URL (its unsent events are dropped)."""
    from skypost.conversation import notify as n

    n.remove_target(ctx.app(), url)
    click.echo(f"removed notify target {url.strip()}")
