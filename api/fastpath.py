"""The lean path of the hottest routes: answered without FastAPI's routing, dependencies and
response machinery, when everything the route would check is at hand; else passed on to it.

`FastPath`, an ASGI middleware inside the request context (ids, latency, access line), the body
guard (size, media type), the storage guard and `Idempotency-Key`, looks the request's method and
path up among the `Lean` routes it was given. A lean route names the FastAPI route it stands for:
that route stays in the OpenAPI document and answers whatever the lean handler passes on (it
returns None), such as a key not yet verified, a header or query parameter it does not handle,
or a body that fails validation (the route words the problem). A handler answers an `Answer`,
or raises `Problem` or `LedgerError`, which are mapped by `api.problems` exactly as the route's
exception handlers map them. An outage it meets goes out to `StorageGuard` (503, Retry-After).

The lean routes are the ATS point query (`api.routes.ats`) and the hot writes: order capture,
receipts, POS batches and Shopify webhooks (see docs/ARCHITECTURE.md, "The lean path").
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson
from pydantic import TypeAdapter, ValidationError
from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from adapters.keys import Principal
from api.deps import bearer_token
from api.middleware import cause_of
from api.problems import Problem, ledger_error_response, problem_response
from bootstrap import Container
from ledger.errors import LedgerError

T = TypeVar("T")
JSON = b"application/json"


@dataclass
class Answer:
    """What a lean handler answers: a status, a JSON body already serialized, extra headers."""

    status: int
    body: bytes
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


class Call:
    """One request as a lean handler sees it: the container, the raw body, headers, the key."""

    __slots__ = ("scope", "container", "path", "_headers")

    def __init__(self, scope: Scope, container: Container) -> None:
        self.scope = scope
        self.container = container
        self.path: str = scope["path"]
        self._headers: Headers | None = None

    @property
    def headers(self) -> Headers:
        if self._headers is None:
            self._headers = Headers(scope=self.scope)
        return self._headers

    def header(self, name: bytes) -> str | None:
        for k, v in self.scope["headers"]:
            if k == name:
                return v.decode("latin-1")
        return None

    @property
    def body(self) -> bytes | None:
        """The body `BodyGuard` read (None when no guard read it: the route reads it then)."""
        return self.scope.get("state", {}).get("body")

    @property
    def query(self) -> bool:
        return bool(self.scope.get("query_string"))

    def principal(self, *scopes: str) -> Principal | None:
        """The caller's key when its verdict is kept and holds any of `scopes`, else None (the
        route verifies it, or answers 401/403). Kept in the request state for `cause`."""
        token = bearer_token(self.header(b"authorization"))
        principal = None if token is None else self.container.keys.lookup(token)
        if not isinstance(principal, Principal) or not principal.has(*scopes):
            return None
        self.scope.setdefault("state", {})["principal"] = principal
        return principal

    def model(self, adapter: TypeAdapter[T]) -> T | None:
        """The body decoded and validated like the route's body parameter, or None when it is not
        valid (the route answers the problem, worded as FastAPI words it)."""
        body = self.body
        if not body or not _json_type(self.header(b"content-type")):
            return None
        try:
            return adapter.validate_python(orjson.loads(body))
        except (orjson.JSONDecodeError, ValidationError):
            return None

    def cause(self, **extra: Any) -> dict[str, Any]:
        """`api.middleware.cause_from` of this request."""
        return cause_of(self.scope.get("state", {}), **extra)


def _json_type(value: str | None) -> bool:
    """FastAPI parses a body parameter as JSON only under a JSON media type (none: not at all)."""
    kind = (value or "").split(";")[0].strip().lower()
    return kind == "application/json" or (kind.startswith("application/") and kind.endswith("+json"))


Handler = Callable[[Call], Awaitable[Answer | None]]


@dataclass(frozen=True)
class Lean:
    """A lean handler for the route of `endpoint` in `router` (`prefix`: any path under it)."""

    method: str
    path: str
    router: Any
    endpoint: Callable[..., Any]
    handler: Handler
    prefix: bool = False

    def route(self) -> BaseRoute:
        return next(r for r in self.router.routes if getattr(r, "endpoint", None) is self.endpoint)


class FastPath:
    """ASGI: answers the lean routes when their handler can; everything else goes on to the app."""

    def __init__(self, app: ASGIApp, routes: list[Lean]) -> None:
        self.app = app
        self.exact: dict[tuple[str, str], tuple[Lean, BaseRoute]] = {}
        self.prefixed: list[tuple[Lean, BaseRoute]] = []
        for lean in routes:
            entry = (lean, lean.route())
            if lean.prefix:
                self.prefixed.append(entry)
            else:
                self.exact[(lean.method, lean.path)] = entry
        self.answered: dict[
            str, int
        ] = {}  # answers given here, problems too, by route template (tests, diagnosis)

    def _match(self, scope: Scope) -> tuple[Lean, BaseRoute] | None:
        method, path = scope["method"], scope["path"]
        found = self.exact.get((method, path))
        if found is None:
            for entry in self.prefixed:
                if entry[0].method == method and path.startswith(entry[0].path):
                    return entry
        return found

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get("root_path"):
            found = self._match(scope)
            container = getattr(getattr(scope.get("app"), "state", None), "container", None)
            if found is not None and container is not None:
                lean, route = found
                try:
                    answer: Answer | Response | None = await lean.handler(Call(scope, container))
                except Problem as e:
                    answer = problem_response(e.status, e.slug, e.detail, scope["path"], **e.extra)
                except LedgerError as e:
                    answer = ledger_error_response(e, scope["path"])
                if answer is not None:
                    scope["route"] = route  # the template labels the metrics and the access line
                    path = getattr(route, "path", "")
                    self.answered[path] = self.answered.get(path, 0) + 1
                    if isinstance(answer, Answer):
                        await self._send(send, answer)
                    else:
                        await answer(scope, receive, send)
                    return
        await self.app(scope, receive, send)

    @staticmethod
    async def _send(send: Send, answer: Answer) -> None:
        headers = [
            (b"content-length", str(len(answer.body)).encode()),
            (b"content-type", JSON),
            *answer.headers,
        ]
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        await send({"type": "http.response.body", "body": answer.body})


def dumped(adapter: TypeAdapter[Any], value: Any) -> bytes:
    """`value` through a route's `response_model` as FastAPI serializes it (validated, by alias)."""
    return adapter.dump_json(adapter.validate_python(value), by_alias=True)
