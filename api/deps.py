"""Dependency shortcuts for routes: the container, the caller's key, scope checks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from adapters.bootstrap import Container
from adapters.keys import Miss, Principal
from api.problems import Problem
from ledger.commands import Command


async def get_container(request: Request) -> Container:
    # async: FastAPI runs a plain `def` dependency in the thread pool, a thread hop per request
    return request.app.state.container


ContainerDep = Annotated[Container, Depends(get_container)]


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

    return check


Auditor = Annotated[Principal, Depends(require("audit:read"))]
OrderReader = Annotated[Principal, Depends(require("audit:read", "ats:read"))]
Ingester = Annotated[Principal, Depends(require("ingest:write"))]
Admin = Annotated[Principal, Depends(require("admin"))]


async def execute(container: Container, command: Command) -> dict[str, Any]:
    """Runs a command through the group-commit writer without blocking the event loop."""
    return await container.ledger.submit_async(command)
