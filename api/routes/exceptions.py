"""Open exceptions for operators: drift, POS sequence gaps, parked messages, stuck orders, expired reservations."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from adapters.exceptions import KINDS, list_exceptions
from api.deps import Auditor, ContainerDep
from api.problems import Problem
from api.schemas import ExceptionList

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
