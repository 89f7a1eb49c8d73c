"""`GET /v1/shopify/sync` (audit:read): the outbound push to Shopify and the recovery, per shop."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from api.deps import Auditor, ContainerDep

router = APIRouter(tags=["shopify"])


class LastAccepted(BaseModel):
    at: str | None = Field(description="When Shopify last accepted a write of this shop (RFC 3339).")
    position: int | None = Field(description="The newest ledger position in that write.")


class ThrottleState(BaseModel):
    """As Shopify last reported it (`extensions.cost.throttleStatus`)."""

    currently_available: float | None = Field(description="Query cost points available now.")
    maximum_available: float | None = Field(description="The bucket's size.")
    restore_rate: float | None = Field(description="Points restored per second.")


class RecoveryState(BaseModel):
    checkpoint: str | None = Field(
        description="Orders updated since this moment are read back on the next run."
    )
    last_run_at: str | None = Field(description="When the recovery last ran (RFC 3339).")


class ShopSync(BaseModel):
    shop: str = Field(description="The shop domain.")
    pending: int = Field(description="Items whose newest value Shopify has not accepted yet.")
    oldest_pending_seconds: float = Field(description="The age of the oldest pending value.")
    last_accepted: LastAccepted = Field(description="The last write Shopify accepted.")
    throttle: ThrottleState = Field(description="Shopify's rate limit, as last reported.")
    stale_compares: int = Field(description="Writes voided by `CHANGE_FROM_QUANTITY_STALE` and re-read.")
    failed: int = Field(description="Pending items whose last attempt failed (retried with backoff).")
    recovery: RecoveryState = Field(description="The recovery of missed webhooks.")


class SyncStatus(BaseModel):
    """The outbound push to Shopify and the recovery, per shop."""

    shops: list[ShopSync] = Field(description="One per shop of LEDGER_SHOPIFY_SHOPS.")
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "shops": [
                        {
                            "shop": "acme.myshopify.com",
                            "pending": 3,
                            "oldest_pending_seconds": 1.5,
                            "last_accepted": {"at": "2026-11-20T10:00:00+00:00", "position": 42},
                            "throttle": {
                                "currently_available": 980.0,
                                "maximum_available": 1000.0,
                                "restore_rate": 50.0,
                            },
                            "stale_compares": 0,
                            "failed": 0,
                            "recovery": {
                                "checkpoint": "2026-11-20T09:00:00+00:00",
                                "last_run_at": "2026-11-20T09:55:00+00:00",
                            },
                        }
                    ]
                }
            ]
        }
    )


@router.get("/v1/shopify/sync", response_model=SyncStatus)
async def shopify_sync(container: ContainerDep, _: Auditor) -> dict[str, Any]:
    """Per shop: pending writes, the oldest pending age, the last accepted write and position, the
    throttle state, stale compares, failed writes and the recovery checkpoint."""
    return await run_in_threadpool(container.shopify_sync.status)
