"""The `serve`, `token` and `hook` commands (loaded on demand by the CLI's LazyGroup)."""

from __future__ import annotations

import json

import click

from skypost.cli import Ctx, fail, guarded

# click.pass_obj, not cli.pass_ctx: under `python -m skypost.cli` the CLI module runs as
# __main__, so its Ctx is another class than skypost.cli.Ctx and pass_ctx would not find it
pass_ctx = click.pass_obj


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind (loopback unless told otherwise).")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on.")
@click.option("--no-worker", is_flag=True, help="Serve only; run `skypost worker` elsewhere.")
@pass_ctx
@guarded
def serve(ctx: Ctx, host: str, port: int, no_worker: bool) -> None:
    """Run the HTTP API, the dashboard and a worker.

    With --no-worker, serve only (run `skypost worker` elsewhere). Ctrl-C stops gracefully;
    a second Ctrl-C exits at once."""
    import logging

    from skypost.web.serve import ServeError, is_loopback
    from skypost.web.serve import serve as run

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = ctx.app()
    if not is_loopback(host):
        click.echo(f"warning: serving on {host}, not loopback: put a TLS-terminating proxy in front", err=True)
        if not (app.settings.cookie_secure or app.settings.trusted_proxies):
            click.echo("warning: the dashboard cookie is not marked Secure: set SKYPOST_TRUSTED_PROXIES "
                       "to the proxy's address (or SKYPOST_COOKIE_SECURE=1)", err=True)
    try:
        run(app, host=host, port=port, worker=not no_worker)
    except ServeError as exc:
        fail(str(exc))


# --- tokens -------------------------------------------------------------------------------

@click.group()
def token() -> None:
    """API tokens (HTTP API, /metrics, dashboard login)."""


@token.command("create")
@click.argument("name")
@pass_ctx
@guarded
def token_create(ctx: Ctx, name: str) -> None:
    """Create a token; it is printed once.

    The token is printed alone on standard output and stored only as a hash."""
    from skypost.web import tokens

    app = ctx.app()
    click.echo(tokens.create_token(app.db, name, now=app.clock()))


@token.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
@guarded
def token_list(ctx: Ctx, as_json: bool) -> None:
    """List tokens (a token itself is never shown again)."""
    from skypost.web import tokens

    rows = tokens.list_tokens(ctx.app().db)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no tokens yet: skypost token create NAME")
    for t in rows:
        state = "active" if t["active"] else f"revoked {t['revoked_at']}"
        click.echo(f"{t['name']}  created {t['created_at']}  last used {t['last_used_at'] or 'never'}  {state}")


@token.command("revoke")
@click.argument("name")
@pass_ctx
@guarded
def token_revoke(ctx: Ctx, name: str) -> None:
    """Revoke a token.

    Requests with it, and dashboard sessions opened with it, get 401."""
    from skypost.web import tokens

    app = ctx.app()
    tokens.revoke_token(app.db, name, now=app.clock())
    click.echo(f"revoked token {name}")


# --- webhooks -------------------------------------------------------------------------------

@click.group()
def hook() -> None:
    """Webhooks at /hooks/NAME: generic, Ghost or WordPress."""


@hook.command("add")
@click.argument("name")
@click.option("--kind", type=click.Choice(["generic", "ghost", "wordpress"]), default="generic",
              show_default=True, help="The payload: a post document, Ghost's or WordPress's.")
@click.option("--account", multiple=True, help="Send this hook's posts to this account only (repeatable).")
@click.option("--on-unpublish", type=click.Choice(["keep", "delete"]), default="keep", show_default=True,
              help="A post taken back to draft on the site (Ghost post.unpublished): keep or delete "
                   "its Bluesky post.")
@pass_ctx
@guarded
def hook_add(ctx: Ctx, name: str, kind: str, account: tuple[str, ...], on_unpublish: str) -> None:
    """Add a hook; its signing secret is printed once.

    The secret is printed alone on standard output."""
    from skypost.web import hooks

    app = ctx.app()
    secret = hooks.add_hook(app.db, app.cipher(), name=name, kind=kind, accounts=account, now=app.clock(),
                            on_unpublish=on_unpublish)
    click.echo(secret)
    how = ("in Ghost: Settings → Integrations → a custom integration → webhook \"Post published\", with this secret"
           if kind == "ghost" else
           "sign each request: X-Skypost-Signature: sha256=<hex HMAC-SHA256 of the raw body with this secret>")
    click.echo(f"hook {name!r} ({kind}) added: POST https://YOUR-HOST/hooks/{name}; {how}", err=True)


@hook.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
@guarded
def hook_list(ctx: Ctx, as_json: bool) -> None:
    """List hooks (never their secrets)."""
    from skypost.web import hooks

    rows = hooks.list_hooks(ctx.app().db)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no hooks yet: skypost hook add NAME --kind generic|ghost|wordpress")
    for h in rows:
        accounts = ", ".join("@" + a for a in h["accounts"]) or "default accounts"
        click.echo(f"{h['name']}  {h['kind']}  {h['path']}  {accounts}  on unpublish: {h['on_unpublish']}  "
                   f"created {h['created_at']}")


@hook.command("remove")
@click.argument("name")
@pass_ctx
@guarded
def hook_remove(ctx: Ctx, name: str) -> None:
    """Remove a hook (requests to it get 404)."""
    from skypost.web import hooks

    app = ctx.app()
    hooks.remove_hook(app.db, name, now=app.clock())
    click.echo(f"removed hook {name}")

