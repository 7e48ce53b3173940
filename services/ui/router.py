"""`/ui`: the operator's dashboard, server-rendered (Jinja2, autoescaped) and kept live by
htmx, which re-fetches a page's live part (`HX-Request`: that part alone) every few
seconds. Its scripts and styles are files served from `/ui/static` (nothing from another
origin; a Content-Security-Policy says so to the browser).

The admin token is typed once into the login form and answered with a session cookie
(`services.ui.session`: an HMAC keyed by the token, never the token; HttpOnly,
SameSite=Strict, Path=/ui, Secure over TLS). A page asked for without a valid session
redirects to the form (an htmx request is told to, with `HX-Redirect`). Login attempts
are limited per client IP. The pages only read: nothing here publishes an event."""

from __future__ import annotations

import time
import urllib.parse
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from services.ingress.auth import Context, context_of
from services.ingress.clientip import client_ip, rate_key, served_over_https
from services.ingress.context import IngressContext
from services.ingress.ratelimit import RateLimiter
from services.ingress.store import TaskStore
from services.ingress.tokens import same_secret
from services.ui import pages, session
from services.ui.errors import LoginRequired

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
PREFIX = "/ui"
HOME = f"{PREFIX}/tasks"
LOGIN = f"{PREFIX}/login"
LOGIN_RATE_PER_S = 0.2
LOGIN_BURST = 10
"""Login attempts per client IP: 10 at once, then one every 5 s."""
_FORM_LIMIT = 8192

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
"""On every page: no script, style or connection but this origin's, no framing, and no
copy of an operator's page kept by the browser or a proxy."""

STATE_CLASSES = {phase: f"state-{phase}" for phase in pages.PHASES}

router = APIRouter(prefix=PREFIX, include_in_schema=False)


def _utc(moment: datetime | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    return "—" if moment is None else moment.astimezone(UTC).strftime(fmt)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _hours(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    return "< 0.01" if 0 < seconds < 36 else f"{seconds / 3600:,.2f}"


_templates = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_templates.filters.update(utc=_utc, duration=_duration, hours=_hours)
_templates.globals.update(static=lambda name: f"{PREFIX}/static/{name}", states=STATE_CLASSES)
# The macros as a global, not an import: a page's live block is rendered on its own.
_templates.globals["m"] = _templates.get_template("_macros.html").module


def render(request: Request, template: str, status_code: int = 200, **values: Any) -> HTMLResponse:
    """`template` with `values`; with `HX-Request` its live part only (the template's
    `live` block) when it has one."""
    page = _templates.get_template(template)
    live = request.headers.get("hx-request") == "true" and "live" in page.blocks
    values = {"request": request, "path": request.url.path, **values}
    if live:
        context = page.new_context(values)
        body = "".join(page.blocks["live"](context))
    else:
        body = page.render(values)
    return HTMLResponse(body, status_code=status_code, headers=SECURITY_HEADERS)


def signed_in(request: Request) -> bool:
    context = context_of(request)
    return session.valid(request.cookies.get(session.COOKIE), context.admin_token, time.time())


async def require_session(request: Request) -> None:
    if not signed_in(request):
        raise LoginRequired


Session = Annotated[None, Depends(require_session)]


def _local(target: str | None) -> str:
    """`target` when it is a dashboard path of this origin, else the home page (no open
    redirect: no scheme, host, `//` or backslash)."""
    if not target or not target.startswith(f"{PREFIX}/") or target.startswith(LOGIN):
        return HOME
    parsed = urllib.parse.urlsplit(target)
    if parsed.scheme or parsed.netloc or "\\" in target or "//" in target:
        return HOME
    return target


async def _login_required(request: Request, _: Exception) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if request.headers.get("hx-request") == "true":
        # htmx would follow a redirect and put the login form inside the page.
        return Response(status_code=401, headers={"HX-Redirect": LOGIN})
    query = urllib.parse.urlencode({"next": target})
    return RedirectResponse(f"{LOGIN}?{query}", status_code=303)


def _store(context: IngressContext) -> TaskStore | None:
    return context.store


@router.get("", response_class=HTMLResponse)
@router.get("/", response_class=HTMLResponse)
async def home(_: Session) -> Response:
    return RedirectResponse(HOME, status_code=303)


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request, next: str = Query("", max_length=2048)) -> Response:
    if signed_in(request):
        return RedirectResponse(_local(next), status_code=303)
    return render(request, "login.html", title="Sign in", next=_local(next), error="")


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request, context: Context) -> Response:
    """The form's `token` against the admin token (constant time): a session cookie and
    a redirect to `next`, else the form again (401; 429 past the attempts allowed)."""
    if _cross_site(request):
        return _CROSS_SITE
    body = await request.body()
    form = urllib.parse.parse_qs(body[:_FORM_LIMIT].decode("utf-8", "replace"))
    token = (form.get("token") or [""])[0].strip()
    target = _local((form.get("next") or [""])[0])
    peer = request.client.host if request.client else ""
    caller = client_ip(peer, request.headers.get("x-forwarded-for"), context.proxies)
    limiter: RateLimiter = request.app.state.ui_login_limiter
    if not limiter.allow(rate_key(caller)):
        return render(request, "login.html", 429, title="Sign in", next=target,
                      error="Too many attempts from this address; wait a minute.")  # fmt: skip
    if not token or not same_secret(token, context.admin_token):
        return render(request, "login.html", 401, title="Sign in", next=target,
                      error="That is not the admin token.")  # fmt: skip
    answer = RedirectResponse(target, status_code=303)
    answer.set_cookie(
        session.COOKIE, session.issue(context.admin_token, time.time()),
        max_age=session.LIFETIME_S, path=PREFIX, httponly=True, samesite="lax",
        secure=_https(request, context),
    )  # fmt: skip
    return answer


@router.post("/logout", response_class=HTMLResponse)
async def logout(request: Request, context: Context) -> Response:
    if _cross_site(request):
        return _CROSS_SITE
    answer = RedirectResponse(LOGIN, status_code=303)
    answer.delete_cookie(session.COOKIE, path=PREFIX, httponly=True, samesite="lax",
                         secure=_https(request, context))  # fmt: skip
    return answer


_CROSS_SITE = PlainTextResponse("a form of another site may not post here", status_code=403)


def _cross_site(request: Request) -> bool:
    """Whether another site's page posted this form (the pages only read, so the forms,
    sign-in and sign-out, are all a cookie could be ridden to): what the browser says in
    `Sec-Fetch-Site`, else an `Origin` other than this host."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None:
        return fetch_site not in ("same-origin", "none")
    origin = request.headers.get("origin")
    if origin is None:
        return False  # not a browser's cross-site form (they send Origin on POST)
    return urllib.parse.urlsplit(origin).netloc != request.headers.get("host", "")


def _https(request: Request, context: IngressContext) -> bool:
    """Whether the browser reached us over HTTPS (our TLS, or a trusted proxy's)."""
    peer = request.client.host if request.client else ""
    forwarded = request.headers.get("x-forwarded-proto")
    return served_over_https(request.url.scheme, peer, forwarded, context.proxies)


def _unserved(request: Request, title: str) -> HTMLResponse:
    return render(request, "unserved.html", 503, title=title)


@router.get("/tasks", response_class=HTMLResponse)
async def tasks_page(
    request: Request,
    context: Context,
    _: Session,
    workspace: str = Query("", max_length=64),
    state: str = Query("", max_length=16),
    window: str = Query("24h", max_length=8),
) -> Response:
    store = _store(context)
    if store is None:
        return _unserved(request, "Tasks")
    labels = pages.Labels(context.follower.directory)
    now = datetime.now(UTC)
    window = window if window in pages.TASK_WINDOWS else "24h"
    state = state if state in pages.PHASES else ""
    rows = await pages.task_rows(context, store, labels, workspace=workspace, phase=state,
                                 window=window, now=now)  # fmt: skip
    query = urllib.parse.urlencode({"workspace": workspace, "state": state, "window": window})
    return render(
        request, "tasks.html", title="Tasks", rows=rows, now=now, query=query,
        filters={"workspace": workspace, "state": state, "window": window},
        workspaces=labels.options(), phases=pages.PHASES, windows=list(pages.TASK_WINDOWS),
        limit=pages.TASK_ROWS,
    )  # fmt: skip


@router.get("/tasks/{task_id}", response_class=HTMLResponse)
async def task_page(request: Request, context: Context, _: Session, task_id: str) -> Response:
    store = _store(context)
    if store is None:
        return _unserved(request, "Task")
    if len(task_id) > 64:
        return render(request, "missing.html", 404, title="Task", task_id=task_id[:64])
    labels = pages.Labels(context.follower.directory)
    task = await pages.task_timeline(context, store, labels, task_id)
    if task is None:
        return render(request, "missing.html", 404, title="Task", task_id=task_id)
    return render(request, "task.html", title=f"Task {task_id}", task=task,
                  now=datetime.now(UTC))  # fmt: skip


@router.get("/nodes", response_class=HTMLResponse)
async def nodes_page(request: Request, context: Context, _: Session) -> Response:
    now = datetime.now(UTC)
    labels = pages.Labels(context.follower.directory)
    return render(request, "nodes.html", title="Nodes", nodes=pages.nodes(context, labels, now),
                  now=now)  # fmt: skip


@router.get("/workspaces", response_class=HTMLResponse)
async def workspaces_page(request: Request, context: Context, _: Session) -> Response:
    now = datetime.now(UTC)
    labels = pages.Labels(context.follower.directory)
    found = await pages.workspaces(context, _store(context), labels, now)
    return render(request, "workspaces.html", title="Workspaces", workspaces=found, now=now,
                  errors_hours=int(pages.ERRORS_WINDOW.total_seconds() // 3600))  # fmt: skip


@router.get("/usage", response_class=HTMLResponse)
async def usage_page(
    request: Request, context: Context, _: Session, days: int = Query(30, ge=1, le=366)
) -> Response:
    store = _store(context)
    if store is None:
        return _unserved(request, "Usage")
    days = days if days in pages.USAGE_DAYS else 30
    labels = pages.Labels(context.follower.directory)
    now = datetime.now(UTC)
    found = await pages.usage(store, labels, days, now.date())
    return render(request, "usage.html", title="Usage", usage=found, choices=pages.USAGE_DAYS,
                  now=now)  # fmt: skip


@router.get("/queue", response_class=HTMLResponse)
async def queue_page(
    request: Request,
    context: Context,
    _: Session,
    window: str = Query("1h", max_length=8),
    workspace: str = Query("", max_length=64),
) -> Response:
    store = _store(context)
    if store is None:
        return _unserved(request, "Queue")
    window = window if window in pages.QUEUE_WINDOWS else "1h"
    labels = pages.Labels(context.follower.directory)
    now = datetime.now(UTC)
    found = await pages.queue(context, store, labels, window=window, workspace=workspace,
                              now=now)  # fmt: skip
    query = urllib.parse.urlencode({"window": window, "workspace": workspace})
    return render(request, "queue.html", title="Queue", queue=found, now=now, query=query,
                  filters={"window": window, "workspace": workspace},
                  windows=list(pages.QUEUE_WINDOWS), workspaces=labels.options())  # fmt: skip


def install(app: FastAPI) -> None:
    """Serve the dashboard at `/ui` on `app` (out of its OpenAPI document)."""
    app.state.ui_login_limiter = RateLimiter(LOGIN_RATE_PER_S, LOGIN_BURST)
    app.add_exception_handler(LoginRequired, _login_required)
    app.mount(f"{PREFIX}/static", StaticFiles(directory=STATIC), name="ui-static")
    app.include_router(router)
