"""Open exceptions for operators: drift, POS sequence gaps, parked messages, stuck orders, expired reservations."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from adapters.exceptions import KINDS, RESOLVED_BY_OPERATORS, list_exceptions, resolve
from api.deps import Admin, Auditor, ContainerDep
from api.models import ResolveException, problems
from api.problems import Problem
from api.schemas import ExceptionList, ExceptionView

router = APIRouter(tags=["exceptions"])


@router.get("/v1/exceptions", response_model=ExceptionList)
async def get_exceptions(
    container: ContainerDep, _: Auditor, kind: str | None = None, status: str = "open"
) -> dict[str, Any]:
    """Exceptions, newest first (`?kind=stuck-order`, `?status=all` to include closed ones)."""
    if kind is not None and kind not in KINDS:
        raise Problem(422, "validation-error", f"kind is one of {', '.join(sorted(KINDS))}")
    if status not in ("open", "all"):
        raise Problem(422, "validation-error", "status is open or all")
    items = await run_in_threadpool(list_exceptions, container.db, kind, status == "open")
    return {"items": items}


@router.post("/v1/exceptions/{kind}/resolve", response_model=ExceptionView, responses=problems(404))
async def resolve_exception(
    kind: str, body: ResolveException, container: ContainerDep, principal: Admin
) -> dict[str, Any]:
    """Closes an open exception that no later fact closes (`late-order`, `refund-failed`), naming
    the operator's key in its detail (`resolved_by`). Every other kind closes by itself once what
    raised it is resolved (422 here)."""
    if kind not in RESOLVED_BY_OPERATORS:
        raise Problem(
            422,
            "validation-error",
            f"an operator resolves {', '.join(sorted(RESOLVED_BY_OPERATORS))}; "
            f"{kind if kind in KINDS else 'that kind'} closes by itself",
        )
    row = await run_in_threadpool(resolve, container.db, kind, body.key, principal.name)
    if row is None:
        raise Problem(404, "not-found", f"no open {kind} exception is keyed {body.key!r}")
    return row
