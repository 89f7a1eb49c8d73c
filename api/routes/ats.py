"""Available-to-sell per channel and SKU, from the `ats` read model.

An unknown channel (no policy) answers 404. A known channel and a SKU it has never seen
answers `available: 0`. `position` is the ledger position the read model has applied: the
answer reflects every event up to it (it trails a write by the projection lag).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from adapters.bootstrap import Container
from api.deps import AtsReader, ContainerDep
from api.problems import Problem
from ledger.bounds import check_id
from ledger.errors import InvalidCommandError

router = APIRouter(tags=["ats"])

MAX_SKUS = 100


def _check(value: str, field: str) -> None:
    try:
        check_id(value, field)
    except InvalidCommandError as e:
        raise Problem(422, "validation-error", e.message) from None


def _known_channel(container: Container, channel: str) -> None:
    _check(channel, "channel")
    if container.extras["channels"].get(channel) is None:
        raise Problem(404, "unknown-channel", f"channel {channel!r} has no policy")


def read_ats(container: Container, channel: str, skus: list[str]) -> list[dict[str, Any]]:
    """One indexed SELECT (plus the projection's position)."""
    db = container.db
    marks = ", ".join(["%s"] * len(skus))
    rows = db.query(
        f"SELECT sku, available, (SELECT position FROM projection_tracking WHERE name = 'ats') AS at "
        f"FROM ats WHERE channel = %s AND sku IN ({marks})",
        (channel, *skus),
    )
    found = {r["sku"]: r for r in rows}
    position = rows[0]["at"] if rows else None
    if position is None:
        row = db.query_one("SELECT position FROM projection_tracking WHERE name = 'ats'")
        position = row["position"] if row else 0
    return [
        {
            "channel": channel,
            "sku": s,
            "available": int(found[s]["available"]) if s in found else 0,
            "position": int(position),
        }
        for s in skus
    ]


@router.get("/v1/ats/{channel}/{sku}")
async def get_ats(channel: str, sku: str, container: ContainerDep, _: AtsReader) -> dict[str, Any]:
    """The ATS of one SKU on one channel."""
    _known_channel(container, channel)
    _check(sku, "sku")
    return (await run_in_threadpool(read_ats, container, channel, [sku]))[0]


@router.get("/v1/ats/{channel}")
async def list_ats(
    channel: str, container: ContainerDep, _: AtsReader, sku: Annotated[list[str] | None, Query()] = None
) -> dict[str, Any]:
    """The ATS of several SKUs on one channel (`?sku=A&sku=B`, at most 100)."""
    sku = sku or []
    _known_channel(container, channel)
    if not sku:
        raise Problem(422, "validation-error", "name at least one sku (?sku=A&sku=B)")
    if len(sku) > MAX_SKUS:
        raise Problem(422, "validation-error", f"at most {MAX_SKUS} skus per request")
    for s in sku:
        _check(s, "sku")
    skus = list(dict.fromkeys(sku))
    return {"items": await run_in_threadpool(read_ats, container, channel, skus)}
