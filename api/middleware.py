"""ASGI middleware: request context (ids, access log, latency) and the body guard (size, type).

- `RequestContext` gives each request an `X-Request-Id` and an `X-Correlation-Id` (taken from the
  caller when well-formed, else new), binds both into structlog's context, answers with both
  headers, writes one access line (method, route template, status, ms; never bodies, never the
  Authorization header) and feeds `REQUEST_LATENCY` by route template. Successful reads of the
  hot routes (`SAMPLED_ROUTES`, the ATS queries) are logged one in `SAMPLE_EVERY` (100), with
  `sampled: 100` in the line; every other request, and every answer >= 400, is logged.
  The latency histogram still counts every request.
- `BodyGuard` refuses bodies over `settings.max_body_bytes` with 413 (by Content-Length, and by
  counting the streamed body), and non-JSON bodies on JSON routes with 415. It buffers the body
  once, so inner layers (idempotency, HMAC checks) can read it again.
- `StorageGuard` answers 503 `storage-unavailable` (with Retry-After) for a database outage met
  in the layers inside it, where the route's exception handlers do not reach.
- `PathIds` keeps the ids of the routes with two ids in their path (`/v1/stock/{sku}/{location}`,
  `/v1/ats/{channel}/{sku}`) apart when an id holds `/`: the decoded path would split it, so
  under `ID_PATH_PREFIXES` the path is decoded segment by segment from the raw path, with `%`
  and `/` left escaped in each segment (`ledger.bounds.escape_part`); those routes read their
  ids with `api.deps.path_id`. (Routes with one id at the end use `{id:path}` instead.) Every
  other path is decoded once from the raw path.

Routes turn the ids into a command's `cause` with `cause_from(request)`.
"""

from __future__ import annotations

import random
import re
import time
from typing import Any
from urllib.parse import unquote

import structlog
from starlette.requests import Request
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from adapters.logs import access_line
from adapters.metrics import REQUEST_LATENCY
from adapters.persistence.db import OUTAGE_ERRORS, is_outage
from api.problems import problem_response, storage_unavailable
from ledger.bounds import escape_part

log = structlog.stdlib.get_logger("ledger.access")
outage_log = structlog.stdlib.get_logger("ledger.api")

SAFE_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")
DEFAULT_MAX_BODY = 1_048_576
BODY_METHODS = {"POST", "PUT", "PATCH"}
# Routes under these prefixes take JSON only; the Shopify webhook checks its own raw body.
JSON_PREFIXES = ("/v1/",)
RAW_BODY_PATHS = ("/v1/webhooks/",)
# Successful GETs of these routes write one access line in SAMPLE_EVERY (a JSON line costs more
# than answering an ATS read from the cache); errors are always logged.
SAMPLED_ROUTES = frozenset({"/v1/ats/{channel}/{sku}", "/v1/ats/{channel}"})
SAMPLE_EVERY = 100
# Routes with two ids in their path: their segments keep `%` and `/` escaped (`PathIds`).
ID_PATH_PREFIXES = ("/v1/stock/", "/v1/ats/")


def new_id() -> str:
    """A request id: 128 random bits in hex, like uuid4().hex, without a system call per request."""
    return f"{random.getrandbits(128):032x}"


_latency: dict[tuple[str, str, str], Any] = {}


def observe(method: str, route: str, status: int, seconds: float) -> None:
    """Feeds `REQUEST_LATENCY` (children kept: `labels()` validates and locks on every call)."""
    key = (method, route, str(status))
    child = _latency.get(key)
    if child is None:
        child = _latency[key] = REQUEST_LATENCY.labels(*key)
    child.observe(seconds)


def header(scope: Scope, name: bytes) -> str | None:
    for k, v in scope.get("headers", ()):
        if k == name:
            return v.decode("latin-1")
    return None


def _id_from(value: str | None) -> str | None:
    return value if value is not None and SAFE_ID.match(value) else None


def route_of(scope: Scope) -> str:
    """The route template (`/v1/stock/{sku}/{location}`), never the raw path: bounded label values."""
    route = scope.get("route")
    if route is None:  # plain Starlette routes (/openapi.json, /docs) are not always named in the scope
        router = getattr(scope.get("app"), "router", None)
        for candidate in getattr(router, "routes", ()):
            if candidate.matches(scope)[0] != Match.NONE:
                route = candidate
                break
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


def cause_from(request: Request, **extra: Any) -> dict[str, Any]:
    """The `cause` of a command made by this request: correlation and causation ids, who asked."""
    return cause_of(request.scope.get("state", {}), **extra)


def cause_of(state: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """`cause_from` for a request's state (the lean path has no `Request`)."""
    cause: dict[str, Any] = {
        "correlation_id": state.get("correlation_id"),
        "causation_id": state.get("request_id"),
        "source": "api",
    }
    principal = state.get("principal")
    if principal is not None:
        cause["actor"] = principal.key_id
    cause.update({k: v for k, v in extra.items() if v is not None})
    return {k: v for k, v in cause.items() if v is not None}


class RequestContext:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._sampled = 0  # successful requests of SAMPLED_ROUTES seen

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _id_from(header(scope, b"x-request-id")) or new_id()
        correlation_id = _id_from(header(scope, b"x-correlation-id")) or request_id
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        state["correlation_id"] = correlation_id
        status = 500
        started_response = False
        extra = [(b"x-request-id", request_id.encode()), (b"x-correlation-id", correlation_id.encode())]

        async def send_with_ids(message: Message) -> None:
            nonlocal status, started_response
            if message["type"] == "http.response.start":
                status = message["status"]
                started_response = True
                message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        started = time.perf_counter()
        with structlog.contextvars.bound_contextvars(request_id=request_id, correlation_id=correlation_id):
            try:
                await self.app(scope, receive, send_with_ids)
            except Exception as e:
                # A bug, never an answer to input: log it (masked) and answer a bare problem.
                log.error(
                    "unhandled error",
                    method=scope.get("method"),
                    route=route_of(scope),
                    error=type(e).__name__,
                    exc_info=e,
                )
                if started_response:
                    raise
                await problem_response(
                    500, "internal-error", "an unexpected error occurred", scope.get("path")
                )(scope, receive, send_with_ids)
            finally:
                elapsed = time.perf_counter() - started
                route = route_of(scope)
                method = scope.get("method", "")
                observe(method, route, status, elapsed)
                self._access(method, route, status, elapsed, request_id, correlation_id)

    def _access(
        self, method: str, route: str, status: int, elapsed: float, request_id: str, correlation_id: str
    ) -> None:
        """The access line; successful reads of SAMPLED_ROUTES one in SAMPLE_EVERY."""
        sampled = None
        if status < 400 and route in SAMPLED_ROUTES:
            self._sampled += 1
            if self._sampled % SAMPLE_EVERY != 1:
                return
            sampled = SAMPLE_EVERY
        access_line(method, route, status, round(elapsed * 1000, 2), request_id, correlation_id, sampled)


class BodyGuard:
    def __init__(self, app: ASGIApp, max_body_bytes: int | None = None) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    def _limit(self, scope: Scope) -> int:
        if self.max_body_bytes is not None:
            return self.max_body_bytes
        container = getattr(getattr(scope.get("app"), "state", None), "container", None)
        return int(getattr(getattr(container, "settings", None), "max_body_bytes", DEFAULT_MAX_BODY))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        limit = self._limit(scope)
        length = header(scope, b"content-length")
        if length is not None:
            if not length.strip().isdigit():
                await problem_response(400, "malformed-request", "Content-Length is not a number", path)(
                    scope, receive, send
                )
                return
            if int(length) > limit:
                await self._too_large(scope, receive, send, limit)
                return
        if scope.get("method") not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await self._too_large(scope, receive, send, limit)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if body and path.startswith(JSON_PREFIXES) and not path.startswith(RAW_BODY_PATHS):
            ctype = (header(scope, b"content-type") or "").split(";")[0].strip().lower()
            if ctype and not (ctype == "application/json" or ctype.endswith("+json")):
                await problem_response(
                    415, "unsupported-media-type", "the body must be application/json", path
                )(scope, receive, send)
                return
        scope.setdefault("state", {})["body"] = body
        await self.app(scope, replaying(body, receive), send)

    @staticmethod
    async def _too_large(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        response = problem_response(
            413,
            "body-too-large",
            f"the body is larger than {limit} bytes",
            scope.get("path"),
            headers={"connection": "close"},
        )
        await response(scope, receive, send)


def replaying(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands the app a body already read, once, then the real channel."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class StorageGuard:
    """An outage met outside a route (the Idempotency-Key store, the ATS fast path) answers 503
    `storage-unavailable` with Retry-After, as routes do (`api.problems`), never 500."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except OUTAGE_ERRORS as e:
            if started or not is_outage(e):
                raise
            outage_log.warning("storage unavailable", path=scope.get("path"), error=type(e).__name__)
            await storage_unavailable(scope.get("path"))(scope, receive, send)


def id_path(raw_path: bytes) -> str:
    """The path with each segment decoded on its own, `%` and `/` in it escaped again."""
    return "/".join(escape_part(unquote(seg)) for seg in raw_path.decode("latin-1").split("/"))


class PathIds:
    """Rewrites the path of the two-id routes so an id holding `/` stays one segment."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get("root_path"):
            raw = scope.get("raw_path")
            if scope["path"].startswith(ID_PATH_PREFIXES):
                path = id_path(raw) if raw else "/".join(escape_part(s) for s in scope["path"].split("/"))
                scope = {**scope, "path": path}
            elif raw and b"%" in raw:
                # The path decoded once from the raw path, as servers do (Starlette's TestClient
                # decodes it twice: an id holding `%25` would be read wrong).
                scope = {**scope, "path": unquote(raw.decode("latin-1"))}
        await self.app(scope, receive, send)
