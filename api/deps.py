"""What routes share: dependency shortcuts (the container, the caller's key, scope checks, headers)
and the few helpers several routers use (identifier checks, reading and storing inbound messages).

Routes import from here, `api.models`, `api.problems` and the application, never from each other.
A route reaches a component through its shortcut (`InboxDep`, `ReconcilerDep`, ...) or, when it
needs several, as `container.<field>` through `ContainerDep` (the fields are in `bootstrap`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import orjson
from fastapi import Depends, Header, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from adapters.inbox import Delivery, Inbox, Status, Stored, fingerprint
from adapters.keys import Miss, Principal
from adapters.persistence.db import Tx
from adapters.reconciliation.engine import Reconciler
from api.problems import Problem
from bootstrap import Container
from ledger.bounds import check_id, unescape_part
from ledger.commands import Command
from ledger.errors import InvalidCommandError


async def get_container(request: Request) -> Container:
    # async: FastAPI runs a plain `def` dependency in the thread pool, a thread hop per request
    return request.app.state.container


ContainerDep = Annotated[Container, Depends(get_container)]


# A component a route needs on its own gets a shortcut: an async getter (no thread hop) and its alias.
async def get_inbox(request: Request) -> Inbox:
    return request.app.state.container.inbox


async def get_reconciler(request: Request) -> Reconciler:
    return request.app.state.container.reconciler


InboxDep = Annotated[Inbox, Depends(get_inbox)]
ReconcilerDep = Annotated[Reconciler, Depends(get_reconciler)]


def bearer_token(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None."""
    scheme, _, token = (header or "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


async def get_principal(request: Request) -> Principal:
    """The caller's key: a dict lookup while its verdict is kept (`ApiKeys`), else a read in the pool."""
    token = bearer_token(request.headers.get("authorization"))
    if token is None:
        raise Problem(401, "unauthenticated", "a bearer token is required")
    keys = request.app.state.container.keys
    principal = keys.lookup(token)
    if isinstance(principal, Miss):
        principal = await run_in_threadpool(keys.verify, token)
    if principal is None:
        raise Problem(401, "unauthenticated", "the bearer token is unknown, expired or revoked")
    request.state.principal = principal
    return principal


# Declares the bearer scheme in the OpenAPI document (the Authorize button of /docs) on every route
# that needs a key; `get_principal` does the checking, so this one never refuses by itself.
BEARER = HTTPBearer(auto_error=False, scheme_name="bearer", description="An API key: `ledger keys create`.")


def require(*scopes: str) -> Callable[..., Any]:
    """A dependency that lets a key through when it holds any of `scopes` (admin holds all)."""

    async def check(
        request: Request, _declared: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)] = None
    ) -> Principal:
        principal = await get_principal(request)
        if not principal.has(*scopes):
            raise Problem(403, "forbidden", f"this key lacks the scope {' or '.join(scopes)}")
        return principal

    check.scopes = scopes  # type: ignore[attr-defined]  # read by api.openapi (`x-scopes`)
    return check


Auditor = Annotated[Principal, Depends(require("audit:read"))]
OrderReader = Annotated[Principal, Depends(require("audit:read", "ats:read"))]
Ingester = Annotated[Principal, Depends(require("ingest:write"))]
Admin = Annotated[Principal, Depends(require("admin"))]


async def execute(container: Container, command: Command) -> dict[str, Any]:
    """Runs a command through the group-commit writer without blocking the event loop."""
    return await container.ledger.submit_async(command)


IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=255,
        description="a repeat with the same key and body returns the first answer and appends nothing",
    ),
]


def valid_id(value: str, field: str) -> str:
    """`value` when it is an identifier (`ledger.bounds.check_id`), else a 422 problem."""
    try:
        return check_id(value, field)
    except InvalidCommandError as e:
        raise Problem(422, "validation-error", e.message) from None


def path_id(value: str, field: str) -> str:
    """An id of a two-id route (`api.middleware.PathIds`: `%` and `/` escaped), checked."""
    return valid_id(unescape_part(value), field)


# ----------------------------------------------------------- inbound messages (webhooks, POS, ERP)


async def read_json(request: Request, container: Container) -> tuple[bytes, Any]:
    """The raw body (bounded) and its parsed JSON; 413 or 400 problems otherwise."""
    limit = container.settings.max_body_bytes
    declared = request.headers.get("content-length")
    _bounded(declared, limit)
    body = await request.body()
    return body, body_json(body, limit, declared)


def _bounded(declared: str | None, limit: int) -> None:
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Problem(413, "body-too-large", f"the body exceeds {limit} bytes")


def body_json(body: bytes, limit: int, declared: str | None = None) -> Any:
    """`read_json` of a body already read: its parsed JSON; 413 or 400 problems otherwise."""
    _bounded(declared, limit)
    if len(body) > limit:
        raise Problem(413, "body-too-large", f"the body exceeds {limit} bytes")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise Problem(400, "malformed-json", "the body is not valid JSON") from None


async def store_message(
    container: Container,
    source: str,
    external_id: str,
    kind: str,
    body: bytes,
    payload: Any,
    headers: dict[str, str] | None = None,
    status: Status = Status.RECEIVED,
    reason: str | None = None,
    on_new: Callable[[Tx, int], None] | None = None,
) -> dict[str, Any]:
    """Stores a message once per delivery id and answers with its (first) status."""
    print_ = fingerprint(payload)
    # Gathered with concurrent requests' deliveries: one transaction, one commit, a batch.
    stored: Stored = await container.inbox.stores.submit(
        Delivery(source, external_id, kind, body, headers or {}, print_, status, reason, on_new)
    )
    if not stored.created and stored.row["fingerprint"] != print_ and source != "shopify":
        raise Problem(
            409,
            "delivery-id-reused",
            f"{external_id} was already received with other content",
            inbox_id=stored.row["id"],
        )
    if stored.created:
        container.inbox_worker.wake()
    row = stored.row
    return {
        "inbox_id": row["id"],
        "status": row["status"],
        "reason": row["reason"],
        "duplicate": not stored.created,
        "outcome": row["outcome"],
    }


def _query_names(route: Any) -> tuple[frozenset[str], frozenset[str]]:
    """(every query parameter a route declares, those that take a list such as `?sku=A&sku=B`)."""
    cached = getattr(route, "_ledger_query_names", None)
    if cached is None:
        names, lists = set(), set()
        for param in getattr(getattr(route, "dependant", None), "query_params", ()):
            names.add(param.alias)
            annotation = param.field_info.annotation
            if getattr(annotation, "__origin__", None) in (list, tuple, set) or "list[" in str(annotation):
                lists.add(param.alias)
        cached = (frozenset(names), frozenset(lists))
        route._ledger_query_names = cached
    return cached


async def checked_query(request: Request) -> None:
    """Refuses a query parameter the route does not know, or a single-valued one given twice.

    `?until=a&until=b` (which one was meant?) and `?kinds=drift` (a typo that would silently list
    everything) are both 422 rather than a guess.
    """
    params = request.query_params
    if not params:
        return
    route = request.scope.get("route")
    if route is None:
        return
    names, lists = _query_names(route)
    for name in params.keys():
        if name not in names:
            raise Problem(
                422,
                "validation-error",
                f"unknown query parameter {name[:64]!r}",
                errors=[
                    {"loc": ["query", name[:64]], "msg": "not a parameter of this route", "type": "unknown"}
                ],
            )
        if name not in lists and len(params.getlist(name)) > 1:
            raise Problem(
                422,
                "validation-error",
                f"the query parameter {name!r} takes one value",
                errors=[{"loc": ["query", name], "msg": "given more than once", "type": "repeated"}],
            )
