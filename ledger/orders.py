"""The order aggregate: the stages of one sales order, as facts, with its outside correlation ids.

What is still to happen is derived from these facts (`Order.open_work`): units to reserve, the
ERP documents to post, units to ship, the invoice, refunds to confirm and to settle. The business
stage (`Order.stage`) follows from that open work, so it never reads `shipped` or `settled`
while earlier work is open. The platform's own status (Shopify's financial and fulfillment
status) is recorded as observed and never drives the stage.

The ERP is told one document per fact: the sales order (`Captured`), each cancellation after it
(`LinesCancelled`), each delivery (`ShipmentRecorded`), each return (`ReturnRecorded`) and each
confirmed refund as a credit memo (`RefundConfirmed`). `erp["expected"]` names the documents the
facts call for and `erp["documents"]` what became of each (`PostedToErp`, `ErpPostingFailed`).
An order wholly cancelled before its sales order was accepted is `erp_void`: nothing of it is
posted. A refund moves recorded -> confirmed (its transactions succeeded) -> settled (the ERP
accepted its credit memo); a failed refund transaction is recorded as `failed`. A refund paid by
several transactions (partial captures, several gateways) is confirmed once none is pending and
at least one succeeded, for the sum of the successful ones (`RefundTransactionRecorded`).

Between capture and posting, the order's checks (`ledger.validation`) leave it `validated` or
`held` (`Validated`, `Held`). A held order is not posted to the ERP until an operator releases
it (`Released`) or cancels it.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from ledger.bounds import check_id, check_quantity
from ledger.bounds import order_id as order_uuid
from ledger.errors import OrderConflictError

Cause = dict[str, Any]

SALES_ORDER = "sales-order"
# What can still be open on an order, in the order the work happens.
OPEN_WORK = ("reserve", "release", "ship", "post", "invoice", "confirm-refund", "settle-refund")
REFUND_STATUSES = ("recorded", "confirmed", "settled", "failed")


def is_sales_order(document: str) -> bool:
    return document == SALES_ORDER or document.startswith(SALES_ORDER + ":")


def document_name(kind: str, key: object) -> str:
    """The name of one of an order's ERP documents, unique within the order (`delivery:s1`)."""
    return f"{kind}:{key}"


STAGES = (
    "captured",
    "held",
    "reserved",
    "validated",
    "posted",
    "partially_shipped",
    "shipped",
    "invoiced",
    "partially_returned",
    "returned",
    "refunded",
    "settled",
    "partially_cancelled",
    "cancelled",
)


class Order(Aggregate):
    @staticmethod
    def create_id(order_id: str, **_: Any) -> UUID:
        return order_uuid(order_id)

    class Event(Aggregate.Event):
        cause: Cause

    class Captured(Aggregate.Created):
        order_id: str
        channel: str
        lines: list[dict[str, Any]]
        external_refs: dict[str, str]
        platform_status: dict[str, Any]
        cause: Cause

    def __init__(
        self,
        order_id: str,
        channel: str,
        lines: list[dict[str, Any]],
        external_refs: dict[str, str],
        platform_status: dict[str, Any],
        cause: Cause,
    ) -> None:
        self.order_id = order_id
        self.channel = channel
        self.lines: dict[str, dict[str, Any]] = {x["line_id"]: self.new_line(x) for x in lines}
        self.external_refs = dict(external_refs)
        self.platform_status = dict(platform_status)
        self.shipments: dict[str, list[dict[str, Any]]] = {}
        self.returns: dict[str, list[dict[str, Any]]] = {}
        self.refunds: dict[str, dict[str, Any]] = {}
        self.invoices: list[str] = []
        self.erp: dict[str, Any] = self.new_erp()
        self.cancel_reason: str | None = None
        self.cancelled_by_reason: dict[str, dict[str, int]] = {}  # reason -> line -> units cancelled
        # None: no checks ran (none configured); else {status: validated|held|released, ...}
        self.validation: dict[str, Any] | None = None

    @staticmethod
    def new_line(line: dict[str, Any]) -> dict[str, Any]:
        """A captured line's state: its quantities, all zero but the ordered quantity."""
        return {
            "line_id": line["line_id"],
            "sku": line["sku"],
            "quantity": line["quantity"],
            "location": None,
            "reserved": 0,
            "shipped": 0,
            "cancelled": 0,
            "returned": 0,
            "released": 0,
            "consumed": 0,
            **({"stock": False} if line.get("stock", True) is False else {}),
            "allocations": {},  # location -> units held there for the line
            # open units no location holds (`settle`): until the capture reserves them, or the rest
            # (allow_partial, an expiry) until stock arrives at a location of the group
            "backordered": line["quantity"] if line.get("stock", True) else 0,
        }

    @staticmethod
    def new_erp() -> dict[str, Any]:
        """The sales order's posting (top level) and every document's (`documents`)."""
        return {
            "posted": False,
            "attempts": 0,
            "last_error": None,
            "reference": None,
            "expected": [],
            "documents": {},
        }

    @staticmethod
    def _applied(o: Any, reference: str | None) -> None:
        """Remembers the documents (edits, refunds) whose cancellations or additions are applied."""
        if reference:
            refs = o.__dict__.setdefault("references", [])
            if reference not in refs:
                refs.append(reference)

    def applied(self, reference: str) -> bool:
        """True when the cancellation or addition of this document is already on the order."""
        return reference in self.__dict__.get("references", ())

    @staticmethod
    def _expect(o: Any, name: str) -> None:
        expected = o.erp.setdefault("expected", [])
        if name not in expected:
            expected.append(name)

    @staticmethod
    def _document(o: Any, name: str) -> dict[str, Any]:
        docs = o.erp.setdefault("documents", {})
        if name not in docs:
            docs[name] = {"posted": False, "attempts": 0, "last_error": None, "reference": None}
        return dict(docs[name])

    @classmethod
    def capture(
        cls,
        order_id: str,
        channel: str,
        lines: list[dict[str, Any]],
        cause: Cause,
        external_refs: dict[str, str] | None = None,
        platform_status: dict[str, Any] | None = None,
    ) -> Order:
        check_id(order_id, "order_id")
        check_id(channel, "channel")
        if not lines:
            raise OrderConflictError("an order needs at least one line")
        seen: set[str] = set()
        for line in lines:
            check_id(line["line_id"], "line_id")
            check_id(line["sku"], "sku")
            check_quantity(line["quantity"])
            if line["line_id"] in seen:
                raise OrderConflictError(f"line {line['line_id']} appears twice")
            seen.add(line["line_id"])
        return cls._create(
            cls.Captured,
            id=cls.create_id(order_id),
            order_id=order_id,
            channel=channel,
            lines=[
                {"line_id": x["line_id"], "sku": x["sku"], "quantity": x["quantity"]}
                | ({"stock": False} if x.get("stock", True) is False else {})
                for x in lines
            ],
            external_refs=dict(external_refs or {}),
            platform_status=dict(platform_status or {}),
            cause=cause,
        )

    # ----------------------------------------------------------------- events

    class LineReserved(Event):
        line_id: str
        location: str
        quantity: int
        reservation_id: str

        def apply(self, o: Order) -> None:
            line = o.lines[self.line_id]
            line["location"] = line["location"] or self.location
            line["reserved"] += self.quantity
            allocations = Order.allocations_of(line)
            allocations[self.location] = allocations.get(self.location, 0) + self.quantity
            Order.settle(line)

    class LineRemapped(Event):
        """A line captured on the wrong SKU moved to the right one after a mapping fix.

        `from_sku` / `to_sku` name the original line's SKU and the new one, `mapping` the fix
        (`{key, version}`). `released` units of the old reservation were given back at
        `from_location`; `reserved` units are held for the line at `location` (None when none
        could be reserved). The line then reads as if captured on `to_sku`.
        """

        line_id: str
        from_sku: str
        to_sku: str
        mapping: dict[str, Any]
        from_location: str | None
        released: int
        location: str | None
        reserved: int

        def apply(self, o: Order) -> None:
            line = o.lines[self.line_id]
            line["sku"] = self.to_sku
            line["reserved"] += self.reserved - self.released
            line["location"] = self.location if self.reserved else None
            line["allocations"] = {self.location: self.reserved} if self.location and self.reserved else {}
            Order.settle(line)

    class ShipmentRecorded(Event):
        shipment_id: str
        lines: list[dict[str, Any]]  # {line_id, quantity, location}

        def apply(self, o: Order) -> None:
            o.shipments[self.shipment_id] = self.lines
            Order._expect(o, document_name("delivery", self.shipment_id))
            for s in self.lines:
                line = o.lines[s["line_id"]]
                line["shipped"] += s["quantity"]
                line["consumed"] += s.get("consumed", 0)
                line["released"] += s.get("released", 0)
                Order.take(line, {s["location"]: s.get("consumed", 0)})
                Order.take_released(line, s)

    class LinesCancelled(Event):
        reason: str
        lines: list[dict[str, Any]]  # {line_id, quantity, released}
        whole: bool
        reference: str | None = None  # the document that cancelled (a refund, an order edit)

        def apply(self, o: Order) -> None:
            Order._applied(o, self.reference)
            by_reason = o.__dict__.get("cancelled_by_reason")
            for c in self.lines:
                line = o.lines[c["line_id"]]
                line["cancelled"] += c["quantity"]
                if by_reason is not None:
                    units = by_reason.setdefault(self.reason, {})
                    units[c["line_id"]] = units.get(c["line_id"], 0) + c["quantity"]
                line["released"] += c.get("released", 0)
                Order.take_released(line, c)
            if self.whole:
                o.cancel_reason = self.reason
            Order._expect(o, document_name("cancellation", self.originator_version))

    class ReturnRecorded(Event):
        return_id: str
        lines: list[dict[str, Any]]  # {line_id, quantity, disposition, location}

        def apply(self, o: Order) -> None:
            o.returns[self.return_id] = self.lines
            Order._expect(o, document_name("return", self.return_id))
            for r in self.lines:
                o.lines[r["line_id"]]["returned"] += r["quantity"]

    class RefundRecorded(Event):
        refund_id: str
        amount: str
        currency: str
        lines: list[dict[str, Any]]
        transactions: list[str] = ()  # type: ignore[assignment]  # the payment transactions' ids

        def apply(self, o: Order) -> None:
            o.refunds[self.refund_id] = {
                "amount": self.amount,
                "currency": self.currency,
                "lines": self.lines,
                "transactions": list(self.transactions),
                "status": "recorded",
                "confirmed": False,
                "settled": False,
                "transaction": None,
                "settlement": None,
                "error": None,
            }

    class RefundConfirmed(Event):
        """The refund's transactions succeeded: the money moved (and the ERP gets a credit memo)."""

        refund_id: str
        amount: str
        currency: str
        transaction: str

        def apply(self, o: Order) -> None:
            refund = o.refunds[self.refund_id]
            refund.update(
                amount=self.amount,
                currency=self.currency,
                status="confirmed",
                confirmed=True,
                transaction=self.transaction,
                error=None,
            )
            Order._expect(o, document_name("credit-memo", self.refund_id))

    class RefundTransactionRecorded(Event):
        """One payment transaction of a refund reached its outcome (`success` or `failure`)."""

        refund_id: str
        transaction: str
        status: str
        amount: str

        def apply(self, o: Order) -> None:
            outcomes = o.refunds[self.refund_id].setdefault("outcomes", {})
            outcomes[self.transaction] = {"status": self.status, "amount": self.amount}

    class RefundFailed(Event):
        """A refund transaction failed: the money did not move (an exception to look at)."""

        refund_id: str
        transaction: str
        error: str

        def apply(self, o: Order) -> None:
            o.refunds[self.refund_id].update(status="failed", error=self.error, transaction=self.transaction)

    class RefundSettled(Event):
        refund_id: str
        settlement_reference: str

        def apply(self, o: Order) -> None:
            o.refunds[self.refund_id].update(
                status="settled", confirmed=True, settled=True, settlement=self.settlement_reference
            )

    class ErpPostingFailed(Event):
        document: str
        attempt: int
        error: str
        uncertain: bool = False  # no answer came: the ERP may have accepted it (so it is never voided)

        def apply(self, o: Order) -> None:
            doc = Order._document(o, self.document)
            doc.update(attempts=max(doc["attempts"], self.attempt), last_error=self.error)
            if getattr(self, "uncertain", False):
                doc["uncertain"] = True
            o.erp["documents"][self.document] = doc
            if is_sales_order(self.document):
                o.erp["attempts"] = max(o.erp["attempts"], self.attempt)
                o.erp["last_error"] = self.error

    class PostedToErp(Event):
        document: str
        attempts: int
        erp_reference: str | None

        def apply(self, o: Order) -> None:
            doc = Order._document(o, self.document)
            doc.update(
                posted=True,
                attempts=max(doc["attempts"], self.attempts),
                last_error=None,
                reference=self.erp_reference,
            )
            o.erp["documents"][self.document] = doc
            if is_sales_order(self.document):
                o.erp["posted"] = True
                o.erp["attempts"] = max(o.erp["attempts"], self.attempts)
                o.erp["reference"] = self.erp_reference
                if self.erp_reference:
                    o.external_refs["erp"] = self.erp_reference
            kind, _, refund_id = self.document.partition(":")
            refund = o.refunds.get(refund_id) if kind == "credit-memo" else None
            if refund is not None:  # the ERP accepted the credit memo: the refund is settled
                refund.update(
                    status="settled",
                    confirmed=True,
                    settled=True,
                    settlement=self.erp_reference or self.document,
                )

    class Validated(Event):
        """The order passed its checks (`checks` names them): it goes on to the ERP."""

        checks: list[str]

        def apply(self, o: Order) -> None:
            o.validation = {
                "status": "validated",
                "checks": list(self.checks),
                "holds": [],
                "released_by": None,
            }

    class Held(Event):
        """Checks held the order (`holds`: `{check, reason}`): it is not posted until released."""

        checks: list[str]
        holds: list[dict[str, str]]

        def apply(self, o: Order) -> None:
            o.validation = {
                "status": "held",
                "checks": list(self.checks),
                "holds": [dict(x) for x in self.holds],
                "released_by": None,
            }

    class Released(Event):
        """An operator released the held order (`by`: who): it goes on to the ERP."""

        by: str

        def apply(self, o: Order) -> None:
            o.validation = {**(o.validation or {}), "status": "released", "released_by": self.by}

    class Invoiced(Event):
        invoice_id: str

        def apply(self, o: Order) -> None:
            o.invoices.append(self.invoice_id)

    class PlatformStatusObserved(Event):
        status: dict[str, Any]

        def apply(self, o: Order) -> None:
            o.platform_status.update(self.status)

    class CorrelationIdsRecorded(Event):
        ids: dict[str, str]

        def apply(self, o: Order) -> None:
            o.external_refs.update(self.ids)

    class LinesAdded(Event):
        """Units edited into the order: more of an existing line, or new lines (`reference`: the edit)."""

        reference: str
        lines: list[dict[str, Any]]  # {line_id, sku, quantity, stock?}

        def apply(self, o: Order) -> None:
            Order._applied(o, self.reference)
            for x in self.lines:
                line = o.lines.get(x["line_id"])
                if line is None:
                    o.lines[x["line_id"]] = Order.new_line(x)
                else:
                    line["quantity"] += x["quantity"]
                    Order.settle(line)

    class LineReleased(Event):
        """Units of a line's reservation were given back at the SKU-location (e.g. it expired)."""

        class_version = 2  # version 2 names the location whose allocation was released

        line_id: str
        quantity: int
        reason: str
        location: str | None

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state.setdefault("location", None)

        def apply(self, o: Order) -> None:
            line = o.lines[self.line_id]
            line["released"] += self.quantity
            Order.take(line, {self.location or line["location"]: self.quantity})

    # ---------------------------------------------------------------- queries

    def line(self, line_id: str) -> dict[str, Any]:
        try:
            return self.lines[line_id]
        except KeyError:
            raise OrderConflictError(
                f"order {self.order_id} has no line {line_id}", line_id=line_id
            ) from None

    @staticmethod
    def allocations_of(line: dict[str, Any]) -> dict[str, int]:
        """Location -> units held there for the line (a line stored before allocations held at
        its one location)."""
        allocations = line.get("allocations")
        if allocations is None:
            held = Order.held_quantity(line)
            allocations = {line["location"]: held} if line.get("location") and held > 0 else {}
            line["allocations"] = allocations
        return allocations

    @staticmethod
    def take(line: dict[str, Any], units: dict[str | None, int]) -> None:
        """Lowers the line's allocations by `units` per location."""
        allocations = Order.allocations_of(line)
        for location, n in units.items():
            if location is not None and n:
                left = allocations.get(location, 0) - n
                if left > 0:
                    allocations[location] = left
                else:
                    allocations.pop(location, None)
        Order.settle(line)

    @staticmethod
    def settle(line: dict[str, Any]) -> None:
        """A line's `backordered` units: its open units that no location holds."""
        stock = line.get("stock", True)
        line["backordered"] = max(0, Order.open_quantity(line) - Order.held_quantity(line)) if stock else 0

    @staticmethod
    def take_released(line: dict[str, Any], record: dict[str, Any]) -> None:
        """A shipment's or cancellation's released units, per location (`released_at`), or at the
        line's location for records written before allocations."""
        released_at = record.get("released_at")
        if released_at is None:
            released_at = {line["location"]: record.get("released", 0)}
        Order.take(line, released_at)

    @staticmethod
    def allocation_list(line: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"location": k, "quantity": v} for k, v in Order.allocations_of(line).items()]

    @staticmethod
    def open_quantity(line: dict[str, Any]) -> int:
        """Units of a line that are neither shipped nor cancelled."""
        return int(line["quantity"] - line["shipped"] - line["cancelled"])

    @staticmethod
    def held_quantity(line: dict[str, Any]) -> int:
        """Units of a line still held by its reservation."""
        return int(line["reserved"] - line["released"] - line["consumed"])

    def cancelled_for(self, line_id: str, reason: str) -> int | None:
        """Units of a line cancelled for `reason` (`edited`, `refunded`, ...); None for an order
        state kept before cancellations were kept by reason (a snapshot older than that)."""
        by_reason = self.__dict__.get("cancelled_by_reason")
        if by_reason is None:
            return None
        return int(by_reason.get(reason, {}).get(line_id, 0))

    def same_capture(self, channel: str, lines: list[dict[str, Any]]) -> bool:
        mine = sorted((x["line_id"], x["sku"], x["quantity"]) for x in self.lines.values())
        theirs = sorted((x["line_id"], x["sku"], x["quantity"]) for x in lines)
        return self.channel == channel and mine == theirs

    @staticmethod
    def is_stock_line(line: dict[str, Any]) -> bool:
        """False for lines that carry no stock (gift cards, custom items): never reserved or shipped."""
        return bool(line.get("stock", True))

    @staticmethod
    def to_reserve(line: dict[str, Any]) -> int:
        """Units of a line still waiting for a reservation (backordered)."""
        if not Order.is_stock_line(line):
            return 0
        if "backordered" in line:
            return int(line["backordered"])
        return max(0, Order.open_quantity(line) - Order.held_quantity(line))

    @property
    def whole_cancelled(self) -> bool:
        lines = list(self.lines.values())
        return bool(sum(x["cancelled"] for x in lines) >= sum(x["quantity"] for x in lines))

    @property
    def validation_status(self) -> str | None:
        """`validated`, `held`, `released`, or None when no checks ran on the order."""
        validation = getattr(self, "validation", None)  # orders stored before checks have none
        return None if not validation else str(validation["status"])

    @property
    def held(self) -> bool:
        """Held by a check and not released: the ERP is not told of it yet."""
        return self.validation_status == "held" and not self.whole_cancelled

    @property
    def erp_void(self) -> bool:
        """Wholly cancelled before its sales order was accepted: the ERP is told nothing of it.
        Not once a posting went unanswered (the ERP may hold the order): then the sales order is
        posted again until accepted, and its cancellation after it."""
        sales_order = self.erp.get("documents", {}).get(SALES_ORDER, {})
        return self.whole_cancelled and not self.erp["posted"] and not sales_order.get("uncertain")

    @property
    def open_work(self) -> list[str]:
        """What is still to happen, in `OPEN_WORK` order."""
        lines = list(self.lines.values())
        stock = [x for x in lines if Order.is_stock_line(x)]
        whole = self.whole_cancelled
        docs = self.erp.get("documents", {})
        refunds = list(self.refunds.values())
        work = {
            "reserve": not whole and any(Order.to_reserve(x) > 0 for x in stock),
            "release": self.held,
            "post": not self.erp_void
            and (
                not self.erp["posted"]
                or any(not docs.get(n, {}).get("posted") for n in self.erp.get("expected", []))
            ),
            "ship": any(Order.open_quantity(x) > 0 for x in stock),
            "invoice": not whole and not self.invoices,
            "confirm-refund": any(Order.refund_status(r) == "recorded" for r in refunds),
            "settle-refund": not self.erp_void
            and any(Order.refund_status(r) == "confirmed" for r in refunds),
        }
        return [k for k in OPEN_WORK if work[k]]

    @staticmethod
    def refund_status(refund: dict[str, Any]) -> str:
        if "status" in refund:
            return str(refund["status"])
        return "settled" if refund.get("settled") else "recorded"

    @property
    def stage(self) -> str:
        """The stage the open work leaves the order in; never later than its earliest open work."""
        return self.stage_given(self.open_work)

    def stage_given(self, work: list[str]) -> str:
        """`stage`, with the order's `open_work` already at hand (an answer shows both)."""
        lines = list(self.lines.values())
        cancelled = sum(x["cancelled"] for x in lines)
        shipped = sum(x["shipped"] for x in lines)
        returned = sum(x["returned"] for x in lines)
        if self.whole_cancelled:
            return "cancelled"
        if self.held:
            return "held"
        before_posting = "validated" if self.validation_status in ("validated", "released") else "reserved"
        if "reserve" in work or "ship" in work:
            if shipped:
                return "partially_shipped"
            if "reserve" in work:
                return "posted" if self.erp["posted"] else "captured"
            if cancelled:
                return "partially_cancelled"
            return "posted" if self.erp["posted"] else before_posting
        if self.refunds:
            return "refunded" if work else "settled"
        if returned:
            return "returned" if returned >= shipped else "partially_returned"
        if "invoice" in work:
            return "shipped"
        return "invoiced"

    # --------------------------------------------------------------- commands

    def record_reservation(
        self, line_id: str, location: str, quantity: int, reservation_id: str, cause: Cause
    ) -> None:
        self.line(line_id)
        self.trigger_event(
            self.LineReserved,
            line_id=line_id,
            location=location,
            quantity=quantity,
            reservation_id=reservation_id,
            cause=cause,
        )

    def check_remap(self, line_id: str) -> dict[str, Any]:
        """The line, if its SKU may still be changed: not once units of it shipped or came back."""
        line = self.line(line_id)
        if line["shipped"] or line["returned"]:
            raise OrderConflictError(
                f"line {line_id} of order {self.order_id} has shipped units of {line['sku']}: "
                "correct its movements, not its SKU",
                order_id=self.order_id,
                line_id=line_id,
            )
        return line

    def record_remap(
        self,
        line_id: str,
        to_sku: str,
        mapping: dict[str, Any],
        released: int,
        location: str | None,
        reserved: int,
        cause: Cause,
    ) -> None:
        line = self.check_remap(line_id)
        check_id(to_sku, "sku")
        self.trigger_event(
            self.LineRemapped,
            line_id=line_id,
            from_sku=line["sku"],
            to_sku=to_sku,
            mapping=dict(mapping),
            from_location=line["location"],
            released=released,
            location=location,
            reserved=reserved,
            cause=cause,
        )

    def check_shipment(self, lines: list[dict[str, Any]]) -> None:
        totals: dict[str, int] = {}
        for s in lines:
            check_quantity(s["quantity"])
            totals[s["line_id"]] = totals.get(s["line_id"], 0) + s["quantity"]
        for line_id, qty in totals.items():
            line = self.line(line_id)
            if qty > self.open_quantity(line):
                raise OrderConflictError(
                    f"line {line_id} has {self.open_quantity(line)} units left to ship, not {qty}",
                    line_id=line_id,
                )

    def record_shipment(self, shipment_id: str, lines: list[dict[str, Any]], cause: Cause) -> None:
        self.check_shipment(lines)
        self.trigger_event(self.ShipmentRecorded, shipment_id=shipment_id, lines=lines, cause=cause)

    def cancellable(self, line_id: str) -> int:
        return self.open_quantity(self.line(line_id))

    def record_cancellation(
        self,
        reason: str,
        lines: list[dict[str, Any]],
        whole: bool,
        cause: Cause,
        reference: str | None = None,
    ) -> None:
        for c in lines:
            if c["quantity"] > self.cancellable(c["line_id"]):
                raise OrderConflictError(
                    f"line {c['line_id']} has {self.cancellable(c['line_id'])} units left to cancel",
                    line_id=c["line_id"],
                )
        if not lines:
            raise OrderConflictError(f"order {self.order_id} has nothing left to cancel")
        self.trigger_event(
            self.LinesCancelled, reason=reason, lines=lines, whole=whole, reference=reference, cause=cause
        )

    def returnable(self, line_id: str) -> int:
        line = self.line(line_id)
        return int(line["shipped"] - line["returned"])

    def record_return(self, return_id: str, lines: list[dict[str, Any]], cause: Cause) -> None:
        totals: dict[str, int] = {}
        for r in lines:
            check_quantity(r["quantity"])
            totals[r["line_id"]] = totals.get(r["line_id"], 0) + r["quantity"]
        for line_id, qty in totals.items():
            if qty > self.returnable(line_id):
                raise OrderConflictError(
                    f"line {line_id} has {self.returnable(line_id)} shipped units left to return, not {qty}",
                    line_id=line_id,
                )
        self.trigger_event(self.ReturnRecorded, return_id=return_id, lines=lines, cause=cause)

    def record_refund(
        self,
        refund_id: str,
        amount: str,
        currency: str,
        lines: list[dict[str, Any]],
        cause: Cause,
        transactions: list[str] | None = None,
    ) -> None:
        if refund_id in self.refunds:
            return
        self.trigger_event(
            self.RefundRecorded,
            refund_id=refund_id,
            amount=amount,
            currency=currency,
            lines=lines,
            transactions=list(transactions or []),
            cause=cause,
        )

    def refund_of_transaction(self, transaction: str) -> str | None:
        """The refund whose payment transactions include `transaction`."""
        for refund_id, refund in self.refunds.items():
            if transaction in refund.get("transactions", ()):
                return refund_id
        return None

    def _refund(self, refund_id: str) -> dict[str, Any]:
        refund = self.refunds.get(refund_id)
        if refund is None:
            raise OrderConflictError(f"order {self.order_id} has no refund {refund_id}")
        return refund

    def confirm_refund(
        self, refund_id: str, amount: str, currency: str, transaction: str, cause: Cause
    ) -> None:
        """The refund's transactions succeeded; a repeat (or a refund already settled) records nothing."""
        if Order.refund_status(self._refund(refund_id)) in ("confirmed", "settled"):
            return
        self.trigger_event(
            self.RefundConfirmed,
            refund_id=refund_id,
            amount=amount,
            currency=currency,
            transaction=transaction,
            cause=cause,
        )

    def record_refund_transaction(
        self, refund_id: str, transaction: str, status: str, amount: str, cause: Cause
    ) -> None:
        """One of the refund's transactions succeeded or failed. Once none of them is pending, the
        refund is confirmed for the sum of the successful ones (failed ones count for nothing), or
        failed when none succeeded. The first outcome of a transaction stands; a refund already
        confirmed, settled or failed records nothing more."""
        refund = self._refund(refund_id)
        if status not in ("success", "failure"):
            raise OrderConflictError(f"a refund transaction succeeds or fails, not {status!r}")
        if Order.refund_status(refund) != "recorded" or transaction in refund.get("outcomes", {}):
            return
        self.trigger_event(
            self.RefundTransactionRecorded,
            refund_id=refund_id,
            transaction=transaction,
            status=status,
            amount=amount,
            cause=cause,
        )
        outcomes = refund["outcomes"]
        if any(t not in outcomes for t in refund.get("transactions", ())):
            return  # others are still pending
        succeeded = [(t, x) for t, x in outcomes.items() if x["status"] == "success"]
        if not succeeded:
            self.trigger_event(
                self.RefundFailed,
                refund_id=refund_id,
                transaction=transaction,
                error=f"{len(outcomes)} transaction(s) failed",
                cause=cause,
            )
            return
        total = sum((Decimal(x["amount"]) for _, x in succeeded), Decimal(0))
        self.trigger_event(
            self.RefundConfirmed,
            refund_id=refund_id,
            amount=str(total),
            currency=str(refund["currency"]),
            transaction=succeeded[-1][0],
            cause=cause,
        )

    def fail_refund(self, refund_id: str, transaction: str, error: str, cause: Cause) -> None:
        refund = self._refund(refund_id)
        if Order.refund_status(refund) != "recorded":
            return  # money that moved does not un-move; a repeat records nothing
        self.trigger_event(
            self.RefundFailed, refund_id=refund_id, transaction=transaction, error=error[:500], cause=cause
        )

    def settle_refund(self, refund_id: str, settlement_reference: str, cause: Cause) -> None:
        refund = self._refund(refund_id)
        if refund["settled"]:
            return
        self.trigger_event(
            self.RefundSettled, refund_id=refund_id, settlement_reference=settlement_reference, cause=cause
        )

    def record_erp_failure(
        self, document: str, attempt: int, error: str, cause: Cause, uncertain: bool = False
    ) -> None:
        self.trigger_event(
            self.ErpPostingFailed,
            document=document,
            attempt=attempt,
            error=error[:500],
            uncertain=uncertain,
            cause=cause,
        )

    def record_erp_posting(
        self, document: str, attempts: int, erp_reference: str | None, cause: Cause
    ) -> None:
        self.trigger_event(
            self.PostedToErp, document=document, attempts=attempts, erp_reference=erp_reference, cause=cause
        )

    def record_checks(self, checks: list[str], holds: list[dict[str, str]], cause: Cause) -> None:
        """The outcome of the order's checks: held when any check gave a reason, else validated."""
        if self.validation_status is not None:
            return
        if holds:
            self.trigger_event(self.Held, checks=list(checks), holds=[dict(x) for x in holds], cause=cause)
        else:
            self.trigger_event(self.Validated, checks=list(checks), cause=cause)

    def release_hold(self, by: str, cause: Cause) -> None:
        """An operator releases the held order; releasing it again records nothing."""
        if self.validation_status == "released":
            return
        if self.whole_cancelled:
            raise OrderConflictError(f"order {self.order_id} is cancelled", order_id=self.order_id)
        if self.validation_status != "held":
            raise OrderConflictError(f"order {self.order_id} is not held", order_id=self.order_id)
        self.trigger_event(self.Released, by=by, cause=cause)

    def record_invoice(self, invoice_id: str, cause: Cause) -> None:
        if invoice_id not in self.invoices:
            self.trigger_event(self.Invoiced, invoice_id=invoice_id, cause=cause)

    def observe_platform_status(self, status: dict[str, Any], cause: Cause) -> None:
        changed = {k: v for k, v in status.items() if self.platform_status.get(k) != v}
        if changed:
            self.trigger_event(self.PlatformStatusObserved, status=changed, cause=cause)

    def add_correlation_ids(self, ids: dict[str, str], cause: Cause) -> None:
        new = {k: v for k, v in ids.items() if self.external_refs.get(k) != v}
        if new:
            self.trigger_event(self.CorrelationIdsRecorded, ids=new, cause=cause)

    def add_lines(self, reference: str, lines: list[dict[str, Any]], cause: Cause) -> None:
        """Units edited in: an existing line (same SKU) grows, a new line is added."""
        for x in lines:
            check_id(x["line_id"], "line_id")
            check_id(x["sku"], "sku")
            check_quantity(x["quantity"])
            line = self.lines.get(x["line_id"])
            if line is not None and line["sku"] != x["sku"]:
                raise OrderConflictError(
                    f"line {x['line_id']} of order {self.order_id} is {line['sku']}, not {x['sku']}",
                    line_id=x["line_id"],
                )
        if not lines:
            raise OrderConflictError(f"order {self.order_id}: an edit needs at least one line")
        self.trigger_event(self.LinesAdded, reference=reference, lines=lines, cause=cause)

    def record_release(
        self, line_id: str, quantity: int, reason: str, cause: Cause, location: str | None = None
    ) -> None:
        line = self.line(line_id)
        check_quantity(quantity)
        held = self.held_quantity(line) if location is None else self.allocations_of(line).get(location, 0)
        if quantity > held:
            raise OrderConflictError(
                f"line {line_id} holds {held} reserved units, not {quantity}",
                line_id=line_id,
            )
        self.trigger_event(
            self.LineReleased,
            line_id=line_id,
            quantity=quantity,
            reason=reason,
            location=location,
            cause=cause,
        )

    def view(self) -> dict[str, Any]:
        return {
            "order_id": self.order_id,
            "channel": self.channel,
            "stage": self.stage,
            "open": self.open_work,
            "lines": [{**x, "allocations": self.allocation_list(x)} for x in self.lines.values()],
            "external_refs": dict(self.external_refs),
            "platform_status": dict(self.platform_status),
            "erp": dict(self.erp),
            "refunds": [
                {"refund_id": k, **v, "status": Order.refund_status(v)} for k, v in self.refunds.items()
            ],
            "invoices": list(self.invoices),
            "validation": getattr(self, "validation", None),
            "version": self.version,
        }
