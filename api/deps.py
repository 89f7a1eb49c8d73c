"""Dependency shortcuts for routes: the container, the caller's key, scope checks."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from adapters.bootstrap import Container
from adapters.keys import Principal
from api.problems import Problem
from ledger.commands import Command


def get_container(request: Request) -> Container:
    return request.app.state.container


ContainerDep = Annotated[Container, Depends(get_container)]


async def get_principal(request: Request) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Problem(401, "unauthenticated", "a bearer token is required",
                      )
    container: Container = request.app.state.container
    principal = await run_in_threadpool(container.keys.verify, token.strip())
    if principal is None:
        raise Problem(401, "unauthenticated", "the bearer token is unknown, expired or revoked")
    request.state.principal = principal
    return principal


def require(*scopes: str) -> Callable[..., Any]:
    """A dependency that lets a key through when it holds any of `scopes` (admin holds all)."""

    async def check(request: Request) -> Principal:
        principal = await get_principal(request)
        if not principal.has(*scopes):
            raise Problem(403, "forbidden", f"this key lacks the scope {' or '.join(scopes)}")
        return principal

    return check


AtsReader = Annotated[Principal, Depends(require("ats:read"))]
Auditor = Annotated[Principal, Depends(require("audit:read"))]
OrderReader = Annotated[Principal, Depends(require("audit:read", "ats:read"))]
Ingester = Annotated[Principal, Depends(require("ingest:write"))]
Admin = Annotated[Principal, Depends(require("admin"))]


async def execute(container: Container, command: Command) -> dict[str, Any]:
    """Runs a command through the group-commit writer without blocking the event loop."""
    future = container.ledger.submit(command)
    return await asyncio.wrap_future(future)
