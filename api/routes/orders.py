"""Order routes: capture, shipments, cancellation, returns (ingest:write), the release of a held
order (admin) and the order view.

An order id is captured once: the same id with the same lines answers 201 with the order as it
stands (nothing is appended); the same id with other lines answers 409 `order-conflict`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from pydantic import TypeAdapter
from starlette.concurrency import run_in_threadpool

from api.deps import Admin, Auditor, ContainerDep, IdempotencyKey, Ingester, OrderReader, execute, valid_id
from api.fastpath import Answer, Call, Lean, dumped
from api.middleware import cause_from
from api.models import Cancellation, NewOrder, OrderDetail, OrderView, Return, Shipment, problems
from api.problems import Problem
from api.schemas import OrderPage
from ledger.commands import CancelOrder, CaptureOrder, ReleaseOrder, ReturnItems, ShipOrder
from ledger.orders import STAGES
from projections import queries

router = APIRouter(prefix="/v1/orders", tags=["orders"])

OrderId = Annotated[str, Path(min_length=1, max_length=128)]
# A capture's own problems; a command on a captured order can also find no order (404).
CAPTURE_PROBLEMS = problems(
    "insufficient-stock",
    "order-conflict",
    "reservation-conflict",
    "reservation-not-found",
    "idempotency-key-reused",
)
WRITE_PROBLEMS = problems(
    "order-not-found",
    "insufficient-stock",
    "order-conflict",
    "reservation-conflict",
    "idempotency-key-reused",
)


def _answer(outcome: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in outcome.items() if k != "duplicate"}


@router.post("", status_code=201, response_model=OrderView, responses=CAPTURE_PROBLEMS)
async def capture(
    body: NewOrder,
    request: Request,
    container: ContainerDep,
    _: Ingester,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    """Capture an order and reserve every line (at its location, or in the channel's locations).

    409 `insufficient-stock` when a line cannot be reserved, unless `allow_partial` is true.
    The same order id with the same lines again answers 201 with the order as it stands and
    appends nothing; with other lines, 409 `order-conflict`.
    """
    cmd = _capture(body, cause_from(request, reference=body.order_id))
    return _answer(await execute(container, cmd))


def _capture(body: NewOrder, cause: dict[str, Any]) -> CaptureOrder:
    lines = tuple(x.model_dump(exclude_none=True) for x in body.lines)
    return CaptureOrder(
        order_id=body.order_id,
        channel=body.channel,
        lines=lines,
        allow_partial=body.allow_partial,
        reservation_id=body.reservation_id,
        received_at=datetime.now(UTC) if body.reservation_id is not None else None,
        cause=cause,
    )


NEW_ORDER = TypeAdapter(NewOrder)
ORDER_VIEW = TypeAdapter(OrderView)


async def lean_capture(call: Call) -> Answer | None:
    """`capture` on the lean path (`api.fastpath`): a kept key, no query, a valid body."""
    if call.query or call.principal("ingest:write") is None:
        return None
    body = call.model(NEW_ORDER)
    if body is None:
        return None
    outcome = await execute(call.container, _capture(body, call.cause(reference=body.order_id)))
    return Answer(201, dumped(ORDER_VIEW, _answer(outcome)))


@router.post(
    "/{order_id:path}/shipments", status_code=201, response_model=OrderView, responses=WRITE_PROBLEMS
)
async def ship(
    order_id: OrderId,
    body: Shipment,
    request: Request,
    container: ContainerDep,
    _: Ingester,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    """Record a shipment: the reserved units leave on hand. A repeated `shipment_id` appends nothing."""
    valid_id(order_id, "order_id")
    lines = tuple(x.model_dump(exclude_none=True) for x in body.lines)
    cmd = ShipOrder(
        order_id=order_id,
        shipment_id=body.shipment_id,
        lines=lines,
        cause=cause_from(request, reference=body.shipment_id),
    )
    return _answer(await execute(container, cmd))


@router.post(
    "/{order_id:path}/cancellation", status_code=200, response_model=OrderView, responses=WRITE_PROBLEMS
)
async def cancel(
    order_id: OrderId,
    body: Cancellation,
    request: Request,
    container: ContainerDep,
    _: Ingester,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    """Cancel the whole order, or some units of some lines; their reservations are released."""
    valid_id(order_id, "order_id")
    lines = None if body.lines is None else tuple(x.model_dump() for x in body.lines)
    cmd = CancelOrder(
        order_id=order_id,
        reason=body.reason,
        lines=lines,
        reference=body.reference,
        cause=cause_from(request, reference=body.reference),
    )
    return _answer(await execute(container, cmd))


@router.post("/{order_id:path}/release", status_code=200, response_model=OrderView, responses=WRITE_PROBLEMS)
async def release(
    order_id: OrderId,
    request: Request,
    container: ContainerDep,
    principal: Admin,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    """Release an order its checks held: its sales order goes on to the ERP. 409 if it is not held."""
    valid_id(order_id, "order_id")
    cmd = ReleaseOrder(order_id=order_id, by=principal.name, cause=cause_from(request, reference=order_id))
    return _answer(await execute(container, cmd))


@router.post("/{order_id:path}/returns", status_code=201, response_model=OrderView, responses=WRITE_PROBLEMS)
async def return_items(
    order_id: OrderId,
    body: Return,
    request: Request,
    container: ContainerDep,
    _: Ingester,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    """Record returned units: `restock` puts them back on hand, `damaged` keeps them unavailable."""
    valid_id(order_id, "order_id")
    lines = tuple(x.model_dump(exclude_none=True) for x in body.lines)
    cmd = ReturnItems(
        order_id=order_id,
        return_id=body.return_id,
        lines=lines,
        cause=cause_from(request, reference=body.return_id),
    )
    return _answer(await execute(container, cmd))


@router.get("", response_model=OrderPage)
async def list_orders(
    container: ContainerDep,
    _: Auditor,
    stage: Literal[STAGES] | None = None,  # type: ignore[valid-type]  # a tuple of literals, which FastAPI reads
    channel: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
    after: Annotated[str, Query(max_length=128)] = "",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Orders by id from the `orders` read model (trailing the ledger by the projection lag), each
    with its stage and what is still `open`: `?stage=posted` lists what is posted but not shipped."""
    items = await run_in_threadpool(queries.orders, container.db, stage, channel, after, limit)
    return {"items": items, "next": items[-1]["order_id"] if len(items) == limit else None}


@router.get("/{order_id:path}", response_model=OrderDetail, responses=problems("order-not-found"))
async def order(order_id: OrderId, container: ContainerDep, _: OrderReader) -> dict[str, Any]:
    """The order, its stage and its lines, straight from the ledger."""
    valid_id(order_id, "order_id")
    found = await run_in_threadpool(container.ledger.history.order, order_id)
    if found is None:
        raise Problem(404, "order-not-found", f"order {order_id} is not in the ledger")
    return found.view()


LEAN = [Lean("POST", "/v1/orders", router, capture, lean_capture)]
