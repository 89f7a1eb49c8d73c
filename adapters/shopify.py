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
- `refunds/create`: per `refund_line_items[].restock_type`: `return` restocks shipped units at
  `location_id`, `cancel` releases unshipped ones, `legacy_restock` does whichever fits each unit
  (unshipped first), `no_restock` moves nothing. The refund is recorded with its amount (the sum
  of its pending and successful refund transactions, an exact decimal) and currency. Each
  transaction's outcome is recorded on the order (`RecordRefundTransaction`): once none is
  pending, the refund is confirmed for the sum of the successful ones (several partial captures
  or gateways), or failed when none succeeded; a failed one opens `refund-failed`.
- `order_transactions/create`: a refund transaction's later outcome, recorded the same way.
- `orders/updated`: `current_quantity` below what the ledger holds is an edit only for the units
  no refund took off (the payload's `refunds` and those the ledger recorded).
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

from adapters import erasure
from adapters.exceptions import open_exception
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
    current_quantity: int | None = Field(default=None, ge=0, le=1_000_000_000)
    gift_card: bool | None = None
    requires_shipping: bool | None = None
    variant_inventory_management: str | None = None

    @property
    def carries_stock(self) -> bool:
        """False for gift cards, custom items (no variant) and untracked lines that never ship."""
        if self.gift_card or (self.variant_id is None and not (self.sku or "").strip()):
            return False
        untracked = (
            "variant_inventory_management" in self.model_fields_set and not self.variant_inventory_management
        )
        return not (self.requires_shipping is False and untracked)


class OrderRefundLine(_Shape):
    line_item_id: Id
    quantity: int = Field(ge=0, le=1_000_000_000)


class OrderRefund(_Shape):
    id: Id
    refund_line_items: list[OrderRefundLine] = Field(default_factory=list, max_length=5000)


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
    location_id: Id | None = None  # a POS order: the store that sold it
    source_name: str | None = None
    line_items: list[LineItem] = Field(default_factory=list, max_length=5000)
    # for the order's checks (`_facts`); of the shipping address only the country code is read
    total_price: str | float | None = None
    currency: str | None = None
    total_price_set: dict[str, Any] | None = None
    shipping_address: dict[str, Any] | None = None
    refunds: list[OrderRefund] | None = None  # on orders/updated: the refunds so far


class EditedLine(_Shape):
    id: Id
    delta: int = Field(ge=0, le=1_000_000_000)


class EditedLines(_Shape):
    additions: list[EditedLine] = Field(default_factory=list, max_length=5000)
    removals: list[EditedLine] = Field(default_factory=list, max_length=5000)


class OrderEdit(_Shape):
    id: Id
    order_id: Id
    committed_at: datetime | None = None
    line_items: EditedLines = Field(default_factory=EditedLines)


class OrderEditPayload(_Shape):
    order_edit: OrderEdit


class ComplianceCustomer(_Shape):
    id: Id | None = None
    email: str | None = None
    phone: str | None = None


class CustomerRedactPayload(_Shape):
    shop_domain: str = Field(min_length=1, max_length=255)
    customer: ComplianceCustomer = Field(default_factory=ComplianceCustomer)
    orders_to_redact: list[Id] = Field(default_factory=list, max_length=100_000)


class ShopRedactPayload(_Shape):
    shop_domain: str = Field(min_length=1, max_length=255)


class DataRequest(_Shape):
    id: Id


class DataRequestPayload(_Shape):
    shop_domain: str = Field(min_length=1, max_length=255)
    customer: ComplianceCustomer = Field(default_factory=ComplianceCustomer)
    orders_requested: list[Id] = Field(default_factory=list, max_length=100_000)
    data_request: DataRequest


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
    subtotal_set: dict[str, Any] | None = None


class RefundTransaction(_Shape):
    id: Id | None = None
    kind: str | None = None
    status: str | None = None
    amount: str | None = None
    currency: str | None = None


class TransactionPayload(_Shape):
    id: Id
    order_id: Id
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
    "order_transactions/create": TransactionPayload,
    "orders/edited": OrderEditPayload,
    "customers/redact": CustomerRedactPayload,
    "shop/redact": ShopRedactPayload,
    "customers/data_request": DataRequestPayload,
    "inventory_levels/update": InventoryLevelPayload,
    "inventory_items/update": InventoryItemPayload,
}


def parse(topic: str, payload: Any) -> _Shape:
    """Validates a payload against its topic's shape; raises pydantic's ValidationError."""
    return SHAPES[topic].model_validate(payload)


# --------------------------------------------------------------- translation


def _status(p: OrderPayload) -> dict[str, Any]:
    status: dict[str, Any] = {
        "financial_status": p.financial_status,
        "fulfillment_status": p.fulfillment_status,
    }
    if p.updated_at is not None:
        status["updated_at"] = p.updated_at.isoformat()
    return status


def _facts(p: OrderPayload) -> dict[str, Any]:
    """What the order's checks may read: its total in shop money and the country it ships to.
    A value that is not well formed is left out (the checks see no fact, the order is captured)."""
    facts: dict[str, Any] = {}
    money = (p.total_price_set or {}).get("shop_money") or {}
    total, currency = (
        (money.get("amount"), money.get("currency_code")) if isinstance(money, dict) and money else (None, None)
    )
    total, currency = total if total is not None else p.total_price, currency or p.currency
    try:
        amount = Decimal(str(total)) if total is not None else None
    except InvalidOperation:
        amount = None
    if (
        amount is not None
        and amount.is_finite()
        and amount >= 0
        and isinstance(currency, str)
        and len(currency) == 3
        and currency.isalpha()
        and currency.isupper()
    ):
        facts |= {"total": str(total), "currency": currency}
    region = (p.shipping_address or {}).get("country_code")
    if isinstance(region, str) and len(region) == 2 and region.isalpha():
        facts["region"] = region.upper()
    return facts


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
        return _order_created(p, shop, lookup, ctx)  # type: ignore[arg-type]  # parse() answers the model of the topic
    if topic == "orders/cancelled":
        return _order_cancelled(p, ctx)  # type: ignore[arg-type]  # parse() answers the model of the topic
    if topic in ORDER_STATUS_TOPICS:
        return _order_status(p, lookup, ctx)  # type: ignore[arg-type]  # parse() answers the model of the topic
    if topic == "fulfillments/create":
        return _fulfillment(p, lookup, ctx)  # type: ignore[arg-type]  # parse() answers the model of the topic
    if topic == "refunds/create":
        return _refund(p, lookup, ctx)  # type: ignore[arg-type]  # parse() answers the model of the topic
    if topic == "order_transactions/create":
        return _transaction(p, ctx)  # type: ignore[arg-type]  # parse() answers the model of the topic
    if topic == "orders/edited":
        return _order_edited(p, ctx)  # type: ignore[arg-type]  # parse() answers the model of the topic
    if topic in ("customers/redact", "shop/redact", "customers/data_request"):
        return _compliance(topic, p, int(row["id"]))
    return _observation(topic, p, int(row["id"]))


def _order_created(p: OrderPayload, shop: str, lookup: Lookup, ctx: Context) -> Translation:
    t = Apply()
    order_id = str(p.id)
    if ctx.history.order(order_id) is not None:
        return Duplicate((WaitKey.order(order_id),))
    channel = (lookup.get("channel", shop) if shop else None) or DEFAULT_CHANNEL
    uses = [lookup.use("channel", shop, channel)] if shop else []
    store = None
    if p.location_id is not None:  # a POS order reserves at the store that sold it
        store = lookup.get("location", p.location_id)
        if store is None:
            return Park(f"unknown location {p.location_id}")
        uses.append(lookup.use("location", p.location_id, store))
    lines = []
    for li in p.line_items:
        if li.quantity == 0:
            continue
        if not li.carries_stock:
            kind = "gift card" if li.gift_card else "untracked" if li.variant_id else "custom item"
            name = (li.sku or "").strip() or kind.replace(" ", "-")
            lines.append({"line_id": str(li.id), "sku": name[:128], "quantity": li.quantity, "stock": False})
            t.notes.append(f"line {li.id} is a {kind}: recorded, no stock")
            continue
        sku = lookup.get("sku", li.variant_id) if li.variant_id is not None else None
        sku = sku or (li.sku or "").strip() or None
        if sku is None:
            return Park(f"unknown variant {li.variant_id}")
        line = {"line_id": str(li.id), "sku": sku, "quantity": li.quantity}
        lines.append(line | ({"location": store} if store else {}))
    if not lines:
        t.notes.append("no lines")
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
            facts=_facts(p),
        ),
        mappings=uses,
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


def _order_status(p: OrderPayload, lookup: Lookup, ctx: Context) -> Translation:
    t = Apply()
    order_id = str(p.id)
    order = ctx.history.order(order_id)
    if order is None:
        return Wait(WaitKey.order(order_id))
    if _is_older(ctx, order_id, p):
        t.notes.append("older than the recorded platform status: not applied")
        return t
    t.add(c.ObservePlatformStatus(order_id=order_id, status=_status(p)))
    if p.cancelled_at is None:
        edit = _current_quantities(p, order, lookup, t)
        if isinstance(edit, Park):
            return edit
    return t


def _refunded_units(p: OrderPayload, order: Any) -> dict[str, int]:
    """Units of each line that refunds took off Shopify's `current_quantity`: the refunds the
    payload lists, and those the ledger recorded that it does not list, each refund counted once."""
    refunds: dict[str, dict[str, int]] = {}
    for refund_id, refund in order.refunds.items():
        per_line: dict[str, int] = {}
        for x in refund.get("lines", ()):
            per_line[str(x["line_id"])] = per_line.get(str(x["line_id"]), 0) + int(x["quantity"])
        refunds[str(refund_id)] = per_line
    for r in p.refunds or ():
        per_line = {}
        for x in r.refund_line_items:
            per_line[str(x.line_item_id)] = per_line.get(str(x.line_item_id), 0) + x.quantity
        refunds[str(r.id)] = per_line
    units: dict[str, int] = {}
    for per_line in refunds.values():
        for line_id, n in per_line.items():
            units[line_id] = units.get(line_id, 0) + n
    return units


def _current_quantities(p: OrderPayload, order: Any, lookup: Lookup, t: Apply) -> Park | None:
    """`current_quantity` (the quantity less what edits removed and refunds took off): units edited
    out are cancelled (their reservation released), units edited in are added and reserved, new
    lines captured. Refunded units are not edits: their refund already restocked, released or
    kept them (`refunds/create`), so they are added back before comparing, and only what is left
    is an edit against the units the ledger holds for the line, less its own edits."""
    refunded = _refunded_units(p, order)
    stamp = p.updated_at.isoformat() if p.updated_at else "current"
    if order.applied(ref("edit", stamp)):
        return None
    cancels, added = [], []
    for li in p.line_items:
        if li.current_quantity is None:
            continue
        line = order.lines.get(str(li.id))
        if line is None:
            if li.current_quantity == 0:
                continue
            if not li.carries_stock:
                sku = (li.sku or "").strip() or ("gift-card" if li.gift_card else "custom-item")
                added.append(
                    {"line_id": str(li.id), "sku": sku[:128], "quantity": li.current_quantity, "stock": False}
                )
                continue
            sku = (lookup.get("sku", li.variant_id) if li.variant_id is not None else None) or (
                li.sku or ""
            ).strip()
            if not sku:
                return Park(f"unknown variant {li.variant_id}")
            added.append({"line_id": str(li.id), "sku": sku, "quantity": li.current_quantity})
            continue
        edited = order.cancelled_for(str(li.id), "edited")
        if edited is None:  # an order state kept before cancellations were kept by reason
            if order.refunds:
                t.notes.append(f"line {li.id}: current_quantity not applied: the order has refunds")
                continue
            edited = line["cancelled"]
        effective = int(line["quantity"] - edited)
        current = li.current_quantity + refunded.get(str(li.id), 0)
        if refunded.get(str(li.id)):
            t.notes.append(f"line {li.id}: {refunded[str(li.id)]} refunded unit(s) are not an edit")
        if current < effective:
            fewer = min(effective - current, order.open_quantity(line))
            if fewer:
                cancels.append({"line_id": str(li.id), "quantity": fewer})
        elif current > effective:
            added.append({"line_id": str(li.id), "sku": line["sku"], "quantity": current - effective})
    if cancels:
        t.add(
            c.CancelOrder(
                order_id=order.order_id, reason="edited", lines=tuple(cancels), reference=ref("edit", stamp)
            )
        )
    if added:
        t.add(c.AmendOrder(order_id=order.order_id, reference=ref("edit", stamp), lines=tuple(added)))
    return None


def _order_edited(p: OrderEditPayload, ctx: Context) -> Translation:
    """`orders/edited`: units removed are cancelled (released), units added to a known line are
    added and reserved; a line new to the order comes with its SKU in the `orders/updated` after it."""
    edit = p.order_edit
    order_id = str(edit.order_id)
    order = ctx.history.order(order_id)
    if order is None:
        return Wait(WaitKey.order(order_id))
    t = Apply()
    seen = order.platform_status.get("updated_at")
    try:
        reflected = bool(seen and edit.committed_at and datetime.fromisoformat(seen) >= edit.committed_at)
    except (TypeError, ValueError):
        reflected = False
    reference = ref("order-edit", edit.id)
    if reflected or order.applied(reference):
        t.notes.append("this edit's quantities are already on the order")
        return t
    cancels, added = [], []
    for x in edit.line_items.removals:
        line = order.lines.get(str(x.id))
        fewer = 0 if line is None else min(x.delta, order.open_quantity(line))
        if fewer:
            cancels.append({"line_id": str(x.id), "quantity": fewer})
        elif x.delta:
            t.notes.append(f"line {x.id}: nothing left to remove")
    for x in edit.line_items.additions:
        line = order.lines.get(str(x.id))
        if line is None:
            t.notes.append(f"line {x.id} is new: it is added from the orders/updated that carries its SKU")
        elif x.delta:
            added.append({"line_id": str(x.id), "sku": line["sku"], "quantity": x.delta})
    if cancels:
        t.add(c.CancelOrder(order_id=order_id, reason="edited", lines=tuple(cancels), reference=reference))
    if added:
        t.add(c.AmendOrder(order_id=order_id, reference=reference, lines=tuple(added)))
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
        if li.quantity == 0 or line is None or not order.is_stock_line(line):
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


def _refund_currency(p: RefundPayload) -> str:
    """The refund's currency: its transactions', else its lines' shop money, else `XXX` (none)."""
    for x in p.transactions:
        if x.currency:
            return x.currency[:16]
    for r in p.refund_line_items:
        money = (r.subtotal_set or {}).get("shop_money") or {}
        if isinstance(money, dict) and money.get("currency_code"):
            return str(money["currency_code"])[:16]
    return "XXX"


class _Restock:
    """What a refund's lines do to stock: units to return, to cancel, and each line as recorded."""

    def __init__(self) -> None:
        self.returns: list[dict[str, Any]] = []
        self.cancels: list[dict[str, Any]] = []
        self.recorded: list[dict[str, Any]] = []
        self.uses: list[MappingUse] = []
        self.streams: list[tuple[str, str]] = []
        self.notes: list[str] = []


def _restock(p: RefundPayload, order: Any, lookup: Lookup) -> _Restock | Park:
    """Per refund line: `return` restocks shipped units, `cancel` releases unshipped ones,
    `legacy_restock` does whichever fits each unit (unshipped ones first), `no_restock` moves
    nothing. Units the ledger already cancelled (a cancel before the refund) or never saw shipped
    are noted, not refused, so the rest of the refund applies.
    """
    out = _Restock()
    open_left = {lid: order.open_quantity(x) for lid, x in order.lines.items()}
    shipped_left = {lid: int(x["shipped"] - x["returned"]) for lid, x in order.lines.items()}
    for r in p.refund_line_items:
        line_id = str(r.line_item_id)
        line = order.lines.get(line_id)
        if r.quantity == 0 or line is None:
            continue
        kind = r.restock_type or "no_restock"
        out.recorded.append({"line_id": line_id, "quantity": r.quantity, "restock_type": kind})
        if kind not in ("return", "cancel", "legacy_restock") or not order.is_stock_line(line):
            continue
        cancel = min(r.quantity, open_left[line_id]) if kind in ("cancel", "legacy_restock") else 0
        back = r.quantity - cancel if kind in ("return", "legacy_restock") else 0
        if back > shipped_left[line_id]:
            out.notes.append(
                f"line {line_id}: {back - shipped_left[line_id]} unit(s) were not shipped: not returned"
            )
            back = shipped_left[line_id]
        if kind == "cancel" and cancel < r.quantity:
            out.notes.append(f"line {line_id}: {r.quantity - cancel} unit(s) already cancelled")
        open_left[line_id] -= cancel
        shipped_left[line_id] -= back
        if cancel:
            out.cancels.append({"line_id": line_id, "quantity": cancel})
        if back:
            entry: dict[str, Any] = {"line_id": line_id, "quantity": back, "disposition": "restock"}
            if r.location_id is not None:
                location = lookup.get("location", r.location_id)
                if location is None:
                    return Park(f"unknown location {r.location_id}")
                entry["location"] = location
                use = lookup.use("location", r.location_id, location)
                out.uses += [] if use in out.uses else [use]
            out.returns.append(entry)
            where = entry.get("location") or line["location"]
            if where:
                out.streams.append((line["sku"], where))
    return out


def _refund(p: RefundPayload, lookup: Lookup, ctx: Context) -> Translation:
    order_id = str(p.order_id)
    order = ctx.history.order(order_id)
    if order is None:
        return Wait(WaitKey.order(order_id))
    restock = _restock(p, order, lookup)
    if isinstance(restock, Park):
        return restock
    t = Apply(notes=list(restock.notes))
    refund_id = str(p.id)
    if restock.returns:
        t.add(
            c.ReturnItems(
                order_id=order_id, return_id=ref("refund", refund_id), lines=tuple(restock.returns)
            ),
            restock.uses,
            restock.streams,
        )
    if restock.cancels:
        t.add(
            c.CancelOrder(
                order_id=order_id,
                reason="refunded",
                lines=tuple(restock.cancels),
                reference=ref("refund", refund_id),
            )
        )
    txns = [x for x in p.transactions if (x.kind or "refund") == "refund"]
    if not txns:
        t.notes.append("no refund transaction: no money moved")
        return t
    failed = [x for x in txns if x.status in ("failure", "error")]
    amounts: dict[str, Decimal] = {}
    ids = []
    for i, x in enumerate(txns):
        txn = str(x.id) if x.id is not None else f"{refund_id}/{i}"
        ids.append(txn)
        try:
            amounts[txn] = Decimal(x.amount or "0")
        except InvalidOperation:
            return Reject(f"refund transaction {x.id} has an amount that is not a number")
        if not amounts[txn].is_finite() or amounts[txn] < 0:
            return Reject(f"refund transaction {x.id} has an amount that is not a finite, non-negative number")
    # the refund's amount while it is pending: what its transactions that did not fail will move
    counted = [t for t, x in zip(ids, txns, strict=True) if x.status not in ("failure", "error")] or ids
    amount = sum((amounts[t] for t in counted), Decimal(0))
    currency = _refund_currency(p)
    t.add(
        c.RecordRefund(
            order_id=order_id,
            refund_id=refund_id,
            amount=str(amount),
            currency=currency,
            lines=tuple(restock.recorded),
            transactions=tuple(ids),
        )
    )
    t.wakes += [WaitKey.refund_txn(i) for i in ids]
    for txn, x in zip(ids, txns, strict=True):
        if x.status == "success":
            t.add(_outcome(order_id, refund_id, txn, "success", amounts[txn]))
        elif x.status in ("failure", "error"):
            t.add(_outcome(order_id, refund_id, txn, "failure", amounts[txn]))
    if failed:
        _fail(t, order_id, refund_id, failed[0].id, failed[0].status or "failure")
    return t


def _outcome(order_id: str, refund_id: str, txn: str, status: str, amount: Decimal) -> c.Command:
    """One refund transaction's outcome: the order confirms the refund (the sum of the successful
    ones) once none of its transactions is pending, or fails it when none succeeded."""
    return c.RecordRefundTransaction(
        order_id=order_id, refund_id=refund_id, transaction=txn, status=status, amount=str(amount)
    )


def _fail(t: Apply, order_id: str, refund_id: str, txn: object, status: str) -> None:
    """A failed refund transaction opens a `refund-failed` exception (the money it carried did not move)."""
    transaction = ref("shopify-transaction", txn or refund_id)

    def record(tx: Tx, results: list[Any]) -> None:
        open_exception(
            tx,
            "refund-failed",
            f"{order_id}:{refund_id}",
            {"order_id": order_id, "refund_id": refund_id, "transaction": transaction, "status": status},
        )

    t.after = record


def _transaction(p: TransactionPayload, ctx: Context) -> Translation:
    """`order_transactions/create`: a refund transaction's outcome confirms or fails its refund."""
    t = Apply()
    if (p.kind or "") != "refund":
        t.notes.append(f"{p.kind} transaction: no refund to confirm")
        return t
    order_id = str(p.order_id)
    order = ctx.history.order(order_id)
    if order is None:
        return Wait(WaitKey.order(order_id))
    refund_id = order.refund_of_transaction(str(p.id))
    if refund_id is None:
        return Wait(WaitKey.refund_txn(str(p.id)))
    refund = order.refunds[refund_id]
    if p.status in ("success", "failure", "error"):
        try:
            amount = Decimal(p.amount) if p.amount is not None else None
        except InvalidOperation:
            amount = None
        if amount is None and len(refund.get("transactions", ())) == 1:
            amount = Decimal(str(refund["amount"]))  # the refund's only transaction
        if amount is None or not amount.is_finite() or amount < 0:
            return Reject(f"refund transaction {p.id} has no amount that is a non-negative number")
        status = "success" if p.status == "success" else "failure"
        t.add(_outcome(order_id, refund_id, str(p.id), status, amount))
        if status == "failure":
            _fail(t, order_id, refund_id, p.id, p.status)
    else:
        t.notes.append(f"refund transaction {p.id} is {p.status}: still to confirm")
    return t


def _compliance(topic: str, p: Any, inbox_id: int) -> Translation:
    """Shopify's mandatory compliance topics: erase, or report, the personal data held."""
    t = Apply()

    def run(tx: Tx, _: list[Any]) -> None:
        if isinstance(p, CustomerRedactPayload):
            erasure.redact_customer(tx, p.shop_domain, p.customer.model_dump(), p.orders_to_redact)
        elif isinstance(p, ShopRedactPayload):
            erasure.redact_shop(tx, p.shop_domain)
        else:
            assert isinstance(p, DataRequestPayload)
            erasure.data_request(
                tx, str(p.data_request.id), p.shop_domain, p.customer.model_dump(), p.orders_requested
            )
        # the request itself names the customer: it is erased once acted on
        erasure.erase(
            tx, tx.execute("SELECT id, body FROM inbox WHERE id = %s", (inbox_id,)).fetchall(), topic
        )

    t.after = run
    t.notes.append(f"{topic}: personal data {'reported' if topic.endswith('data_request') else 'erased'}")
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
