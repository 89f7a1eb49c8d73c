"""The ERP: inbound goods receipts, transfers and cycle counts; outbound sales orders and credit memos.

Inbound messages come as JSON over HTTP (`api/routes/erp.py`), are stored in the inbox and
de-duplicated by `message_id`. ERP codes go through `erp/sku` and `erp/location` when such a
mapping exists; otherwise the ERP's code is the canonical name (the ERP is the item and
warehouse master).

- goods receipt `{message_id, receipt_id, location, lines: [{sku, quantity}]}` -> ReceiveStock
- transfer `{message_id, transfer_id, from_location, to_location, lines: [{sku, quantity}]}` -> TransferStock
- cycle count `{message_id, count_id, location, counted_at, lines: [{sku, counted}]}`: `counted` is the
  absolute quantity on the shelf at `counted_at`; each line is a `CountStock`, which the writer turns
  into a `StockCounted` (reason `cycle-count`): on hand becomes counted + the movements recorded
  after `counted_at`, so a count taken before units shipped never brings them back. A count older
  than the last applied count moves nothing; a count below reserved and unavailable is recorded
  and its shortfall shows in the message's reason.

- invoice `{message_id, invoice_id, order_id, amount, currency}` -> InvoiceOrder (the order is invoiced)

Outbound, the ERP is told the whole story of each order, one document per fact (`DOCUMENTS`):
a sales order per captured order, a cancellation, a delivery per shipment, a return, and a credit
memo per confirmed refund. `ErpFeeder` follows the event log and puts one row per document in the
`erp_queue` table, committing its tracking position in the same transaction, so each document is
queued exactly once, in the order the facts happened.

`ErpPoster` claims due rows with a lease (`claimed_by`, `claimed_until`: several workers never post
one document twice), only the earliest unfinished row of each order, so each order's documents go
in sequence while other orders' go on beside them, on a bounded thread pool (a slow or failing
document holds back only its own order). Each outcome is recorded on the row and on the order
(`RecordErpPosting` / `RecordErpFailure`, the ERP's reference kept as a correlation id); a credit
memo the ERP accepted settles its refund. A sales order whose order was wholly cancelled before it
was accepted is `voided`, and so is everything after it: the ERP never sees that order live.
Only a sales order never possibly accepted is voided: one sent without an answer (a timeout) is
marked `uncertain` and posted again (same Idempotency-Key) until the ERP answers, then its
cancellation follows, so a cancel that races a posting never leaves a live order at the ERP. The
sales order of an order its checks hold (`Order.held`) waits, without counting as an attempt,
until the order is released or cancelled (the feeder wakes it when it reads either fact).
Failures are retried with exponential backoff behind a circuit breaker. With no ERP configured,
rows wait in the queue.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal, Protocol
from urllib.parse import quote

import httpx
import orjson
from eventsourcing.utils import get_topic
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from adapters.fields import Id, Quantity
from adapters.mappings import Lookup
from adapters.metrics import ERP_POSTINGS, ERP_QUEUE_DEPTH
from adapters.persistence.db import Database
from adapters.translate import Apply, Context, MappingUse, Reject, Translation, Wait, WaitKey, ref
from ledger import commands as c
from ledger.bounds import MAX_QUANTITY
from ledger.orders import SALES_ORDER, Order, document_name
from ledger.service import Ledger

log = logging.getLogger("ledger.erp")

# ------------------------------------------------------------------ inbound


Code = Id  # a POS/ERP code: the contract's identifier bounds


def _example(value: dict[str, Any]) -> ConfigDict:
    return ConfigDict(extra="forbid", json_schema_extra={"examples": [value]})


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid")
    message_id: Code = Field(description="The ERP's message id: stored once, the same id with other content refused.")


class ErpLine(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sku: Code = Field(description="The SKU (mapped through `erp/sku` when mapped).")
    quantity: Quantity = Field(description="Units.")


class CountLine(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sku: Code = Field(description="The SKU (mapped through `erp/sku` when mapped).")
    counted: Annotated[int, Field(ge=0, le=MAX_QUANTITY, strict=True)] = Field(description="Units counted.")


def _unique_skus(lines: list[Any]) -> None:
    skus = [x.sku for x in lines]
    if len(skus) != len(set(skus)):
        raise ValueError("each sku appears once per message")


class GoodsReceipt(_Message):
    """Units received at a location."""

    model_config = _example(
        {"message_id": "m-1", "receipt_id": "GR-1", "location": "WH1", "lines": [{"sku": "SKU-RED-M", "quantity": 24}]}
    )
    receipt_id: Code = Field(description="The receipt document.")
    location: Code = Field(description="Where the units arrived.")
    lines: list[ErpLine] = Field(min_length=1, max_length=1000, description="Units per SKU, each SKU once.")
    asn_id: Code | None = Field(None, description="The notice whose incoming units this receipt lands.")

    @model_validator(mode="after")
    def _check(self) -> GoodsReceipt:
        _unique_skus(self.lines)
        return self


class Transfer(_Message):
    """Units moved between two locations, at once or in two steps (`dispatched`, then `received`)."""

    model_config = _example(
        {"message_id": "m-2", "transfer_id": "TR-1", "from_location": "WH1", "to_location": "STORE1",
         "status": "dispatched", "lines": [{"sku": "SKU-RED-M", "quantity": 5}]}
    )
    transfer_id: Code = Field(description="The transfer document.")
    from_location: Code = Field(description="Where the units leave.")
    to_location: Code = Field(description="Where they arrive.")
    lines: list[ErpLine] = Field(min_length=1, max_length=1000, description="Units per SKU, each SKU once.")
    status: Literal["dispatched", "received"] | None = Field(
        None, description="`dispatched`: on their way (incoming at the destination); `received`: arrived."
    )

    @model_validator(mode="after")
    def _check(self) -> Transfer:
        _unique_skus(self.lines)
        if self.from_location == self.to_location:
            raise ValueError("a transfer needs two different locations")
        return self


class AdvanceShippingNotice(_Message):
    """Units on their way to a location: `incoming` there until a receipt naming the notice."""

    model_config = _example(
        {"message_id": "m-3", "asn_id": "ASN-1", "location": "WH1", "expected_at": "2026-11-25T00:00:00Z",
         "lines": [{"sku": "SKU-RED-M", "quantity": 12}]}
    )
    asn_id: Code = Field(description="The notice's id, named again by the goods receipt that lands it.")
    location: Code = Field(description="Where the units are expected.")
    expected_at: AwareDatetime = Field(description="When they are expected (RFC 3339).")
    lines: list[ErpLine] = Field(min_length=1, max_length=1000, description="Units per SKU, each SKU once.")

    @model_validator(mode="after")
    def _check(self) -> AdvanceShippingNotice:
        _unique_skus(self.lines)
        return self


class CycleCount(_Message):
    """Absolute counts, applied as of `counted_at` (later movements are kept on top)."""

    model_config = _example(
        {"message_id": "m-4", "count_id": "CC-1", "location": "WH1", "counted_at": "2026-11-20T06:00:00Z",
         "lines": [{"sku": "SKU-RED-M", "counted": 21}]}
    )
    count_id: Code = Field(description="The count document.")
    location: Code = Field(description="Where it was counted.")
    counted_at: AwareDatetime = Field(description="When it was counted (RFC 3339).")
    lines: list[CountLine] = Field(min_length=1, max_length=1000, description="Units counted per SKU, each SKU once.")

    @model_validator(mode="after")
    def _check(self) -> CycleCount:
        _unique_skus(self.lines)
        return self


def _amount(value: str) -> str:
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise ValueError("amount must be a decimal number") from None
    if not amount.is_finite() or amount < 0:
        raise ValueError("amount must be a finite, non-negative decimal number")
    return value


class Invoice(_Message):
    """The ERP invoiced an order."""

    model_config = _example(
        {"message_id": "m-5", "invoice_id": "INV-1", "order_id": "1001", "amount": "59.90", "currency": "EUR"}
    )
    invoice_id: Code = Field(description="The invoice's id.")
    order_id: Code = Field(description="The order invoiced.")
    amount: Annotated[str, Field(min_length=1, max_length=40, pattern=r"^-?[0-9]+(\.[0-9]+)?$")] = Field(
        description="An exact, non-negative decimal, as text."
    )
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = Field(description="ISO 4217.")

    @model_validator(mode="after")
    def _check(self) -> Invoice:
        _amount(self.amount)
        return self


SHAPES: dict[str, type[_Message]] = {
    "goods-receipt": GoodsReceipt,
    "transfer": Transfer,
    "cycle-count": CycleCount,
    "invoice": Invoice,
    "advance-shipping-notice": AdvanceShippingNotice,
}


def translate(row: dict[str, Any], payload: Any, lookup: Lookup, ctx: Context) -> Translation:
    m = SHAPES[row["kind"]].model_validate(payload)
    t = Apply()

    def code(kind: str, value: str) -> tuple[str, MappingUse]:
        chosen = lookup.get(kind, value) or value
        return chosen, lookup.use(kind, value, chosen)

    if isinstance(m, GoodsReceipt):
        location, lkey = code("location", m.location)
        for i, line in enumerate(m.lines):
            sku, skey = code("sku", line.sku)
            t.add(
                c.ReceiveStock(
                    sku=sku,
                    location=location,
                    quantity=line.quantity,
                    reference=ref("erp-receipt", m.receipt_id, i),
                    expected=m.asn_id is not None,
                ),
                [skey, lkey],
                [(sku, location)],
            )
    elif isinstance(m, Transfer):
        src, src_key = code("location", m.from_location)
        dst, dst_key = code("location", m.to_location)
        if src == dst:
            return Reject(f"{m.from_location} and {m.to_location} map to the same location {src}")
        for i, line in enumerate(m.lines):
            sku, skey = code("sku", line.sku)
            t.add(
                c.TransferStock(
                    sku=sku,
                    from_location=src,
                    to_location=dst,
                    quantity=line.quantity,
                    reference=ref("erp-transfer", m.transfer_id, i),
                    status=m.status,
                ),
                [skey, src_key, dst_key],
                [(sku, src), (sku, dst)],
            )
    elif isinstance(m, AdvanceShippingNotice):
        location, lkey = code("location", m.location)
        for i, line in enumerate(m.lines):
            sku, skey = code("sku", line.sku)
            t.add(
                c.ExpectStock(
                    sku=sku,
                    location=location,
                    quantity=line.quantity,
                    reference=ref("erp-asn", m.asn_id, i),
                    due_at=m.expected_at,
                ),
                [skey, lkey],
                [(sku, location)],
            )
    elif isinstance(m, Invoice):
        if ctx.history.order(m.order_id) is None:
            return Wait(WaitKey.order(m.order_id))
        t.add(c.InvoiceOrder(order_id=m.order_id, invoice_id=m.invoice_id))
    else:
        assert isinstance(m, CycleCount)
        location, lkey = code("location", m.location)
        for i, count in enumerate(m.lines):
            sku, skey = code("sku", count.sku)
            t.add(
                c.CountStock(
                    sku=sku,
                    location=location,
                    counted=count.counted,
                    counted_at=m.counted_at,
                    reason="cycle-count",
                    reference=ref("erp-count", m.count_id, i),
                ),
                [skey, lkey],
                [(sku, location)],
            )
    return t


# ----------------------------------------------------------------- outbound

# kind -> the ERP path it is posted to (`{order_id}` is the order's id, URL-quoted)
PATHS = {
    "sales-order": "sales-orders",
    "cancellation": "sales-orders/{order_id}/cancellations",
    "delivery": "deliveries",
    "return": "returns",
    "credit-memo": "credit-memos",
}


HELD = "held: waiting for release"  # the last_error of a sales order whose order its checks hold


class ErpError(Exception):
    """The ERP did not accept a document (non-2xx answer, timeout, connection error).

    `uncertain`: no answer came after the document was sent (a read timeout, a connection lost
    mid-request), so the ERP may have accepted it. A refusal (an HTTP status) or a connection
    that never opened is certain: the ERP does not hold the document.
    """

    def __init__(self, message: str, uncertain: bool = False) -> None:
        super().__init__(message)
        self.uncertain = uncertain


class ErpGateway(Protocol):
    """Where the order's documents go (the role the poster needs)."""

    def post(self, kind: str, document: dict[str, Any], idempotency_key: str) -> str | None:
        """Posts one document; returns the ERP's reference if it gives one; raises ErpError."""
        ...


class HttpErp:
    """The ERP's HTTP JSON API: POST {url}/{PATHS[kind]} with an Idempotency-Key."""

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.client = httpx.Client(timeout=timeout)

    def post(self, kind: str, document: dict[str, Any], idempotency_key: str) -> str | None:
        path = PATHS[kind].format(order_id=quote(str(document.get("order_id", "")), safe=""))
        try:
            r = self.client.post(
                f"{self.url}/{path}",
                content=orjson.dumps(document),
                headers={"Idempotency-Key": idempotency_key, "Content-Type": "application/json"},
            )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as e:
            raise ErpError(type(e).__name__) from None  # never sent
        except httpx.HTTPError as e:
            raise ErpError(type(e).__name__, uncertain=True) from None
        if not 200 <= r.status_code < 300:
            raise ErpError(f"HTTP {r.status_code}")
        try:
            body = r.json()
        except ValueError:
            return None
        reference = body.get("reference") if isinstance(body, dict) else None
        return str(reference)[:128] if reference not in (None, "") else None

    def close(self) -> None:
        self.client.close()


def idempotency_key(document: str) -> str:
    """A stable key per document, the same on every retry."""
    return "ledger-" + hashlib.sha256(document.encode()).hexdigest()[:40]


class ErpQueue:
    """The durable posting queue and the feeder's tracking position, in the ledger database.

    A row is `pending` until the ERP accepted it (`posted`) or it was `voided` (its order was
    cancelled before the sales order was accepted). A worker claims a row by setting a lease
    (`claimed_by`, `claimed_until`) with a conditional UPDATE; a lease that ran out (a worker that
    died mid-post) lets another worker take the row.
    """

    TRACKING = "erp-feeder"

    def __init__(self, db: Database) -> None:
        self.db = db
        self._depth_at = -float("inf")

    def position(self) -> int:
        row = self.db.query_one("SELECT position FROM erp_tracking WHERE name = %s", (self.TRACKING,))
        return 0 if row is None else int(row["position"])

    # Only the earliest unfinished row of each order is ever due: its documents go in sequence.
    _DUE = (
        "SELECT q.* FROM erp_queue q WHERE q.status = 'pending' AND q.next_attempt_at <= %s "
        "AND q.claimed_until < %s AND NOT EXISTS (SELECT 1 FROM erp_queue e WHERE "
        "e.order_id = q.order_id AND e.status = 'pending' AND e.id < q.id)"
    )

    def due(self, now: float, limit: int, order_id: str | None = None) -> list[dict[str, Any]]:
        """Rows a worker may claim now (unclaimed or with a lapsed lease), oldest first."""
        if order_id is not None:
            return self.db.query(
                self._DUE + " AND q.order_id = %s ORDER BY q.id LIMIT %s", (now, now, order_id, limit)
            )
        return self.db.query(self._DUE + " ORDER BY q.id LIMIT %s", (now, now, limit))

    def claim(self, row_id: int, worker: str, now: float, lease: float) -> bool:
        """Takes the row for `lease` seconds; False when another worker holds it or it is done."""
        return (
            self.db.execute(
                "UPDATE erp_queue SET claimed_by = %s, claimed_until = %s "
                "WHERE id = %s AND status = 'pending' AND claimed_until < %s",
                (worker, now + lease, row_id, now),
            )
            == 1
        )

    def depth(self) -> int:
        row = self.db.query_one("SELECT count(*) AS n FROM erp_queue WHERE status = 'pending'")
        return int(row["n"]) if row else 0

    DEPTH_EVERY = 1.0  # seconds between two counts for the gauge: a count reads every pending row

    def report_depth(self) -> None:
        """Sets `ERP_QUEUE_DEPTH`, at most once a `DEPTH_EVERY` (the feeder and poster step often)."""
        now = time.monotonic()
        if now - self._depth_at >= self.DEPTH_EVERY:
            self._depth_at = now
            ERP_QUEUE_DEPTH.set(self.depth())

    def rows(self, order_id: str | None = None) -> list[dict[str, Any]]:
        if order_id is None:
            return self.db.query("SELECT * FROM erp_queue ORDER BY id")
        return self.db.query("SELECT * FROM erp_queue WHERE order_id = %s ORDER BY id", (order_id,))

    def sales_order_status(self, order_id: str) -> str | None:
        row = self.db.query_one(
            "SELECT status FROM erp_queue WHERE order_id = %s AND kind = 'sales-order'", (order_id,)
        )
        return None if row is None else str(row["status"])

    def posted(self, row_id: int, attempts: int, reference: str | None) -> None:
        self.db.execute(
            "UPDATE erp_queue SET status = 'posted', attempts = %s, erp_reference = %s, posted_at = %s, "
            "last_error = NULL, claimed_until = 0 WHERE id = %s",
            (attempts, reference, datetime.now().astimezone().isoformat(), row_id),
        )

    def voided(self, row_id: int, reason: str) -> None:
        self.db.execute(
            "UPDATE erp_queue SET status = 'voided', last_error = %s, claimed_until = 0 WHERE id = %s",
            (reason[:500], row_id),
        )

    def failed(self, row_id: int, attempts: int, next_at: float, error: str) -> None:
        self.db.execute(
            "UPDATE erp_queue SET attempts = %s, next_attempt_at = %s, last_error = %s, claimed_until = 0 "
            "WHERE id = %s",
            (attempts, next_at, error[:500], row_id),
        )

    def sending(self, row_id: int) -> None:
        """Marks the row uncertain before its POST: a worker that dies mid-request leaves it so."""
        self.db.execute("UPDATE erp_queue SET uncertain = 1 WHERE id = %s", (row_id,))

    def answered(self, row_id: int, uncertain: bool) -> None:
        """The ERP answered a refusal: the row is as uncertain as before this attempt."""
        self.db.execute("UPDATE erp_queue SET uncertain = %s WHERE id = %s", (1 if uncertain else 0, row_id))

    def defer(self, row_id: int, next_at: float, reason: str) -> None:
        """Not posted now, and not an attempt (the order is held): looked at again at `next_at`."""
        self.db.execute(
            "UPDATE erp_queue SET next_attempt_at = %s, last_error = %s, claimed_until = 0 WHERE id = %s",
            (next_at, reason[:500], row_id),
        )


def _cause(document: str, row_id: int) -> dict[str, Any]:
    return {
        "source": "erp-poster",
        "reference": document[:128],
        "correlation_id": document[:128],
        "causation_id": f"erp-queue:{row_id}",
    }


QueuedDocument = tuple[str, str, str, str, str, int]  # document, kind, order_id, name, payload, position


class ErpFeeder:
    """Follows the event log and queues each order fact's ERP document exactly once."""

    TOPICS = {
        ":Order.Captured": "sales-order",
        ":Order.LinesCancelled": "cancellation",
        ":Order.ShipmentRecorded": "delivery",
        ":Order.ReturnRecorded": "return",
        ":Order.RefundConfirmed": "credit-memo",
    }

    # Facts after which an order's held sales order is looked at again at once (released, cancelled).
    WAKES = (":Order.Released", ":Order.LinesCancelled")

    def __init__(self, ledger: Ledger, queue: ErpQueue, batch: int = 500, window: int = 20_000) -> None:
        self.ledger = ledger
        self.queue = queue
        self.batch = batch
        self.window = window  # positions scanned a step at most (only order facts are read)
        # The exact stored topics of the facts it reads: most of the log (stock movements, line
        # reservations) is never read back (a seventh of an order capture's events is a fact here).
        read = {*self.TOPICS, *self.WAKES}
        self.topics = sorted(
            get_topic(cls) for cls in vars(Order).values() if isinstance(cls, type) and f":{cls.__qualname__}" in read
        )

    def _kind(self, topic: str) -> str | None:
        for suffix, kind in self.TOPICS.items():
            if topic.endswith(suffix):
                return kind
        return None

    def step(self) -> int:
        """Queues the documents of the next order facts; returns the log positions it passed."""
        start = self.queue.position()
        recorder = self.ledger.app.recorder
        head = int(recorder.max_notification_id() or 0)
        if head <= start:
            return 0
        # Every position up to the head is committed (appends take the table lock in order), so
        # the facts between `start` and `stop` are all there to read.
        stop = min(head, start + self.window)
        notes = recorder.select_notifications(start + 1, self.batch, stop=stop, topics=self.topics)
        end = notes[-1].id if len(notes) >= self.batch else stop
        rows = []
        woken: set[str] = set()
        for n in notes:
            kind = self._kind(n.topic)
            if kind is not None:
                rows.append(self._document(kind, n))
            if n.topic.endswith(self.WAKES):
                woken.add(self._order_id(n))
        now = datetime.now().astimezone().isoformat()
        with self.queue.db.transaction() as tx:
            moved = tx.execute(
                "UPDATE erp_tracking SET position = %s WHERE name = %s AND position = %s",
                (end, ErpQueue.TRACKING, start),
            ).rowcount
            if not moved:
                if start != 0:
                    raise RuntimeError("another feeder moved the ERP tracking position")
                tx.execute(
                    "INSERT INTO erp_tracking (name, position) VALUES (%s, %s)",
                    (ErpQueue.TRACKING, end),
                )
            tx.executemany(
                "INSERT INTO erp_queue (document, kind, order_id, name, payload, position, status, "
                "created_at) "
                "VALUES (%s, %s, %s, %s, %s, %s, 'pending', %s) ON CONFLICT (document) DO NOTHING",
                [(*r, now) for r in rows],
            )
            tx.executemany(
                "UPDATE erp_queue SET next_attempt_at = 0 WHERE order_id = %s AND status = 'pending' "
                "AND last_error = %s",
                [(oid, HELD) for oid in sorted(woken)],
            )
        self.queue.report_depth()
        return end - start

    def _order_id(self, n: Any) -> str:
        order: Order = self.ledger.app.repository.get(n.originator_id, version=n.originator_version)
        return str(order.order_id)

    def _document(self, kind: str, n: Any) -> QueuedDocument:
        event = self.ledger.app.mapper.to_domain_event(n)
        if isinstance(event, Order.Captured):
            doc = {
                "order_id": event.order_id,
                "channel": event.channel,
                "lines": event.lines,
                "external_refs": event.external_refs,
                "captured_at": event.timestamp.isoformat(),
                "position": n.id,
            }
            return (f"sales-order:{event.order_id}", kind, event.order_id, SALES_ORDER, _json(doc), n.id)
        order: Order = self.ledger.app.repository.get(n.originator_id, version=n.originator_version)
        oid = order.order_id

        def sku(line_id: str) -> str:
            return str(order.lines[line_id]["sku"])

        if isinstance(event, Order.LinesCancelled):
            key: object = n.originator_version
            doc = {
                "order_id": oid,
                "cancellation_id": f"{oid}/{key}",
                "reason": event.reason,
                "whole": event.whole,
                "lines": [
                    {"line_id": x["line_id"], "sku": sku(x["line_id"]), "quantity": x["quantity"]}
                    for x in event.lines
                ],
            }
        elif isinstance(event, Order.ShipmentRecorded):
            key = event.shipment_id
            doc = {
                "order_id": oid,
                "shipment_id": event.shipment_id,
                "lines": [
                    {
                        "line_id": x["line_id"],
                        "sku": sku(x["line_id"]),
                        "location": x["location"],
                        "quantity": x["quantity"],
                    }
                    for x in event.lines
                ],
            }
        elif isinstance(event, Order.ReturnRecorded):
            key = event.return_id
            doc = {
                "order_id": oid,
                "return_id": event.return_id,
                "lines": [
                    {
                        "line_id": x["line_id"],
                        "sku": sku(x["line_id"]),
                        "location": x.get("location"),
                        "quantity": x["quantity"],
                        "disposition": x["disposition"],
                    }
                    for x in event.lines
                ],
            }
        else:
            assert isinstance(event, Order.RefundConfirmed)
            key = event.refund_id
            doc = {
                "order_id": oid,
                "refund_id": event.refund_id,
                "amount": event.amount,
                "currency": event.currency,
                "lines": order.refunds[event.refund_id]["lines"],
                "transaction": event.transaction,
            }
        doc["position"] = n.id
        return (f"{kind}:{oid}:{key}", kind, oid, document_name(kind, key), _json(doc), n.id)


def _json(doc: dict[str, Any]) -> str:
    return orjson.dumps(doc).decode()


class CircuitBreaker:
    """Opens after `threshold` failures in a row; after `cooldown` seconds lets one trial through."""

    def __init__(
        self, threshold: int = 5, cooldown: float = 30.0, clock: Callable[[], float] = time.monotonic
    ):
        self.threshold = threshold
        self.cooldown = cooldown
        self.clock = clock
        self.state = "closed"
        self.failures = 0
        self.opened_at = 0.0
        self._lock = threading.Lock()

    def allow(self) -> bool:
        with self._lock:
            if self.state == "open" and self.clock() - self.opened_at >= self.cooldown:
                self.state = "half-open"
            return self.state != "open"

    def success(self) -> None:
        with self._lock:
            self.state, self.failures = "closed", 0

    def failure(self) -> None:
        with self._lock:
            self.failures += 1
            if self.state == "half-open" or self.failures >= self.threshold:
                self.state, self.opened_at = "open", self.clock()


class ErpPoster:
    """Posts due queue rows; 2xx -> posted, anything else -> retried later with backoff.

    Up to `concurrency` orders are posted at once, each order's documents one after the other.
    `step()` claims work for the free slots, waits at most `wait` seconds for some of it to finish,
    and answers how many documents were finished (posted, failed or voided) since the last step.
    """

    def __init__(
        self,
        ledger: Ledger,
        queue: ErpQueue,
        gateway: ErpGateway | None,
        breaker: CircuitBreaker | None = None,
        backoff_base: float = 1.0,
        backoff_max: float = 300.0,
        batch: int = 100,
        concurrency: int = 8,
        lease: float | None = None,
        wait: float = 1.0,
        worker: str | None = None,
        hold_recheck: float = 5.0,
    ) -> None:
        self.ledger = ledger
        self.queue = queue
        self.gateway = gateway
        self.breaker = breaker or CircuitBreaker()
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.batch = batch
        self.concurrency = concurrency
        timeout = float(getattr(gateway, "timeout", 5.0))
        self.lease = lease if lease is not None else max(30.0, 4 * timeout)
        self.wait = wait
        self.hold_recheck = hold_recheck  # seconds before a held order's sales order is looked at again
        self.worker = worker or f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._pool: ThreadPoolExecutor | None = None
        self._inflight: dict[str, Future[int]] = {}

    def backoff(self, attempts: int) -> float:
        return min(self.backoff_max, self.backoff_base * 2 ** (attempts - 1)) * random.uniform(0.5, 1.0)

    def step(self) -> int:
        done = self._reap()
        if self.gateway is None or not self.breaker.allow():
            return done
        free = self.concurrency - len(self._inflight)
        if free > 0:
            now = time.time()
            for r in self.queue.due(now, min(self.batch, free + len(self._inflight))):
                if len(self._inflight) >= self.concurrency or not self.breaker.allow():
                    break
                if r["order_id"] in self._inflight or not self.queue.claim(
                    r["id"], self.worker, now, self.lease
                ):
                    continue
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="erp-post")
                self._inflight[r["order_id"]] = self._pool.submit(self._post_order, r)
        if self._inflight:
            wait(list(self._inflight.values()), timeout=self.wait, return_when=FIRST_COMPLETED)
        done += self._reap()
        self.queue.report_depth()
        return done

    @property
    def in_flight(self) -> int:
        """Orders whose documents are being posted right now."""
        return len(self._inflight)

    def drain(self) -> None:
        """Waits for the documents in flight (for a clean stop)."""
        for f in list(self._inflight.values()):
            try:
                f.result(timeout=self.lease)
            except Exception:  # noqa: S110 - the row's lease lapses and another step retries it
                pass
        self._reap()

    def close(self) -> None:
        self.drain()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _reap(self) -> int:
        done = 0
        for order_id, f in list(self._inflight.items()):
            if f.done():
                del self._inflight[order_id]
                try:
                    done += f.result()
                except Exception as e:  # a bad row must not stop the poster; its lease lapses
                    log.warning("ERP posting of order failed unexpectedly: %s", type(e).__name__)
        return done

    def _post_order(self, row: dict[str, Any]) -> int:
        """Posts the order's claimed row, then its next rows while they go through."""
        done = 0
        while True:
            done += 1
            if not self._post(row):
                return done
            now = time.time()
            nxt = next(iter(self.queue.due(now, 1, order_id=row["order_id"])), None)
            if (
                nxt is None
                or not self.breaker.allow()
                or not self.queue.claim(nxt["id"], self.worker, now, self.lease)
            ):
                return done
            row = nxt

    def _void_reason(self, row: dict[str, Any], order: Order | None) -> str | None:
        if row["kind"] == "sales-order":
            # Wholly cancelled and never possibly accepted: a sales order sent without an answer
            # (`uncertain`) may be live at the ERP, so it is posted again and its cancellation after.
            if order is not None and order.erp_void and not row.get("uncertain"):
                return "order cancelled before its sales order was accepted"
            return None
        if self.queue.sales_order_status(row["order_id"]) == "voided":
            return "its sales order was voided"
        return None

    def _post(self, r: dict[str, Any]) -> bool:
        """One document; True when it is finished for good (posted or voided)."""
        assert self.gateway is not None
        sales_order = r["kind"] == "sales-order"
        order = self.ledger.history.order(r["order_id"]) if sales_order else None
        reason = self._void_reason(r, order)
        if reason is not None:
            ERP_POSTINGS.labels("voided").inc()
            self.queue.voided(r["id"], reason)
            return True
        if order is not None and order.held:
            # held by its checks: not an attempt; looked at again soon (a release wakes it at once)
            self.queue.defer(r["id"], time.time() + self.hold_recheck, HELD)
            return False
        attempts = int(r["attempts"]) + 1
        if sales_order and not r.get("uncertain"):
            self.queue.sending(r["id"])  # from here the ERP may hold it, until it answers a refusal
        try:
            reference = self.gateway.post(
                r["kind"], orjson.loads(r["payload"]), idempotency_key(r["document"])
            )
        except ErpError as e:
            self.breaker.failure()
            ERP_POSTINGS.labels("failed").inc()
            if sales_order and not e.uncertain and not r.get("uncertain"):
                self.queue.answered(r["id"], uncertain=False)
            self.queue.failed(r["id"], attempts, time.time() + self.backoff(attempts), str(e))
            self._record(
                c.RecordErpFailure(
                    order_id=r["order_id"],
                    document=r["name"],
                    attempt=attempts,
                    error=str(e),
                    uncertain=e.uncertain,
                    cause=_cause(r["document"], r["id"]),
                )
            )
            return False
        self.breaker.success()
        ERP_POSTINGS.labels("posted").inc()
        self.queue.posted(r["id"], attempts, reference)
        self._record(
            c.RecordErpPosting(
                order_id=r["order_id"],
                document=r["name"],
                attempts=attempts,
                erp_reference=reference,
                cause=_cause(r["document"], r["id"]),
            )
        )
        return True

    def _record(self, cmd: c.Command) -> None:
        try:
            self.ledger.submit(cmd).result(timeout=60)
        except Exception as e:  # the queue row is the record; the order event is best effort
            log.warning("ERP outcome not recorded on the order: %s", type(e).__name__)
