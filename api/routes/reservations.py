"""Holds (`/v1/reservations`): units held for a checkout until an expiry, the two-phase hold.

`POST` places a hold, each line allocated across the channel's locations like an order line
(all lines or none, 409 `insufficient-stock`); the same reservation id with the same body
answers as the first time and appends nothing, with another body 422 `idempotency-key-reused`.
`DELETE` voids it. An order naming it (`POST /v1/orders` with `reservation_id`) takes it over;
one not taken over by `expires_at` is released by the sweeper. Ids with `/` are addressed
percent-encoded (`/v1/reservations/cart%2F1`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from starlette.concurrency import run_in_threadpool

from api.deps import ContainerDep, IdempotencyKey, Ingester, OrderReader, execute, valid_id
from api.middleware import cause_from
from api.models import HoldView, NewHold, problems
from api.problems import Problem
from ledger.commands import PlaceHold, ReleaseHold

router = APIRouter(prefix="/v1/reservations", tags=["reservations"])

ReservationId = Annotated[str, Path(min_length=1, max_length=128)]


@router.post(
    "",
    status_code=201,
    response_model=HoldView,
    responses=problems("insufficient-stock", "idempotency-key-reused"),
)
async def place(
    body: NewHold,
    request: Request,
    container: ContainerDep,
    _: Ingester,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    """Hold units until `expires_at`: every line is allocated in the channel's locations (or at
    its own), or nothing is held (409 `insufficient-stock`). An `expires_at` already past is
    refused with 422."""
    if body.expires_at <= datetime.now(UTC):
        known = await run_in_threadpool(container.ledger.history.hold, body.reservation_id)
        if known is None:  # a repeat of a hold placed earlier still answers as the first time
            raise Problem(422, "validation-error", "expires_at must be in the future")
    cmd = PlaceHold(
        reservation_id=body.reservation_id,
        channel=body.channel,
        lines=tuple(x.model_dump(exclude_none=True) for x in body.lines),
        expires_at=body.expires_at,
        cause=cause_from(request, reference=body.reservation_id),
    )
    outcome = await execute(container, cmd)
    return {k: v for k, v in outcome.items() if k != "duplicate"}


@router.get("/{reservation_id:path}", response_model=HoldView, responses=problems("reservation-not-found"))
async def get_hold(reservation_id: ReservationId, container: ContainerDep, _: OrderReader) -> dict[str, Any]:
    """The hold as the ledger holds it: its status, each line's allocations and what it still holds."""
    valid_id(reservation_id, "reservation_id")
    found = await run_in_threadpool(container.ledger.history.hold, reservation_id)
    if found is None:
        raise Problem(404, "reservation-not-found", f"reservation {reservation_id} is not in the ledger")
    return found.view()


@router.delete("/{reservation_id:path}", response_model=HoldView, responses=problems("reservation-not-found"))
async def release(
    reservation_id: ReservationId,
    request: Request,
    container: ContainerDep,
    _: Ingester,
) -> dict[str, Any]:
    """Void the hold: the units it still holds are released. A hold already taken over, released
    or expired is answered as it stands."""
    valid_id(reservation_id, "reservation_id")
    cmd = ReleaseHold(reservation_id=reservation_id, cause=cause_from(request, reference=reservation_id))
    outcome = await execute(container, cmd)
    return {k: v for k, v in outcome.items() if k != "duplicate"}
