"""`skypost feed …`: add, list, remove and poll feeds (loaded lazily by skypost.cli)."""

from __future__ import annotations

import json
from typing import Any

import click

from skypost.cli import Ctx, guarded


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


@click.group()
def feed() -> None:
    """Syndicate the new entries of RSS and Atom feeds."""


@feed.command("add")
@click.argument("url")
@click.option("--account", "accounts", multiple=True,
              help="Send the feed's entries to this account only (repeatable; default: the auto accounts).")
@click.option("--interval", type=float, default=None,
              help="Seconds between polls (default 300; at least 60: "
                   "SKYPOST_FEED_MIN_INTERVAL).")
@click.option("--backfill", type=int, default=0, show_default=True,
              help="Also syndicate the newest N entries already in the feed.")
@click.option("--include-category", "include_categories", multiple=True,
              help="Only entries in this category (repeatable).")
@click.pass_obj
@guarded
def feed_add(ctx: Ctx, url: str, accounts: tuple[str, ...], interval: float | None, backfill: int,
             include_categories: tuple[str, ...]) -> None:
    """Add a feed; the entries it holds now are not posted.

    The feed is fetched once now; the entries it holds are not syndicated (but see
    --backfill). --interval has a floor of 60 s (SKYPOST_FEED_MIN_INTERVAL)."""
    from skypost.sources import feeds

    added = feeds.add_feed(ctx.app(), url, accounts=accounts,
                           interval=feeds.DEFAULT_INTERVAL if interval is None else interval,
                           backfill=backfill, include_categories=include_categories)
    info = added.feed
    title = f" ({info['title']})" if info["title"] else ""
    click.echo(f"added feed {info['id']}: {info['url']}{title}")
    click.echo(f"  {added.seen} entr(ies) already there, marked as seen; polled every {info['interval']:g} s, "
               f"next poll {info['next_poll_at']}")
    for outcome in added.backfilled:
        click.echo(f"  backfill: {outcome.post_id} ({outcome.post_status}) {outcome.title[:70]}")


@feed.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
@guarded
def feed_list(ctx: Ctx, as_json: bool) -> None:
    """List feeds with their poll state."""
    from skypost.sources import feeds

    rows = feeds.list_feeds(ctx.app())
    if as_json:
        _echo_json(rows)
        return
    if not rows:
        click.echo("no feeds yet: skypost feed add URL")
    for f in rows:
        state = "disabled" if not f["enabled"] else "error" if f["last_error"] else "ok"
        accounts = ", ".join("@" + a for a in f["accounts"]) or "auto accounts"
        click.echo(f"{f['id']}  {f['url']}  {state}  every {f['interval']:g} s  -> {accounts}")
        click.echo(f"   last poll {f['last_polled_at'] or 'never'}, next {f['next_poll_at'] or '-'}, "
                   f"{f['entries_submitted']} entr(ies) submitted")
        if f["last_error"]:
            click.echo(f"   error ({f['error_count']} in a row): {f['last_error']}")


@feed.command("remove")
@click.argument("url")
@click.pass_obj
@guarded
def feed_remove(ctx: Ctx, url: str) -> None:
    """Stop polling a feed and forget its entries.

    Posts already submitted stay."""
    from skypost.sources import feeds

    info = feeds.remove_feed(ctx.app(), url)
    click.echo(f"removed feed {info['id']}: {info['url']}")


@feed.command("poll")
@click.argument("url", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
@guarded
def feed_poll(ctx: Ctx, url: str | None, as_json: bool) -> None:
    """Poll feeds now, once, in this process.

    One feed (URL) or every enabled feed; new entries are queued."""
    from skypost.sources import feeds

    results = feeds.poll_feeds(ctx.app(), url)
    if as_json:
        _echo_json([r.to_json() for r in results])
        return
    if not results:
        click.echo("no feeds to poll")
    for r in results:
        if r.outcome == "error":
            click.echo(f"{r.url}: error: {r.error}" + ("" if r.enabled else " (feed disabled)"))
            continue
        if r.outcome == "disabled":
            click.echo(f"{r.url}: disabled ({r.error or 'no further polls'})")
            continue
        if r.outcome == "not_modified":
            click.echo(f"{r.url}: not modified")
            continue
        click.echo(f"{r.url}: {r.entries} entr(ies), {len(r.new)} new, {len(r.submitted)} submitted")
        for e in r.new:
            if e.submitted:
                click.echo(f"  submitted {e.post_id} ({e.post_status}) {e.title[:70]}")
            else:
                click.echo(f"  skipped {e.title[:70]}: {e.reason}")
