"""Shopify webhooks: signature check, payload shapes, and translation into canonical commands.

Payloads are Shopify's REST resources with no envelope (field names from Shopify's webhook
reference). Only the fields the ledger needs are read; customer data (e-mail, phone, names,
addresses) stays in the raw body kept by the inbox and is copied nowhere else.

- `orders/create`: capture and reserve on the shop's channel (`shopify/channel/{shop domain}`,
  default `online`), each line's SKU from `shopify/sku/{variant_id}`, else the line's `sku`.
  The ledger's order id is the Shopify order `id` as a decimal string; `name`, `order_number`
  and `admin_graphql_api_id` are kept as correlation ids; `financial_status` and
  `fulfillment_status` are recorded as observed platform status, never as our stage.
  Shopify already took the order, so lines that cannot be reserved stay unreserved.
- `orders/cancelled`: releases what is still reserved.
- `orders/updated`, `orders/paid`, `orders/fulfilled`, `orders/partially_fulfilled`: platform
  status observations, applied only when newer (`updated_at`) than the one recorded.
- `fulfillments/create` (status `success`): ships from the reservation at the fulfilling
  `location_id` (`shopify/location/{location_id}`).
- `refunds/create`: per `refund_line_items[].restock_type`: `return` (and `legacy_restock`)
  restocks at `location_id`, `cancel` releases, `no_restock` moves nothing; the refund is
  recorded on the order and settled when all its transactions succeeded.
- `inventory_levels/update`, `inventory_items/update`: observations kept for reconciliation
  and SKU-alias discovery (`shopify_observations`), never movements.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from adapters.mappings import Lookup
from adapters.persistence.db import Database, Tx
from adapters.translate import (
    Apply,
    Context,
    Duplicate,
    MappingUse,
    Park,
    Reject,
    Translation,
    Wait,
    WaitKey,
    ref,
)
from ledger import commands as c

HEADERS_KEPT = (
    "x-shopify-topic",
    "x-shopify-shop-domain",
    "x-shopify-api-version",
    "x-shopify-webhook-id",
    "x-shopify-event-id",
    "x-shopify-triggered-at",
)
ORDER_STATUS_TOPICS = ("orders/updated", "orders/paid", "orders/fulfilled", "orders/partially_fulfilled")
DEFAULT_CHANNEL = "online"
Id = int  # Shopify REST ids are 64-bit integers


def verify_hmac(body: bytes, signature: str | None, secrets: list[str]) -> bool:
    """True when `signature` is the base64 HMAC-SHA256 of `body` under any secret (constant time)."""
    if not signature or not secrets:
        return False
    given = signature.strip().encode("utf-8", "replace")
    ok = False
    for secret in secrets:
        expected = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest())
        ok |= hmac.compare_digest(expected, given)
    return ok


def sign(body: bytes, secret: str) -> str:
    """The header value Shopify would send for `body` (for tests and tools)."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


# ------------------------------------------------------------------ payloads


class _Shape(BaseModel):
    model_config = ConfigDict(extra="ignore")


class LineItem(_Shape):
    id: Id
    variant_id: Id | None = None
    sku: str | None = None
    quantity: int = Field(ge=0, le=1_000_000_000)


class OrderPayload(_Shape):
    id: Id
    name: str | None = None
    order_number: int | None = None
    admin_graphql_api_id: str | None = None
    updated_at: datetime | None = None
    cancelled_at: datetime | None = None
    cancel_reason: str | None = None
    financial_status: str | None = None
    fulfillment_status: str | None = None
    line_items: list[LineItem] = Field(default_factory=list, max_length=5000)


class FulfillmentLine(_Shape):
    id: Id
    quantity: int = Field(ge=0, le=1_000_000_000)


class FulfillmentPayload(_Shape):
    id: Id
    order_id: Id
    status: str | None = None
    location_id: Id | None = None
    line_items: list[FulfillmentLine] = Field(default_factory=list, max_length=5000)


class RefundLine(_Shape):
    id: Id
    line_item_id: Id
    quantity: int = Field(ge=0, le=1_000_000_000)
    location_id: Id | None = None
    restock_type: str | None = None


class RefundTransaction(_Shape):
    id: Id | None = None
    kind: str | None = None
    status: str | None = None
    amount: str | None = None
    currency: str | None = None


class RefundPayload(_Shape):
    id: Id
    order_id: Id
    created_at: datetime | None = None
    refund_line_items: list[RefundLine] = Field(default_factory=list, max_length=5000)
    transactions: list[RefundTransaction] = Field(default_factory=list, max_length=500)


class InventoryLevelPayload(_Shape):
    inventory_item_id: Id
    location_id: Id
    available: int | None = None
    updated_at: datetime | None = None


class InventoryItemPayload(_Shape):
    id: Id
    sku: str | None = None
    tracked: bool | None = None
    updated_at: datetime | None = None


SHAPES: dict[str, type[_Shape]] = {
    "orders/create": OrderPayload,
    "orders/cancelled": OrderPayload,
    **{t: OrderPayload for t in ORDER_STATUS_TOPICS},
    "fulfillments/create": FulfillmentPayload,
    "refunds/create": RefundPayload,
    "inventory_levels/update": InventoryLevelPayload,
    "inventory_items/update": InventoryItemPayload,
}


def parse(topic: str, payload: Any) -> _Shape:
    """Validates a payload against its topic's shape; raises pydantic's ValidationError."""
    return SHAPES[topic].model_validate(payload)


def create_tables(db: Database) -> None:
    db.script(
        [
            "CREATE TABLE IF NOT EXISTS shopify_observations (kind TEXT NOT NULL, object_id TEXT NOT NULL, "
            "location_id TEXT NOT NULL, available BIGINT, sku TEXT, updated_at TEXT, inbox_id "
            "BIGINT NOT NULL, "
            "PRIMARY KEY (kind, object_id, location_id))",
        ]
    )


# --------------------------------------------------------------- translation


def _status(p: OrderPayload) -> dict[str, Any]:
    status: dict[str, Any] = {
        "financial_status": p.financial_status,
        "fulfillment_status": p.fulfillment_status,
    }
    if p.updated_at is not None:
        status["updated_at"] = p.updated_at.isoformat()
    return status


def _is_older(ctx: Context, order_id: str, p: OrderPayload) -> bool:
    """True when the ledger already holds a platform status newer than this payload's."""
    order = ctx.history.order(order_id)
    if order is None or p.updated_at is None:
        return False
    seen = order.platform_status.get("updated_at")
    try:
        return seen is not None and datetime.fromisoformat(seen) > p.updated_at
    except (TypeError, ValueError):
        return False


def translate(row: dict[str, Any], payload: Any, lookup: Lookup, ctx: Context) -> Translation:
    topic = row["kind"]
    p = parse(topic, payload)
    shop = (row.get("headers") or {}).get("x-shopify-shop-domain") or ""
    if topic == "orders/create":
        return _order_created(p, shop, lookup, ctx)  # type: ignore[arg-type]
    if topic == "orders/cancelled":
        return _order_cancelled(p, ctx)  # type: ignore[arg-type]
    if topic in ORDER_STATUS_TOPICS:
        return _order_status(p, ctx)  # type: ignore[arg-type]
    if topic == "fulfillments/create":
        return _fulfillment(p, lookup, ctx)  # type: ignore[arg-type]
    if topic == "refunds/create":
        return _refund(p, lookup, ctx)  # type: ignore[arg-type]
    return _observation(topic, p, int(row["id"]))


def _order_created(p: OrderPayload, shop: str, lookup: Lookup, ctx: Context) -> Translation:
    t = Apply()
    order_id = str(p.id)
    if ctx.history.order(order_id) is not None:
        return Duplicate((WaitKey.order(order_id),))
    channel = (lookup.get("channel", shop) if shop else None) or DEFAULT_CHANNEL
    lines = []
    for li in p.line_items:
        if li.quantity == 0:
            continue
        sku = lookup.get("sku", li.variant_id) if li.variant_id is not None else None
        sku = sku or (li.sku or "").strip() or None
        if sku is None:
            if li.variant_id is None:
                t.notes.append(f"line {li.id} has no variant and no SKU: not stock")
                continue
            return Park(f"unknown variant {li.variant_id}")
        lines.append({"line_id": str(li.id), "sku": sku, "quantity": li.quantity})
    if not lines:
        t.notes.append("no stock lines")
        return t
    refs = {
        "name": p.name,
        "order_number": None if p.order_number is None else str(p.order_number),
        "admin_graphql_api_id": p.admin_graphql_api_id,
    }
    t.add(
        c.CaptureOrder(
            order_id=order_id,
            channel=channel,
            lines=tuple(lines),
            external_refs={k: v for k, v in refs.items() if v},
            platform_status=_status(p),
            allow_partial=True,
        ),
        mappings=[lookup.use("channel", shop, channel)] if shop else [],
    )
    t.wakes.append(WaitKey.order(order_id))
    return t


def _order_cancelled(p: OrderPayload, ctx: Context) -> Translation:
    t = Apply()
    order_id = str(p.id)
    if ctx.history.order(order_id) is None:
        return Wait(WaitKey.order(order_id))
    if not _is_older(ctx, order_id, p):
        t.add(c.ObservePlatformStatus(order_id=order_id, status=_status(p)))
    t.add(c.CancelOrder(order_id=order_id, reason=(p.cancel_reason or "cancelled")[:128]))
    return t


def _order_status(p: OrderPayload, ctx: Context) -> Translation:
    t = Apply()
    order_id = str(p.id)
    if ctx.history.order(order_id) is None:
        return Wait(WaitKey.order(order_id))
    if _is_older(ctx, order_id, p):
        t.notes.append("older than the recorded platform status: not applied")
        return t
    t.add(c.ObservePlatformStatus(order_id=order_id, status=_status(p)))
    return t


def _fulfillment(p: FulfillmentPayload, lookup: Lookup, ctx: Context) -> Translation:
    t = Apply()
    order_id = str(p.order_id)
    if p.status != "success":
        t.notes.append(f"fulfillment status {p.status}: no movement")
        return t
    order = ctx.history.order(order_id)
    if order is None:
        return Wait(WaitKey.order(order_id))
    location = lookup.get("location", p.location_id) if p.location_id is not None else None
    if p.location_id is not None and location is None:
        return Park(f"unknown location {p.location_id}")
    lines, streams = [], []
    for li in p.line_items:
        line = order.lines.get(str(li.id))
        if li.quantity == 0 or line is None:
            t.notes.append(f"line {li.id} is not a stock line of order {order_id}")
            continue
        shipped = {"line_id": str(li.id), "quantity": li.quantity}
        if location:
            shipped["location"] = location
        lines.append(shipped)
        where = location or line["location"]
        if where:
            streams.append((line["sku"], where))
    if not lines:
        return t
    keys = [lookup.use("location", p.location_id, location)] if location else []
    t.add(c.ShipOrder(order_id=order_id, shipment_id=ref("shopify", p.id), lines=tuple(lines)), keys, streams)
    return t


def _refund(p: RefundPayload, lookup: Lookup, ctx: Context) -> Translation:
    t = Apply()
    order_id = str(p.order_id)
    order = ctx.history.order(order_id)
    if order is None:
        return Wait(WaitKey.order(order_id))
    returns, cancels, recorded = [], [], []
    keys: list[MappingUse] = []
    streams = []
    for r in p.refund_line_items:
        line = order.lines.get(str(r.line_item_id))
        if r.quantity == 0 or line is None:
            continue
        kind = r.restock_type or "no_restock"
        recorded.append({"line_id": str(r.line_item_id), "quantity": r.quantity, "restock_type": kind})
        if kind in ("return", "legacy_restock"):
            entry = {"line_id": str(r.line_item_id), "quantity": r.quantity, "disposition": "restock"}
            if r.location_id is not None:
                location = lookup.get("location", r.location_id)
                if location is None:
                    return Park(f"unknown location {r.location_id}")
                entry["location"] = location
                use = lookup.use("location", r.location_id, location)
                keys += [] if use in keys else [use]
            returns.append(entry)
            where = entry.get("location") or line["location"]
            if where:
                streams.append((line["sku"], where))
        elif kind == "cancel":
            cancels.append({"line_id": str(r.line_item_id), "quantity": r.quantity})
    refund_id = str(p.id)
    if returns:
        t.add(
            c.ReturnItems(order_id=order_id, return_id=ref("refund", refund_id), lines=tuple(returns)),
            keys,
            streams,
        )
    if cancels:
        t.add(
            c.CancelOrder(
                order_id=order_id, reason="refunded", lines=tuple(cancels), reference=ref("refund", refund_id)
            )
        )
    amount, currency = Decimal(0), None
    txns = [x for x in p.transactions if (x.kind or "refund") == "refund"]
    for x in txns:
        try:
            if x.status in (None, "success"):
                amount += Decimal(x.amount or "0")
        except InvalidOperation:
            return Reject(f"refund transaction {x.id} has an amount that is not a number")
        currency = currency or x.currency
    t.add(
        c.RecordRefund(
            order_id=order_id,
            refund_id=refund_id,
            amount=str(amount),
            currency=(currency or "XXX")[:16],
            lines=tuple(recorded),
        )
    )
    if txns and all(x.status == "success" for x in txns):
        t.add(
            c.SettleRefund(
                order_id=order_id,
                refund_id=refund_id,
                settlement_reference=ref("shopify-transaction", txns[0].id or refund_id),
            )
        )
    return t


def _observation(topic: str, p: Any, inbox_id: int) -> Translation:
    t = Apply()
    if isinstance(p, InventoryLevelPayload):
        values = ("level", str(p.inventory_item_id), str(p.location_id), p.available, None)
        updated = p.updated_at
    else:
        values = ("item", str(p.id), "", None, p.sku)
        updated = p.updated_at
    # UTC, so that text order is time order whatever offset the shop uses
    stamp = (
        updated.astimezone(UTC).isoformat()
        if updated and updated.tzinfo
        else (updated.isoformat() if updated else "")
    )

    def record(tx: Tx, _: list[Any]) -> None:
        row = tx.execute(
            "SELECT updated_at FROM shopify_observations WHERE kind = %s AND object_id = %s AND "
            "location_id = %s",
            values[:3],
        ).fetchone()
        if row is not None and (row["updated_at"] or "") > stamp:
            return  # an older observation never overwrites a newer one
        tx.execute(
            "INSERT INTO shopify_observations (kind, object_id, location_id, available, sku, "
            "updated_at, inbox_id) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (kind, object_id, location_id) DO UPDATE SET "
            "available = excluded.available, sku = excluded.sku, updated_at = excluded.updated_at, "
            "inbox_id = excluded.inbox_id",
            (*values, stamp, inbox_id),
        )

    t.after = record
    t.notes.append(f"{topic}: observation, no movement")
    return t


def observations(db: Database, kind: str | None = None) -> list[dict[str, Any]]:
    if kind:
        return db.query(
            "SELECT * FROM shopify_observations WHERE kind = %s ORDER BY object_id, location_id", (kind,)
        )
    return db.query("SELECT * FROM shopify_observations ORDER BY kind, object_id, location_id")


def order_of(topic: str, payload: Any) -> str | None:
    """The Shopify order a message is about, read without validating it (for keeping per-order order)."""
    if not isinstance(payload, dict):
        return None
    value = payload.get("order_id") if topic in ("fulfillments/create", "refunds/create") else None
    if topic.startswith("orders/"):
        value = payload.get("id")
    return None if value is None or isinstance(value, dict | list) else str(value)
