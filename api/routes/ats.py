"""Available-to-sell per channel and SKU, from the `ats` read model.

An unknown channel (no policy) answers 404. A known channel and a SKU it has never seen
answers `available: 0`. `position` is the ledger position the read model has applied: the
answer reflects every event up to it (it trails a write by the projection lag).

The ATS point query is the hottest route (see docs/ARCHITECTURE.md, "ATS fast path"). The key
is checked by a dict lookup (`ApiKeys.lookup`); the values come from the in-process `AtsCache`
(`projections.cache`) when it holds them and checked its version against the database less
than 0.1 s ago, else from one statement that reads values and position together (and fills
the cache); the answer is serialized once with orjson.

The lean path (`api.fastpath`) answers `GET /v1/ats/{channel}/{sku}` without FastAPI's routing
and dependency machinery when, and only when, everything is already known in process: a kept
verdict on a key with `ats:read`, a channel seen with a policy, a valid SKU, no query parameter
and a cached value (`lean_point`). Anything else goes on to the route below, which answers
everything (problems included) and fills what the lean path needs.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from api.deps import path_id, require, valid_id
from api.fastpath import Answer, Call, Lean
from api.models import problems
from api.openapi import keyed
from api.problems import Problem
from bootstrap import Container
from ledger.bounds import check_id, unescape_part
from ledger.errors import InvalidCommandError
from projections.cache import AtsCache

router = APIRouter(tags=["ats"])

MAX_SKUS = 100
JSON = "application/json"


ATS_EXAMPLE: dict[str, Any] = {"channel": "online", "sku": "SKU-RED-M", "available": 7, "position": 42}


class AtsItem(BaseModel):
    """What a channel can sell of a SKU, as of a ledger position."""

    channel: str = Field(description="The channel.")
    sku: str = Field(description="The SKU (0 for one the channel has never seen).")
    available: int = Field(description="Units the channel can sell now: an order for no more is reserved.")
    position: int = Field(
        description="The ledger position the value reflects; a consumer drops values not newer than the last."
    )
    model_config = ConfigDict(json_schema_extra={"examples": [ATS_EXAMPLE]})


class AtsItems(BaseModel):
    """The ATS of several SKUs on one channel."""

    items: list[AtsItem] = Field(description="One per SKU asked for, in the order asked.")
    model_config = ConfigDict(json_schema_extra={"examples": [{"items": [ATS_EXAMPLE]}]})


_reader = require("ats:read")  # called directly: a dependency costs more than the rest of the read


async def _known_channel(container: Container, channel: str) -> None:
    """404 for a channel without a policy. Known channels are remembered (a policy is never deleted)."""
    known = container.ats_channels
    if channel in known:
        return
    if await run_in_threadpool(container.channels.get, channel) is None:
        raise Problem(404, "unknown-channel", f"channel {channel!r} has no policy")
    known.add(channel)


def cache_of(container: Container) -> AtsCache:
    return container.ats_cache


def _item(channel: str, sku: str, found: tuple[int, int]) -> dict[str, Any]:
    return {"channel": channel, "sku": sku, "available": found[0], "position": found[1]}


@router.get(
    "/v1/ats/{channel}/{sku}",
    response_model=AtsItem,
    responses=problems((404, "unknown-channel")),
    openapi_extra=keyed(_reader),
)
async def get_ats(channel: str, sku: str, request: Request) -> Response:
    """The ATS of one SKU on one channel."""
    await _reader(request)
    container: Container = request.app.state.container
    channel = path_id(channel, "channel")
    await _known_channel(container, channel)
    sku = path_id(sku, "sku")
    cache = cache_of(container)
    found = cache.get(channel, sku)
    if found is None:
        found = (await run_in_threadpool(cache.read, channel, [sku]))[0]
    return Response(orjson.dumps(_item(channel, sku, found)), media_type=JSON)


@router.get(
    "/v1/ats/{channel}",
    response_model=AtsItems,
    responses=problems((404, "unknown-channel")),
    openapi_extra=keyed(_reader),
)
async def list_ats(
    channel: str, request: Request, sku: Annotated[list[str] | None, Query()] = None
) -> Response:
    """The ATS of several SKUs on one channel (`?sku=A&sku=B`, at most 100)."""
    await _reader(request)
    container: Container = request.app.state.container
    sku = sku or []
    channel = path_id(channel, "channel")
    await _known_channel(container, channel)
    if not sku:
        raise Problem(422, "validation-error", "name at least one sku (?sku=A&sku=B)")
    if len(sku) > MAX_SKUS:
        raise Problem(422, "validation-error", f"at most {MAX_SKUS} skus per request")
    for s in sku:
        valid_id(s, "sku")
    skus = list(dict.fromkeys(sku))
    cache = cache_of(container)
    found = cache.get_many(channel, skus)
    if found is None:
        found = await run_in_threadpool(cache.read, channel, skus)
    items = [_item(channel, s, f) for s, f in zip(skus, found, strict=True)]
    return Response(orjson.dumps({"items": items}), media_type=JSON)


async def lean_point(call: Call) -> Answer | None:
    """The point query from memory, when the channel, the key's verdict and the value are known."""
    parts = call.path.split("/")  # "", "v1", "ats", channel, sku
    if len(parts) != 5 or call.query:
        return None
    container = call.container
    channel, sku = unescape_part(parts[3]), unescape_part(parts[4])  # `PathIds` escaped them
    if channel not in container.ats_channels or call.principal("ats:read") is None:
        return None
    try:
        check_id(sku, "sku")
    except InvalidCommandError:
        return None
    found = cache_of(container).get(channel, sku)
    return None if found is None else Answer(200, orjson.dumps(_item(channel, sku, found)))


LEAN = [Lean("GET", "/v1/ats/", router, get_ats, lean_point, prefix=True)]
