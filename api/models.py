"""Request and response models of the public HTTP contract (strict pydantic v2, CONTRACT "Bounds").

Requests refuse unknown fields and coercion (`"5"` is not a quantity); each identifier is 1 to
128 printable characters with no control characters; a quantity is 1 to 1,000,000,000.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from adapters.fields import Delta, Id, Quantity
from api.problem_types import PROBLEM_TYPES
from api.problems import PROBLEM_JSON, RETRY_AFTER_SECONDS, SLUG_BY_STATUS, TITLES

MAX_LINES = 1000


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Response(BaseModel):
    model_config = ConfigDict(extra="allow")


# ------------------------------------------------------------------ stock


def examples(*values: dict[str, Any]) -> dict[str, Any]:
    """`json_schema_extra` for a model's examples (each checked against its schema by a test)."""
    return {"examples": list(values)}


SKU = "The canonical SKU."
LOCATION = "A location code (warehouse, store)."


class Receipt(Request):
    """Units arrived at a location (a purchase receipt, a count-in): one line of a document, whose
    natural key is `(reference, sku, location)`."""

    sku: Id = Field(description=SKU)
    location: Id = Field(description=LOCATION)
    quantity: Quantity = Field(description="Units received.")
    reference: Id = Field(
        description="The document (purchase order, delivery note); a repeat appends nothing."
    )
    asn_id: Id | None = Field(
        None, description="The advance shipping notice whose incoming units this receipt lands."
    )
    model_config = ConfigDict(
        json_schema_extra=examples(
            {"sku": "SKU-RED-M", "location": "WH1", "quantity": 24, "reference": "PO-1001"}
        )
    )


class Adjustment(Request):
    """A signed correction of on hand, with a reason: one line of a document, whose natural key
    is `(reference, sku, location)`."""

    sku: Id = Field(description=SKU)
    location: Id = Field(description=LOCATION)
    delta: Delta = Field(description="Units added (positive) or taken off (negative); never zero.")
    reason: Id = Field(description="Why: `damaged`, `count`, `theft`, ...")
    reference: Id = Field(description="The document behind it; a repeat appends nothing.")
    model_config = ConfigDict(
        json_schema_extra=examples(
            {"sku": "SKU-RED-M", "location": "WH1", "delta": -2, "reason": "damaged", "reference": "ADJ-7"}
        )
    )


class Transfer(Request):
    """Units moved from one location to another: one line of a transfer document, whose natural
    key is `(reference, sku, from_location, to_location)`."""

    sku: Id = Field(description=SKU)
    from_location: Id = Field(description="Where the units leave.")
    to_location: Id = Field(description="Where they arrive (another location).")
    quantity: Quantity = Field(description="Units moved.")
    reference: Id = Field(description="The transfer document; a repeat appends nothing.")
    model_config = ConfigDict(
        json_schema_extra=examples(
            {
                "sku": "SKU-RED-M",
                "from_location": "WH1",
                "to_location": "STORE1",
                "quantity": 5,
                "reference": "TR-3",
            }
        )
    )

    @model_validator(mode="after")
    def _two_locations(self) -> Transfer:
        if self.from_location == self.to_location:
            raise ValueError("a transfer needs two different locations")
        return self


STOCK_EXAMPLE: dict[str, Any] = {
    "sku": "SKU-RED-M",
    "location": "WH1",
    "on_hand": 24,
    "reserved": 2,
    "available": 22,
    "version": 5,
    "unavailable": 0,
    "incoming": 12,
    "allow_backorder": False,
}


class StockView(Response):
    """A SKU at a location, straight from the ledger."""

    sku: str = Field(description=SKU)
    location: str = Field(description=LOCATION)
    on_hand: int = Field(description="Units physically there.")
    reserved: int = Field(description="Units held for orders and holds.")
    available: int = Field(description="on_hand − reserved − unavailable: what can still be reserved.")
    version: int = Field(description="The stream's version (the ETag; send it as If-Match).")
    unavailable: int = Field(0, description="Units on hand that cannot be sold (damaged, quarantined).")
    incoming: int = Field(
        0, description="Units announced by advance shipping notices or transfers on their way."
    )
    allow_backorder: bool = Field(
        False, description="Whether the location may reserve beyond what is available."
    )
    model_config = ConfigDict(json_schema_extra=examples(STOCK_EXAMPLE))


class TransferView(Response):
    """Both ends of a transfer after it."""

    from_: StockView = Field(alias="from", description="The source location after the transfer.")
    to: StockView = Field(description="The destination after the transfer.")

    model_config = ConfigDict(
        extra="allow",
        populate_by_name=True,
        json_schema_extra=examples(
            {
                "from": {**STOCK_EXAMPLE, "on_hand": 19, "available": 17},
                "to": {
                    **STOCK_EXAMPLE,
                    "location": "STORE1",
                    "on_hand": 5,
                    "reserved": 0,
                    "available": 5,
                    "incoming": 0,
                },
            }
        ),
    )


class StockEvent(Response):
    position: int = Field(description="The event's position in the ledger (global, increasing).")
    version: int = Field(description="Its version in the SKU-location's stream.")
    type: str = Field(description="The event type: `StockReceived`, `StockReserved`, ...")
    data: dict[str, Any] = Field(description="The event's facts (quantities, references), per its type.")
    recorded_at: datetime = Field(description="When it was recorded (RFC 3339).")
    correlation_id: str | None = Field(None, description="The correlation id of the request or message.")
    causation_id: str | None = Field(None, description="The request or message that caused it.")
    source: str | None = Field(None, description="`api`, `shopify`, `pos`, `erp`, ...")
    reference: str | None = Field(None, description="The document it came from.")


class EventPage(Response):
    """A page of a SKU-location's events, by ledger position."""

    items: list[StockEvent] = Field(description="At most `limit` events.")
    next: int | None = Field(description="pass as `after` for the next page; null at the end of the stream")
    model_config = ConfigDict(
        json_schema_extra=examples(
            {
                "items": [
                    {
                        "position": 4,
                        "version": 2,
                        "type": "StockReceived",
                        "data": {"quantity": 24, "reference": "PO-1001", "expected": False},
                        "recorded_at": "2026-11-20T10:00:00Z",
                        "correlation_id": "6ea695932807f0155116503a21a18549",
                        "causation_id": "6ea695932807f0155116503a21a18549",
                        "source": "api",
                        "reference": "PO-1001",
                    }
                ],
                "next": None,
            }
        )
    )


# ------------------------------------------------------------------ orders


class OrderLine(Request):
    line_id: Id = Field(description="The line's id, unique within the order.")
    sku: Id = Field(description=SKU)
    quantity: Quantity = Field(description="Units ordered.")
    location: Id | None = Field(
        None, description="Reserve at this location only (else in the channel's group)."
    )


def unique_line_ids(lines: list[OrderLine]) -> None:
    """An order's or a hold's lines name each `line_id` once (a validation error otherwise)."""
    ids = [x.line_id for x in lines]
    if len(set(ids)) != len(ids):
        raise ValueError("each line_id may appear once")


class NewOrder(Request):
    """An order to capture. Every line is reserved, or none is (unless `allow_partial`)."""

    order_id: Id = Field(
        description="The order's id; captured once (a repeat with the same lines appends nothing)."
    )
    channel: Id = Field(
        description="The channel it is sold on; its policy names the locations to reserve in."
    )
    lines: list[OrderLine] = Field(
        min_length=1, max_length=MAX_LINES, description="The lines, each reserved."
    )
    allow_partial: bool = Field(
        False, description="Reserve what exists and backorder the rest, instead of refusing with 409."
    )
    reservation_id: Id | None = Field(
        None,
        description="A hold (POST /v1/reservations) the order takes over: its lines reserve what the hold "
        "held, the rest is sourced as usual, and what they do not take is released. A hold already past "
        "its expiry is not taken over: the order is sourced as usual and a `late-order` exception names it.",
    )
    model_config = ConfigDict(
        json_schema_extra=examples(
            {
                "order_id": "1001",
                "channel": "online",
                "lines": [{"line_id": "1", "sku": "SKU-RED-M", "quantity": 2}],
            }
        )
    )

    @model_validator(mode="after")
    def _unique_lines(self) -> NewOrder:
        unique_line_ids(self.lines)
        return self


class NewHold(Request):
    """Units held for a checkout until `expires_at`, each line allocated like an order line.
    Every line is held, or none is."""

    reservation_id: Id = Field(description="The hold's id; a repeat with the same body appends nothing.")
    channel: Id = Field(description="The channel it is sold on; its policy names the locations to hold in.")
    lines: list[OrderLine] = Field(min_length=1, max_length=MAX_LINES, description="The lines, each held.")
    expires_at: AwareDatetime = Field(
        strict=False,  # an RFC 3339 string (the model is strict otherwise)
        description="When the hold releases itself unless an order took it over (RFC 3339, with an offset).",
    )
    model_config = ConfigDict(
        json_schema_extra=examples(
            {
                "reservation_id": "cart-42",
                "channel": "online",
                "lines": [{"line_id": "1", "sku": "SKU-RED-M", "quantity": 2}],
                "expires_at": "2026-12-07T10:10:00Z",
            }
        )
    )

    @model_validator(mode="after")
    def _unique_lines(self) -> NewHold:
        unique_line_ids(self.lines)
        return self


class ResolveException(Request):
    """Which exception an operator resolves."""

    key: str = Field(min_length=1, max_length=512, description="The exception's key (its order id for `late-order`).")
    model_config = ConfigDict(json_schema_extra=examples({"key": "SO-1001"}))


class LocationPolicy(Request):
    """A location's policy for every SKU at it, SKUs first seen later included."""

    backorders: bool = Field(
        description="Whether the location may reserve beyond what is available (orders and holds)."
    )
    model_config = ConfigDict(json_schema_extra=examples({"backorders": True}))


class LocationView(Response):
    """A location's policy."""

    location: str = Field(description=LOCATION)
    backorders: bool = Field(description="Whether it may reserve beyond what is available, for every SKU.")
    model_config = ConfigDict(json_schema_extra=examples({"location": "WH1", "backorders": True}))


class ShipmentLine(Request):
    line_id: Id = Field(description="The order line shipped.")
    quantity: Quantity = Field(description="Units shipped.")
    location: Id | None = Field(None, description="Where they were shipped from (default: where reserved).")


class Shipment(Request):
    """Units shipped: they leave on hand where they were reserved."""

    shipment_id: Id = Field(description="The shipment's id; a repeat appends nothing.")
    lines: list[ShipmentLine] = Field(min_length=1, max_length=MAX_LINES, description="What was shipped.")
    model_config = ConfigDict(
        json_schema_extra=examples({"shipment_id": "SH-1", "lines": [{"line_id": "1", "quantity": 2}]})
    )


class CancelLine(Request):
    line_id: Id = Field(description="The order line.")
    quantity: Quantity = Field(description="Units cancelled.")


class Cancellation(Request):
    """Cancels the whole order, or (with `lines` and a `reference`) some units of some lines."""

    reason: Id = Field(description="Why: `customer`, `fraud`, `out-of-stock`, ...")
    lines: list[CancelLine] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_LINES,
        description="Only these units (else the whole order).",
    )
    reference: Id | None = Field(None, description="The partial cancellation's id (needed with `lines`).")
    model_config = ConfigDict(json_schema_extra=examples({"reason": "customer"}))

    @model_validator(mode="after")
    def _lines_need_reference(self) -> Cancellation:
        if self.lines is not None and self.reference is None:
            raise ValueError("a cancellation of some lines needs a reference")
        return self


class ReturnLine(Request):
    line_id: Id = Field(description="The order line.")
    quantity: Quantity = Field(description="Units returned.")
    disposition: Literal["restock", "damaged"] = Field(
        description="`restock` puts them back on hand; `damaged` keeps them unavailable."
    )
    location: Id | None = Field(None, description="Where they came back (default: where shipped from).")


class Return(Request):
    """Units returned by the customer."""

    return_id: Id = Field(description="The return's id; a repeat appends nothing.")
    lines: list[ReturnLine] = Field(min_length=1, max_length=MAX_LINES, description="What came back.")
    model_config = ConfigDict(
        json_schema_extra=examples(
            {"return_id": "RT-1", "lines": [{"line_id": "1", "quantity": 1, "disposition": "restock"}]}
        )
    )


class Allocation(Response):
    location: str = Field(description="A location of the channel's group.")
    quantity: int = Field(description="Units held there for the line.")


class OrderLineView(Response):
    line_id: str = Field(description="The line's id within the order.")
    sku: str = Field(description=SKU)
    quantity: int = Field(description="Units ordered.")
    location: str | None = Field(None, description="Where the line is reserved (its first location).")
    reserved: int = Field(0, description="Units reserved for the line, shipped ones included.")
    allocations: list[Allocation] = Field(
        default_factory=list, description="Units held for the line, per location of the group."
    )
    backordered: int = Field(0, description="Units waiting for stock, reserved first come, first served.")


class HoldTaken(Response):
    reservation_id: str = Field(description="The hold the order named.")
    status: str = Field(description="The hold's status after the order: `taken`, or `expired` when late.")
    late: bool = Field(description="The hold had expired before the order came: nothing was taken over.")


class HoldLineView(Response):
    line_id: str = Field(description="The line's id within the hold.")
    sku: str = Field(description=SKU)
    quantity: int = Field(description="Units asked for.")
    location: str | None = Field(None, description="The location the line named, if any.")
    allocations: list[Allocation] = Field(description="Where the units were held when the hold was placed.")
    held: int = Field(description="Units the line still holds (0 once taken over, released or expired).")


class HoldView(Response):
    """A hold: `held` (pending), then `taken` by an order, `released` (voided) or `expired`."""

    reservation_id: str = Field(description="The hold's id.")
    channel: str = Field(description="The channel it holds for.")
    status: Literal["held", "taken", "released", "expired"] = Field(description="Where the hold stands.")
    expires_at: datetime = Field(description="When it releases itself unless taken over.")
    order_id: str | None = Field(None, description="The order that took it over.")
    late_orders: list[str] = Field(default_factory=list, description="Orders that named it after it expired.")
    lines: list[HoldLineView] = Field(description="The hold's lines.")
    model_config = ConfigDict(
        json_schema_extra=examples(
            {
                "reservation_id": "cart-42",
                "channel": "online",
                "status": "held",
                "expires_at": "2026-12-07T10:10:00+00:00",
                "order_id": None,
                "late_orders": [],
                "lines": [
                    {
                        "line_id": "1",
                        "sku": "SKU-RED-M",
                        "quantity": 2,
                        "location": None,
                        "allocations": [{"location": "WH1", "quantity": 2}],
                        "held": 2,
                    }
                ],
            }
        )
    )


class OrderLineDetail(OrderLineView):
    shipped: int = Field(description="Units shipped.")
    cancelled: int = Field(description="Units cancelled.")
    returned: int = Field(description="Units returned.")
    released: int = Field(0, description="Reserved units released (cancelled or edited out).")
    consumed: int = Field(0, description="Reserved units that left on hand (shipped).")


class RefundView(Response):
    refund_id: str = Field(description="The refund's id.")
    amount: str = Field(description="An exact decimal, as text.")
    currency: str = Field(description="ISO 4217.")
    status: Literal["recorded", "confirmed", "settled", "failed"] = Field(
        description="Where the refund stands."
    )


ORDER_EXAMPLE: dict[str, Any] = {
    "order_id": "1001",
    "channel": "online",
    "stage": "reserved",
    "lines": [
        {
            "line_id": "1",
            "sku": "SKU-RED-M",
            "quantity": 2,
            "location": "WH1",
            "reserved": 2,
            "allocations": [{"location": "WH1", "quantity": 2}],
            "backordered": 0,
        }
    ],
    "open": ["ship", "post", "invoice"],
    "refunds": [],
}


class OrderView(Response):
    """An order, its stage and its lines, as a write left it."""

    order_id: str = Field(description="The order's id.")
    channel: str = Field(description="The channel it was captured on.")
    stage: str = Field(
        description="Where the order stands: `captured`, `reserved`, `posted`, `partially_shipped`, "
        "`shipped`, `invoiced`, `partially_returned`, `returned`, `refunded`, `settled`, "
        "`partially_cancelled` or `cancelled`."
    )
    lines: list[OrderLineView] = Field(description="The order's lines.")
    open: list[str] = Field(default_factory=list, description="what is still to happen, in order")
    refunds: list[RefundView] = Field(default_factory=list, description="The order's refunds.")
    hold: HoldTaken | None = Field(None, description="The hold the capture named (`reservation_id`).")
    model_config = ConfigDict(json_schema_extra=examples(ORDER_EXAMPLE))


class OrderDetail(OrderView):
    """An order as the ledger holds it: stage, lines with every step, the ERP posting, refunds."""

    lines: list[OrderLineDetail] = Field(  # type: ignore[assignment]  # each a line, with more
        description="The order's lines, with the units at each step."
    )
    open: list[str] = Field(description="What is still to happen, in order (`ship`, `post`, `invoice`, ...).")
    refunds: list[RefundView] = Field(description="The order's refunds.")
    external_refs: dict[str, str] = Field(
        description="Correlation ids (Shopify name, order number, ERP reference)."
    )
    platform_status: dict[str, Any] = Field(
        description="The selling platform's own status (financial, fulfillment)."
    )
    erp: dict[str, Any] = Field(
        description="The ERP posting: `posted`, `attempts`, `last_error`, `reference`, `expected`, `documents`."
    )
    invoices: list[str] = Field(description="The ERP invoices of the order.")
    validation: dict[str, Any] | None = Field(
        default=None,
        description=(
            "The validation stage: `status` (`validated`, `held`, `released`), the `checks` run, the `holds` "
            "(`{check, reason}`) and who released it (`released_by`); null when no checks are configured."
        ),
    )
    version: int = Field(description="The order stream's version.")
    model_config = ConfigDict(
        json_schema_extra=examples(
            {
                **ORDER_EXAMPLE,
                "lines": [
                    {
                        **ORDER_EXAMPLE["lines"][0],
                        "shipped": 0,
                        "cancelled": 0,
                        "returned": 0,
                        "released": 0,
                        "consumed": 0,
                    }
                ],
                "external_refs": {"name": "#1001"},
                "platform_status": {},
                "erp": {
                    "posted": False,
                    "attempts": 0,
                    "last_error": None,
                    "reference": None,
                    "expected": [],
                    "documents": {},
                },
                "invoices": [],
                "version": 3,
            }
        )
    )


# ------------------------------------------------------------------ problems


class ValidationIssue(BaseModel):
    """One field a `validation-error` refused."""

    loc: list[str] = Field(description="Where: `body`, `query` or `path`, then the field names.")
    msg: str = Field(description="What is wrong, in words.")
    type: str = Field(description="pydantic's error type, e.g. `greater_than_equal`.")


class ProblemDoc(BaseModel):
    """RFC 9457 problem details. `type` ends in `/problems/{name}`, described at `GET /problems/{name}`;
    a problem may carry more members (the order id, the lines that could not be reserved, ...)."""

    type: str = Field(description="The problem type's URI; stable, for programs to branch on.")
    title: str = Field(description="The HTTP status in words.")
    status: int = Field(description="The HTTP status.", ge=400, le=599)
    detail: str = Field(description="What went wrong with this request, in words.")
    instance: str | None = Field(None, description="The path of the request.")
    errors: list[ValidationIssue] | None = Field(
        None, description="For `validation-error`: each field refused (absent otherwise)."
    )

    model_config = ConfigDict(
        extra="allow",
        title="Problem",
        json_schema_extra={
            "examples": [
                {
                    "type": "https://ledger.example/problems/insufficient-stock",
                    "title": "Conflict",
                    "status": 409,
                    "detail": "order 1001: 1 line(s) cannot be reserved",
                    "instance": "/v1/orders",
                    "order_id": "1001",
                    "lines": [{"line_id": "1", "sku": "SKU-RED-M", "quantity": 5}],
                },
                {
                    "type": "https://ledger.example/problems/validation-error",
                    "title": "Unprocessable Content",
                    "status": 422,
                    "detail": "the request does not satisfy the schema",
                    "instance": "/v1/stock/receipts",
                    "errors": [
                        {
                            "loc": ["body", "quantity"],
                            "msg": "Input should be greater than or equal to 1",
                            "type": "greater_than_equal",
                        }
                    ],
                },
            ]
        },
    )


PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
RETRY_AFTER = {
    "description": f"Seconds to wait before retrying ({RETRY_AFTER_SECONDS} for storage-unavailable).",
    "schema": {"type": "integer", "minimum": 0},
    "example": int(RETRY_AFTER_SECONDS),
}


def problem_answer(status: int, slugs: Iterable[str]) -> dict[str, Any]:
    """One OpenAPI answer: a problem+json document of one of these types (linked to their pages)."""
    names = sorted(set(slugs))
    listed = ", ".join(f"[`{n}`](/problems/{n})" for n in names)
    entry: dict[str, Any] = {
        "description": f"{TITLES.get(status, 'Error')}: {listed}",
        "content": {PROBLEM_JSON: {"schema": PROBLEM_REF}},
        "x-problem-types": names,
    }
    if status == 503 or "idempotency-key-in-progress" in names:
        entry["headers"] = {"Retry-After": RETRY_AFTER}
    return entry


def problems(*answers: int | str | tuple[int, str]) -> dict[int | str, dict[str, Any]]:
    """`responses=` entries for a route's own problem answers (`api.openapi` adds those of the layers
    around every route: auth, body guard, idempotency, validation, storage).

    Each answer is a problem type's name (its status from the registry, `api.problem_types`),
    a `(status, name)` pair, or a bare status (its generic type, `api.problems.SLUG_BY_STATUS`).
    """
    by_status: dict[int, list[str]] = {}
    for a in answers:
        if isinstance(a, tuple):
            status, slug = a
        elif isinstance(a, int):
            status, slug = a, SLUG_BY_STATUS.get(a, "error")
        else:
            status, slug = PROBLEM_TYPES[a].status, a
        by_status.setdefault(status, []).append(slug)
    return {status: problem_answer(status, slugs) for status, slugs in by_status.items()}
