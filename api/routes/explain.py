"""Explain an ATS: `GET /v1/ats/{channel}/{sku}/explain` breaks the number into its terms.

Per location of the channel: on hand, reserved, unavailable and available, each linked to the
events that moved it (positions, types, causes); then the safety stock, the buffer and the
exclusion of the policy version in force (who set it, when). Without `as_of` the terms are
taken at the position the `ats` read model has applied, so they add up to the value it shows
(`read_model`); with `as_of` they explain the value at that moment.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from api.deps import ContainerDep, OrderReader, path_id
from api.models import problems
from api.problems import Problem
from api.schemas import Explanation
from bootstrap import Container
from projections.explain import Explainer

router = APIRouter(tags=["ats"])


def explainer(container: Container) -> Explainer:
    return Explainer(container.db, container.ledger.history, container.channels)


@router.get(
    "/v1/ats/{channel}/{sku}/explain",
    response_model=Explanation,
    responses=problems((404, "unknown-channel")),
)
async def explain_ats(
    channel: str,
    sku: str,
    container: ContainerDep,
    _: OrderReader,
    as_of: Annotated[datetime | None, Query(description="RFC 3339 moment, with its offset")] = None,
) -> dict[str, Any]:
    """The terms of an ATS (per location, then safety stock, buffer, exclusion), each linked to its events."""
    channel, sku = path_id(channel, "channel"), path_id(sku, "sku")
    if as_of is not None and as_of.tzinfo is None:
        raise Problem(422, "validation-error", "as_of needs a UTC offset, e.g. 2024-05-01T12:00:00Z")
    if container.channels.get(channel) is None:
        raise Problem(404, "unknown-channel", f"channel {channel!r} has no policy")
    ex = explainer(container)
    if as_of is None:
        answer = await run_in_threadpool(ex.now, channel, sku)
        if answer is None:
            raise Problem(
                404, "unknown-channel", f"the ats read model has not applied a policy of {channel!r} yet"
            )
    else:
        answer = await run_in_threadpool(ex.as_of, channel, sku, as_of)
        if answer is None:
            raise Problem(404, "unknown-channel", f"channel {channel!r} had no policy at {as_of.isoformat()}")
    return answer
