"""Stock routes: receipts, adjustments and transfers (ingest:write); state and history (audit:read)."""

from __future__ import annotations

import re
from dataclasses import fields, is_dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Header, Path, Query, Request, Response
from pydantic import TypeAdapter
from starlette.concurrency import run_in_threadpool

from api.deps import Auditor, ContainerDep, IdempotencyKey, Ingester, execute, path_id, valid_id
from api.fastpath import Answer, Call, Lean, dumped
from api.middleware import cause_from
from api.models import (
    Adjustment,
    EventPage,
    Receipt,
    StockView,
    Transfer,
    TransferView,
    problems,
)
from api.problems import Problem
from bootstrap import Container
from ledger.application import stock_view
from ledger.bounds import stock_id
from ledger.commands import AdjustStock, ReceiveStock, TransferStock

router = APIRouter(prefix="/v1/stock", tags=["stock"])

IfMatch = Annotated[
    str | None,
    Header(
        alias="If-Match",
        max_length=40,
        description="compare-and-set: the stream version the write expects (the ETag of a read)",
    ),
]
# Percent-encoded in the path (`/` as %2F); the bound is checked on the decoded id (`path_id`).
SkuPath = Annotated[str, Path(min_length=1, json_schema_extra={"maxLength": 128})]
VERSION = re.compile(r'^\s*(?:W/)?"?(\d{1,15})"?\s*$')
HIDDEN_FIELDS = {"originator_id", "originator_version", "timestamp", "cause", "originator_topic"}
RECEIPT_PROBLEMS = problems("version-conflict", "idempotency-key-reused")
WRITE_PROBLEMS = problems(
    "insufficient-stock", "version-conflict", "stock-not-found", "idempotency-key-reused"
)
MAX_SCAN = 10_000


def if_match_version(value: str | None) -> int | None:
    if value is None:
        return None
    m = VERSION.match(value)
    if m is None:
        raise Problem(422, "validation-error", 'If-Match must be a stream version, e.g. "7"')
    return int(m.group(1))


def etag(version: int) -> str:
    return f'"{version}"'


def _answer(response: Response, outcome: dict[str, Any], version: int | None = None) -> dict[str, Any]:
    body = {k: v for k, v in outcome.items() if k != "duplicate"}
    if outcome.get("duplicate"):
        response.headers["Idempotent-Replayed"] = "true"
    if version is not None:
        response.headers["ETag"] = etag(version)
    return body


@router.post("/receipts", status_code=201, response_model=StockView, responses=RECEIPT_PROBLEMS)
async def receive(
    body: Receipt,
    request: Request,
    response: Response,
    container: ContainerDep,
    _: Ingester,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    """Record units received at a location. A repeat of the same `reference` appends nothing."""
    cmd = _receipt(body, if_match_version(if_match), cause_from(request, reference=body.reference))
    outcome = await execute(container, cmd)
    return _answer(response, outcome, outcome["version"])


def _receipt(body: Receipt, if_match: int | None, cause: dict[str, Any]) -> ReceiveStock:
    return ReceiveStock(
        sku=body.sku,
        location=body.location,
        quantity=body.quantity,
        reference=body.reference,
        expected=body.asn_id is not None,
        if_match=if_match,
        cause=cause,
    )


RECEIPT = TypeAdapter(Receipt)
STOCK_VIEW = TypeAdapter(StockView)


async def lean_receive(call: Call) -> Answer | None:
    """`receive` on the lean path (`api.fastpath`): a kept key, no query or If-Match, a valid body."""
    if call.query or call.header(b"if-match") is not None or call.principal("ingest:write") is None:
        return None
    body = call.model(RECEIPT)
    if body is None:
        return None
    outcome = await execute(call.container, _receipt(body, None, call.cause(reference=body.reference)))
    headers = [(b"etag", etag(outcome["version"]).encode())]
    if outcome.get("duplicate"):
        headers.append((b"idempotent-replayed", b"true"))
    answer = {k: v for k, v in outcome.items() if k != "duplicate"}
    return Answer(201, dumped(STOCK_VIEW, answer), headers)


@router.post("/adjustments", status_code=201, response_model=StockView, responses=WRITE_PROBLEMS)
async def adjust(
    body: Adjustment,
    request: Request,
    response: Response,
    container: ContainerDep,
    _: Ingester,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    """Correct on hand by a signed delta; 409 `insufficient-stock` below zero or below what is reserved."""
    cmd = AdjustStock(
        sku=body.sku,
        location=body.location,
        delta=body.delta,
        reason=body.reason,
        reference=body.reference,
        if_match=if_match_version(if_match),
        cause=cause_from(request, reference=body.reference),
    )
    outcome = await execute(container, cmd)
    return _answer(response, outcome, outcome["version"])


@router.post(
    "/transfers",
    status_code=201,
    response_model=TransferView,
    response_model_by_alias=True,
    responses=WRITE_PROBLEMS,
)
async def transfer(
    body: Transfer,
    request: Request,
    response: Response,
    container: ContainerDep,
    _: Ingester,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    """Move units between two locations. `If-Match` is compared with the source's version."""
    cmd = TransferStock(
        sku=body.sku,
        from_location=body.from_location,
        to_location=body.to_location,
        quantity=body.quantity,
        reference=body.reference,
        if_match=if_match_version(if_match),
        cause=cause_from(request, reference=body.reference),
    )
    outcome = await execute(container, cmd)
    return _answer(response, outcome, outcome["from"]["version"])


@router.get("/{sku}/{location}", response_model=StockView, responses=problems("stock-not-found"))
async def stock(
    sku: SkuPath,
    location: SkuPath,
    response: Response,
    container: ContainerDep,
    _: Auditor,
    as_of: Annotated[datetime | None, Query(description="RFC 3339 moment, with its offset")] = None,
    position: Annotated[int | None, Query(ge=0, le=2**62, description="a ledger position")] = None,
) -> dict[str, Any]:
    """The stock of a SKU at a location, now (straight from the ledger), at a moment, or at a position."""
    sku, location = path_id(sku, "sku"), path_id(location, "location")
    if as_of is not None and position is not None:
        raise Problem(422, "validation-error", "give as_of or position, not both")
    if as_of is not None and as_of.tzinfo is None:
        raise Problem(422, "validation-error", "as_of needs a UTC offset, e.g. 2024-05-01T12:00:00Z")
    history = container.ledger.history
    agg_id = stock_id(sku, location)
    if as_of is not None:
        s = await run_in_threadpool(history.as_of_time, agg_id, as_of)
    elif position is not None:
        s = await run_in_threadpool(history.as_of_position, agg_id, position)
    else:
        s = await run_in_threadpool(history.stock, sku, location)
    if s is None:
        raise Problem(
            404,
            "stock-not-found",
            f"no stock events for {sku} at {location}"
            + (" by then" if as_of is not None or position is not None else ""),
        )
    response.headers["ETag"] = etag(s.version)
    return stock_view(s)  # type: ignore[arg-type]  # a SKU-location stream holds a SkuLocation


def jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, UUID | Decimal):
        return str(value)
    if isinstance(value, Enum):
        return jsonable(value.value)
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in fields(value)}
    return value


def event_item(position: int, event: Any) -> dict[str, Any]:
    cause = getattr(event, "cause", None) or {}
    data = {k: jsonable(v) for k, v in vars(event).items() if k not in HIDDEN_FIELDS}
    reference = cause.get("reference") or data.get("reference")
    return {
        "position": position,
        "version": event.originator_version,
        "type": type(event).__name__,
        "data": data,
        "recorded_at": event.timestamp.isoformat(),
        "correlation_id": cause.get("correlation_id"),
        "causation_id": cause.get("causation_id"),
        "source": cause.get("source"),
        "reference": None if reference is None else str(reference),
    }


def read_page(
    container: Container,
    sku: str,
    location: str,
    after: int,
    limit: int,
    types: set[str],
    since: datetime | None,
    until: datetime | None,
) -> dict[str, Any]:
    """One page of a stream's events, filtered; scans at most MAX_SCAN events, then hands out a cursor."""
    agg_id = stock_id(sku, location)
    items: list[dict[str, Any]] = []
    cursor = after
    scanned = 0
    exhausted = False
    filtered = bool(types) or since is not None or until is not None
    while len(items) < limit and scanned < MAX_SCAN:
        chunk = limit if not filtered else min(1000, MAX_SCAN - scanned)
        batch = list(container.ledger.history.events(agg_id, after=cursor, limit=chunk))
        if not batch:
            exhausted = True
            break
        for position, event in batch:
            scanned += 1
            cursor = position
            if until is not None and event.timestamp > until:
                exhausted = True  # a stream's events are in time order
                break
            if (not types or type(event).__name__ in types) and (since is None or event.timestamp >= since):
                items.append(event_item(position, event))
                if len(items) == limit:
                    break
        if exhausted:
            break
        if len(batch) < chunk and len(items) < limit:
            exhausted = True
            break
    if not exhausted and len(items) == limit:
        more = list(container.ledger.history.events(agg_id, after=cursor, limit=1))
        exhausted = not more
    return {"items": items, "next": None if exhausted else cursor}


@router.get("/{sku}/{location}/events", response_model=EventPage)
async def events(
    sku: SkuPath,
    location: SkuPath,
    container: ContainerDep,
    _: Auditor,
    after: Annotated[int, Query(ge=0, le=2**62, description="ledger position to start after")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    type: Annotated[
        list[str] | None, Query(max_length=50, description="event types to keep, e.g. StockReceived")
    ] = None,
    since: Annotated[datetime | None, Query(description="RFC 3339: events recorded at or after")] = None,
    until: Annotated[datetime | None, Query(description="RFC 3339: events recorded at or before")] = None,
) -> dict[str, Any]:
    """The events of a SKU at a location, by ledger position, each linked to its cause."""
    sku, location = path_id(sku, "sku"), path_id(location, "location")
    for moment, name in ((since, "since"), (until, "until")):
        if moment is not None and moment.tzinfo is None:
            raise Problem(422, "validation-error", f"{name} needs a UTC offset, e.g. 2024-05-01T12:00:00Z")
    types = {valid_id(t, "type") for t in type or ()}
    return await run_in_threadpool(read_page, container, sku, location, after, limit, types, since, until)


LEAN = [Lean("POST", "/v1/stock/receipts", router, receive, lean_receive)]
