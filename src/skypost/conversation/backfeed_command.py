"""`skypost backfeed`: poll Bluesky for reactions now, once (loaded lazily by skypost.cli)."""

from __future__ import annotations

import json

import click

from skypost.cli import Ctx, clean, guarded


@click.command()
@click.option("--account", default=None, metavar="HANDLE", help="Only this account (default: every account).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
@guarded
def backfeed(ctx: Ctx, account: str | None, as_json: bool) -> None:
    """Poll Bluesky now for replies, quotes, likes, reposts.

    Workers also do this on their own, every SKYPOST_BACKFEED_INTERVAL seconds per account."""
    app = ctx.app()
    summary = app.backfeed(account)
    if as_json:
        click.echo(json.dumps(summary, indent=2, ensure_ascii=False))
        return
    if not summary["accounts"]:
        click.echo("no accounts yet: skypost account add HANDLE --password-stdin")
    for result in summary["accounts"]:
        handle = clean(result["account"])
        if result["outcome"] != "polled":
            click.echo(f"@{handle}: {result['outcome']}: {clean(result['reason'])}")
            continue
        new = ", ".join(f"{n} {kind}(s)" for kind, n in result["new"].items() if n) or "nothing new"
        removed = sum(result["removed"].values())
        click.echo(f"@{handle}: {new}; {removed} removed ({result['requests']} requests)")
