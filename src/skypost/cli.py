"""The command line. Exit codes: 0 done; 2 bad input or refused (message on
stderr, nothing written); 1 a bug."""

from __future__ import annotations

import json
import os
import re
import signal
import sys
from typing import Any, Callable, NoReturn, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


# terminal control characters (C0 but tab and newline, DEL, C1): a post's title must not
# move the cursor, ring the bell or retitle the operator's terminal
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_BREAKS = re.compile(r"[\t\n\r]+")

# only these commands may create a database: init, and serve (which documents it)
CREATES_DATABASE = frozenset({"init", "serve"})
# these refuse to start with a key that cannot read the stored secrets
NEEDS_KEY = frozenset({"worker", "serve", "account"})
# composes a record from its options and stores nothing
NO_DATABASE = frozenset({"preview"})


def clean(value: object) -> str:
    """A value shown inside one line of human output: no control characters, no line breaks."""
    return _CONTROLS.sub("", _BREAKS.sub(" ", str(value)))


def say(text: str, *, err: bool = False) -> None:
    """Human output (never --json): control characters removed, newlines kept."""
    click.echo(_CONTROLS.sub("", text), err=err)


def fail(message: str, code: int = 2) -> NoReturn:
    from skypost.advice import with_private_hint

    say(f"error: {clean(with_private_hint(message))}", err=True)
    sys.exit(code)


def _print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


class Ctx:
    def __init__(self, database_url: str | None, command: str | None = None):
        self.database_url = database_url
        self.command = command  # the subcommand being run: what it may create and needs
        self._app: Any = None

    def app(self) -> Any:
        """The Skypost of the database, which must exist unless this command may create it."""
        if self._app is None:
            from skypost.app import Skypost
            from skypost.config import load_settings

            settings = load_settings(database_url=self.database_url)
            uses_database = self.command not in NO_DATABASE
            creates = self.command in CREATES_DATABASE
            if uses_database and not creates:
                _require_database_file(settings.database_url)
            app = Skypost(settings, auto_init=False)
            try:
                if creates:
                    app.ensure_schema()
                elif uses_database:
                    _open_existing(app)
                if self.command in NEEDS_KEY:
                    app.cipher()  # a lost or wrong key stops us here, before any work
            except BaseException:
                app.close()
                raise
            self._app = app
        return self._app


def _require_database_file(url: str) -> None:
    from skypost.config import sqlite_path

    path = sqlite_path(url)
    if path is None:
        return
    if path.is_dir():
        fail(f"{path.resolve()} is a directory, not a database file (see --database-url)")
    if not path.exists():
        fail(f"no database at {path.resolve()}; run skypost init")


def _open_existing(app: Any) -> None:
    """Refuse an uninitialised database; upgrade an older schema."""
    from skypost.store.db import SCHEMA_HEAD, redact_url

    revision = app.db.schema_revision()
    if revision is None:
        fail(f"no skypost database at {redact_url(app.settings.database_url)}; run skypost init")
    if revision != SCHEMA_HEAD:
        app.db.migrate()


def guarded(fn: F) -> F:
    """Bad input → exit 2 with the field and why; nothing else is caught here."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from skypost.config import ConfigError
        from skypost.models import AccountError, ValidationError
        from skypost.store.db import DatabaseError

        try:
            return fn(*args, **kwargs)
        except ValidationError as exc:
            from skypost.advice import with_private_hint

            for field, why in exc.errors.items():
                say(f"error: {clean(field)}: {clean(with_private_hint(why))}", err=True)
            sys.exit(2)
        except (AccountError, ConfigError, DatabaseError) as exc:
            fail(str(exc))
        except Exception as exc:
            # a key problem is the user's to fix (exit 2); anything else is a bug (exit 1)
            if type(exc).__name__ == "SecretKeyError":
                fail(str(exc))
            raise

    return wrapper  # type: ignore[return-value]


class LazyGroup(click.Group):
    """Commands of other modules are imported only when used: `submit` stays fast."""

    lazy = {
        "serve": "skypost.web.commands:serve",
        "token": "skypost.web.commands:token",
        "hook": "skypost.web.commands:hook",
        "feed": "skypost.sources.commands:feed",
        "interactions": "skypost.conversation.commands:interactions",
        "backfeed": "skypost.conversation.backfeed_command:backfeed",
        "notify": "skypost.conversation.notify_commands:notify",
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.lazy])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy and name not in self.commands:
            import importlib

            # a failing import is a bug to show as it is, not an unknown command
            module, _, attr = self.lazy[name].partition(":")
            command: click.Command = getattr(importlib.import_module(module), attr)
            return command
        return super().get_command(ctx, name)


# wide enough that no command's summary is cut with "..." in `--help`
CONTEXT = {"max_content_width": 100, "help_option_names": ["-h", "--help"]}


@click.group(cls=LazyGroup, context_settings=CONTEXT)
@click.option("--database-url", envvar="SKYPOST_DATABASE_URL", default=None, metavar="URL",
              help="Database URL [env SKYPOST_DATABASE_URL; default sqlite:///skypost.db].")
@click.version_option(package_name="skypost")
@click.pass_context
def main(ctx: click.Context, database_url: str | None) -> None:
    """skypost: syndicate your site's posts to Bluesky, in the background, exactly once."""
    ctx.obj = Ctx(database_url, ctx.invoked_subcommand)


pass_ctx = click.make_pass_decorator(Ctx)


@main.command()
@pass_ctx
@guarded
def init(ctx: Ctx) -> None:
    """Create or upgrade the database and the secret key."""
    from skypost.app import Skypost
    from skypost.config import load_settings

    from skypost.store.db import redact_url

    with Skypost(load_settings(database_url=ctx.database_url), auto_init=False) as app:
        result = app.init()
    say(f"database ready: {redact_url(result.database)}")
    if result.key_file:
        say(f"secret key: {result.key_file}" + (" (created, mode 0600)" if result.key_created else ""))
    else:
        say("secret key: from SKYPOST_SECRET_KEY")


# --- accounts -------------------------------------------------------------------

@main.group()
def account() -> None:
    """Manage Bluesky accounts."""


def _read_password(password_stdin: bool) -> str:
    """From standard input, or a hidden prompt on a terminal; warns about a main password."""
    from skypost.advice import APP_PASSWORD_WARNING, looks_like_app_password

    if password_stdin:
        value = sys.stdin.readline().rstrip("\r\n")
    elif sys.stdin.isatty():
        value = click.prompt("App password (not shown)", hide_input=True, err=True)
    else:
        fail("password: pass the app password on standard input with --password-stdin")
    if not value.strip():
        fail("password: the app password is empty")
    if not looks_like_app_password(value):
        say(f"warning: {APP_PASSWORD_WARNING}", err=True)
    return value


@account.command("add")
@click.argument("handle")
@click.option("--password-stdin", is_flag=True,
              help="Read the app password from standard input (without it: a hidden prompt).")
@click.option("--service", default="https://bsky.social", show_default=True, metavar="URL",
              help="The account's PDS URL.")
@click.option("--manual", is_flag=True, help="Do not syndicate automatically; only when a post names it.")
@click.option("--include-category", multiple=True, help="Only posts in this category (repeatable).")
@click.option("--exclude-category", multiple=True, help="Never posts in this category (repeatable).")
@click.option("--replies", "replies", multiple=True, metavar="WHO",
              help="Who may reply: everyone, nobody, following, mentioned (the last two repeatable).")
@click.option("--no-quotes", is_flag=True, help="Its posts cannot be quoted (a postgate).")
@pass_ctx
@guarded
def account_add(ctx: Ctx, handle: str, password_stdin: bool, service: str, manual: bool,
                include_category: tuple[str, ...], exclude_category: tuple[str, ...],
                replies: tuple[str, ...], no_quotes: bool) -> None:
    """Add an account; logs in once to check the app password."""
    from skypost.models import normalize_handle, reply_rules

    handle = normalize_handle(handle)
    rules = reply_rules(replies) if replies else None  # refused before the password is read
    app = ctx.app()  # a missing database or key is refused before the password is asked for
    password = _read_password(password_stdin)
    data = app.add_account(handle, password, service=service, auto_syndicate=not manual,
                           include_categories=include_category, exclude_categories=exclude_category,
                           replies=rules, quotes=False if no_quotes else None)
    say(f"added @{data['handle']} ({clean(data['did'])}) on {clean(data['service'])}")


@account.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (passwords are never included).")
@pass_ctx
@guarded
def account_list(ctx: Ctx, as_json: bool) -> None:
    """List accounts."""
    rows = ctx.app().accounts()
    if as_json:
        _print_json(rows)
        return
    if not rows:
        say("no accounts yet: skypost account add HANDLE --password-stdin")
    for a in rows:
        rules = []
        if a["include_categories"]:
            rules.append("include " + ", ".join(a["include_categories"]))
        if a["exclude_categories"]:
            rules.append("exclude " + ", ".join(a["exclude_categories"]))
        say(clean(f"@{a['handle']}  {a['did']}  {a['service']}  "
                  f"{'auto' if a['auto_syndicate'] else 'manual'}  {a['state']}"
                  + (f"  [{'; '.join(rules)}]" if rules else "")))


@account.command("update")
@click.argument("handle")
@click.option("--password-stdin", is_flag=True, help="Read a new app password from standard input.")
@click.option("--service", default=None, metavar="URL",
              help="A new PDS URL (a new login: needs --password-stdin too).")
@click.option("--manual/--auto", "manual", default=None, help="Syndicate only when named / automatically.")
@click.option("--include-category", multiple=True, help="Only posts in this category (repeatable).")
@click.option("--exclude-category", multiple=True,
              help="Never posts in this category (repeatable).")
@click.option("--clear-categories", is_flag=True, help="Remove all category rules.")
@click.option("--replies", "replies", multiple=True, metavar="WHO",
              help="Who may reply: everyone, nobody, following, mentioned (the last two repeatable).")
@click.option("--quotes/--no-quotes", "quotes", default=None,
              help="Whether its posts may be quoted (--no-quotes: a postgate).")
@pass_ctx
@guarded
def account_update(ctx: Ctx, handle: str, password_stdin: bool, service: str | None, manual: bool | None,
                   include_category: tuple[str, ...], exclude_category: tuple[str, ...],
                   clear_categories: bool, replies: tuple[str, ...], quotes: bool | None) -> None:
    """Change an account.

    A new app password re-queues the deliveries that waited for it."""
    app = ctx.app()  # a missing database or key is refused before the password is read
    changes: dict[str, Any] = {}
    if password_stdin:
        changes["password"] = _read_password(True)
    if service:
        changes["service"] = service
    if manual is not None:
        changes["auto_syndicate"] = not manual
    if clear_categories:
        changes["include_categories"] = []
        changes["exclude_categories"] = []
    if include_category:
        changes["include_categories"] = list(include_category)
    if exclude_category:
        changes["exclude_categories"] = list(exclude_category)
    if replies:
        from skypost.models import reply_rules

        changes["replies"] = reply_rules(replies)  # refused before the password is checked
    if quotes is not None:
        changes["quotes"] = quotes
    if not changes:
        fail("nothing to change (see skypost account update --help)")
    data = app.update_account(handle, **changes)
    say(f"updated @{data['handle']} ({data['state']})"
        + (f"; {data['requeued']} delivery(ies) queued again" if data["requeued"] else ""))


@account.command("remove")
@click.argument("handle")
@pass_ctx
@guarded
def account_remove(ctx: Ctx, handle: str) -> None:
    """Remove an account (its unfinished deliveries fail)."""
    failed = ctx.app().remove_account(handle)
    say(f"removed @{clean(handle.lstrip('@').lower())}"
        + (f"; {failed} unfinished delivery(ies) failed" if failed else ""))


# --- posts ------------------------------------------------------------------------

def post_options(fn: F) -> F:
    options = [
        click.option("--id", "post_id", help="The site's own, stable id of the post."),
        click.option("--title", help="The post's title (the first line of the record)."),
        click.option("--url", help="The post's public URL (the link card)."),
        click.option("--excerpt", help="A summary; as much as fits follows the title."),
        click.option("--content-html",
                     help="The post's HTML; its text is used when there is no excerpt."),
        click.option("--image-url", help="The link card's picture (default: the page's og:image)."),
        click.option("--text", help="Custom text that replaces the composed one."),
        click.option("--category", multiple=True,
                     help="A category, for accounts' rules (repeatable)."),
        click.option("--tag", multiple=True, help="A tag of the record (repeatable)."),
        click.option("--account", multiple=True, help="Send to this account only (repeatable)."),
        click.option("--lang", multiple=True, help="A language code such as en (repeatable)."),
        click.option("--published-at", metavar="ISO8601",
                     help="When the site published it (ISO 8601 date-time)."),
        click.option("--no-syndicate", is_flag=True, help="Record the post but do not syndicate it."),
        click.option("--replies", multiple=True, metavar="WHO",
                     help="Who may reply: everyone, nobody, following, mentioned (the last two "
                          "repeatable; default: the account's setting)."),
        click.option("--no-quotes", is_flag=True, help="The post cannot be quoted (a postgate)."),
        click.option("--json-file", type=click.File("r"), help="A post document (JSON); - for stdin."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _document(kwargs: dict[str, Any]) -> dict[str, Any]:
    json_file = kwargs.pop("json_file", None)
    if json_file is not None:
        try:
            doc = json.load(json_file)
        except json.JSONDecodeError as exc:
            fail(f"document: not valid JSON ({exc})")
        flags = {k: v for k, v in kwargs.items() if v not in (None, (), False)}
        if flags:
            fail("give the post either as flags or as --json-file, not both")
        return doc
    doc: dict[str, Any] = {}
    mapping = {"post_id": "id", "title": "title", "url": "url", "excerpt": "excerpt",
               "content_html": "content_html", "image_url": "image_url", "text": "text",
               "published_at": "published_at"}
    for flag, field in mapping.items():
        if kwargs.get(flag) is not None:
            doc[field] = kwargs[flag]
    for flag, field in (("category", "categories"), ("tag", "tags"), ("account", "accounts"), ("lang", "langs")):
        if kwargs.get(flag):
            doc[field] = list(kwargs[flag])
    if kwargs.get("no_syndicate"):
        doc["dont_syndicate"] = True
    if kwargs.get("replies"):
        doc["replies"] = list(kwargs["replies"])
    if kwargs.get("no_quotes"):
        doc["quotes"] = False
    if "id" not in doc:
        fail("id: is required (--id)")
    return doc


def _print_status(data: dict[str, Any]) -> None:
    say(clean(f"post {data['id']}: {data['status']}" + (f" ({data['reason']})" if data.get("reason") else "")))
    for d in data["deliveries"]:
        line = f"  @{d['account']}: {d['status']}, {d['attempts']} attempt(s)"
        if d.get("url"):
            line += f", {d['url']}"
        if d.get("next_attempt_at") and d["status"] not in ("completed", "failed"):
            line += f", next attempt {d['next_attempt_at']}"
        if d.get("error") and d["status"] != "completed":
            line += f" — {d['error']}"
        say(clean(line))


@main.command()
@post_options
@click.option("--backfill", is_flag=True,
              help="Send it even if --published-at is before skypost was activated.")
@click.option("--sync", is_flag=True, help="Publish now, in this process (one pass).")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@pass_ctx
@guarded
def submit(ctx: Ctx, backfill: bool, sync: bool, as_json: bool, **kwargs: Any) -> None:
    """Queue a post for syndication; returns at once."""
    from skypost.models import parse_post_document

    post = parse_post_document(_document(kwargs))
    app = ctx.app()
    known = _stored_document(app, post.id)
    state = app.submit_state(post, sync=sync or None, source="cli", check_cutoff=not backfill)
    data = state.to_json()
    if known is not None:
        note = "; content not updated (a post is syndicated once; edits are not sent)"
        changed = known != post.to_document()
        say(f"post {clean(post.id)}: already submitted" + (note if changed else ""), err=True)
    if as_json:
        _print_json(data)
    else:
        _print_status(data)


def _stored_document(app: Any, post_id: str) -> dict[str, Any] | None:
    """The document stored under this id, if the id is known."""
    from skypost.store import queries as q

    with app.db.connect() as conn:
        row = q.post_by_id(conn, post_id)
    return dict(row["document"]) if row is not None else None


@main.command()
@post_options
@pass_ctx
@guarded
def preview(ctx: Ctx, **kwargs: Any) -> None:
    """Print the exact record that would be sent; nothing is sent."""
    from datetime import datetime, timezone

    from skypost.bluesky.compose import compose_post_record
    from skypost.models import parse_post_document

    doc = _document(kwargs)
    post = parse_post_document(doc)
    app = ctx.app()
    composed = compose_post_record(post, now=datetime.now(timezone.utc), fetcher=app.fetcher(),
                                   upload_blob=None, resolve_handle=None)
    record = composed.record
    if composed.thumb is not None:
        data, mime = composed.thumb
        external = record.get("embed", {}).get("external")
        if external is not None:
            external["thumb"] = {"$type": "blob", "ref": {"$link": "(uploaded when sent)"}, "mimeType": mime,
                                 "size": len(data)}
    if post.replies is not None or post.quotes is not None:
        # with a gate: the writes of the one applyWrites call, the post first
        from skypost.gates import delivery_gates, post_writes

        threadgate, postgate = delivery_gates(post, {})
        _print_json({"writes": post_writes("(the account's DID)", "(chosen at submit)", record,
                                           threadgate=threadgate, postgate=postgate)})
    else:
        _print_json(record)
    from skypost.advice import with_private_hint

    for warning in composed.warnings:
        say(f"warning: {clean(with_private_hint(warning))}", err=True)


@main.command()
@click.argument("post_id", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
@guarded
def status(ctx: Ctx, post_id: str | None, as_json: bool) -> None:
    """The status of one post, or an overview."""
    app = ctx.app()
    if post_id is not None:
        data = app.status(post_id)
        if data is None:
            fail(f"unknown post id {post_id!r}")
        if as_json:
            _print_json(data)
            return
        _print_status(data)
        for reply in app.replies(post_id) or []:
            say(clean(f"  reply {reply['id']}: {reply['status']}"
                      + (f" ({reply['reason']})" if reply.get("reason") else "")))
            for d in reply["deliveries"]:
                say(clean(f"    @{d['account']}: {d['status']}" + (f", {d['url']}" if d.get("url") else "")
                          + (f" — {d['error']}" if d.get("error") and d["status"] != "completed" else "")))
        return
    health = app.health()
    posts = app.list_posts(limit=20)
    due = health["jobs"].get("due", 0)
    if due and not health["worker_seen_recently"]:
        say(f"warning: {due} job(s) are due but no worker has been seen recently "
            f"(last heartbeat: {health['last_worker_heartbeat'] or 'never'}); run `skypost worker`", err=True)
    if as_json:
        _print_json({"health": health, "posts": posts})
        return
    say(_worker_sentence(health, now=app.clock()))
    for a in health["accounts"]:
        say(f"@{a['handle']}: {a['state']}, breaker {a['breaker']}")
    for f in health["feeds"]:
        state = "disabled" if not f["enabled"] else f"next poll {f['next_poll_at']}"
        say(clean(f"feed {f['url']}: {state}" + (f", last error: {f['last_error']}" if f["last_error"] else "")))
    for p in posts:
        say(clean(f"{p['id']}: {p['status']}  {clean(p['title'])[:60]}"))


def _ago(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} days"


def _worker_sentence(health: dict[str, Any], *, now: float) -> str:
    """The overview's first line: is a worker running, and is syndication paused."""
    from datetime import datetime

    beat = health["last_worker_heartbeat"]
    if beat is None:
        text = "worker: never seen; run `skypost worker` (or `skypost serve`)"
    else:
        age = _ago(now - datetime.fromisoformat(beat.replace("Z", "+00:00")).timestamp())
        text = (f"worker: running, last heartbeat {age} ago" if health["worker_seen_recently"]
                else f"worker: not running (last heartbeat {age} ago); run `skypost worker`")
    if health["paused"]:
        text += "; syndication paused until `skypost resume`"
    return text


@main.command()
@click.argument("post_id")
@click.option("--reply-id", required=True, metavar="RID",
              help="The site's id of the comment: the same id is never published twice.")
@click.option("--text", required=True, help="The reply's text (cut to 300 graphemes with \"…\").")
@click.option("--parent", default=None, metavar="AT-URI",
              help="Answer this record of the post's thread (default: the post itself).")
@click.option("--account", default=None, metavar="HANDLE",
              help="Only as this account (default: every account the post went to).")
@click.option("--json", "as_json", is_flag=True, help="Print the reply's status as JSON.")
@pass_ctx
@guarded
def reply(ctx: Ctx, post_id: str, reply_id: str, text: str, parent: str | None, account: str | None,
          as_json: bool) -> None:
    """Answer under a syndicated post with a comment of the site."""
    from skypost.replies import UnknownPost

    app = ctx.app()
    try:
        data, created = app.reply_state(post_id, reply_id, text, parent=parent, account=account)
    except UnknownPost:
        fail(f"unknown post id {post_id!r}")
    if not created:
        say(f"reply {clean(reply_id)} to post {clean(post_id)}: already submitted", err=True)
    if as_json:
        _print_json(data)
        return
    say(clean(f"reply {data['id']} to post {data['reply_to']}: {data['status']}"
              + (f" ({data['reason']})" if data.get("reason") else "")))
    for d in data["deliveries"]:
        say(clean(f"  @{d['account']}: {d['status']}" + (f", {d['url']}" if d.get("url") else "")))


@main.command()
@click.argument("post_id")
@click.option("--account", default=None, metavar="HANDLE", help="Only this account's delivery.")
@click.option("--repost", is_flag=True,
              help="Publish a deleted post again, as new records (likes and replies are not carried over).")
@pass_ctx
@guarded
def retry(ctx: Ctx, post_id: str, account: str | None, repost: bool) -> None:
    """Queue a post's failed deliveries again."""
    from skypost.advice import nothing_retried

    app = ctx.app()
    before = app.status(post_id)
    if before is None:
        fail(f"unknown post id {post_id!r}")
    data = app.retry(post_id, account, repost=repost)
    if data is None:
        fail(f"unknown post id {post_id!r}")
    _print_status(data)
    why = None if repost else nothing_retried(before, data)
    if why:
        say(clean(why))


@main.command()
@click.argument("post_id")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@pass_ctx
@guarded
def delete(ctx: Ctx, post_id: str, as_json: bool) -> None:
    """Remove a post from Bluesky on every account.

    A worker removes the records; deliveries never sent are cancelled."""
    data = ctx.app().delete(post_id)
    if data is None:
        fail(f"unknown post id {post_id!r}")
    _print_json(data) if as_json else _print_status(data)


@main.command()
@pass_ctx
@guarded
def pause(ctx: Ctx) -> None:
    """Hold all syndication (jobs stay queued)."""
    ctx.app().pause()
    say("paused: nothing is sent until `skypost resume`")


@main.command()
@pass_ctx
@guarded
def resume(ctx: Ctx) -> None:
    """Resume syndication."""
    ctx.app().resume()
    say("resumed")


@main.command()
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10000),
              help="How many events to show.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
@guarded
def log(ctx: Ctx, limit: int, as_json: bool) -> None:
    """The activity log, newest first."""
    rows = ctx.app().events(limit=limit)
    if as_json:
        _print_json(rows)
        return
    for e in rows:
        who = f" @{e['account']}" if e["account"] else ""
        post = f" [{e['post_id']}]" if e["post_id"] else ""
        say(clean(f"{e['ts']} {e['level']:<7} {e['kind']}{post}{who}: {e['message']}"))


@main.command()
@click.option("--burst", is_flag=True, help="Run until nothing is due, then exit.")
@click.option("--concurrency", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Jobs run at once (threads).")
@pass_ctx
@guarded
def worker(ctx: Ctx, burst: bool, concurrency: int) -> None:
    """Publish queued posts (until SIGTERM, or --burst)."""
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = ctx.app()
    w = app.make_worker(burst=burst, concurrency=concurrency)
    interrupted = False

    def stop(signum: int, _frame: Any) -> None:
        nonlocal interrupted
        if signum == signal.SIGINT and interrupted:
            exit_now()
        interrupted = interrupted or signum == signal.SIGINT
        say(f"received signal {signum}: finishing the delivery in hand, then exiting"
            + (" (Ctrl-C again to exit at once)" if signum == signal.SIGINT else ""), err=True)
        w.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    done = w.run()
    say(f"worker stopped after {done} job(s)", err=True)


def exit_now() -> NoReturn:
    """A second Ctrl-C: leave at once. A job in hand keeps its lease until it runs out, then
    another worker takes it; its delivery's record key makes a second attempt harmless."""
    say("second Ctrl-C: exiting now", err=True)
    sys.stderr.flush()
    os._exit(130)


if __name__ == "__main__":
    # `python -m skypost.cli`: run the importable module's group, so that lazily loaded
    # commands and this module share one Ctx class
    from skypost.cli import main as _main

    _main()
