"""The SKU-location aggregate: every movement of one SKU at one location, as facts.

Quantities follow Shopify's names: `on_hand` (physically there), `reserved` (committed to
orders), `unavailable` (damaged or in quality control, still on hand), `incoming` (in transit,
not on hand). `available = on_hand - reserved - unavailable`.

Event versions: an event class without `class_version` is version 1. A change to an event's
fields adds one to `class_version` and a static `upcast_vN_vN+1(state)` that turns a stored
state of version N into version N+1 in place; the library applies the chain when it reads an
older event, so stored events are never rewritten. Upcasts only add or rename fields with a
meaning-preserving default; a change of meaning is a new event type instead.

Every command method checks its invariant first and only then triggers its event, so a
refused command leaves the aggregate untouched (the group-commit writer relies on that).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from ledger.bounds import check_delta, check_id, check_quantity, stock_id
from ledger.bounds import reservation_id as make_reservation_id
from ledger.effects import event_effect
from ledger.errors import CorrectionError, InsufficientStockError, ReservationError
from ledger.policy import counted_lots

Cause = dict[str, Any]

RELEASE_REASONS = ("cancelled", "expired", "reallocated", "returned")
DISPOSITIONS = ("restock", "damaged")


class SkuLocation(Aggregate):
    """Stock of one canonical SKU at one location."""

    @staticmethod
    def create_id(sku: str, location: str, **_: Any) -> UUID:
        return stock_id(sku, location)

    class Event(Aggregate.Event):
        """A stock event; its change to the quantities is its row of `ledger.effects.EFFECTS`."""

        cause: Cause

        def apply(self, s: SkuLocation) -> None:
            effect = event_effect(self)
            s.on_hand, s.reserved, s.unavailable, s.incoming = effect.applied(
                s.on_hand, s.reserved, s.unavailable, s.incoming
            )
            if effect.reservation_id is not None and effect.reserved:
                s._hold(effect.reservation_id, effect.reserved, self)
            if effect.on_hand and not isinstance(self, SkuLocation.StockCounted):
                s._moved(self.timestamp.timestamp(), self.originator_version, effect.on_hand)
            if effect.incoming:
                lots = fold_lots(s._lots(), self)
                if lots is not None:
                    s.lots = lots

    class Opened(Aggregate.Created):
        sku: str
        location: str
        cause: Cause

    def __init__(self, sku: str, location: str, cause: Cause) -> None:
        self.sku = sku
        self.location = location
        self.on_hand = 0
        self.reserved = 0
        self.unavailable = 0
        self.incoming = 0
        self.allow_backorder = False
        # reservation id -> {"quantity", "order_id", "line_id", "expires_at"}
        self.reservations: dict[str, dict[str, Any]] = {}
        # versions of movements already corrected, so a correction is never applied twice
        self.corrected: dict[str, bool] = {}
        # Counts as of their moment: [recorded_at epoch, version, on-hand delta] of the movements
        # since the last applied count (at most MAX_MOVEMENTS; `horizon` is the newest dropped).
        self.movements: list[list[Any]] = []
        self.last_count_at: float | None = None
        self.horizon: float | None = None
        # the incoming units as lots, `[due epoch, quantity, lead seconds]` (`fold_lots`): what
        # a channel counting incoming units (`include_incoming_days`) may promise
        self.lots: list[list[Any]] = []

    @classmethod
    def open(cls, sku: str, location: str, cause: Cause | None = None) -> SkuLocation:
        check_id(sku, "sku")
        check_id(location, "location")
        return cls._create(cls.Opened, sku=sku, location=location, cause=cause or {})

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved - self.unavailable

    # Whether the SKU-location's location allows backorders for every SKU (`ledger.locations`):
    # not the stream's own state, handed in by the unit of work that loads it.
    location_backorders = False

    @property
    def backorders_allowed(self) -> bool:
        """Whether it may reserve beyond what is available: its own setting
        (`ConfigureBackorders`) or its location's policy."""
        return self.allow_backorder or self.location_backorders

    # ----------------------------------------------------------------- events

    class StockReceived(Event):
        quantity: int
        reference: str
        expected: bool

    class StockExpected(Event):
        """Units made `incoming` (an advance shipping notice line, a dispatched transfer).

        Version 2 added `due_at`, when they are expected; None (version 1, a transfer) is due
        at once.
        """

        class_version = 2

        quantity: int
        reference: str
        due_at: datetime | None

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state.setdefault("due_at", None)

    class StockReserved(Event):
        """Units committed to an order line (or a cart hold that may expire).

        Version 2 added `expires_at`; version 1 reservations never expire.
        """

        class_version = 2

        reservation_id: str
        order_id: str
        line_id: str
        quantity: int
        expires_at: datetime | None

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            # setdefault, not assignment: events stored before the class was versioned
            # already carry `expires_at` under no version marker, and keep their expiry.
            state.setdefault("expires_at", None)

    class ReservationReleased(Event):
        reservation_id: str
        quantity: int
        reason: str

    class StockSold(Event):
        quantity: int
        reservation_id: str | None
        reference: str

    class StockTransferredOut(Event):
        transfer_id: str
        to_location: str
        quantity: int

    class StockTransferredIn(Event):
        transfer_id: str
        from_location: str
        quantity: int

    class StockReturned(Event):
        return_id: str
        quantity: int
        disposition: str

    class StockAdjusted(Event):
        delta: int
        reason: str
        reference: str

    class DamagedWrittenOff(Event):
        quantity: int
        reference: str

    class MovementCorrected(Event):
        """Reverses (negative deltas) or re-posts (positive deltas) a mis-posted movement.

        `corrects` names the original movement: its SKU, location, stream version and reference.
        """

        corrects: dict[str, Any]
        on_hand_delta: int
        unavailable_delta: int
        reason: str

        def apply(self, s: SkuLocation) -> None:
            super().apply(s)
            if self.corrects.get("sku") == s.sku and self.corrects.get("location") == s.location:
                s.corrected[str(self.corrects["version"])] = True

    class StockCounted(Event):
        """A physical count of `counted` units as of `counted_at`, moving on hand by `delta`.

        On hand after the count = counted + the movements recorded after `counted_at`
        (`accounted` names their versions). A count older than the last applied count, or than
        the movements the stream still remembers, is kept for audit with `applied` false and
        moves nothing.
        """

        counted: int
        counted_at: datetime
        delta: int
        accounted: list[int]
        applied: bool
        reason: str
        reference: str

        def apply(self, s: SkuLocation) -> None:
            super().apply(s)
            if self.applied:
                at = self.counted_at.timestamp()
                s.last_count_at = at
                s.movements = [m for m in s._movements() if m[0] > at]

    class BackordersConfigured(Event):
        allowed: bool

        def apply(self, s: SkuLocation) -> None:
            s.allow_backorder = self.allowed

    # Bounded so a snapshot stays small: a count older than the 500th movement before its delivery
    # is kept for audit and moves nothing (`horizon`), rather than guessed.
    MAX_MOVEMENTS = 500
    BOUNDED_STATE = ("movements",)  # the snapshot policy does not space snapshots by it

    def _movements(self) -> list[list[Any]]:
        # a snapshot taken before counts were kept as of their moment has no movements yet
        movements: list[list[Any]] = self.__dict__.setdefault("movements", [])
        return movements

    def _moved(self, at: float, version: int, delta: int) -> None:
        movements = self._movements()
        movements.append([at, version, delta])
        if len(movements) > self.MAX_MOVEMENTS:
            self.horizon = movements.pop(0)[0]

    # A lead no window counts: the incoming units of a snapshot taken before lots were kept.
    UNKNOWN_LEAD = 1e12

    def _lots(self) -> list[list[Any]]:
        lots: list[list[Any]] | None = self.__dict__.get("lots")
        if lots is None:
            lots = [[0.0, self.incoming, self.UNKNOWN_LEAD]] if self.incoming > 0 else []
            self.lots = lots
        return lots

    def counted_incoming(self, days: int) -> int:
        """The incoming units a channel counting `days` of incoming (`include_incoming_days`)
        may promise here: its ATS counts them, so its orders may reserve them."""
        return min(self.incoming, counted_lots(self._lots(), days)) if days > 0 else 0

    def _hold(self, reservation_id: str, quantity: int, event: Any) -> None:
        """A reservation's holding changes by `quantity` (a new one takes the event's order line)."""
        r = self.reservations.get(reservation_id)
        if r is None:
            if quantity <= 0:
                return
            self.reservations[reservation_id] = {
                "quantity": quantity,
                "order_id": getattr(event, "order_id", None),
                "line_id": getattr(event, "line_id", None),
                "expires_at": getattr(event, "expires_at", None),
            }
            return
        r["quantity"] += quantity
        if r["quantity"] <= 0:
            del self.reservations[reservation_id]

    # --------------------------------------------------------------- commands

    def receive(self, quantity: int, reference: str, cause: Cause, expected: bool = False) -> None:
        check_quantity(quantity)
        self.trigger_event(
            self.StockReceived, quantity=quantity, reference=reference, expected=expected, cause=cause
        )

    def expect(self, quantity: int, reference: str, cause: Cause, due_at: datetime | None = None) -> None:
        check_quantity(quantity)
        self.trigger_event(
            self.StockExpected, quantity=quantity, reference=reference, due_at=due_at, cause=cause
        )

    def can_reserve(self, quantity: int, incoming_days: int = 0) -> bool:
        """Whether `quantity` more units can be reserved: those available, and the incoming
        units a channel counting `incoming_days` promises (available then goes below zero,
        covered by what is on its way)."""
        return self.backorders_allowed or quantity <= self.capacity(incoming_days)

    def capacity(self, incoming_days: int = 0) -> int:
        """The units a channel counting `incoming_days` may still reserve here (backorders aside)."""
        return self.available + self.counted_incoming(incoming_days)

    def reserve(
        self,
        order_id: str,
        line_id: str,
        quantity: int,
        cause: Cause,
        expires_at: datetime | None = None,
        reservation_id: str | None = None,
        incoming_days: int = 0,
    ) -> str:
        """Reserves for an order line; returns the reservation id (`order_id/line_id`, unless
        another is given: a hold's line, `hold_reservation_id`). `incoming_days`: the
        reserving channel's `include_incoming_days` (the incoming units it may promise)."""
        check_quantity(quantity)
        if not self.can_reserve(quantity, incoming_days):
            raise InsufficientStockError.short("reserve", quantity, self.sku, self.location, self.available)
        reservation_id = reservation_id or make_reservation_id(order_id, line_id)
        self.trigger_event(
            self.StockReserved,
            reservation_id=reservation_id,
            order_id=order_id,
            line_id=line_id,
            quantity=quantity,
            expires_at=expires_at,
            cause=cause,
        )
        return reservation_id

    def uncovered(self, incoming_days: int = 0) -> list[tuple[str, int]]:
        """The reservations no unit covers (none at a location that allows backorders): not one on
        hand, nor one incoming that a channel counting `incoming_days` may have promised (the
        widest window of the location's channels, `Policies.incoming_days_at`)."""
        short = self.short(incoming_days)
        if short <= 0:
            return []
        return uncovered([(rid, int(r["quantity"])) for rid, r in self.reservations.items()], short)

    def short(self, incoming_days: int = 0) -> int:
        """The reserved units nothing covers (see `uncovered`); 0 when everything is covered."""
        if self.backorders_allowed:
            return 0
        return max(0, -self.capacity(incoming_days))

    def reserved_for(self, reservation_id: str) -> int:
        r = self.reservations.get(reservation_id)
        return 0 if r is None else int(r["quantity"])

    def release(self, reservation_id: str, quantity: int, reason: str, cause: Cause) -> None:
        check_quantity(quantity)
        if reason not in RELEASE_REASONS:
            raise ReservationError(f"unknown release reason {reason!r}")
        held = self.reserved_for(reservation_id)
        if quantity > held:
            raise ReservationError(
                f"cannot release {quantity} of reservation {reservation_id}: it holds {held}",
                reservation_id=reservation_id,
                held=held,
            )
        self.trigger_event(
            self.ReservationReleased,
            reservation_id=reservation_id,
            quantity=quantity,
            reason=reason,
            cause=cause,
        )

    def expired_reservations(self, now: datetime) -> list[tuple[str, int]]:
        return [
            (rid, int(r["quantity"]))
            for rid, r in self.reservations.items()
            if r["expires_at"] is not None and r["expires_at"] <= now
        ]

    def release_expired(self, now: datetime, cause: Cause) -> int:
        """Returns the units of every reservation past its expiry; the count of units released."""
        released = 0
        for rid, qty in self.expired_reservations(now):
            self.release(rid, qty, "expired", cause)
            released += qty
        return released

    def can_sell_direct(self, quantity: int) -> bool:
        return self.backorders_allowed or quantity <= self.available

    def sell(
        self,
        quantity: int,
        reference: str,
        cause: Cause,
        reservation_id: str | None = None,
        record_shortfall: bool = False,
    ) -> None:
        """A sale consumes its reservation; a direct sale (store till) needs available units.

        `record_shortfall` records a sale that physically happened although the ledger saw no
        free unit (a till that was offline): the fact is kept and the drift shows up.
        """
        check_quantity(quantity)
        if reservation_id is not None:
            held = self.reserved_for(reservation_id)
            if quantity > held:
                raise ReservationError(
                    f"cannot sell {quantity} from reservation {reservation_id}: it holds {held}",
                    reservation_id=reservation_id,
                    held=held,
                )
        elif not (record_shortfall or self.can_sell_direct(quantity)):
            raise InsufficientStockError.short("sell", quantity, self.sku, self.location, self.available)
        self.trigger_event(
            self.StockSold, quantity=quantity, reservation_id=reservation_id, reference=reference, cause=cause
        )

    def can_ship_out(self, quantity: int) -> bool:
        return quantity <= self.available

    def transfer_out(self, transfer_id: str, to_location: str, quantity: int, cause: Cause) -> None:
        check_quantity(quantity)
        if not self.can_ship_out(quantity):
            raise InsufficientStockError.short(
                "transfer", quantity, self.sku, self.location, self.available, "from"
            )
        self.trigger_event(
            self.StockTransferredOut,
            transfer_id=transfer_id,
            to_location=to_location,
            quantity=quantity,
            cause=cause,
        )

    def transfer_in(self, transfer_id: str, from_location: str, quantity: int, cause: Cause) -> None:
        check_quantity(quantity)
        self.trigger_event(
            self.StockTransferredIn,
            transfer_id=transfer_id,
            from_location=from_location,
            quantity=quantity,
            cause=cause,
        )

    def accept_return(self, return_id: str, quantity: int, disposition: str, cause: Cause) -> None:
        check_quantity(quantity)
        if disposition not in DISPOSITIONS:
            raise ReservationError(f"unknown disposition {disposition!r}")
        self.trigger_event(
            self.StockReturned, return_id=return_id, quantity=quantity, disposition=disposition, cause=cause
        )

    def can_adjust(self, delta: int) -> bool:
        """An adjustment never takes on hand below zero nor below what is reserved or unavailable.

        Counting units up is always allowed: after backorders (or an offline till's shortfall)
        on hand can already sit below reserved, and a found unit must still be recordable.
        """
        if delta > 0:
            return True
        return self.on_hand + delta >= self.reserved + self.unavailable and self.on_hand + delta >= 0

    def adjust(self, delta: int, reason: str, reference: str, cause: Cause) -> None:
        check_delta(delta)
        if not reason:
            raise ReservationError("an adjustment needs a reason")
        if not self.can_adjust(delta):
            raise InsufficientStockError(
                f"adjusting {self.sku} at {self.location} by {delta} would leave on hand "
                f"{self.on_hand + delta} below reserved {self.reserved} + unavailable {self.unavailable}",
                sku=self.sku,
                location=self.location,
                on_hand=self.on_hand,
                reserved=self.reserved,
            )
        self.trigger_event(self.StockAdjusted, delta=delta, reason=reason, reference=reference, cause=cause)

    def count(
        self,
        counted: int,
        reason: str,
        reference: str,
        cause: Cause,
        counted_at: datetime | None = None,
    ) -> int:
        """Records a physical count of `counted` units as of `counted_at` (default: now).

        On hand becomes `counted` plus the movements recorded after `counted_at`. Unlike
        `adjust`, a count below what is reserved and unavailable is recorded: the units are not
        on the shelf whatever the ledger believed, and the shortfall must show. A count older
        than the last applied count moves nothing (kept for audit). Returns the delta.
        """
        if isinstance(counted, bool) or not isinstance(counted, int) or counted < 0:
            raise ReservationError(f"a count must be a whole number of units, not {counted!r}")
        if not reason:
            raise ReservationError("a count needs a reason")
        at = counted_at or datetime.now(UTC)
        if at.tzinfo is None:
            raise ReservationError("counted_at needs a time zone")
        moment = at.timestamp()
        last = getattr(self, "last_count_at", None)
        horizon = getattr(self, "horizon", None)
        stale = (last is not None and moment < last) or (horizon is not None and moment <= horizon)
        after = [] if stale else [m for m in self._movements() if m[0] > moment]
        delta = 0 if stale else counted + sum(int(m[2]) for m in after) - self.on_hand
        if delta:
            check_delta(delta)
        self.trigger_event(
            self.StockCounted,
            counted=counted,
            counted_at=at,
            delta=delta,
            accounted=[int(m[1]) for m in after],
            applied=not stale,
            reason=reason,
            reference=reference,
            cause=cause,
        )
        return delta

    def write_off_damaged(self, quantity: int, reference: str, cause: Cause) -> None:
        check_quantity(quantity)
        if quantity > self.unavailable:
            raise InsufficientStockError(
                f"cannot write off {quantity} damaged units of {self.sku} at {self.location}: "
                f"{self.unavailable} unavailable"
            )
        self.trigger_event(self.DamagedWrittenOff, quantity=quantity, reference=reference, cause=cause)

    def correct(
        self,
        corrects: dict[str, Any],
        on_hand_delta: int,
        unavailable_delta: int,
        reason: str,
        cause: Cause,
    ) -> None:
        """Posts a correction that names the movement it corrects.

        On the stream that holds the mis-posted movement this is its reversal; on the right
        stream it is the re-posting. A reversal may not take available below zero unless
        backorders are allowed, and a movement is reversed at most once.
        """
        is_reversal = corrects.get("sku") == self.sku and corrects.get("location") == self.location
        if is_reversal and str(corrects["version"]) in self.corrected:
            raise CorrectionError(f"movement {corrects} was already corrected")
        if on_hand_delta == 0 and unavailable_delta == 0:
            raise CorrectionError("a correction must change a quantity")
        new_on_hand = self.on_hand + on_hand_delta
        new_unavailable = self.unavailable + unavailable_delta
        if new_unavailable < 0 or (
            not self.backorders_allowed
            and new_on_hand - self.reserved - new_unavailable < 0
            and on_hand_delta < 0
        ):
            raise InsufficientStockError(
                f"correcting {self.sku} at {self.location} by {on_hand_delta} would oversell: "
                f"{self.available} available",
                sku=self.sku,
                location=self.location,
            )
        self.trigger_event(
            self.MovementCorrected,
            corrects=dict(corrects),
            on_hand_delta=on_hand_delta,
            unavailable_delta=unavailable_delta,
            reason=reason,
            cause=cause,
        )

    def configure_backorders(self, allowed: bool, cause: Cause) -> None:
        if allowed != self.allow_backorder:
            self.trigger_event(self.BackordersConfigured, allowed=allowed, cause=cause)


def uncovered(reservations: list[tuple[str, int]], short: int) -> list[tuple[str, int]]:
    """The reservations (id, units) a shortfall of `short` units leaves uncovered: the newest
    first, as the units were promised in order (first come, first covered)."""
    out = []
    for rid, held in reversed(reservations):
        if short <= 0:
            break
        n = min(short, held)
        if n > 0:
            out.append((rid, n))
            short -= n
    return out


def movement_effect(event: Any) -> tuple[int, int]:
    """(on_hand delta, unavailable delta) of a stock event, for corrections and audits; (0, 0)
    for a non-movement. Read from `ledger.effects.EFFECTS`."""
    effect = event_effect(event)
    return effect.on_hand, effect.unavailable


def fold_lots(lots: list[list[Any]] | None, event: Any) -> list[list[Any]] | None:
    """A SKU-location's incoming lots (`[due epoch, quantity, lead seconds]`, earliest due first)
    after a stock event; None when the event leaves them as they are.

    `StockExpected` adds a lot: due at `due_at` (none: at once), its lead the time from the
    event's moment to it. A receipt of expected units lands the earliest-due lots first
    (`ledger.policy` counts lots by their lead). The `ats` read model and the explanation keep
    lots with it (`projections`).
    """
    if isinstance(event, SkuLocation.StockExpected):
        at = float(event.timestamp.timestamp())
        due_at = getattr(event, "due_at", None)
        due = None if due_at is None else float(due_at.timestamp())
        lot = [at if due is None else due, int(event.quantity), 0.0 if due is None else max(0.0, due - at)]
        out = [*(lots or []), lot]
        out.sort(key=lambda x: x[0])  # stable: lots due together keep their order
        return out
    if isinstance(event, SkuLocation.StockReceived) and event.expected and lots:
        left = int(event.quantity)
        landed: list[list[Any]] = []
        for due, quantity, lead in lots:
            taken = min(left, quantity)
            left -= taken
            if quantity > taken:
                landed.append([due, quantity - taken, lead])
        return landed
    return None
