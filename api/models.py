"""Request and response models of the public HTTP contract (strict pydantic v2, CONTRACT "Bounds").

Requests refuse unknown fields and coercion (`"5"` is not a quantity); each identifier is 1 to
128 printable characters with no control characters; a quantity is 1 to 1,000,000,000.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from adapters.fields import Delta, Id, Quantity

MAX_LINES = 1000


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Response(BaseModel):
    model_config = ConfigDict(extra="allow")


# ------------------------------------------------------------------ stock


class Receipt(Request):
    """Units arrived at a location (a purchase receipt, a count-in)."""

    sku: Id
    location: Id
    quantity: Quantity
    reference: Id
    asn_id: Id | None = Field(
        None, description="The advance shipping notice whose incoming units this receipt lands."
    )


class Adjustment(Request):
    """A signed correction of on hand, with a reason and a document reference."""

    sku: Id
    location: Id
    delta: Delta
    reason: Id
    reference: Id


class Transfer(Request):
    """Units moved from one location to another."""

    sku: Id
    from_location: Id
    to_location: Id
    quantity: Quantity
    reference: Id

    @model_validator(mode="after")
    def _two_locations(self) -> Transfer:
        if self.from_location == self.to_location:
            raise ValueError("a transfer needs two different locations")
        return self


class StockView(Response):
    sku: str
    location: str
    on_hand: int
    reserved: int
    available: int
    version: int
    unavailable: int = 0
    incoming: int = 0
    allow_backorder: bool = False


class TransferView(Response):
    from_: StockView = Field(alias="from")
    to: StockView

    model_config = ConfigDict(extra="allow", populate_by_name=True)


class StockEvent(Response):
    position: int
    version: int
    type: str
    data: dict[str, Any]
    recorded_at: datetime
    correlation_id: str | None = None
    causation_id: str | None = None
    source: str | None = None
    reference: str | None = None


class EventPage(Response):
    items: list[StockEvent]
    next: int | None = Field(description="pass as `after` for the next page; null at the end of the stream")


# ------------------------------------------------------------------ orders


class OrderLine(Request):
    line_id: Id
    sku: Id
    quantity: Quantity
    location: Id | None = None


class NewOrder(Request):
    """An order to capture. Every line is reserved, or none is (unless `allow_partial`)."""

    order_id: Id
    channel: Id
    lines: list[OrderLine] = Field(min_length=1, max_length=MAX_LINES)
    allow_partial: bool = False

    @model_validator(mode="after")
    def _unique_lines(self) -> NewOrder:
        ids = [x.line_id for x in self.lines]
        if len(set(ids)) != len(ids):
            raise ValueError("each line_id may appear once")
        return self


class ShipmentLine(Request):
    line_id: Id
    quantity: Quantity
    location: Id | None = None


class Shipment(Request):
    shipment_id: Id
    lines: list[ShipmentLine] = Field(min_length=1, max_length=MAX_LINES)


class CancelLine(Request):
    line_id: Id
    quantity: Quantity


class Cancellation(Request):
    """Cancels the whole order, or (with `lines` and a `reference`) some units of some lines."""

    reason: Id
    lines: list[CancelLine] | None = Field(default=None, min_length=1, max_length=MAX_LINES)
    reference: Id | None = None

    @model_validator(mode="after")
    def _lines_need_reference(self) -> Cancellation:
        if self.lines is not None and self.reference is None:
            raise ValueError("a cancellation of some lines needs a reference")
        return self


class ReturnLine(Request):
    line_id: Id
    quantity: Quantity
    disposition: Literal["restock", "damaged"]
    location: Id | None = None


class Return(Request):
    return_id: Id
    lines: list[ReturnLine] = Field(min_length=1, max_length=MAX_LINES)


class Allocation(Response):
    location: str
    quantity: int


class OrderLineView(Response):
    line_id: str
    sku: str
    quantity: int
    location: str | None = None
    reserved: int = 0
    allocations: list[Allocation] = Field(
        default_factory=list, description="Units held for the line, per location of the group."
    )
    backordered: int = Field(0, description="Units waiting for stock, reserved first come, first served.")


class RefundView(Response):
    refund_id: str
    amount: str  # an exact decimal, as text
    currency: str
    status: Literal["recorded", "confirmed", "settled", "failed"]


class OrderView(Response):
    order_id: str
    channel: str
    stage: str
    lines: list[OrderLineView]
    open: list[str] = Field(default_factory=list, description="what is still to happen, in order")
    refunds: list[RefundView] = Field(default_factory=list)


# ------------------------------------------------------------------ problems


class ProblemDoc(BaseModel):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None

    model_config = ConfigDict(extra="allow")


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries for problem answers."""
    return {
        s: {
            "model": ProblemDoc,
            "description": "a problem",
            "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/ProblemDoc"}}},
        }
        for s in statuses
    }
