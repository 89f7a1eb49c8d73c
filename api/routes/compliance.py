"""Shopify's compliance reports: what a `customers/data_request` found held (admin)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path
from starlette.concurrency import run_in_threadpool

from adapters import erasure
from api.deps import Admin, ContainerDep
from api.models import problems
from api.problems import Problem
from api.schemas import DataRequestReport

router = APIRouter(tags=["compliance"])


@router.get(
    "/v1/shopify/data-requests/{request_id}",
    response_model=DataRequestReport,
    responses=problems((404, "not-found")),
)
async def data_request(
    request_id: Annotated[str, Path(min_length=1, max_length=64)], container: ContainerDep, _: Admin
) -> dict[str, Any]:
    """The personal data held for a customer, as found when Shopify's data request was applied."""
    found = await run_in_threadpool(erasure.report, container.db, request_id)
    if found is None:
        raise Problem(404, "not-found", f"no data request {request_id}")
    return found
