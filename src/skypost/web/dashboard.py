"""The dashboard: server-rendered pages (Jinja2), live fragments (htmx), forms with CSRF.

Every page works without JavaScript; htmx only refreshes a post's status and history
while work is pending and lets Retry update the page in place. Accounts are added and
app passwords re-entered through the same Skypost calls as the CLI (one login checks them).
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import quote

import jinja2
from markupsafe import Markup, escape
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.templating import Jinja2Templates

from skypost.accounts import DEFAULT_SERVICE
from skypost.advice import APP_PASSWORD_WARNING, looks_like_app_password, nothing_retried
from skypost.app import Skypost
from skypost.conversation.views import conversation, plural, profile_url, summary
from skypost.conversation import notify
from skypost.models import AccountError, PostStatus, ValidationError
from skypost.store import queries as q
from skypost.store import queries_gates as qg
from skypost.store import queries_web as qw
from skypost.web import charts, session, tokens
from skypost.web.api import accounts_with_health
from skypost.web.http import Offload
from skypost.web import lifecycle

TEMPLATES = Path(__file__).with_name("templates")
PAGE_SIZE = 25
STATUSES = [s.value for s in PostStatus]
# the statuses a post is stored with ("paused" is computed when shown, never stored)
FILTERS = [s for s in STATUSES if s != "paused"]
UNFINISHED = frozenset({"pending", "retrying", "rate_limited", "circuit_open", "paused", "deleting"})
# statuses with a Retry button; a skipped post is judged again against today's accounts
RETRYABLE = frozenset({"failed", "partial", "retrying", "skipped", "delete_failed"})
HEADLINES = {
    "pending": "Syndicating to Bluesky…",
    "retrying": "Retrying: the last attempt failed, another one is scheduled",
    "rate_limited": "Waiting for Bluesky's rate limit to reset…",
    "circuit_open": "Waiting: Bluesky failed repeatedly, the circuit breaker is cooling down",
    "paused": "Paused: nothing is sent until you resume",
    "completed": "Live on Bluesky",
    "partial": "Published to some accounts only",
    "failed": "Not published",
    "skipped": "Not syndicated",
    "deleting": "Removing from Bluesky…",
    "deleted": "Removed from Bluesky",
    "delete_failed": "The delete failed",
}
# a post that can still be removed from Bluesky (a second delete would change nothing)
UNDELETABLE = frozenset({"deleting", "deleted"})


def _when(value: Any) -> str:
    """An ISO time as '2026-05-01 10:00:03 UTC'."""
    if not value:
        return ""
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return str(value)
    return parsed.strftime("%Y-%m-%d %H:%M:%S UTC")


# a web address inside an activity message; trailing punctuation belongs to the sentence
_URL = re.compile(r"https?://[^\s<>\"']+")
_TRAILING = ".,;:!?)]"


def linkify(text: Any) -> Markup:
    """The text, escaped, with its http(s) addresses as links."""
    value = str(text)
    parts: list[Markup] = []
    last = 0
    for match in _URL.finditer(value):
        url = match.group(0).rstrip(_TRAILING)
        parts.append(escape(value[last:match.start()]))
        parts.append(Markup('<a href="{0}" rel="noopener">{0}</a>').format(url))
        last = match.start() + len(url)
    parts.append(escape(value[last:]))
    return Markup("").join(parts)


def avatar_url(value: Any) -> str:
    """An avatar's address if it is one the page may load (https, as Bluesky serves them), else ""."""
    text = str(value or "")
    return text if text.startswith("https://") and not any(ch.isspace() for ch in text) else ""


def sentence(text: str) -> str:
    """A message from the CLI's wording ("nothing to retry: …") as a sentence on a page."""
    return text[:1].upper() + text[1:]


def make_templates() -> Jinja2Templates:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    env.filters["when"] = _when
    env.filters["q"] = lambda value: quote(str(value), safe="")
    env.filters["linkify"] = linkify
    env.filters["avatar"] = avatar_url
    env.filters["profile"] = profile_url
    env.filters["summary"] = summary
    env.filters["plural"] = plural
    env.filters["bsky"] = lifecycle.bsky_url
    env.filters["gate_words"] = lambda a: lifecycle.gate_words(a.get("replies"), not a.get("quotes", True))
    env.filters["who"] = lifecycle.who_of
    env.globals.update(UNFINISHED=UNFINISHED, HEADLINES=HEADLINES, FILTERS=FILTERS,
                       RETRYABLE=RETRYABLE, UNDELETABLE=UNDELETABLE, DEFAULT_SERVICE=DEFAULT_SERVICE)
    return Jinja2Templates(env=env)


def safe_next(value: Any) -> str:
    """A local path to go back to (never another site)."""
    if isinstance(value, str) and value.startswith("/") and not value.startswith(("//", "/\\")):
        return value
    return "/"


def routes(skypost: Skypost, offload: Offload, templates: Jinja2Templates, *,
           session_lifetime: float) -> list[BaseRoute]:

    def render(request: Request, name: str, context: Mapping[str, Any], *, user: tokens.TokenInfo | None,
               paused: bool = False, status_code: int = 200) -> Response:
        full = {"title": "Dashboard", "user": user, "paused": paused, "csrf": session.csrf_token(request),
                "flashes": session.take_flashes(request), "path": request.url.path, **context}
        return templates.TemplateResponse(request, name, full, status_code=status_code)

    def fragment(request: Request, name: str, context: Mapping[str, Any]) -> Response:
        return templates.TemplateResponse(request, name, {"csrf": session.csrf_token(request), **context})

    def no_such_post(request: Request, user: tokens.TokenInfo | None) -> Response:
        return render(request, "error.html", {"title": "Not found", "message": "There is no post with this id."},
                      user=user, status_code=404)

    async def current_user(request: Request) -> tokens.TokenInfo | Response:
        user = await offload(session.logged_in, request, skypost)
        if user is not None:
            return user
        if request.headers.get("hx-request"):
            return Response(status_code=401, headers={"HX-Redirect": "/login"})
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)

    async def logged_in_form(request: Request) -> Mapping[str, Any] | Response:
        """The posted form of a logged-in user with a valid CSRF token, or the refusal."""
        user = await current_user(request)
        if isinstance(user, Response):
            return user
        return await checked_form(request)

    async def checked_form(request: Request) -> Mapping[str, Any] | Response:
        form = await request.form()
        if not session.csrf_ok(request, form):
            return render(request, "error.html", {"title": "Form expired",
                                                  "message": "The form has expired: reload the page and try again."},
                          user=None, status_code=403)
        return form

    # --- login ---------------------------------------------------------------------------

    async def login_page(request: Request) -> Response:
        return render(request, "login.html", {"next": safe_next(request.query_params.get("next")), "error": None,
                                              "title": "Sign in"},
                      user=None)

    async def login(request: Request) -> Response:
        form = await checked_form(request)
        if isinstance(form, Response):
            return form
        token = str(form.get("token", "")).strip()
        info = await offload(tokens.authenticate, skypost.db, token, now=skypost.clock()) if token else None
        if info is None:
            return render(request, "login.html", {"next": safe_next(form.get("next")), "title": "Sign in",
                                                  "error": "That token is not valid (or it was revoked)."},
                          user=None, status_code=401)
        session_id = await offload(session.open_session, skypost, info, lifetime=session_lifetime)
        session.log_in(request, session_id)
        return RedirectResponse(safe_next(form.get("next")), status_code=303)

    async def logout(request: Request) -> Response:
        form = await checked_form(request)
        if isinstance(form, Response):
            return form
        await offload(session.close_session, skypost, request)
        session.log_out(request)
        return RedirectResponse("/login", status_code=303)

    # --- posts ---------------------------------------------------------------------------------

    def home_data(status: str | None, before: int | None) -> dict[str, Any]:
        now = skypost.clock()
        posts = skypost.list_posts(status=status, limit=PAGE_SIZE, before=before)
        with skypost.db.connect() as conn:
            rows = qw.outcomes_per_hour(conn, since=now - charts.HOURS * 3600)
        counts = charts.hourly_counts(rows, now=now)
        health = skypost.health()
        return {"posts": posts, "chart": charts.svg(counts), "totals": counts.totals, "health": health,
                "paused": health["paused"]}

    async def home(request: Request) -> Response:
        user = await current_user(request)
        if isinstance(user, Response):
            return user
        status = request.query_params.get("status")
        status = status if status in STATUSES else None
        before_raw = request.query_params.get("before", "")
        before = int(before_raw) if before_raw.isascii() and before_raw.isdigit() and len(before_raw) < 18 else None
        data = await offload(home_data, status, before)
        posts = data["posts"]
        older = None
        if len(posts) == PAGE_SIZE:
            older = f"/?before={posts[-1]['seq']}" + (f"&status={status}" if status else "")
        return render(request, "posts.html", {**data, "status": status, "older": older, "title": "Posts"},
                      user=user, paused=data["paused"])

    def post_data(post_id: str) -> dict[str, Any] | None:
        status = skypost.status(post_id)
        if status is None:
            return None
        with skypost.db.connect() as conn:
            row = qw.post_row(conn, post_id)
        from skypost.app import iso_ts

        return {"status": status, "document": row["document"] if row else {},
                "source": row["source"] if row else "", "submitted_at": iso_ts(row["created_at"]) if row else None,
                "events": skypost.events(limit=50, post_id=post_id), "paused": skypost.paused,
                "talk": conversation(skypost.interactions(post_id) or {}), **life_data(post_id, status)}

    def life_data(post_id: str, status: Mapping[str, Any]) -> dict[str, Any]:
        """The replies from the site (with their text), each delivery's gate in words, and
        who a reply can go out as."""
        texts: dict[str, str] = {}
        gates: list[tuple[str, str]] = []
        with skypost.db.connect() as conn:
            row = q.post_by_id(conn, post_id)
            if row is not None:
                texts = {str(r["reply_id"]): str(r["document"].get("text", ""))
                         for r in qg.replies_of_post(conn, row["seq"])}
                gates = [(d.handle, lifecycle.gate_words(d.threadgate, d.postgate))
                         for d in q.deliveries_of_post(conn, row["seq"])]
        site_replies = [{**r, "text": texts.get(str(r["id"]), "")} for r in skypost.replies(post_id) or []]
        return {"site_replies": site_replies, "gates": gates,
                "reply_accounts": lifecycle.reply_accounts(status)}

    async def post_page(request: Request) -> Response:
        user = await current_user(request)
        if isinstance(user, Response):
            return user
        # "Reply" on a Bluesky reply of the thread: the form answers it (no JavaScript needed)
        parent = lifecycle.field(request.query_params, "parent")
        return await show_post(request, user, request.path_params["post_id"],
                               reply={"parent": parent} if parent else None)

    async def show_post(request: Request, user: tokens.TokenInfo | None, post_id: str, *,
                        reply: Mapping[str, Any] | None = None, reply_errors: Mapping[str, str] | None = None,
                        status_code: int = 200) -> Response:
        data = await offload(post_data, post_id)
        if data is None:
            return no_such_post(request, user)
        form = {"id": lifecycle.new_reply_id(), "text": "", "parent": None, "account": None, **(reply or {})}
        answered = next((r for _, r in data["talk"].thread if form["parent"] and r["uri"] == form["parent"]), None)
        return render(request, "post.html", {**data, "title": data["document"].get("title") or data["status"]["id"],
                                             "reply": form, "reply_errors": reply_errors or {},
                                             "answered": answered},
                      user=user, paused=data["paused"], status_code=status_code)

    async def send_reply(request: Request) -> Response:
        """The reply form: `Skypost.reply` with the id fixed when the form was rendered, so a
        second submit of the same form finds the first reply instead of posting again."""
        form = await logged_in_form(request)
        if isinstance(form, Response):
            return form
        post_id = request.path_params["post_id"]
        reply = {"id": str(form.get("reply_id", "")), "text": str(form.get("text", "")),
                 "parent": lifecycle.field(form, "parent"), "account": lifecycle.field(form, "account")}
        from skypost.replies import UnknownPost

        try:
            status, created = await offload(skypost.reply_state, post_id, reply["id"], reply["text"],
                                            parent=reply["parent"], account=reply["account"])
        except UnknownPost:
            return no_such_post(request, None)
        except ValidationError as exc:
            return await show_post(request, None, post_id, reply=reply, reply_errors=exc.errors,
                                   status_code=422)
        session.flash(request, "Reply queued: it is published on Bluesky in the background." if created
                      else f"This reply was sent already (it is {status['status'].replace('_', ' ')}): "
                           "it is not posted twice.", "ok" if created else "warning")
        return RedirectResponse(f"/posts/{quote(post_id, safe='')}#site-replies", status_code=303)

    def status_with_history(post_id: str) -> dict[str, Any] | None:
        status = skypost.status(post_id)
        if status is None:
            return None
        return {"status": status, "events": skypost.events(limit=50, post_id=post_id)}

    async def post_status(request: Request) -> Response:
        user = await current_user(request)
        if isinstance(user, Response):
            return user
        data = await offload(status_with_history, request.path_params["post_id"])
        if data is None:
            return Response("no such post", status_code=404)
        return fragment(request, "_status_live.html", data)

    async def retry(request: Request) -> Response:
        user = await current_user(request)
        if isinstance(user, Response):
            return user
        form = await checked_form(request)
        if isinstance(form, Response):
            return form
        post_id = request.path_params["post_id"]
        before = await offload(skypost.status, post_id)
        note = None
        try:
            status = await offload(skypost.retry, post_id)
        except ValidationError as exc:
            note = str(exc)
            status = await offload(skypost.status, post_id)
        if before is None or status is None:
            return no_such_post(request, user)
        note = note or nothing_retried(before, status)
        if request.headers.get("hx-request"):
            data = await offload(status_with_history, post_id) or {"status": status, "events": []}
            return fragment(request, "_status_live.html", {**data, "note": note})
        if note:
            session.flash(request, sentence(note), "warning")
        else:
            session.flash(request, "Retry queued.")
        return RedirectResponse(f"/posts/{quote(post_id, safe='')}", status_code=303)

    async def confirm_delete(request: Request) -> Response:
        """The confirmation step of Delete (a page, so that it needs no JavaScript)."""
        user = await current_user(request)
        if isinstance(user, Response):
            return user
        data = await offload(post_data, request.path_params["post_id"])
        if data is None:
            return no_such_post(request, user)
        return render(request, "delete.html", {**data, "title": "Delete from Bluesky?"}, user=user,
                      paused=data["paused"])

    async def delete(request: Request) -> Response:
        form = await logged_in_form(request)
        if isinstance(form, Response):
            return form
        post_id = request.path_params["post_id"]
        status = await offload(skypost.delete, post_id)
        if status is None:
            return no_such_post(request, None)
        session.flash(request, "Removed from Bluesky." if status["status"] == "deleted"
                      else "Delete queued: the post is being removed from Bluesky.")
        return RedirectResponse(f"/posts/{quote(post_id, safe='')}", status_code=303)

    def set_paused(paused: bool) -> None:
        skypost.pause() if paused else skypost.resume()

    async def pause_or_resume(request: Request) -> Response:
        form = await logged_in_form(request)
        if isinstance(form, Response):
            return form
        paused = request.url.path == "/pause"
        await offload(set_paused, paused)
        session.flash(request, "Syndication paused: nothing is sent until you resume." if paused
                      else "Syndication resumed.")
        return RedirectResponse(safe_next(form.get("next")), status_code=303)

    # --- accounts and activity -------------------------------------------------------------------

    async def accounts_page(request: Request, user: tokens.TokenInfo, *,
                            added: Mapping[str, Any] | None = None, error: str | None = None,
                            gate_errors: Mapping[str, str] | None = None, status_code: int = 200) -> Response:
        rows = await offload(accounts_with_health, skypost)
        paused = await offload(lambda: skypost.paused)
        # the add form keeps what was typed, except the password, which is never sent back
        form = {"handle": "", "service": DEFAULT_SERVICE, "manual": False, "who": "everyone", "rules": [],
                "quotes": True, **(added or {})}
        return render(request, "accounts.html", {"accounts": rows, "title": "Accounts", "add": form,
                                                 "add_error": error, "gate_errors": gate_errors or {}},
                      user=user, paused=paused, status_code=status_code)

    async def accounts(request: Request) -> Response:
        user = await current_user(request)
        if isinstance(user, Response):
            return user
        return await accounts_page(request, user)

    def warn_unless_app_password(request: Request, password: str) -> None:
        if not looks_like_app_password(password):
            session.flash(request, sentence(APP_PASSWORD_WARNING) + ".", "warning")

    async def add_account(request: Request) -> Response:
        """The same path as `skypost account add`: one login checks the app password."""
        user = await current_user(request)
        if isinstance(user, Response):
            return user
        form = await checked_form(request)
        if isinstance(form, Response):
            return form
        handle = str(form.get("handle", "")).strip()
        password = str(form.get("app_password", ""))
        service = str(form.get("service", "")).strip() or DEFAULT_SERVICE
        manual = form.get("manual") == "on"
        gate = {"who": lifecycle.field(form, "who") or "everyone", "rules": lifecycle.values(form, "rules"),
                "quotes": form.get("quotes") == "on"}
        if password.strip():
            warn_unless_app_password(request, password)
        try:
            if not handle:
                raise ValidationError({"handle": "is required"})
            if not password.strip():
                raise ValidationError({"app_password": "is empty"})
            # "Who may reply" and "Allow quotes": the same fields as `account add --replies/--no-quotes`
            replies, quotes = lifecycle.gate_form(form) if "who" in form else (None, None)
            result = await offload(lambda: skypost.add_account(handle, password, service=service,
                                                               auto_syndicate=not manual, replies=replies,
                                                               quotes=quotes))
        except (ValidationError, AccountError) as exc:
            return await accounts_page(request, user, added={"handle": handle, "service": service,
                                                             "manual": manual, **gate},
                                       error=str(exc), status_code=422)
        session.flash(request,
                      f"Added @{result['handle']} ({result['did']}) on {result['service']}.")
        return RedirectResponse("/accounts", status_code=303)

    async def account_password(request: Request) -> Response:
        form = await logged_in_form(request)
        if isinstance(form, Response):
            return form
        handle = request.path_params["handle"]
        password = str(form.get("app_password", ""))
        if password.strip():
            warn_unless_app_password(request, password)
        try:
            if not password.strip():
                raise ValidationError({"app_password": "is empty"})
            result = await offload(skypost.update_account, handle, password=password)
        except (ValidationError, AccountError) as exc:
            session.flash(request, f"@{handle}: {exc}", "error")
        else:
            requeued = result["requeued"]
            session.flash(request, f"New app password saved for @{result['handle']}"
                          + (f"; {requeued} delivery(ies) queued again." if requeued else "."))
        return RedirectResponse("/accounts", status_code=303)

    async def account_gates(request: Request) -> Response:
        """Who may reply to the account's posts and whether they may be quoted: the same path
        as `skypost account update --replies/--quotes`; posts submitted from now on."""
        user = await current_user(request)
        if isinstance(user, Response):
            return user
        form = await checked_form(request)
        if isinstance(form, Response):
            return form
        handle = request.path_params["handle"]
        try:
            replies, quotes = lifecycle.gate_form(form)
            result = await offload(lambda: skypost.update_account(handle, replies=replies, quotes=quotes))
        except (ValidationError, AccountError) as exc:
            errors = exc.errors if isinstance(exc, ValidationError) else {"replies": str(exc)}
            return await accounts_page(request, user, gate_errors={handle: "; ".join(errors.values())},
                                       status_code=422)
        session.flash(request, f"@{result['handle']}: "
                      f"{lifecycle.gate_words(result['replies'], not result['quotes'])} "
                      "(for posts submitted from now on).")
        return RedirectResponse("/accounts", status_code=303)

    async def activity(request: Request) -> Response:
        user = await current_user(request)
        if isinstance(user, Response):
            return user
        events = await offload(skypost.events, limit=200)
        paused = await offload(lambda: skypost.paused)
        return render(request, "activity.html", {"events": events, "title": "Activity"}, user=user, paused=paused)

    def notifications_data() -> dict[str, Any]:
        return {"targets": notify.list_targets(skypost), "deliveries": notify.recent_deliveries(skypost, limit=100),
                "public_url": skypost.settings.public_url, "paused": skypost.paused}

    async def notifications(request: Request) -> Response:
        user = await current_user(request)
        if isinstance(user, Response):
            return user
        data = await offload(notifications_data)
        return render(request, "notifications.html", {**data, "title": "Notifications"}, user=user,
                      paused=data["paused"])

    async def favicon(request: Request) -> Response:
        return RedirectResponse("/static/favicon.svg", status_code=301)

    return [
        Route("/", home, methods=["GET"]),
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/pause", pause_or_resume, methods=["POST"]),
        Route("/resume", pause_or_resume, methods=["POST"]),
        Route("/accounts", accounts, methods=["GET"]),
        Route("/accounts", add_account, methods=["POST"]),
        Route("/favicon.ico", favicon, methods=["GET"]),
        Route("/accounts/{handle}/password", account_password, methods=["POST"]),
        Route("/accounts/{handle}/gates", account_gates, methods=["POST"]),
        Route("/activity", activity, methods=["GET"]),
        Route("/notifications", notifications, methods=["GET"]),
        # ids may contain "/": the longer routes are matched first
        Route("/posts/{post_id:path}/status", post_status, methods=["GET"]),
        Route("/posts/{post_id:path}/retry", retry, methods=["POST"]),
        Route("/posts/{post_id:path}/delete", confirm_delete, methods=["GET"]),
        Route("/posts/{post_id:path}/delete", delete, methods=["POST"]),
        Route("/posts/{post_id:path}/replies", send_reply, methods=["POST"]),
        Route("/posts/{post_id:path}", post_page, methods=["GET"]),
    ]
