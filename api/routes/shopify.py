"""`GET /v1/shopify/sync` (audit:read): the outbound push to Shopify and the recovery, per shop."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from api.deps import Auditor, ContainerDep

router = APIRouter(tags=["shopify"])


class LastAccepted(BaseModel):
    at: str | None  # RFC 3339, when Shopify last accepted a write of this shop
    position: int | None  # the newest ledger position in that write


class ThrottleState(BaseModel):
    currently_available: float | None  # as Shopify last reported it (`extensions.cost.throttleStatus`)
    maximum_available: float | None
    restore_rate: float | None


class RecoveryState(BaseModel):
    checkpoint: str | None  # orders updated since this moment are read back on the next run
    last_run_at: str | None


class ShopSync(BaseModel):
    shop: str
    pending: int  # items whose newest value Shopify has not accepted yet
    oldest_pending_seconds: float
    last_accepted: LastAccepted
    throttle: ThrottleState
    stale_compares: int
    failed: int  # pending items whose last attempt failed (with a reason; retried with backoff)
    recovery: RecoveryState


class SyncStatus(BaseModel):
    shops: list[ShopSync]


@router.get("/v1/shopify/sync", response_model=SyncStatus)
async def shopify_sync(container: ContainerDep, _: Auditor) -> dict[str, Any]:
    """Per shop: pending writes, the oldest pending age, the last accepted write and position, the
    throttle state, stale compares, failed writes and the recovery checkpoint."""
    return await run_in_threadpool(container.shopify_sync.status)
