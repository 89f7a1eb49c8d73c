"""The ledger's application service: business verbs over the stock and order aggregates.

Commands are decided by `Decider` against aggregate state held by a `UnitOfWork`, and then
saved. The group-commit `Writer` (ledger/writer.py) decides many commands against one unit of
work and saves them in one transaction, so nothing here assumes one transaction per command.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any, cast
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import JSONTranscoder, StoredEvent

from ledger import commands as c
from ledger import sourcing
from ledger.backorders import Backorders, backorders_id
from ledger.bounds import hold_id, hold_reservation_id, parse_hold_reservation_id, reservation_id, stock_id
from ledger.bounds import order_id as order_uuid
from ledger.channels import Channel, ReadModel, channel_id, read_model_id
from ledger.errors import (
    CorrectionError,
    HoldNotFoundError,
    InsufficientStockError,
    InvalidCommandError,
    OrderConflictError,
    OrderNotFoundError,
    ReservationError,
    StockNotFoundError,
    VersionConflictError,
)
from ledger.holds import Hold
from ledger.locations import Location, LocationPolicies, location_id
from ledger.orders import Order
from ledger.ports import CommandLog, LocationDirectory, StaticLocations, StreamIndex
from ledger.stock import SkuLocation, movement_effect
from ledger.validation import OrderCheck, OrderToCheck, run_checks

SNAPSHOT_INTERVAL = 500


class LedgerApplication(Application[UUID]):
    """The eventsourcing application that stores both aggregates' streams in one log."""

    name = "ledger"

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        super().register_transcodings(transcoder)


class UnitOfWork:
    """Aggregates touched by one batch of commands, on top of the writer's cache.

    `begin()` marks the start of a command; `partially_mutated()` tells whether a command that
    failed had already changed an aggregate (then the writer replays the batch without it).
    """

    def __init__(
        self, load: Callable[[UUID], Aggregate | None], policies: LocationPolicies | None = None
    ) -> None:
        self._load = load
        # the writer's location policies (`ledger.locations`); without them, read through `load`
        self._policies = policies or LocationPolicies(self._read_policy)
        self.touched: dict[UUID, Aggregate] = {}
        self._marks: dict[UUID, int] = {}
        self._created: list[UUID] = []

    def begin(self) -> None:
        # Marks are taken lazily, when a command first gets an aggregate, so that beginning a
        # command costs nothing however many aggregates the batch has touched.
        self._marks = {}
        self._created = []

    def get(self, agg_id: UUID) -> Aggregate | None:
        agg = self.touched.get(agg_id)
        if agg is None:
            agg = self._load(agg_id)
            if agg is None:
                return None
            self.touched[agg_id] = agg
        if agg_id not in self._marks:
            self._marks[agg_id] = len(agg.pending_events)
        return agg

    def add(self, agg: Aggregate) -> None:
        self.touched[agg.id] = agg
        self._marks[agg.id] = 0
        self._created.append(agg.id)

    def stock(self, sku: str, location: str) -> SkuLocation | None:
        s: SkuLocation | None = self.get(stock_id(sku, location))  # type: ignore[assignment]  # a SKU-location's stream
        if s is not None:
            s.location_backorders = self.location_backorders(location)
        return s

    def stock_or_open(self, sku: str, location: str, cause: dict[str, Any]) -> SkuLocation:
        s = self.stock(sku, location)
        if s is None:
            s = SkuLocation.open(sku, location, cause)
            s.location_backorders = self.location_backorders(location)
            self.add(s)
        return s

    def location(self, location: str) -> Location | None:
        return self.get(location_id(location))  # type: ignore[return-value]  # a location's policy stream

    def location_backorders(self, location: str) -> bool:
        """The location's policy (`ledger.locations`): as this batch changed it, else as the
        `LocationPolicies` keep it."""
        changed = self.touched.get(location_id(location))
        if isinstance(changed, Location):
            return changed.backorders
        return self._policies.allows(location)

    def _read_policy(self, location: str) -> bool:
        policy = self._load(location_id(location))
        return isinstance(policy, Location) and policy.backorders

    def order(self, order_id: str) -> Order | None:
        return self.get(order_uuid(order_id))  # type: ignore[return-value]  # an order's stream

    def backorders(self, sku: str) -> Backorders | None:
        return self.get(backorders_id(sku))  # type: ignore[return-value]  # the backorders stream's id

    def backorders_or_open(self, sku: str, cause: dict[str, Any]) -> Backorders:
        b = self.backorders(sku)
        if b is None:
            b = Backorders.open(sku, cause)
            self.add(b)
        return b

    def hold(self, reservation_id: str) -> Hold | None:
        return self.get(hold_id(reservation_id))  # type: ignore[return-value]  # a hold's stream

    def require_hold(self, reservation_id: str) -> Hold:
        h = self.hold(reservation_id)
        if h is None:
            raise HoldNotFoundError(
                f"reservation {reservation_id} is not in the ledger", reservation_id=reservation_id
            )
        return h

    def require_order(self, order_id: str) -> Order:
        o = self.order(order_id)
        if o is None:
            raise OrderNotFoundError(f"order {order_id} is not in the ledger", order_id=order_id)
        return o

    def location_changed(self, location: str) -> None:
        """A policy just changed in this unit of work: the SKU-locations it holds read it again."""
        self._policies.forget(location)
        for agg in self.touched.values():
            if isinstance(agg, SkuLocation) and agg.location == location:
                agg.location_backorders = self.location_backorders(location)

    def partially_mutated(self) -> bool:
        if self._created and any(self.touched[i].pending_events for i in self._created):
            return True
        touched = self.touched
        return any(len(touched[agg_id].pending_events) > mark for agg_id, mark in self._marks.items())

    def accessed(self) -> list[UUID]:
        """Ids of the existing aggregates the current command got (not the ones it created)."""
        return [agg_id for agg_id in self._marks if agg_id not in self._created]

    def replace(self, agg: Aggregate) -> None:
        """Swaps in a fresher copy of an aggregate that has no pending events in this batch."""
        self.touched[agg.id] = agg
        self._marks.pop(agg.id, None)

    def discard_created(self) -> None:
        for agg_id in self._created:
            self.touched.pop(agg_id, None)
        self._created = []

    def aggregates(self) -> list[Aggregate]:
        return [a for a in self.touched.values() if a.pending_events]


def stock_view(s: SkuLocation) -> dict[str, Any]:
    return {
        "sku": s.sku,
        "location": s.location,
        "on_hand": s.on_hand,
        "reserved": s.reserved,
        "unavailable": s.unavailable,
        "incoming": s.incoming,
        "available": s.available,
        "allow_backorder": s.backorders_allowed,
        "version": s.version,
    }


def uncovered_view(s: SkuLocation, incoming_days: int = 0) -> list[dict[str, Any]]:
    """The reservations of a SKU-location no unit covers (on hand, or incoming within the
    location's widest `include_incoming_days`), with their order lines."""
    out = []
    for rid, units in s.uncovered(incoming_days):
        r = s.reservations[rid]
        hold = parse_hold_reservation_id(rid) is not None  # a hold's line is no order's
        out.append(
            {
                "reservation_id": rid,
                "order_id": None if hold else r.get("order_id"),
                "line_id": r.get("line_id"),
                "quantity": units,
            }
        )
    return out


class Decider:
    """Decides each command against a unit of work: checks invariants, triggers events, answers."""

    def __init__(
        self,
        app: LedgerApplication,
        locations: LocationDirectory | None = None,
        checks: Sequence[OrderCheck] = (),
    ) -> None:
        self.app = app
        self.locations = locations or StaticLocations()
        self.checks = tuple(checks)  # the validation stage (`ledger.validation`); none: no stage
        # handed to each unit of work the writer makes
        self.location_policies = LocationPolicies(self._read_location_policy)
        self._handlers: dict[type, Callable[[Any, UnitOfWork], dict[str, Any]]] = {
            c.ReceiveStock: self.receive,
            c.ExpectStock: self.expect,
            c.AdjustStock: self.adjust,
            c.CountStock: self.count,
            c.TransferStock: self.transfer,
            c.Reserve: self.reserve,
            c.ReleaseReservation: self.release,
            c.ReleaseExpired: self.release_expired,
            c.SellDirect: self.sell,
            c.ReturnToStock: self.return_to_stock,
            c.WriteOffDamaged: self.write_off,
            c.CorrectMovement: self.correct,
            c.ConfigureBackorders: self.configure_backorders,
            c.ConfigureLocation: self.configure_location,
            c.CoverShortfall: self.cover_shortfall,
            c.FillBackorders: self.fill_backorders,
            c.CaptureOrder: self.capture_order,
            c.PlaceHold: self.place_hold,
            c.ReleaseHold: self.release_hold,
            c.RemapOrderLine: self.remap_line,
            c.ShipOrder: self.ship,
            c.CancelOrder: self.cancel,
            c.ReleaseOrder: self.release_order,
            c.AmendOrder: self.amend,
            c.ReturnItems: self.return_items,
            c.RecordRefund: self.record_refund,
            c.ConfirmRefund: self.confirm_refund,
            c.FailRefund: self.fail_refund,
            c.RecordRefundTransaction: self.record_refund_transaction,
            c.SettleRefund: self.settle_refund,
            c.RecordErpPosting: self.record_erp_posting,
            c.RecordErpFailure: self.record_erp_failure,
            c.InvoiceOrder: self.invoice,
            c.ObservePlatformStatus: self.observe_platform_status,
            c.AddCorrelationIds: self.add_correlation_ids,
            c.ChangeChannelPolicy: self.change_channel_policy,
            c.RecordRebuild: self.record_rebuild,
        }

    def _read_location_policy(self, location: str) -> bool:
        try:
            policy = cast(Location, self.app.repository.get(location_id(location)))  # a location's stream
        except AggregateNotFoundError:
            return False
        return policy.backorders

    def decide(self, cmd: c.Command, uow: UnitOfWork) -> dict[str, Any]:
        try:
            handler = self._handlers[type(cmd)]
        except KeyError:
            raise InvalidCommandError(f"unknown command {type(cmd).__name__}") from None
        return handler(cmd, uow)

    # ----------------------------------------------------------------- stock

    @staticmethod
    def _check_version(s: SkuLocation | None, if_match: int | None) -> None:
        current = 0 if s is None else s.version
        if if_match is not None and if_match != current:
            raise VersionConflictError(
                f"version is {current}, not {if_match}", current=current, expected=if_match
            )

    def receive(self, cmd: c.ReceiveStock, uow: UnitOfWork) -> dict[str, Any]:
        self._check_version(uow.stock(cmd.sku, cmd.location), cmd.if_match)
        s = uow.stock_or_open(cmd.sku, cmd.location, cmd.cause)
        s.receive(cmd.quantity, cmd.reference, cmd.cause, expected=cmd.expected)
        self._fill_backorders(uow, cmd.sku, cmd.location, cmd.cause)
        return stock_view(s)

    def expect(self, cmd: c.ExpectStock, uow: UnitOfWork) -> dict[str, Any]:
        s = uow.stock_or_open(cmd.sku, cmd.location, cmd.cause)
        s.expect(cmd.quantity, cmd.reference, cmd.cause, due_at=cmd.due_at)
        self._fill_backorders(uow, cmd.sku, cmd.location, cmd.cause)  # for channels counting incoming
        return stock_view(s)

    def adjust(self, cmd: c.AdjustStock, uow: UnitOfWork) -> dict[str, Any]:
        s = uow.stock(cmd.sku, cmd.location)
        self._check_version(s, cmd.if_match)
        if s is None:
            if cmd.delta < 0:
                raise InsufficientStockError(
                    f"no stock of {cmd.sku} at {cmd.location} to adjust by {cmd.delta}",
                    sku=cmd.sku,
                    location=cmd.location,
                )
            s = uow.stock_or_open(cmd.sku, cmd.location, cmd.cause)
        s.adjust(cmd.delta, cmd.reason, cmd.reference, cmd.cause)
        if cmd.delta > 0:
            self._fill_backorders(uow, cmd.sku, cmd.location, cmd.cause)
        return stock_view(s)

    def count(self, cmd: c.CountStock, uow: UnitOfWork) -> dict[str, Any]:
        """A physical count, decided against the state the writer holds (never a stale read)."""
        s = uow.stock(cmd.sku, cmd.location)
        if s is None:
            if cmd.counted == 0:
                return {"sku": cmd.sku, "location": cmd.location, "delta": 0, "shortfall": 0, "on_hand": 0}
            s = uow.stock_or_open(cmd.sku, cmd.location, cmd.cause)
        delta = s.count(cmd.counted, cmd.reason, cmd.reference, cmd.cause, counted_at=cmd.counted_at)
        if delta > 0:
            self._fill_backorders(uow, cmd.sku, cmd.location, cmd.cause)
        counted = s.pending_events[-1]
        return {
            **stock_view(s),
            "delta": delta,
            "applied": counted.applied,  # type: ignore[attr-defined]  # the StockCounted just triggered
            "accounted": list(counted.accounted),  # type: ignore[attr-defined]  # the StockCounted just triggered
            "shortfall": s.short(self.locations.incoming_days_at(s.location)),
        }

    def transfer(self, cmd: c.TransferStock, uow: UnitOfWork) -> dict[str, Any]:
        if cmd.status == "received":
            # The dispatched units land: incoming becomes on hand at the destination.
            dst = uow.stock(cmd.sku, cmd.to_location)
            if dst is None or dst.incoming < cmd.quantity:
                raise InsufficientStockError(
                    f"transfer {cmd.reference}: {cmd.quantity} of {cmd.sku} are not incoming at {cmd.to_location}",
                    sku=cmd.sku,
                    location=cmd.to_location,
                )
            dst.receive(cmd.quantity, cmd.reference, cmd.cause, expected=True)
            self._fill_backorders(uow, cmd.sku, cmd.to_location, cmd.cause)
            return {"to": stock_view(dst)}
        src = uow.stock(cmd.sku, cmd.from_location)
        self._check_version(src, cmd.if_match)
        if src is None or not src.can_ship_out(cmd.quantity):
            raise InsufficientStockError.short(
                "transfer",
                cmd.quantity,
                cmd.sku,
                cmd.from_location,
                0 if src is None else src.available,
                "from",
            )
        dst = uow.stock_or_open(cmd.sku, cmd.to_location, cmd.cause)
        src.transfer_out(cmd.reference, cmd.to_location, cmd.quantity, cmd.cause)
        if cmd.status == "dispatched":  # in transit: incoming at the destination until received
            dst.expect(cmd.quantity, cmd.reference, cmd.cause)
            self._fill_backorders(uow, cmd.sku, cmd.to_location, cmd.cause)  # channels counting incoming
        else:
            dst.transfer_in(cmd.reference, cmd.from_location, cmd.quantity, cmd.cause)
            self._fill_backorders(uow, cmd.sku, cmd.to_location, cmd.cause)
        return {"from": stock_view(src), "to": stock_view(dst)}

    def _existing(self, uow: UnitOfWork, sku: str, location: str) -> SkuLocation:
        s = uow.stock(sku, location)
        if s is None:
            raise StockNotFoundError(f"no stock of {sku} at {location}", sku=sku, location=location)
        return s

    def reserve(self, cmd: c.Reserve, uow: UnitOfWork) -> dict[str, Any]:
        s = uow.stock(cmd.sku, cmd.location)
        if s is None:
            raise InsufficientStockError.short("reserve", cmd.quantity, cmd.sku, cmd.location, 0)
        rid = s.reserve(cmd.order_id, cmd.line_id, cmd.quantity, cmd.cause, expires_at=cmd.expires_at)
        return {"reservation_id": rid, **stock_view(s)}

    def release(self, cmd: c.ReleaseReservation, uow: UnitOfWork) -> dict[str, Any]:
        s = self._existing(uow, cmd.sku, cmd.location)
        s.release(cmd.reservation_id, cmd.quantity, cmd.reason, cmd.cause)
        self._fill_backorders(uow, cmd.sku, cmd.location, cmd.cause)
        return stock_view(s)

    def release_expired(self, cmd: c.ReleaseExpired, uow: UnitOfWork) -> dict[str, Any]:
        s = self._existing(uow, cmd.sku, cmd.location)
        expired = [(rid, s.reservations[rid], qty) for rid, qty in s.expired_reservations(cmd.now)]
        # before the release drops them
        lines = [(rid, r["order_id"], r["line_id"], qty) for rid, r, qty in expired]
        released = s.release_expired(cmd.now, cmd.cause)
        for rid, order_id, line_id, qty in lines:
            held = parse_hold_reservation_id(rid)
            if held is not None:  # a hold's line: the hold records it, and ends once nothing is held
                hold = uow.hold(held[0])
                if hold is not None:
                    hold.record_release(held[1], s.location, qty, "expired", cmd.cause)
                continue
            self._expire_on_order(uow, s, order_id, line_id, qty, cmd.cause)
        if released:
            self._fill_backorders(uow, cmd.sku, cmd.location, cmd.cause)
        return {"released": released, **stock_view(s)}

    @staticmethod
    def _expire_on_order(
        uow: UnitOfWork, s: SkuLocation, order_id: str, line_id: str, qty: int, cause: dict[str, Any]
    ) -> None:
        """An expired reservation of an order line in the ledger is released on that line too."""
        order = uow.order(order_id)
        line = None if order is None else order.lines.get(line_id)
        if order is not None and line is not None:
            held = min(qty, Order.allocations_of(line).get(s.location, 0))
            if held > 0:
                order.record_release(line_id, held, "expired", cause, location=s.location)

    def sell(self, cmd: c.SellDirect, uow: UnitOfWork) -> dict[str, Any]:
        s = uow.stock(cmd.sku, cmd.location)
        if s is None:
            if not cmd.record_shortfall:
                raise InsufficientStockError.short("sell", cmd.quantity, cmd.sku, cmd.location, 0)
            s = uow.stock_or_open(cmd.sku, cmd.location, cmd.cause)
        s.sell(cmd.quantity, cmd.reference, cmd.cause, cmd.reservation_id, cmd.record_shortfall)
        return stock_view(s)

    def return_to_stock(self, cmd: c.ReturnToStock, uow: UnitOfWork) -> dict[str, Any]:
        s = uow.stock_or_open(cmd.sku, cmd.location, cmd.cause)
        s.accept_return(cmd.reference, cmd.quantity, cmd.disposition, cmd.cause)
        if cmd.disposition == "restock":
            self._fill_backorders(uow, cmd.sku, cmd.location, cmd.cause)
        return stock_view(s)

    def write_off(self, cmd: c.WriteOffDamaged, uow: UnitOfWork) -> dict[str, Any]:
        s = self._existing(uow, cmd.sku, cmd.location)
        s.write_off_damaged(cmd.quantity, cmd.reference, cmd.cause)
        return stock_view(s)

    def correct(self, cmd: c.CorrectMovement, uow: UnitOfWork) -> dict[str, Any]:
        wrong = self._existing(uow, cmd.sku, cmd.location)
        if cmd.version > wrong.version:
            raise CorrectionError(f"{cmd.sku} at {cmd.location} has no event {cmd.version}")
        # The named movement may have been decided earlier in this same batch and not be stored yet.
        original: Any = next((e for e in wrong.pending_events if e.originator_version == cmd.version), None)
        if original is None:
            original = next(iter(self.app.events.get(wrong.id, gt=cmd.version - 1, lte=cmd.version)), None)
        on_hand, unavailable = movement_effect(original) if original is not None else (0, 0)
        if (on_hand, unavailable) == (0, 0):
            raise CorrectionError(f"event {cmd.version} of {cmd.sku} at {cmd.location} is not a movement")
        corrects = {
            "sku": cmd.sku,
            "location": cmd.location,
            "version": cmd.version,
            "type": type(original).__name__,
            "reference": getattr(original, "reference", None),
            "correction": cmd.reference,
        }
        wrong.correct(corrects, -on_hand, -unavailable, cmd.reason, cmd.cause)
        outcome: dict[str, Any] = {"reversed": stock_view(wrong)}
        if unavailable - on_hand > 0:  # reversing the movement frees units
            self._fill_backorders(uow, cmd.sku, cmd.location, cmd.cause)
        if cmd.to_sku is not None or cmd.to_location is not None:
            right = uow.stock_or_open(cmd.to_sku or cmd.sku, cmd.to_location or cmd.location, cmd.cause)
            right.correct(corrects, on_hand, unavailable, cmd.reason, cmd.cause)
            outcome["reposted"] = stock_view(right)
            if on_hand - unavailable > 0:
                self._fill_backorders(uow, right.sku, right.location, cmd.cause)
        return outcome

    def configure_backorders(self, cmd: c.ConfigureBackorders, uow: UnitOfWork) -> dict[str, Any]:
        s = uow.stock_or_open(cmd.sku, cmd.location, cmd.cause)
        s.configure_backorders(cmd.allowed, cmd.cause)
        if cmd.allowed:
            self._fill_backorders(uow, cmd.sku, cmd.location, cmd.cause)
        return stock_view(s)

    def configure_location(self, cmd: c.ConfigureLocation, uow: UnitOfWork) -> dict[str, Any]:
        """A location's policy for every SKU at it: whether it may reserve beyond what is
        available (`backorders`). Setting what is already set appends nothing."""
        loc = uow.location(cmd.location)
        if loc is not None and not loc.pending_events and self.app is not None:
            # another process may have changed it since the writer cached it: decide on the stored one
            stored = cast(Location, self.app.repository.get(loc.id))  # a location's stream
            if stored.version != loc.version:
                uow.replace(stored)
                loc = stored
        if loc is None:
            if not cmd.backorders:
                return {"location": cmd.location, "backorders": False}
            loc = Location.open(cmd.location, cmd.cause)
            uow.add(loc)
        loc.set_backorders(cmd.backorders, cmd.cause)
        uow.location_changed(cmd.location)
        return loc.view()

    def fill_backorders(self, cmd: c.FillBackorders, uow: UnitOfWork) -> dict[str, Any]:
        """The SKU's waiting lines take what the SKU-location can give them (`_fill_backorders`);
        at a location that allows backorders, a SKU first seen there opens its stream."""
        queue = uow.backorders(cmd.sku)
        if queue is None or not queue.waiting:
            return {"sku": cmd.sku, "location": cmd.location, "filled": 0}
        before = len(queue.waiting)
        wanted_here = any(
            cmd.location in self._group_of(w) for w in queue.waiting
        )
        if not wanted_here:
            return {"sku": cmd.sku, "location": cmd.location, "filled": 0}
        if uow.stock(cmd.sku, cmd.location) is None and uow.location_backorders(cmd.location):
            uow.stock_or_open(cmd.sku, cmd.location, {**cmd.cause, "reason": "backorders-allowed"})
        self._fill_backorders(uow, cmd.sku, cmd.location, cmd.cause)
        return {"sku": cmd.sku, "location": cmd.location, "filled": before - len(queue.waiting)}

    def cover_shortfall(self, cmd: c.CoverShortfall, uow: UnitOfWork) -> dict[str, Any]:
        """Reallocates the reservations of order lines a shortfall leaves uncovered to other
        locations of the order's channel group (newest reservations first), as far as they have
        units; what cannot move stays uncovered (the `shortfall` exception stays open)."""
        s = self._existing(uow, cmd.sku, cmd.location)
        window = self.locations.incoming_days_at(s.location)
        moved = []
        for rid, units in s.uncovered(window):
            r = s.reservations[rid]
            if parse_hold_reservation_id(rid) is not None:
                continue  # a hold: it stays where it is until it ends
            order = uow.order(r["order_id"]) if r.get("order_id") else None
            line = None if order is None else order.lines.get(r["line_id"])
            if order is None or line is None:
                continue  # a hold of no order in the ledger: nothing to reallocate it with
            n = min(units, Order.allocations_of(line).get(s.location, 0))
            others = [x for x in self.locations.locations_for(order.channel) if x != s.location]
            days = self.locations.incoming_days(order.channel)
            allocations, _ = self._plan(uow, s.sku, n, others, {}, days) if n > 0 else ([], 0)
            for other, q in allocations:
                s.release(rid, q, "reallocated", cmd.cause)
                order.record_release(r["line_id"], q, "reallocated", cmd.cause, location=s.location)
                new_rid = other.reserve(order.order_id, r["line_id"], q, cmd.cause, incoming_days=days)
                order.record_reservation(r["line_id"], other.location, q, new_rid, cmd.cause)
                moved.append(
                    {
                        "order_id": order.order_id,
                        "line_id": r["line_id"],
                        "from": s.location,
                        "to": other.location,
                        "quantity": q,
                    }
                )
        return {**stock_view(s), "moved": moved, "uncovered": uncovered_view(s, window)}

    # ---------------------------------------------------------------- orders

    @staticmethod
    def _order_answer(order: Order) -> dict[str, Any]:
        work = order.open_work
        return {
            "order_id": order.order_id,
            "channel": order.channel,
            "stage": order.stage_given(work),
            "open": work,
            "lines": [
                {
                    "line_id": x["line_id"],
                    "sku": x["sku"],
                    "quantity": x["quantity"],
                    "location": x["location"],
                    "reserved": x["reserved"],
                    "allocations": Order.allocation_list(x),
                    "backordered": x.get("backordered", 0),
                }
                for x in order.lines.values()
            ],
        }

    def capture_order(self, cmd: c.CaptureOrder, uow: UnitOfWork) -> dict[str, Any]:
        existing = uow.order(cmd.order_id)
        if existing is not None:
            if existing.same_capture(cmd.channel, list(cmd.lines)):
                return self._order_answer(existing)
            raise OrderConflictError(
                f"order {cmd.order_id} was already captured with other lines", order_id=cmd.order_id
            )
        hold, late = self._hold_to_take(uow, cmd)
        # Plan every line before changing anything, so a refused order changes nothing. A hold
        # taken over gives its units first: they are released and reserved for the order line
        # at the same location (never held twice); the rest of a line is sourced as usual.
        days = self.locations.incoming_days(cmd.channel)  # the incoming units its ATS counts
        taken = self._plan_takeover(uow, hold, cmd.lines, days) if hold is not None and not late else {}
        planned: dict[UUID, int] = {}
        if hold is not None:  # its units are released before the order reserves: they count as free
            for line in hold.lines.values():
                for location, n in line["allocations"].items():
                    sid = stock_id(line["sku"], location)
                    planned[sid] = planned.get(sid, 0) - n
            for parts in taken.values():
                for st, n in parts:
                    planned[st.id] = planned.get(st.id, 0) + n
        plans, short = self._plan_lines(uow, cmd.channel, cmd.lines, planned, taken)
        if short and not cmd.allow_partial:
            raise InsufficientStockError(
                f"order {cmd.order_id}: {len(short)} line(s) cannot be reserved",
                order_id=cmd.order_id,
                lines=short,
            )
        order = Order.capture(
            cmd.order_id,
            cmd.channel,
            [dict(x) for x in cmd.lines],
            cmd.cause,
            external_refs=cmd.external_refs,
            platform_status=cmd.platform_status,
        )
        uow.add(order)
        freed: list[tuple[str, str]] = []  # by the hold; backorders are filled once the order reserved
        if hold is not None:
            freed = self._end_late(uow, hold, cmd) if late else self._take_over(uow, hold, taken, cmd)
        for line, allocations, missing in plans:
            for s, n in self._merged(taken.get(line["line_id"], []), allocations):
                rid = s.reserve(
                    cmd.order_id, line["line_id"], n, cmd.cause, cmd.expires_at, incoming_days=days
                )
                order.record_reservation(line["line_id"], s.location, n, rid, cmd.cause)
            if missing:  # the line's `backordered` units wait for stock, oldest capture first
                uow.backorders_or_open(line["sku"], cmd.cause).queue(
                    cmd.order_id, line["line_id"], cmd.channel, line.get("location"), cmd.cause
                )
        if self.checks:
            facts = OrderToCheck(cmd.order_id, cmd.channel, tuple(cmd.lines), dict(cmd.facts))
            holds = run_checks(self.checks, facts)
            order.record_checks([x.name for x in self.checks], holds, cmd.cause)
        for sku, location in sorted(set(freed)):
            self._fill_backorders(uow, sku, location, cmd.cause)
        answer = self._order_answer(order)
        if hold is not None:
            answer["hold"] = {"reservation_id": hold.reservation_id, "status": hold.status, "late": late}
        return answer

    def _plan_lines(
        self,
        uow: UnitOfWork,
        channel: str,
        lines: Sequence[dict[str, Any]],
        planned: dict[UUID, int],
        taken: dict[str, list[tuple[SkuLocation, int]]] | None = None,
    ) -> tuple[list[tuple[dict[str, Any], list[tuple[SkuLocation, int]], int]], list[dict[str, Any]]]:
        """The allocations of each line (at its location, else over the channel's group), less
        what `taken` already gives it; and the lines short. Changes nothing. A location gives
        what is available there and the incoming units the channel's ATS counts."""
        plans: list[tuple[dict[str, Any], list[tuple[SkuLocation, int]], int]] = []
        short: list[dict[str, Any]] = []
        days = self.locations.incoming_days(channel)
        for line in lines:
            if line.get("stock") is False:  # a line that carries no stock is never reserved
                continue
            if line.get("location"):
                candidates: Sequence[str] = (line["location"],)
            else:
                candidates = self.locations.locations_for(channel)
                if not candidates:
                    raise InvalidCommandError(
                        f"line {line['line_id']} names no location and channel {channel} has no locations",
                        field="lines",
                    )
            want = line["quantity"] - sum(n for _, n in (taken or {}).get(line["line_id"], []))
            allocations, missing = (
                self._plan(uow, line["sku"], want, candidates, planned, days) if want > 0 else ([], 0)
            )
            if missing:
                short.append({"line_id": line["line_id"], "sku": line["sku"], "quantity": line["quantity"]})
            plans.append((line, allocations, missing))
        return plans, short

    @staticmethod
    def _merged(
        first: list[tuple[SkuLocation, int]], then: list[tuple[SkuLocation, int]]
    ) -> list[tuple[SkuLocation, int]]:
        """Allocations of one line, one per location, in the order they were first named."""
        out: dict[str, tuple[SkuLocation, int]] = {}
        for s, n in [*first, *then]:
            out[s.location] = (s, out[s.location][1] + n) if s.location in out else (s, n)
        return list(out.values())

    # ----------------------------------------------------------------- holds

    def place_hold(self, cmd: c.PlaceHold, uow: UnitOfWork) -> dict[str, Any]:
        """Reserves every line of the hold until `expires_at` (all or none: 409 when the
        channel's locations together cannot fill a line)."""
        existing = uow.hold(cmd.reservation_id)
        if existing is not None:  # the command log answers a repeat; this is a stale retry
            return existing.view()
        plans, short = self._plan_lines(uow, cmd.channel, cmd.lines, {})
        if short:
            raise InsufficientStockError(
                f"reservation {cmd.reservation_id}: {len(short)} line(s) cannot be held",
                reservation_id=cmd.reservation_id,
                lines=short,
            )
        lines = [
            {
                "line_id": line["line_id"],
                "sku": line["sku"],
                "quantity": line["quantity"],
                "location": line.get("location"),
                "allocations": {s.location: n for s, n in allocations},
            }
            for line, allocations, _ in plans
        ]
        hold = Hold.place(cmd.reservation_id, cmd.channel, cmd.expires_at, lines, cmd.cause)
        uow.add(hold)
        for line, allocations, _ in plans:
            rid = hold_reservation_id(cmd.reservation_id, line["line_id"])
            for s, n in allocations:
                s.reserve(
                    cmd.reservation_id,
                    line["line_id"],
                    n,
                    cmd.cause,
                    cmd.expires_at,
                    reservation_id=rid,
                    incoming_days=self.locations.incoming_days(cmd.channel),
                )
        return hold.view()

    def release_hold(self, cmd: c.ReleaseHold, uow: UnitOfWork) -> dict[str, Any]:
        hold = uow.require_hold(cmd.reservation_id)
        if hold.status != "held":
            return hold.view()
        freed = self._give_back(uow, hold, "cancelled", cmd.cause)
        hold.void(cmd.cause)
        for sku, location in freed:
            self._fill_backorders(uow, sku, location, cmd.cause)
        return hold.view()

    def _give_back(
        self, uow: UnitOfWork, hold: Hold, reason: str, cause: dict[str, Any]
    ) -> list[tuple[str, str]]:
        """Releases everything the hold still holds (`reason`: `cancelled` or `expired`, at the
        SKU-locations and on the hold alike); the SKU-locations freed."""
        freed = []
        for line in list(hold.lines.values()):
            rid = hold_reservation_id(hold.reservation_id, line["line_id"])
            for location, n in list(line["allocations"].items()):
                s = uow.stock(line["sku"], location)
                still = 0 if s is None else min(n, s.reserved_for(rid))
                if s is not None and still:
                    s.release(rid, still, reason, cause)
                    freed.append((line["sku"], location))
                hold.record_release(line["line_id"], location, n, reason, cause)
        return freed

    @staticmethod
    def _hold_to_take(uow: UnitOfWork, cmd: c.CaptureOrder) -> tuple[Hold | None, bool]:
        """The hold an order names, and whether the order is late for it (it expired first)."""
        if cmd.reservation_id is None:
            return None, False
        hold = uow.require_hold(cmd.reservation_id)
        if hold.channel != cmd.channel:
            raise InvalidCommandError(
                f"reservation {cmd.reservation_id} holds for channel {hold.channel}, not {cmd.channel}",
                field="reservation_id",
            )
        if hold.expired_by(cmd.received_at):
            return hold, True
        if hold.status != "held":
            raise ReservationError(
                f"reservation {cmd.reservation_id} is {hold.status}"
                + (f" by order {hold.order_id}" if hold.order_id else ""),
                reservation_id=cmd.reservation_id,
                hold_status=hold.status,
            )
        return hold, False

    @staticmethod
    def _plan_takeover(
        uow: UnitOfWork, hold: Hold, lines: Sequence[dict[str, Any]], incoming_days: int = 0
    ) -> dict[str, list[tuple[SkuLocation, int]]]:
        """What each order line takes from the hold: the held units of its SKU (the hold line of
        the same id first, then the others in their order), at its location only if it names
        one; at most what the SKU-location can still give (a shortfall there gives less)."""
        left = {(lid, loc): n for lid, x in hold.lines.items() for loc, n in x["allocations"].items()}
        taken: dict[str, list[tuple[SkuLocation, int]]] = {}
        for line in lines:
            if line.get("stock") is False:
                continue
            want = int(line["quantity"])
            order = sorted(
                (lid for lid, x in hold.lines.items() if x["sku"] == line["sku"]),
                key=lambda lid: lid != line["line_id"],
            )
            for lid in order:
                for location in hold.lines[lid]["allocations"]:
                    if want <= 0:
                        break
                    if line.get("location") and location != line["location"]:
                        continue
                    s = uow.stock(line["sku"], location)
                    n = min(want, left[(lid, location)])
                    if s is None or n <= 0:
                        continue
                    # units a shortfall took are not there to take (incoming units the
                    # channel counts still cover what it held against them)
                    n -= s.short(incoming_days)
                    if n <= 0:
                        continue
                    left[(lid, location)] -= n
                    want -= n
                    taken.setdefault(line["line_id"], []).append((s, n))
        return taken

    def _take_over(
        self,
        uow: UnitOfWork,
        hold: Hold,
        taken: dict[str, list[tuple[SkuLocation, int]]],
        cmd: c.CaptureOrder,
    ) -> list[tuple[str, str]]:
        """Releases the hold's units the order takes (each then reserved for the order line at
        the same location), records the takeover, and releases what the order did not take;
        the SKU-locations that freed units."""
        by_sku: dict[str, list[str]] = {}
        for lid, x in hold.lines.items():
            by_sku.setdefault(x["sku"], []).append(lid)
        sku_of = {x["line_id"]: x["sku"] for x in cmd.lines}
        for line_id, parts in taken.items():
            for s, n in parts:
                need = n
                for lid in sorted(by_sku[sku_of[line_id]], key=lambda h: h != line_id):
                    rid = hold_reservation_id(hold.reservation_id, lid)
                    k = min(need, hold.lines[lid]["allocations"].get(s.location, 0), s.reserved_for(rid))
                    if k <= 0:
                        continue
                    s.release(rid, k, "reallocated", cmd.cause)
                    hold.record_release(lid, s.location, k, "taken", cmd.cause)
                    need -= k
        hold.take_over(cmd.order_id, cmd.cause)
        return self._give_back(uow, hold, "cancelled", cmd.cause)

    def _end_late(self, uow: UnitOfWork, hold: Hold, cmd: c.CaptureOrder) -> list[tuple[str, str]]:
        """An order for a hold past its expiry: what the hold still holds is released as
        expired, and the hold records the late order (it is sourced like any other)."""
        freed = self._give_back(uow, hold, "expired", cmd.cause) if hold.status == "held" else []
        hold.record_late_order(cmd.order_id, cmd.cause)
        return freed

    def release_order(self, cmd: c.ReleaseOrder, uow: UnitOfWork) -> dict[str, Any]:
        order = uow.require_order(cmd.order_id)
        order.release_hold(cmd.by, cmd.cause)
        return self._order_answer(order)

    @staticmethod
    def _plan(
        uow: UnitOfWork,
        sku: str,
        quantity: int,
        candidates: Sequence[str],
        planned: dict[UUID, int],
        incoming_days: int = 0,
    ) -> tuple[list[tuple[SkuLocation, int]], int]:
        """The allocations of `quantity` over `candidates` (`ledger.sourcing`), with what `planned`
        already promised to earlier lines of the same order counted off; and the units short.
        Each location gives its `capacity`: what is available, and the incoming units a channel
        counting `incoming_days` promises."""
        stocks: dict[str, SkuLocation] = {}
        capacities: list[sourcing.Capacity] = []
        for location in candidates:
            s = uow.stock(sku, location)
            if s is None:
                if not uow.location_backorders(location):
                    continue
                # a SKU first seen at a location that allows backorders: its stream opens here
                # (a command refused after this is decided again without it by the writer)
                s = uow.stock_or_open(sku, location, {"reason": "backorders-allowed"})
            stocks[location] = s
            capacities.append(
                (
                    location,
                    None if s.backorders_allowed else s.capacity(incoming_days) - planned.get(s.id, 0),
                )
            )
        allocations, missing = sourcing.plan(quantity, capacities)
        out = []
        for location, n in allocations:
            s = stocks[location]
            planned[s.id] = planned.get(s.id, 0) + n
            out.append((s, n))
        return out, missing

    def _group_of(self, waiting: dict[str, Any]) -> Sequence[str]:
        """Where a waiting backordered line may be filled: its named location, else its channel's group."""
        return [waiting["location"]] if waiting["location"] else self.locations.locations_for(waiting["channel"])

    def _fill_backorders(self, uow: UnitOfWork, sku: str, location: str, cause: dict[str, Any]) -> None:
        """Units available at a location go to the SKU's backordered lines whose group includes
        it, oldest capture first; a line with nothing backordered left leaves the queue."""
        queue = uow.backorders(sku)
        if queue is None or not queue.waiting:
            return
        s = uow.stock(sku, location)
        for w in list(queue.waiting):
            order = uow.order(w["order_id"])
            line = None if order is None else order.lines.get(w["line_id"])
            wanted = 0 if line is None else int(line.get("backordered", 0))
            if order is None or line is None or wanted <= 0:
                queue.dequeue(w["order_id"], w["line_id"], cause)
                continue
            if s is None or location not in self._group_of(w):
                continue
            days = self.locations.incoming_days(w["channel"])  # its ATS counted those incoming units
            free = wanted if s.backorders_allowed else min(wanted, s.capacity(days))
            if free <= 0:
                continue  # nothing for it; a line of a channel counting more incoming may still fill
            rid = s.reserve(w["order_id"], w["line_id"], free, cause, incoming_days=days)
            order.record_reservation(w["line_id"], location, free, rid, cause)
            if free == wanted:
                queue.dequeue(w["order_id"], w["line_id"], cause)

    def remap_line(self, cmd: c.RemapOrderLine, uow: UnitOfWork) -> dict[str, Any]:
        order = uow.require_order(cmd.order_id)
        line = order.line(cmd.line_id)
        if line["sku"] == cmd.sku:
            return {**self._order_answer(order), "remapped": False}
        order.check_remap(cmd.line_id)  # before the old reservation is released
        line_sku_before = line["sku"]
        held = Order.held_quantity(line)
        wanted = Order.open_quantity(line)
        rid = reservation_id(cmd.order_id, cmd.line_id)
        freed = list(Order.allocations_of(line).items()) if held > 0 else []
        for location, n in freed:
            wrong = self._existing(uow, line["sku"], location)
            still = min(n, wrong.reserved_for(rid))  # an expiry may have given some back already
            if still:
                wrong.release(rid, still, "reallocated", cmd.cause)
        candidates = [line["location"]] if line["location"] else []
        candidates += [x for x in self.locations.locations_for(order.channel) if x not in candidates]
        chosen = None
        days = self.locations.incoming_days(order.channel)
        for location in candidates if wanted > 0 else ():
            s = uow.stock(cmd.sku, location)
            if s is not None and s.can_reserve(wanted, days):
                chosen = s
                break
        order.record_remap(
            cmd.line_id,
            cmd.sku,
            cmd.mapping,
            held,
            None if chosen is None else chosen.location,
            0 if chosen is None else wanted,
            cmd.cause,
        )
        if chosen is not None:
            chosen.reserve(cmd.order_id, cmd.line_id, wanted, cmd.cause, incoming_days=days)
        elif wanted > 0:  # nothing free on the right SKU: the line waits for it like a backorder
            uow.backorders_or_open(cmd.sku, cmd.cause).queue(
                cmd.order_id, cmd.line_id, order.channel, None, cmd.cause
            )
        for location, _ in freed:
            self._fill_backorders(uow, line_sku_before, location, cmd.cause)
        return {**self._order_answer(order), "remapped": True, "reserved": 0 if chosen is None else wanted}

    def ship(self, cmd: c.ShipOrder, uow: UnitOfWork) -> dict[str, Any]:
        order = uow.require_order(cmd.order_id)
        if cmd.shipment_id in order.shipments:
            return self._order_answer(order)
        order.check_shipment(list(cmd.lines))
        recorded = []
        # What each line still holds per location, and its open units, as the shipment proceeds.
        held_at = {lid: dict(Order.allocations_of(x)) for lid, x in order.lines.items()}
        open_left = {lid: Order.open_quantity(x) for lid, x in order.lines.items()}
        freed: set[tuple[str, str]] = set()
        for sl in cmd.lines:
            line = order.line(sl["line_id"])
            allocations = held_at[sl["line_id"]]
            rid = reservation_id(cmd.order_id, sl["line_id"])
            reference = f"{cmd.order_id}/{cmd.shipment_id}/{sl['line_id']}"
            for location, qty in self._shipping_parts(sl, line, allocations):
                consumed = min(qty, allocations.get(location, 0))
                if consumed:
                    self._existing(uow, line["sku"], location).sell(consumed, reference, cmd.cause, rid)
                    allocations[location] -= consumed
                direct = qty - consumed
                open_left[sl["line_id"]] -= qty
                # Units shipped from beyond the line's allocation there: the line then holds no
                # more than its open units, so the reservation elsewhere moves with them.
                excess = sum(allocations.values()) - open_left[sl["line_id"]]
                released_at: dict[str, int] = {}
                for other in list(allocations):
                    n = min(allocations[other], direct - sum(released_at.values()), excess)
                    if n <= 0:
                        continue
                    self._existing(uow, line["sku"], other).release(rid, n, "reallocated", cmd.cause)
                    allocations[other] -= n
                    excess -= n
                    released_at[other] = n
                    freed.add((line["sku"], other))
                if direct:
                    s = uow.stock(line["sku"], location)
                    if s is None or not s.can_sell_direct(direct):
                        raise InsufficientStockError(
                            f"cannot ship {direct} of {line['sku']} from {location}",
                            sku=line["sku"],
                            location=location,
                        )
                    s.sell(direct, reference, cmd.cause)
                recorded.append(
                    {
                        "line_id": sl["line_id"],
                        "quantity": qty,
                        "location": location,
                        "consumed": consumed,
                        "released": sum(released_at.values()),
                        "released_at": released_at,
                    }
                )
        order.record_shipment(cmd.shipment_id, recorded, cmd.cause)
        for sku, location in sorted(freed):
            self._fill_backorders(uow, sku, location, cmd.cause)
        return self._order_answer(order)

    @staticmethod
    def _shipping_parts(
        sl: dict[str, Any], line: dict[str, Any], allocations: dict[str, int]
    ) -> list[tuple[str, int]]:
        """Where a shipped quantity leaves from: the location named, else the line's allocations
        in their order (then, beyond them, the last of them or the line's location)."""
        qty = int(sl["quantity"])
        if sl.get("location"):
            return [(sl["location"], qty)]
        parts: list[tuple[str, int]] = []
        for location, held in allocations.items():
            n = min(held, qty - sum(q for _, q in parts))
            if n > 0:
                parts.append((location, n))
        left = qty - sum(q for _, q in parts)
        if left:
            location = parts[-1][0] if parts else line["location"]
            if location is None:
                raise InvalidCommandError(
                    f"line {sl['line_id']} has no reserved location; name the shipping location",
                    field="lines",
                )
            if parts and parts[-1][0] == location:
                parts[-1] = (location, parts[-1][1] + left)
            else:
                parts.append((location, left))
        return parts

    def cancel(self, cmd: c.CancelOrder, uow: UnitOfWork) -> dict[str, Any]:
        order = uow.require_order(cmd.order_id)
        whole = cmd.lines is None
        wanted: list[dict[str, Any]] = (
            [{"line_id": lid, "quantity": Order.open_quantity(x)} for lid, x in order.lines.items()]
            if whole
            else [dict(x) for x in cmd.lines or ()]
        )
        wanted = [w for w in wanted if w["quantity"] > 0]
        if whole and not wanted:
            return self._order_answer(order)
        for w in wanted:
            if w["quantity"] > order.cancellable(w["line_id"]):
                raise OrderConflictError(
                    f"line {w['line_id']} has {order.cancellable(w['line_id'])} units left to cancel",
                    line_id=w["line_id"],
                )
        recorded = []
        # What each line holds per location, and its open units, as the cancellation proceeds.
        held_at = {lid: dict(Order.allocations_of(x)) for lid, x in order.lines.items()}
        open_left = {lid: Order.open_quantity(x) for lid, x in order.lines.items()}
        freed: set[tuple[str, str]] = set()
        for w in wanted:
            line = order.line(w["line_id"])
            allocations = held_at[w["line_id"]]
            held = sum(allocations.values())
            # Unreserved units of the line are cancelled first; reserved units are released,
            # from the line's last allocations first (its first location keeps its units).
            unreserved = open_left[w["line_id"]] - held
            released = max(0, min(held, w["quantity"] - unreserved))
            open_left[w["line_id"]] -= w["quantity"]
            released_at: dict[str, int] = {}
            rid = reservation_id(cmd.order_id, w["line_id"])
            for location in reversed(list(allocations)):
                n = min(allocations[location], released - sum(released_at.values()))
                if n <= 0:
                    continue
                self._existing(uow, line["sku"], location).release(rid, n, "cancelled", cmd.cause)
                allocations[location] -= n
                released_at[location] = n
                freed.add((line["sku"], location))
            recorded.append(
                {
                    "line_id": w["line_id"],
                    "quantity": w["quantity"],
                    "released": released,
                    "released_at": released_at,
                }
            )
        order.record_cancellation(cmd.reason, recorded, whole, cmd.cause, reference=cmd.reference)
        for sku, location in sorted(freed):
            self._fill_backorders(uow, sku, location, cmd.cause)
        return self._order_answer(order)

    def amend(self, cmd: c.AmendOrder, uow: UnitOfWork) -> dict[str, Any]:
        """Units edited in are added to the order and reserved at the line's location, or the first
        of the channel's that has them; units no location has stay to reserve (open `reserve`)."""
        order = uow.require_order(cmd.order_id)
        added: list[dict[str, Any]] = [
            {k: x[k] for k in ("line_id", "sku", "quantity", "stock") if k in x} for x in cmd.lines
        ]
        before = {
            x["line_id"]: order.lines[x["line_id"]]["location"] for x in added if x["line_id"] in order.lines
        }
        order.add_lines(cmd.reference, added, cmd.cause)
        for x in cmd.lines:
            if x.get("stock", True) is False:
                continue
            located = before.get(x["line_id"])
            candidates = (
                [located]
                if located
                else [x["location"]]
                if x.get("location")
                else list(self.locations.locations_for(order.channel))
            )
            days = self.locations.incoming_days(order.channel)
            for location in candidates:
                s = uow.stock(x["sku"], location)
                if s is not None and s.can_reserve(x["quantity"], days):
                    rid = s.reserve(cmd.order_id, x["line_id"], x["quantity"], cmd.cause, incoming_days=days)
                    order.record_reservation(x["line_id"], location, x["quantity"], rid, cmd.cause)
                    break
        return self._order_answer(order)

    def return_items(self, cmd: c.ReturnItems, uow: UnitOfWork) -> dict[str, Any]:
        order = uow.require_order(cmd.order_id)
        if cmd.return_id in order.returns:
            return self._order_answer(order)
        recorded = []
        for r in cmd.lines:
            line = order.line(r["line_id"])
            location = r.get("location") or line["location"] or self._shipped_from(order, r["line_id"])
            if location is None:
                raise InvalidCommandError(f"line {r['line_id']} has no location to return to", field="lines")
            recorded.append({**r, "location": location})
        order.record_return(cmd.return_id, recorded, cmd.cause)
        for r in recorded:
            s = uow.stock_or_open(order.lines[r["line_id"]]["sku"], r["location"], cmd.cause)
            s.accept_return(
                f"{cmd.order_id}/{cmd.return_id}/{r['line_id']}", r["quantity"], r["disposition"], cmd.cause
            )
            if r["disposition"] == "restock":
                self._fill_backorders(uow, s.sku, s.location, cmd.cause)
        return self._order_answer(order)

    @staticmethod
    def _shipped_from(order: Order, line_id: str) -> str | None:
        for lines in order.shipments.values():
            for s in lines:
                if s["line_id"] == line_id:
                    return str(s["location"])
        return None

    def record_refund(self, cmd: c.RecordRefund, uow: UnitOfWork) -> dict[str, Any]:
        order = uow.require_order(cmd.order_id)
        order.record_refund(
            cmd.refund_id,
            cmd.amount,
            cmd.currency,
            [dict(x) for x in cmd.lines],
            cmd.cause,
            transactions=list(cmd.transactions),
        )
        return self._order_answer(order)

    def confirm_refund(self, cmd: c.ConfirmRefund, uow: UnitOfWork) -> dict[str, Any]:
        order = uow.require_order(cmd.order_id)
        order.confirm_refund(cmd.refund_id, cmd.amount, cmd.currency, cmd.transaction, cmd.cause)
        return self._order_answer(order)

    def record_refund_transaction(self, cmd: c.RecordRefundTransaction, uow: UnitOfWork) -> dict[str, Any]:
        order = uow.require_order(cmd.order_id)
        order.record_refund_transaction(cmd.refund_id, cmd.transaction, cmd.status, cmd.amount, cmd.cause)
        return self._order_answer(order)

    def fail_refund(self, cmd: c.FailRefund, uow: UnitOfWork) -> dict[str, Any]:
        order = uow.require_order(cmd.order_id)
        order.fail_refund(cmd.refund_id, cmd.transaction, cmd.error, cmd.cause)
        return self._order_answer(order)

    def settle_refund(self, cmd: c.SettleRefund, uow: UnitOfWork) -> dict[str, Any]:
        order = uow.require_order(cmd.order_id)
        order.settle_refund(cmd.refund_id, cmd.settlement_reference, cmd.cause)
        return self._order_answer(order)

    def record_erp_posting(self, cmd: c.RecordErpPosting, uow: UnitOfWork) -> dict[str, Any]:
        order = uow.require_order(cmd.order_id)
        order.record_erp_posting(cmd.document, cmd.attempts, cmd.erp_reference, cmd.cause)
        return self._order_answer(order)

    def record_erp_failure(self, cmd: c.RecordErpFailure, uow: UnitOfWork) -> dict[str, Any]:
        order = uow.require_order(cmd.order_id)
        order.record_erp_failure(cmd.document, cmd.attempt, cmd.error, cmd.cause, uncertain=cmd.uncertain)
        return self._order_answer(order)

    def invoice(self, cmd: c.InvoiceOrder, uow: UnitOfWork) -> dict[str, Any]:
        order = uow.require_order(cmd.order_id)
        order.record_invoice(cmd.invoice_id, cmd.cause)
        return self._order_answer(order)

    def observe_platform_status(self, cmd: c.ObservePlatformStatus, uow: UnitOfWork) -> dict[str, Any]:
        order = uow.require_order(cmd.order_id)
        order.observe_platform_status(dict(cmd.status), cmd.cause)
        return self._order_answer(order)

    def add_correlation_ids(self, cmd: c.AddCorrelationIds, uow: UnitOfWork) -> dict[str, Any]:
        order = uow.require_order(cmd.order_id)
        order.add_correlation_ids(dict(cmd.ids), cmd.cause)
        return self._order_answer(order)

    # ------------------------------------------------------------ read side

    def change_channel_policy(self, cmd: c.ChangeChannelPolicy, uow: UnitOfWork) -> dict[str, Any]:
        ch = cast(Channel | None, uow.get(channel_id(cmd.channel)))  # the stream of a channel's id
        if ch is None:
            ch = Channel.open(cmd.channel, cmd.cause)
            uow.add(ch)
        recorded = ch.change_policy(cmd.version, dict(cmd.policy), cmd.changed_by, cmd.cause)
        return {"channel": cmd.channel, "version": ch.policy_version, "recorded": recorded}

    def record_rebuild(self, cmd: c.RecordRebuild, uow: UnitOfWork) -> dict[str, Any]:
        rm = cast(ReadModel | None, uow.get(read_model_id(cmd.name)))  # the stream of a read model's id
        if rm is None:
            rm = ReadModel.open(cmd.name, cmd.cause)
            uow.add(rm)
        rm.record_rebuild(cmd.position, cmd.corrected, cmd.by, cmd.cause)
        return {"name": cmd.name, "rebuilds": rm.rebuilds}


# --------------------------------------------------------------------- reads


class History:
    """Read access to the streams: current state, state as of a moment or position, events."""

    def __init__(self, app: LedgerApplication, absent: frozenset[UUID] = frozenset()) -> None:
        self.app = app
        self.absent = absent  # streams known not to exist (`knowing`): read as None without a query

    def knowing(self, ids: Sequence[UUID]) -> History:
        """This history, having asked in one round trip which of the streams `ids` exist: a read
        of one that does not answers None without reading the store (the inbox reads the orders a
        run of webhooks names this way, most of them new in a flash sale)."""
        ids = list(dict.fromkeys(ids))
        _, existing = cast(CommandLog, self.app.recorder).lookup([], ids)  # each adapter's recorder is one
        return History(self.app, frozenset(ids) - existing)

    def _get(self, agg_id: UUID, version: int | None = None) -> Aggregate | None:
        if agg_id in self.absent:
            return None
        try:
            return self.app.repository.get(agg_id, version=version)
        except AggregateNotFoundError:
            return None

    def stock(self, sku: str, location: str) -> SkuLocation | None:
        s: SkuLocation | None = self._get(stock_id(sku, location))  # type: ignore[assignment]  # a SKU-location's stream
        if s is not None:
            policy = self.location(location)
            s.location_backorders = policy is not None and policy.backorders
        return s

    def order(self, order_id: str) -> Order | None:
        return self._get(order_uuid(order_id))  # type: ignore[return-value]  # an order's stream

    def hold(self, reservation_id: str) -> Hold | None:
        return self._get(hold_id(reservation_id))  # type: ignore[return-value]  # a hold's stream

    def location(self, location: str) -> Location | None:
        return self._get(location_id(location))  # type: ignore[return-value]  # a location's policy stream

    def as_of_time(self, agg_id: UUID, at: datetime) -> Aggregate | None:
        """The aggregate as it stood at a moment: its last event at or before `at`."""
        agg: Aggregate | None = None
        start = None
        if self.app.snapshots is not None:
            for snap in self.app.snapshots.get(agg_id, desc=True):
                if snap.timestamp <= at:  # type: ignore[attr-defined]  # every library event has one
                    agg = snap.mutate(None)  # type: ignore[attr-defined]  # a Snapshot mutates
                    start = snap.originator_version
                    break
        for event in self.app.events.get(agg_id, gt=start):
            if event.timestamp > at:  # type: ignore[attr-defined]  # every library event has one
                break
            agg = event.mutate(agg)  # type: ignore[attr-defined]  # every aggregate event mutates
        return agg

    def as_of_position(self, agg_id: UUID, position: int) -> Aggregate | None:
        index = cast(StreamIndex, self.app.recorder)  # both persistence adapters' recorders are one
        version = index.version_at_position(agg_id, position)
        if version is None:
            return None
        return self._get(agg_id, version=version)

    def events(self, agg_id: UUID, after: int | None = None, limit: int = 100) -> Iterator[tuple[int, Any]]:
        """(position, domain event) of one stream, in order, after a ledger position."""
        index = cast(StreamIndex, self.app.recorder)  # both persistence adapters' recorders are one
        for position, stored in index.select_stream(agg_id, after, limit):
            yield position, self.app.mapper.to_domain_event(stored)

    def decode(self, stored: StoredEvent) -> Any:
        return self.app.mapper.to_domain_event(stored)
