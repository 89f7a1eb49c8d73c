"""Channel policies (admin): the location group, safety stock, buffer and exclusions of a channel.

A change is a new version, kept with who made it and when, and recorded in the admin audit
trail. The version is also recorded in the ledger (`Channel.PolicyChanged`); the `ats` read
model applies it at that event's position and publishes the values that changed with it.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from adapters.keys import Principal
from api.deps import Admin, Auditor, ContainerDep, valid_id
from api.models import problems
from api.problems import Problem
from api.schemas import ChannelHistory
from api.schemas import ChannelPolicy as ChannelPolicyView
from ledger.bounds import MAX_QUANTITY, check_id
from ledger.errors import InvalidCommandError
from ledger.policy import MAX_INCOMING_DAYS, ChannelPolicy

router = APIRouter(tags=["channels"])


class Buffer(BaseModel):
    """Units held back from the ATS beyond the safety stock: in units or in percent, not both."""

    model_config = ConfigDict(extra="forbid")
    units: int | None = Field(default=None, ge=0, le=MAX_QUANTITY, description="Units held back.")
    percent: int | None = Field(default=None, ge=0, le=100, description="Percent of the available held back.")


class ShopifyTarget(BaseModel):
    """Where the channel's ATS is written in Shopify."""

    model_config = ConfigDict(extra="forbid")
    shop: str = Field(min_length=1, max_length=255, description="A shop domain of LEDGER_SHOPIFY_SHOPS.")
    location_id: str = Field(
        min_length=1,
        max_length=128,
        pattern=r"^gid://shopify/Location/[0-9]+$",
        description="Shopify's location gid.",
    )


class PolicyBody(BaseModel):
    """A channel's policy: its location group, what is held back, what it never sells."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "locations": ["WH1", "STORE1"],
                    "safety_stock": 2,
                    "buffer": {"percent": 10},
                    "safety_stock_overrides": {"SKU-RED-M": 5},
                    "excluded_skus": ["SKU-GIFT"],
                }
            ]
        },
    )
    locations: list[str] = Field(
        min_length=1, max_length=100, description="The locations the channel sells from."
    )
    safety_stock: int = Field(ge=0, le=MAX_QUANTITY, description="Units held back per SKU.")
    buffer: Buffer | None = Field(None, description="A further buffer, in units or percent.")
    safety_stock_overrides: dict[str, int] = Field(
        default_factory=dict, max_length=10_000, description="Safety stock per SKU, where it differs."
    )
    excluded_skus: list[str] = Field(
        default_factory=list, max_length=10_000, description="SKUs the channel never sells (ATS 0)."
    )
    include_incoming_days: int = Field(
        0,
        ge=0,
        le=MAX_INCOMING_DAYS,
        description="Count the incoming units (advance shipping notices, dispatched transfers) due "
        "within this many days of their notice in the ATS, like an available-to-order; 0 counts none.",
    )
    # where the channel's ATS is written (adapters/shopify_push.py)
    shopify: ShopifyTarget | None = Field(
        None, description="Write the channel's ATS to this Shopify location."
    )


def _actor(p: Principal) -> str:
    return f"{p.name} ({p.key_id})"


@router.put("/v1/channels/{channel:path}", response_model=ChannelPolicyView)
async def put_channel(
    channel: str, body: PolicyBody, container: ContainerDep, principal: Admin
) -> dict[str, Any]:
    """Sets the channel's policy (a new version, also a fact in the ledger); its ATS follows."""
    buffer = body.buffer or Buffer()
    if buffer.units is not None and buffer.percent is not None:
        raise Problem(422, "validation-error", "a buffer is either units or percent, not both")
    try:
        check_id(channel, "channel")
        policy = ChannelPolicy(
            channel=channel,
            locations=tuple(body.locations),
            safety_stock=body.safety_stock,
            safety_stock_overrides=dict(body.safety_stock_overrides),
            buffer_units=buffer.units or 0,
            buffer_percent=buffer.percent or 0,
            excluded_skus=frozenset(body.excluded_skus),
            include_incoming_days=body.include_incoming_days,
        )
    except InvalidCommandError as e:
        raise Problem(422, "validation-error", e.message) from None
    shopify_sync = container.shopify_sync
    if body.shopify is not None and body.shopify.shop not in shopify_sync.shops:
        raise Problem(422, "validation-error", f"shop {body.shopify.shop!r} is not in LEDGER_SHOPIFY_SHOPS")
    store = container.channels
    saved = await run_in_threadpool(store.put, policy, _actor(principal))
    target = body.shopify
    await run_in_threadpool(
        shopify_sync.targets.set,
        channel,
        None if target is None else target.shop,
        None if target is None else target.location_id,
        _actor(principal),
    )
    await run_in_threadpool(container.keys.audit, _actor(principal), "channel.set", channel, saved.as_dict())
    container.runner.wake()
    return {**saved.as_dict(), "shopify": body.shopify.model_dump() if body.shopify else None}


@router.get(
    "/v1/channels/{channel:path}", response_model=ChannelHistory, responses=problems((404, "unknown-channel"))
)
async def get_channel(channel: str, container: ContainerDep, _: Auditor) -> dict[str, Any]:
    """The channel's current policy and its earlier versions (newest first)."""
    valid_id(channel, "channel")
    history = await run_in_threadpool(container.channels.history, channel)
    if not history:
        raise Problem(404, "unknown-channel", f"channel {channel!r} has no policy")
    target = await run_in_threadpool(container.shopify_sync.targets.get, channel)
    return {**history[0].as_dict(), "shopify": target, "versions": [p.as_dict() for p in history]}
