"""Location policies (`/v1/locations/{location}`): whether a location may reserve beyond what is
available (backorders), for every SKU at it, SKUs first seen later included. A SKU-location's
own setting (`ConfigureBackorders`) still allows it for that SKU alone. Ids with `/` are
addressed percent-encoded."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from starlette.concurrency import run_in_threadpool

from api.deps import Admin, Auditor, ContainerDep, execute, valid_id
from api.middleware import cause_from
from api.models import LocationPolicy, LocationView, problems
from ledger.commands import ConfigureLocation

router = APIRouter(prefix="/v1/locations", tags=["locations"])

LocationPath = Annotated[str, Path(min_length=1, max_length=128)]


# 404: a path the router matches to no route (a decoded newline in the id)
@router.put("/{location:path}", response_model=LocationView, responses=problems(404))
async def put_location(
    location: LocationPath, body: LocationPolicy, request: Request, container: ContainerDep, _: Admin
) -> dict[str, Any]:
    """Set whether the location may reserve beyond what is available, for every SKU at it (SKUs
    first seen later too). Setting what is already set appends nothing."""
    valid_id(location, "location")
    cmd = ConfigureLocation(
        location=location, backorders=body.backorders, cause=cause_from(request, reference=location)
    )
    outcome = await execute(container, cmd)
    return {k: v for k, v in outcome.items() if k != "duplicate"}


@router.get("/{location:path}", response_model=LocationView, responses=problems(404))
async def get_location(location: LocationPath, container: ContainerDep, _: Auditor) -> dict[str, Any]:
    """The location's policy (a location never configured does not allow backorders)."""
    valid_id(location, "location")
    found = await run_in_threadpool(container.ledger.history.location, location)
    return {"location": location, "backorders": False} if found is None else found.view()
