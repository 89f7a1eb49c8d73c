"""The ERP: inbound goods receipts, transfers and cycle counts; outbound sales orders and credit memos.

Inbound messages come as JSON over HTTP (`api/routes/erp.py`), are stored in the inbox and
de-duplicated by `message_id`. ERP codes go through `erp/sku` and `erp/location` when such a
mapping exists; otherwise the ERP's code is the canonical name (the ERP is the item and
warehouse master).

- goods receipt `{message_id, receipt_id, location, lines: [{sku, quantity}]}` -> ReceiveStock
- transfer `{message_id, transfer_id, from_location, to_location, lines: [{sku, quantity}]}` -> TransferStock
- cycle count `{message_id, count_id, location, counted_at, lines: [{sku, counted}]}`: `counted` is the
  absolute quantity on the shelf; each line is a `CountStock`, which the writer turns into a
  `StockAdjusted` of `counted - on_hand` (reason `cycle-count`) against the state it holds, so a
  count on a hot SKU never retries. A matching count appends nothing; a count below reserved and
  unavailable is recorded and its shortfall shows in the message's reason.

Outbound, `ErpFeeder` follows the event log and puts one row per captured order and per settled
refund in the `erp_queue` table, committing its tracking position in the same transaction, so
each document is queued exactly once. `ErpPoster` posts due rows through an `ErpGateway` with
exponential backoff and a circuit breaker and records each outcome on the order
(`RecordErpPosting` / `RecordErpFailure`). With no ERP configured, rows wait in the queue.
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Protocol

import httpx
import orjson
from pydantic import BaseModel, ConfigDict, Field, model_validator

from adapters.fields import Id, Quantity
from adapters.mappings import Lookup
from adapters.metrics import ERP_POSTINGS, ERP_QUEUE_DEPTH
from adapters.persistence.db import Database
from adapters.translate import Apply, Context, MappingUse, Reject, Translation, ref
from ledger import commands as c
from ledger.bounds import MAX_QUANTITY
from ledger.orders import Order
from ledger.service import Ledger

log = logging.getLogger("ledger.erp")

# ------------------------------------------------------------------ inbound


Code = Id  # a POS/ERP code: the contract's identifier bounds


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid")
    message_id: Code


class ErpLine(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sku: Code
    quantity: Quantity


class CountLine(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sku: Code
    counted: Annotated[int, Field(ge=0, le=MAX_QUANTITY, strict=True)]


def _unique_skus(lines: list[Any]) -> None:
    skus = [x.sku for x in lines]
    if len(skus) != len(set(skus)):
        raise ValueError("each sku appears once per message")


class GoodsReceipt(_Message):
    receipt_id: Code
    location: Code
    lines: list[ErpLine] = Field(min_length=1, max_length=1000)

    @model_validator(mode="after")
    def _check(self) -> GoodsReceipt:
        _unique_skus(self.lines)
        return self


class Transfer(_Message):
    transfer_id: Code
    from_location: Code
    to_location: Code
    lines: list[ErpLine] = Field(min_length=1, max_length=1000)

    @model_validator(mode="after")
    def _check(self) -> Transfer:
        _unique_skus(self.lines)
        if self.from_location == self.to_location:
            raise ValueError("a transfer needs two different locations")
        return self


class CycleCount(_Message):
    count_id: Code
    location: Code
    counted_at: datetime
    lines: list[CountLine] = Field(min_length=1, max_length=1000)

    @model_validator(mode="after")
    def _check(self) -> CycleCount:
        _unique_skus(self.lines)
        return self


SHAPES: dict[str, type[_Message]] = {
    "goods-receipt": GoodsReceipt,
    "transfer": Transfer,
    "cycle-count": CycleCount,
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
                ),
                [skey, src_key, dst_key],
                [(sku, src), (sku, dst)],
            )
    else:
        assert isinstance(m, CycleCount)
        location, lkey = code("location", m.location)
        for i, line in enumerate(m.lines):
            sku, skey = code("sku", line.sku)
            t.add(
                c.CountStock(
                    sku=sku,
                    location=location,
                    counted=line.counted,
                    reason="cycle-count",
                    reference=ref("erp-count", m.count_id, i),
                ),
                [skey, lkey],
                [(sku, location)],
            )
    return t


# ----------------------------------------------------------------- outbound

PATHS = {"sales-order": "sales-orders", "credit-memo": "credit-memos"}


class ErpError(Exception):
    """The ERP did not accept a document (non-2xx answer, timeout, connection error)."""


class ErpGateway(Protocol):
    """Where accepted sales documents go (the role the poster needs)."""

    def post(self, kind: str, document: dict[str, Any], idempotency_key: str) -> str | None:
        """Posts one document; returns the ERP's reference if it gives one; raises ErpError."""
        ...


class HttpErp:
    """The ERP's HTTP JSON API: POST {url}/sales-orders and {url}/credit-memos with an Idempotency-Key."""

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.client = httpx.Client(timeout=timeout)

    def post(self, kind: str, document: dict[str, Any], idempotency_key: str) -> str | None:
        try:
            r = self.client.post(
                f"{self.url}/{PATHS[kind]}",
                content=orjson.dumps(document),
                headers={"Idempotency-Key": idempotency_key, "Content-Type": "application/json"},
            )
        except httpx.HTTPError as e:
            raise ErpError(type(e).__name__) from None
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
    """The durable posting queue and the feeder's tracking position, in the ledger database."""

    TRACKING = "erp-feeder"

    def __init__(self, db: Database) -> None:
        self.db = db

    def position(self) -> int:
        row = self.db.query_one("SELECT position FROM erp_tracking WHERE name = %s", (self.TRACKING,))
        return 0 if row is None else int(row["position"])

    def due(self, now: float, limit: int) -> list[dict[str, Any]]:
        return self.db.query(
            "SELECT * FROM erp_queue WHERE status = 'pending' AND next_attempt_at <= %s ORDER BY id LIMIT %s",
            (now, limit),
        )

    def depth(self) -> int:
        row = self.db.query_one("SELECT count(*) AS n FROM erp_queue WHERE status = 'pending'")
        return int(row["n"]) if row else 0

    def rows(self, order_id: str | None = None) -> list[dict[str, Any]]:
        if order_id is None:
            return self.db.query("SELECT * FROM erp_queue ORDER BY id")
        return self.db.query("SELECT * FROM erp_queue WHERE order_id = %s ORDER BY id", (order_id,))

    def posted(self, row_id: int, attempts: int, reference: str | None) -> None:
        self.db.execute(
            "UPDATE erp_queue SET status = 'posted', attempts = %s, erp_reference = %s, posted_at = %s, "
            "last_error = NULL WHERE id = %s",
            (attempts, reference, datetime.now().astimezone().isoformat(), row_id),
        )

    def failed(self, row_id: int, attempts: int, next_at: float, error: str) -> None:
        self.db.execute(
            "UPDATE erp_queue SET attempts = %s, next_attempt_at = %s, last_error = %s WHERE id = %s",
            (attempts, next_at, error[:500], row_id),
        )


def _cause(document: str, row_id: int) -> dict[str, Any]:
    return {
        "source": "erp-poster",
        "reference": document[:128],
        "correlation_id": document[:128],
        "causation_id": f"erp-queue:{row_id}",
    }


class ErpFeeder:
    """Follows the event log and queues each captured order and settled refund exactly once."""

    CAPTURED = ":Order.Captured"
    SETTLED = ":Order.RefundSettled"

    def __init__(self, ledger: Ledger, queue: ErpQueue, batch: int = 500) -> None:
        self.ledger = ledger
        self.queue = queue
        self.batch = batch

    def step(self) -> int:
        start = self.queue.position()
        notes = self.ledger.app.recorder.select_notifications(start + 1, self.batch)
        if not notes:
            return 0
        rows = []
        for n in notes:
            if n.topic.endswith(self.CAPTURED) or n.topic.endswith(self.SETTLED):
                rows.append(self._document(n))
        now = datetime.now().astimezone().isoformat()
        with self.queue.db.transaction() as tx:
            moved = tx.execute(
                "UPDATE erp_tracking SET position = %s WHERE name = %s AND position = %s",
                (notes[-1].id, ErpQueue.TRACKING, start),
            ).rowcount
            if not moved:
                if start != 0:
                    raise RuntimeError("another feeder moved the ERP tracking position")
                tx.execute(
                    "INSERT INTO erp_tracking (name, position) VALUES (%s, %s)",
                    (ErpQueue.TRACKING, notes[-1].id),
                )
            tx.executemany(
                "INSERT INTO erp_queue (document, kind, order_id, name, payload, position, status, "
                "created_at) "
                "VALUES (%s, %s, %s, %s, %s, %s, 'pending', %s) ON CONFLICT (document) DO NOTHING",
                [(*r, now) for r in rows],
            )
        ERP_QUEUE_DEPTH.set(self.queue.depth())
        return len(notes)

    def _document(self, n: Any) -> tuple[str, str, str, str, str, int]:
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
            return (
                f"sales-order:{event.order_id}",
                "sales-order",
                event.order_id,
                "sales-order",
                orjson.dumps(doc).decode(),
                n.id,
            )
        order: Order = self.ledger.app.repository.get(n.originator_id, version=n.originator_version)
        refund = order.refunds[event.refund_id]
        doc = {
            "order_id": order.order_id,
            "refund_id": event.refund_id,
            "amount": refund["amount"],
            "currency": refund["currency"],
            "lines": refund["lines"],
            "settlement_reference": event.settlement_reference,
            "position": n.id,
        }
        name = ref("credit-memo", event.refund_id)
        return (
            f"credit-memo:{order.order_id}:{event.refund_id}",
            "credit-memo",
            order.order_id,
            name,
            orjson.dumps(doc).decode(),
            n.id,
        )


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

    def allow(self) -> bool:
        if self.state == "open" and self.clock() - self.opened_at >= self.cooldown:
            self.state = "half-open"
        return self.state != "open"

    def success(self) -> None:
        self.state, self.failures = "closed", 0

    def failure(self) -> None:
        self.failures += 1
        if self.state == "half-open" or self.failures >= self.threshold:
            self.state, self.opened_at = "open", self.clock()


class ErpPoster:
    """Posts due queue rows; 2xx -> posted, anything else -> retried later with backoff."""

    def __init__(
        self,
        ledger: Ledger,
        queue: ErpQueue,
        gateway: ErpGateway | None,
        breaker: CircuitBreaker | None = None,
        backoff_base: float = 1.0,
        backoff_max: float = 300.0,
        batch: int = 100,
    ) -> None:
        self.ledger = ledger
        self.queue = queue
        self.gateway = gateway
        self.breaker = breaker or CircuitBreaker()
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.batch = batch

    def backoff(self, attempts: int) -> float:
        return min(self.backoff_max, self.backoff_base * 2 ** (attempts - 1)) * random.uniform(0.5, 1.0)

    def step(self) -> int:
        if self.gateway is None or not self.breaker.allow():
            return 0
        rows = self.queue.due(time.time(), self.batch)
        futures = []
        done = 0
        for r in rows:
            if not self.breaker.allow():
                break
            attempts = int(r["attempts"]) + 1
            try:
                reference = self.gateway.post(
                    r["kind"], orjson.loads(r["payload"]), idempotency_key(r["document"])
                )
            except ErpError as e:
                self.breaker.failure()
                ERP_POSTINGS.labels("failed").inc()
                self.queue.failed(r["id"], attempts, time.time() + self.backoff(attempts), str(e))
                futures.append(
                    self.ledger.submit(
                        c.RecordErpFailure(
                            order_id=r["order_id"],
                            document=r["name"],
                            attempt=attempts,
                            error=str(e),
                            cause=_cause(r["document"], r["id"]),
                        )
                    )
                )
                continue
            self.breaker.success()
            ERP_POSTINGS.labels("posted").inc()
            self.queue.posted(r["id"], attempts, reference)
            futures.append(
                self.ledger.submit(
                    c.RecordErpPosting(
                        order_id=r["order_id"],
                        document=r["name"],
                        attempts=attempts,
                        erp_reference=reference,
                        cause=_cause(r["document"], r["id"]),
                    )
                )
            )
            done += 1
        for f in futures:
            try:
                f.result(timeout=60)
            except Exception as e:  # the queue row is the record; the order event is best effort
                log.warning("ERP outcome not recorded on the order: %s", type(e).__name__)
        ERP_QUEUE_DEPTH.set(self.queue.depth())
        return done
