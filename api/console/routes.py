"""Console routes: sign-in, pages (audit:read to look) and actions (admin to act, CSRF-checked).

Pages answer HTML; a refusal answers HTML to a browser (Accept: text/html) and problem+json to
anything else, with the same status. The routes stay out of the OpenAPI document: the console
is for people, the `/v1` API for programs.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool

from adapters.mappings import check_mapping, mapping_key
from api.console import chart, views
from api.console.session import COOKIE, TTL_SECONDS, Session, Sessions
from api.middleware import cause_from
from api.problems import problem_response, status_of
from bootstrap import Container
from ledger.bounds import check_id
from ledger.commands import ReleaseOrder
from ledger.errors import InvalidCommandError, LedgerError
from ledger.orders import OPEN_WORK, STAGES
from projections.jobs import RebuildRunningError, UnknownProjectionError

HERE = Path(__file__).parent
STATIC = {"console.css": "text/css", "console.js": "text/javascript"}
MAX_FORM_BYTES = 16_384
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

router = APIRouter(prefix="/console", include_in_schema=False)
templates = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]))
templates.filters["path"] = lambda s: quote(str(s), safe="")


class Refusal(Exception):
    def __init__(self, status: int, slug: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.slug, self.detail = status, slug, detail


def _container(request: Request) -> Container:
    return request.app.state.container


def _sessions(request: Request) -> Sessions:
    return request.app.state.sessions  # set with the container by `api.app.attach`


def page(request: Request, name: str, session: Session | None, status: int = 200, **ctx: Any) -> HTMLResponse:
    html = templates.get_template(name).render(request=request, session=session, now=views.now(), **ctx)
    return HTMLResponse(html, status_code=status, headers=HEADERS)


def refuse(request: Request, e: Refusal, session: Session | None = None) -> Response:
    if "text/html" in request.headers.get("accept", ""):
        return page(request, "refused.html", session, status=e.status, refusal=e)
    return problem_response(e.status, e.slug, e.detail, instance=request.url.path, headers=dict(HEADERS))


async def current(request: Request) -> Session | None:
    return await run_in_threadpool(_sessions(request).get, request.cookies.get(COOKIE))


def moment(value: str) -> datetime | None:
    """The as-of picker's moment: RFC 3339, or the browser's `datetime-local` value read as UTC."""
    value = value.strip()
    if not value:
        return None
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise Refusal(
            422, "validation-error", "as_of must be a moment such as 2024-05-01T12:00:00Z"
        ) from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _id(value: str, field: str) -> str:
    try:
        check_id(value, field)
    except InvalidCommandError as e:
        raise Refusal(422, "validation-error", e.message) from None
    return value


async def form(request: Request) -> dict[str, str]:
    """A urlencoded form, bounded; anything else is refused."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        raise Refusal(415, "unsupported-media-type", "the console takes urlencoded forms")
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise Refusal(413, "body-too-large", f"a console form is at most {MAX_FORM_BYTES} bytes")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=20, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise Refusal(400, "malformed-form", "the form could not be read") from None
    return {k: v for k, v in reversed(pairs)}


async def viewer(request: Request, **ids: str) -> Session | Response:
    """The signed-in session of a page, or the answer instead of the page: a redirect to sign
    in, or a refusal when one of the page's identifiers (`field=value`) breaks the bounds."""
    session = await current(request)
    if session is None:
        return RedirectResponse("/console/login", status_code=303, headers=HEADERS)
    for field, value in ids.items():
        try:
            _id(value, field)
        except Refusal as e:
            return refuse(request, e, session)
    return session


async def actor(request: Request) -> tuple[Session, dict[str, str]]:
    """The session and form of an action: signed in, CSRF token right, admin scope."""
    session = await current(request)
    if session is None:
        raise Refusal(401, "unauthenticated", "sign in first")
    data = await form(request)
    if not session.csrf_ok(data.get("csrf")):
        raise Refusal(403, "csrf-refused", "the form's CSRF token is missing or wrong; reload the page")
    if not session.can_act:
        raise Refusal(403, "forbidden", "this action needs a key with the admin scope")
    return session, data


def _who(session: Session) -> str:
    return f"{session.principal.name} ({session.principal.key_id}) via console"


# ------------------------------------------------------------------ sign-in


@router.get("/login")
async def login_form(request: Request) -> Response:
    return page(request, "login.html", await current(request))


@router.post("/login")
async def login(request: Request) -> Response:
    try:
        data = await form(request)
        token = data.get("token", "").strip()
        if not token or len(token) > 256:
            raise Refusal(401, "unauthenticated", "the key is unknown, expired or revoked")
        sessions = _sessions(request)
        principal = await run_in_threadpool(_container(request).keys.verify, token)
        if principal is None:
            raise Refusal(401, "unauthenticated", "the key is unknown, expired or revoked")
        if not principal.has("audit:read"):
            raise Refusal(403, "forbidden", "the console needs a key with the audit:read or admin scope")
        made = await run_in_threadpool(sessions.sign_in, token)
        assert made is not None
    except Refusal as e:
        if "text/html" in request.headers.get("accept", ""):
            return page(request, "login.html", None, status=e.status, error=e.detail)
        return refuse(request, e)
    response = RedirectResponse("/console", status_code=303, headers=HEADERS)
    response.set_cookie(
        COOKIE,
        made[0],
        max_age=TTL_SECONDS,
        path="/console",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    session = await current(request)
    try:
        data = await form(request)
    except Refusal as e:
        return refuse(request, e, session)
    if session is not None and not session.csrf_ok(data.get("csrf")):
        return refuse(
            request, Refusal(403, "csrf-refused", "the form's CSRF token is missing or wrong"), session
        )
    await run_in_threadpool(_sessions(request).sign_out, request.cookies.get(COOKIE))
    response = RedirectResponse("/console/login", status_code=303, headers=HEADERS)
    response.delete_cookie(COOKIE, path="/console", httponly=True, samesite="strict")
    return response


# ------------------------------------------------------------------ pages


@router.get("")
@router.get("/")
async def home(request: Request) -> Response:
    s = await viewer(request)
    if not isinstance(s, Session):
        return s
    ops = await run_in_threadpool(views.operations, _container(request))
    return page(request, "home.html", s, ops=ops)


@router.get("/search")
async def search(request: Request, q: str = "") -> Response:
    s = await viewer(request)
    if not isinstance(s, Session):
        return s
    if not q.strip():
        return page(request, "search.html", s, q=q, hits=[])
    try:
        _id(q.strip(), "search")
    except Refusal as e:
        return refuse(request, e, s)
    hits = await run_in_threadpool(views.search, _container(request), q)
    exact = [h for h in hits if h["exact"]]
    if len(hits) == 1 or len(exact) == 1:  # one match, or one that is exactly what was typed
        return RedirectResponse((exact or hits)[0]["href"], status_code=303, headers=HEADERS)
    return page(request, "search.html", s, q=q, hits=hits)


@router.get("/skus")
async def skus_page(request: Request, prefix: str = "", after: str = "") -> Response:
    """Every SKU in name order, or those starting with `prefix` (ignoring case)."""
    s = await viewer(request)
    if not isinstance(s, Session):
        return s
    try:
        for field, value in (("prefix", prefix), ("after", after)):
            if value:
                _id(value, field)
    except Refusal as e:
        return refuse(request, e, s)
    data = await run_in_threadpool(views.skus_page, _container(request), prefix, after)
    return page(request, "skus.html", s, **data)


@router.get("/skus/{sku:path}")
async def sku_page(request: Request, sku: str, as_of: str = "") -> Response:
    s = await viewer(request, sku=sku)
    if not isinstance(s, Session):
        return s
    try:
        at = moment(as_of[:64])
    except Refusal as e:
        return refuse(request, e, s)
    data = await run_in_threadpool(views.sku_page, _container(request), sku, at)
    if not data["known"]:
        return refuse(request, Refusal(404, "not-found", f"the ledger has no stock of {sku}"), s)
    return page(request, "sku.html", s, chart=chart.draw(data["series"]), **data)


@router.get("/locations/{location:path}")
async def location_page(request: Request, location: str) -> Response:
    s = await viewer(request, location=location)
    if not isinstance(s, Session):
        return s
    rows = await run_in_threadpool(views.location_page, _container(request), location)
    return page(request, "location.html", s, location=location, rows=rows)


@router.get("/orders")
async def orders_page(
    request: Request, stage: str = "", channel: str = "", open: str = "", before: str = ""
) -> Response:
    """The order list, newest first, filtered by stage, channel and open work."""
    s = await viewer(request)
    if not isinstance(s, Session):
        return s
    try:
        if stage and stage not in STAGES:
            raise Refusal(422, "validation-error", f"stage must be one of {', '.join(STAGES)}")
        if open and open not in (*OPEN_WORK, "any"):
            raise Refusal(422, "validation-error", f"open must be any or one of {', '.join(OPEN_WORK)}")
        if channel:
            _id(channel, "channel")
        try:
            cursor = views.parse_cursor(before[:300])
        except ValueError:
            raise Refusal(422, "validation-error", "before must be a cursor from the order list") from None
    except Refusal as e:
        return refuse(request, e, s)
    data = await run_in_threadpool(
        views.orders_page, _container(request), stage or None, channel or None, open or None, cursor
    )
    return page(request, "orders.html", s, **data)


@router.get("/orders/{order_id:path}")
async def order_page(request: Request, order_id: str, as_of: str = "") -> Response:
    s = await viewer(request, order_id=order_id)
    if not isinstance(s, Session):
        return s
    try:
        at = moment(as_of[:64])
    except Refusal as e:
        return refuse(request, e, s)
    data = await run_in_threadpool(views.order_page, _container(request), order_id, s.can_act, at)
    if data is None:
        return refuse(request, Refusal(404, "not-found", f"order {order_id} is not in the ledger"), s)
    if data.get("not_yet"):
        when = at.isoformat() if at else ""
        return refuse(
            request, Refusal(404, "not-found", f"order {order_id} was not captured yet at {when}"), s
        )
    return page(request, "order.html", s, **data)


@router.get("/reconciliations")
async def reconciliations_page(request: Request) -> Response:
    s = await viewer(request)
    if not isinstance(s, Session):
        return s
    runs = await run_in_threadpool(views.reconciliations_page, _container(request))
    return page(request, "reconciliations.html", s, runs=runs)


@router.get("/reconciliations/{run_id}")
async def reconciliation_page(request: Request, run_id: str) -> Response:
    s = await viewer(request, run_id=run_id)
    if not isinstance(s, Session):
        return s
    run = await run_in_threadpool(views.reconciliation_page, _container(request), run_id)
    if run is None:
        return refuse(request, Refusal(404, "not-found", f"no reconciliation run {run_id}"), s)
    return page(request, "reconciliation.html", s, run=run)


@router.get("/operations")
async def operations(request: Request, notice: str = "") -> Response:
    s = await viewer(request)
    if not isinstance(s, Session):
        return s
    ops = await run_in_threadpool(views.operations, _container(request))
    return page(request, "operations.html", s, ops=ops, notice=notice[:300])


@router.get("/messages/{inbox_id}")
async def message_page(request: Request, inbox_id: int) -> Response:
    s = await viewer(request)
    if not isinstance(s, Session):
        return s
    data = await run_in_threadpool(views.message_page, _container(request), inbox_id, s.can_act)
    if data is None:
        return refuse(request, Refusal(404, "not-found", f"no inbound message {inbox_id}"), s)
    return page(request, "message.html", s, **data)


@router.get("/mappings")
async def mappings_page(request: Request) -> Response:
    s = await viewer(request)
    if not isinstance(s, Session):
        return s
    return page(
        request, "mappings.html", s, **await run_in_threadpool(views.mappings_page, _container(request))
    )


@router.get("/channels")
async def channels_page(request: Request) -> Response:
    s = await viewer(request)
    if not isinstance(s, Session):
        return s
    return page(
        request,
        "channels.html",
        s,
        channels=await run_in_threadpool(views.channels_page, _container(request)),
    )


@router.get("/static/{name}")
async def static(name: str) -> Response:
    if name not in STATIC:
        return problem_response(404, "not-found", "no such console asset")
    return Response(
        (HERE / "static" / name).read_bytes(),
        media_type=STATIC[name],
        headers={"Cache-Control": "max-age=300", "X-Content-Type-Options": "nosniff"},
    )


# ------------------------------------------------------------------ actions


@router.post("/actions/map")
async def map_and_retry(request: Request) -> Response:
    """Sets a missing mapping, then re-applies the parked messages that asked for it."""
    session = None
    try:
        session, data = await actor(request)
        source, kind = data.get("source", ""), data.get("kind", "")
        external_id, canonical = data.get("external_id", ""), data.get("canonical", "").strip()
        try:
            check_mapping(source, kind, external_id)
        except ValueError as e:
            raise Refusal(422, "validation-error", str(e)) from None
        _id(canonical, "canonical")
        c = _container(request)
        who = _who(session)
        change = await run_in_threadpool(c.mappings.set, source, kind, external_id, canonical, who)
        key = mapping_key(source, kind, external_id)
        if change["changed"]:
            await run_in_threadpool(
                c.keys.audit,
                who,
                "mapping.set",
                key,
                {"old": change["old"], "new": canonical, "version": change["version"]},
            )
        outcome = await run_in_threadpool(c.remapper.remap, source, kind, external_id, who)
    except Refusal as e:
        return refuse(request, e, session)
    except LedgerError as e:
        return refuse(request, Refusal(status_of(e), e.code, e.message), session)
    notice = (
        f"{key} → {canonical} (version {change['version']}): {outcome['parked_applied']} parked "
        f"message(s) applied, {outcome['movements']} movement(s) corrected"
    )
    return RedirectResponse(f"/console/operations?notice={quote(notice)}", status_code=303, headers=HEADERS)


@router.post("/actions/release")
async def release(request: Request) -> Response:
    """Releases an order its checks held (the same command as `POST /v1/orders/{id}/release`)."""
    session = None
    try:
        session, data = await actor(request)
        order_id = data.get("order_id", "")
        _id(order_id, "order_id")
        c = _container(request)
        who = _who(session)
        cause = cause_from(request, source="console", actor=session.principal.key_id, reference=order_id)
        await c.ledger.submit_async(ReleaseOrder(order_id=order_id, by=session.principal.name, cause=cause))
        await run_in_threadpool(c.keys.audit, who, "order.release", order_id, {})
    except Refusal as e:
        return refuse(request, e, session)
    except LedgerError as e:
        return refuse(request, Refusal(status_of(e), e.code, e.message), session)
    return RedirectResponse(f"/console/orders/{quote(order_id, safe='')}", status_code=303, headers=HEADERS)


@router.post("/actions/rebuild")
async def rebuild(request: Request) -> Response:
    """Starts a read-model rebuild (the same job as `POST /v1/projections/{name}/rebuild`)."""
    session = None
    try:
        session, data = await actor(request)
        name = data.get("name", "")
        c = _container(request)
        try:
            job = c.rebuilds.start(name, by=session.principal.name)
        except UnknownProjectionError:
            raise Refusal(404, "unknown-projection", f"no read model named {name[:64]!r}") from None
        except RebuildRunningError:
            raise Refusal(409, "rebuild-running", f"a rebuild of {name} is running") from None
        await run_in_threadpool(c.keys.audit, _who(session), "projection.rebuild", name, {"job": job["id"]})
    except Refusal as e:
        return refuse(request, e, session)
    notice = f"rebuild of {name} started (job {job['id']})"
    return RedirectResponse(f"/console/operations?notice={quote(notice)}", status_code=303, headers=HEADERS)
