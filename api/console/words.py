"""Events and their causes in plain words, for people: "Reserved 3 for order SO-17 line 1 at LOC-1".

A sentence is a list of parts, each `{"text": ..., "href": ...}` (href None for plain text): the
template escapes every part and links the ones with an href, so an id full of markup stays text.
Causes become links to what caused the event: the inbound message, the order, the channel policy
version, the mapping history; an API key is named by its name, not its id. Free text is masked
(`adapters.logs.mask_text`) whoever looks: these lines never show personal data.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

from adapters.logs import mask_text
from ledger.bounds import parse_hold_reservation_id

Part = dict[str, Any]
INBOX_SOURCES = frozenset({"shopify", "pos", "erp", "remap"})


def text(value: Any) -> Part:
    return {"text": mask_text(plain(value)), "href": None}


def link(value: Any, href: str) -> Part:
    return {"text": mask_text(plain(value)), "href": href}


def plain(value: Any) -> str:
    """A value as a person reads it: times in RFC 3339, lists and mappings as short phrases."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, Mapping):
        return ", ".join(f"{k} {plain(v)}" for k, v in value.items())
    if isinstance(value, list | tuple | set | frozenset):
        return ", ".join(plain(v) for v in value)
    return str(value)


def order_href(order_id: str) -> str:
    return f"/console/orders/{quote(str(order_id), safe='')}"


def sku_href(sku: str) -> str:
    return f"/console/skus/{quote(str(sku), safe='')}"


def location_href(location: str) -> str:
    return f"/console/locations/{quote(str(location), safe='')}"


def order_of(reservation_id: Any) -> str | None:
    """The order a reservation id belongs to (`{order_id}/{line_id}`), if it names one (a hold's
    reservation, `hold/{hold}/{line}`, names none)."""
    if isinstance(reservation_id, str) and parse_hold_reservation_id(reservation_id) is not None:
        return None
    if isinstance(reservation_id, str) and "/" in reservation_id:
        return reservation_id.rsplit("/", 1)[0]
    return None


def signed(n: int) -> str:
    return f"+{n}" if n > 0 else str(n)


def _lines(lines: list[dict[str, Any]], extra: str | None = None) -> list[Part]:
    out: list[Part] = []
    for i, x in enumerate(lines):
        if i:
            out.append(text("; "))
        out.append(text(f"line {x.get('line_id')}: {x.get('quantity')}"))
        if x.get("sku"):
            out += [text(" × "), link(x["sku"], sku_href(x["sku"]))]
        if extra and x.get(extra):
            out.append(text(f" {x[extra]}"))
        if x.get("location"):
            out += [text(" at "), link(x["location"], location_href(x["location"]))]
    return out


def _stock(name: str, e: Any, location: str | None) -> list[Part] | None:
    at = [text(" at "), link(location, location_href(location))] if location else []
    g = lambda k: getattr(e, k, None)  # noqa: E731 - a short reader of the event's fields
    if name == "Opened":
        return [text("Started the stock record of "), link(e.sku, sku_href(e.sku)), *at]
    if name == "StockReceived":
        return [
            text(f"Received {e.quantity}"),
            *at,
            text(f" (reference {e.reference}" + (", against an advance notice)" if e.expected else ")")),
        ]
    if name == "StockExpected":
        return [text(f"Expecting {e.quantity}"), *at, text(f" (advance notice {e.reference})")]
    if name == "StockReserved":
        if parse_hold_reservation_id(e.reservation_id) is not None:  # a hold (`POST /v1/reservations`)
            parts = [text(f"Held {e.quantity} for reservation {e.order_id} line {e.line_id}"), *at]
        else:
            parts = [text(f"Reserved {e.quantity} for order "), link(e.order_id, order_href(e.order_id))]
            parts += [text(f" line {e.line_id}"), *at]
        if g("expires_at") is not None:
            parts.append(text(f", held until {plain(e.expires_at)}"))
        return parts
    if name == "ReservationReleased":
        order = order_of(e.reservation_id)
        who = (
            [text(" for order "), link(order, order_href(order))]
            if order
            else [text(f" of hold {e.reservation_id}")]
        )
        return [text(f"Released {e.quantity} reserved"), *who, *at, text(f" ({e.reason})")]
    if name == "StockSold":
        order = order_of(g("reservation_id"))
        parts = [text(f"Sold {e.quantity}"), *at]
        if order:
            parts += [text(" for order "), link(order, order_href(order))]
        return [*parts, text(f" (reference {e.reference})")]
    if name == "StockTransferredOut":
        return [
            text(f"Sent {e.quantity}"),
            *at,
            text(" to "),
            link(e.to_location, location_href(e.to_location)),
            text(f" (transfer {e.transfer_id})"),
        ]
    if name == "StockTransferredIn":
        return [
            text(f"Took in {e.quantity}"),
            *at,
            text(" from "),
            link(e.from_location, location_href(e.from_location)),
            text(f" (transfer {e.transfer_id})"),
        ]
    if name == "StockReturned":
        return [text(f"Returned {e.quantity} as {e.disposition}"), *at, text(f" (return {e.return_id})")]
    if name == "StockAdjusted":
        return [
            text(f"Adjusted on hand by {signed(e.delta)}"),
            *at,
            text(f" ({e.reason}, reference {e.reference})"),
        ]
    if name == "DamagedWrittenOff":
        return [text(f"Wrote off {e.quantity} damaged"), *at, text(f" (reference {e.reference})")]
    if name == "MovementCorrected":
        was = dict(e.corrects or {})
        parts = [text(f"Corrected movement {was.get('version', '?')} ")]
        if was.get("reference"):
            parts.append(text(f"({was['reference']}) "))
        if was.get("sku"):
            parts += [text("of "), link(was["sku"], sku_href(was["sku"]))]
        if was.get("location"):
            parts += [text(" at "), link(was["location"], location_href(was["location"]))]
        return [
            *parts,
            text(
                f": on hand {signed(e.on_hand_delta)}, unavailable {signed(e.unavailable_delta)} ({e.reason})"
            ),
        ]
    if name == "StockCounted":
        head = [text(f"Counted {e.counted}"), *at, text(f" as of {plain(e.counted_at)}")]
        if not e.applied:
            return [*head, text(f": kept for audit, moved nothing ({e.reason}, reference {e.reference})")]
        return [*head, text(f": on hand moved by {signed(e.delta)} (reference {e.reference})")]
    if name == "BackordersConfigured":
        return [text("Backorders allowed" if e.allowed else "Backorders no longer allowed"), *at]
    return None


def _order(name: str, e: Any) -> list[Part] | None:
    g = lambda k: getattr(e, k, None)  # noqa: E731 - a short reader of the event's fields
    if name == "Captured":
        return [
            text("Captured order "),
            link(e.order_id, order_href(e.order_id)),
            text(f" on channel {e.channel}, {len(e.lines)} line(s): "),
            *_lines(list(e.lines)),
        ]
    if name == "LineReserved":
        return [
            text(f"Reserved {e.quantity} of line {e.line_id} at "),
            link(e.location, location_href(e.location)),
        ]
    if name == "LineRemapped":
        return [
            text(f"Line {e.line_id} moved from "),
            link(e.from_sku, sku_href(e.from_sku)),
            text(" to "),
            link(e.to_sku, sku_href(e.to_sku)),
            text(f" after a mapping fix: {e.released} released, {e.reserved} reserved"),
        ]
    if name == "ShipmentRecorded":
        total = sum(int(x.get("quantity", 0)) for x in e.lines)
        return [text(f"Shipped {total} (shipment {e.shipment_id}): "), *_lines(list(e.lines))]
    if name == "LinesCancelled":
        what = "Cancelled the whole order" if e.whole else "Cancelled "
        parts = [text(what)]
        if not e.whole:
            parts += _lines(list(e.lines))
        if g("reference"):
            parts.append(text(f" by {e.reference}"))
        return [*parts, text(f" ({e.reason})")]
    if name == "ReturnRecorded":
        return [text(f"Return {e.return_id}: "), *_lines(list(e.lines), extra="disposition")]
    if name == "RefundRecorded":
        return [text(f"Refund {e.refund_id} of {e.amount} {e.currency} recorded")]
    if name == "RefundConfirmed":
        return [
            text(f"Refund {e.refund_id} of {e.amount} {e.currency} confirmed (transaction {e.transaction})")
        ]
    if name == "RefundFailed":
        return [text(f"Refund {e.refund_id} failed (transaction {e.transaction}): {e.error}")]
    if name == "RefundSettled":
        return [text(f"Refund {e.refund_id} settled (reference {e.settlement_reference})")]
    if name == "ErpPostingFailed":
        return [text(f"Posting {e.document} to the ERP failed (attempt {e.attempt}): {e.error}")]
    if name == "PostedToErp":
        ref = f", ERP reference {e.erp_reference}" if g("erp_reference") else ""
        return [text(f"Posted {e.document} to the ERP after {e.attempts} attempt(s){ref}")]
    if name == "Validated":
        checks = f" ({', '.join(e.checks)})" if e.checks else ""
        return [text(f"Passed its checks{checks}: it goes on to the ERP")]
    if name == "Held":
        why = "; ".join(f"{x.get('check', '?')}: {x.get('reason', '')}" for x in e.holds)
        return [text(f"Held by its checks ({why}): not posted to the ERP until released or cancelled")]
    if name == "Released":
        return [text(f"Released by {e.by}: it goes on to the ERP")]
    if name == "Invoiced":
        return [text(f"Invoiced (invoice {e.invoice_id})")]
    if name == "PlatformStatusObserved":
        return [text(f"The shop reported {plain(e.status)}")]
    if name == "CorrelationIdsRecorded":
        return [text(f"Recorded outside ids: {plain(e.ids)}")]
    if name == "LinesAdded":
        return [text(f"Added by edit {e.reference}: "), *_lines(list(e.lines))]
    if name == "LineReleased":
        where = [text(" at "), link(e.location, location_href(e.location))] if g("location") else []
        return [text(f"Released {e.quantity} of line {e.line_id}"), *where, text(f" ({e.reason})")]
    return None


def humanize(name: str) -> str:
    words = "".join(f" {ch.lower()}" if ch.isupper() else ch for ch in name).strip()
    return words[:1].upper() + words[1:]


HIDDEN = frozenset({"originator_id", "originator_version", "timestamp", "cause", "originator_topic"})


def sentence(event: Any, location: str | None = None) -> list[Part]:
    """What the event says, as parts; events without a sentence of their own read as their
    name and their fields ("Policy changed: channel web, version 3")."""
    name = type(event).__name__
    qualified = type(event).__qualname__
    parts = None
    if qualified.startswith("Order."):
        parts = _order(name, event)
    elif qualified.startswith("SkuLocation."):
        parts = _stock(name, event, location)
    if parts is not None:
        return parts
    fields = {k: v for k, v in vars(event).items() if k not in HIDDEN and not k.startswith("_")}
    return [text(humanize(name) + (": " + plain(fields) if fields else ""))]


def cause(c: Mapping[str, Any], key_names: Mapping[str, str]) -> list[Part]:
    """Where an event came from, each id a link where the console has a page for it."""
    source = c.get("source")
    causation = c.get("causation_id")
    parts: list[Part] = []
    if source in INBOX_SOURCES and isinstance(causation, str) and causation.isdigit():
        label = f"remap of message {causation}" if source == "remap" else f"{source} message {causation}"
        parts.append(link(label, f"/console/messages/{causation}"))
    elif source == "api":
        parts.append(text("API request"))
        actor = c.get("actor")
        if actor:
            parts.append(text(f" by {key_names.get(actor, f'key {actor}')}"))
    elif source == "erp-poster":
        parts.append(text(f"ERP poster, document {c.get('reference', '')}"))
    elif source == "channels":
        channel = str(c.get("reference", "")).rsplit("@", 1)[0]
        parts.append(
            link(
                f"channel policy {c.get('reference', '')}",
                f"/console/channels#channel-{quote(channel, safe='')}",
            )
        )
    elif source == "projections":
        parts.append(text("a read-model rebuild"))
    elif source:
        parts.append(text(str(source) + (f" {c['reference']}" if c.get("reference") else "")))
    correlation = c.get("correlation_id")
    if correlation and correlation != causation:
        parts += [
            text(" · correlation "),
            link(correlation, "/console/search?" + urlencode({"q": correlation})),
        ]
    if c.get("mapping_version"):
        parts += [text(" · "), link(f"mappings as of version {c['mapping_version']}", "/console/mappings")]
    return parts
