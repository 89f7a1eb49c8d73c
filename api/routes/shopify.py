"""`GET /v1/shopify/sync` (audit:read): the outbound push to Shopify and the recovery, per shop."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from api.deps import Auditor, ContainerDep

router = APIRouter(tags=["shopify"])


@router.get("/v1/shopify/sync")
async def shopify_sync(container: ContainerDep, _: Auditor) -> dict[str, Any]:
    """Per shop: pending writes, the oldest pending age, the last accepted write and position, the
    throttle state, stale compares, failed writes and the recovery checkpoint."""
    return await run_in_threadpool(container.shopify_sync.status)
