"""A hold (`POST /v1/reservations`): units reserved for a checkout until an expiry, two-phase.

A hold is `held` (pending) once its lines are reserved, allocated across the channel's group
like an order's lines (`ledger.sourcing`). It then ends one of three ways:
- `taken`: an order naming it (`reservation_id`) took its units over; what the order did not
  take is released;
- `released`: voided (`DELETE`);
- `expired`: not taken over before `expires_at`, its units were released by themselves.

An order naming a hold that had already expired is `late`: it is sourced like any order, and
the hold records it (the exception names the order).

Each line's units are held at the SKU-locations under `hold_reservation_id(hold, line)`, which
never equals an order line's reservation.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from ledger.bounds import hold_id

Cause = dict[str, Any]


class Hold(Aggregate):
    @staticmethod
    def create_id(reservation_id: str, **_: Any) -> UUID:
        return hold_id(reservation_id)

    class Event(Aggregate.Event):
        cause: Cause

    class Placed(Aggregate.Created):
        """The hold's lines, each with its allocations `{location: units}`."""

        reservation_id: str
        channel: str
        expires_at: datetime
        lines: list[dict[str, Any]]
        cause: Cause

    def __init__(
        self,
        reservation_id: str,
        channel: str,
        expires_at: datetime,
        lines: list[dict[str, Any]],
        cause: Cause,
    ) -> None:
        self.reservation_id = reservation_id
        self.channel = channel
        self.expires_at = expires_at
        # line_id -> {line_id, sku, quantity, location, allocated: {location: units placed},
        #             allocations: {location: units still held}}
        self.lines: dict[str, dict[str, Any]] = {
            x["line_id"]: {**x, "allocated": dict(x["allocations"]), "allocations": dict(x["allocations"])}
            for x in lines
        }
        self.status = "held"
        self.order_id: str | None = None  # the order that took it over
        self.late_orders: list[str] = []  # orders that named it after it expired

    @classmethod
    def place(
        cls,
        reservation_id: str,
        channel: str,
        expires_at: datetime,
        lines: list[dict[str, Any]],
        cause: Cause,
    ) -> Hold:
        return cls._create(
            cls.Placed,
            reservation_id=reservation_id,
            channel=channel,
            expires_at=expires_at,
            lines=lines,
            cause=cause,
        )

    @property
    def held(self) -> int:
        return sum(sum(x["allocations"].values()) for x in self.lines.values())

    def expired_by(self, now: datetime | None) -> bool:
        """Whether the hold is over because of its expiry at `now` (or was released by it)."""
        if self.status == "expired":
            return True
        return self.status == "held" and now is not None and now >= self.expires_at

    # ----------------------------------------------------------------- events

    class Released(Event):
        """Units of a line given back at a location: `reason` is `cancelled` (voided),
        `expired`, or `taken` (the order took them over)."""

        line_id: str
        location: str
        quantity: int
        reason: str

        def apply(self, h: Hold) -> None:
            allocations = h.lines[self.line_id]["allocations"]
            allocations[self.location] = allocations.get(self.location, 0) - self.quantity
            if allocations[self.location] <= 0:
                del allocations[self.location]
            if self.reason == "expired" and h.status == "held" and h.held == 0:
                h.status = "expired"

    class TakenOver(Event):
        order_id: str

        def apply(self, h: Hold) -> None:
            h.status, h.order_id = "taken", self.order_id

    class Voided(Event):
        def apply(self, h: Hold) -> None:
            h.status = "released"

    class LateOrderRecorded(Event):
        """An order named the hold after it expired. Version 2 added `reservation_id` and
        `channel` (what the `late-order` exception names); None in version 1."""

        class_version = 2

        order_id: str
        reservation_id: str | None
        channel: str | None

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state.setdefault("reservation_id", None)
            state.setdefault("channel", None)

        def apply(self, h: Hold) -> None:
            if h.status == "held":
                h.status = "expired"
            h.late_orders.append(self.order_id)

    # --------------------------------------------------------------- commands

    def record_release(self, line_id: str, location: str, quantity: int, reason: str, cause: Cause) -> None:
        line = self.lines.get(line_id)
        held = 0 if line is None else int(line["allocations"].get(location, 0))
        n = min(quantity, held)
        if n > 0:
            self.trigger_event(
                self.Released, line_id=line_id, location=location, quantity=n, reason=reason, cause=cause
            )

    def take_over(self, order_id: str, cause: Cause) -> None:
        self.trigger_event(self.TakenOver, order_id=order_id, cause=cause)

    def void(self, cause: Cause) -> None:
        self.trigger_event(self.Voided, cause=cause)

    def record_late_order(self, order_id: str, cause: Cause) -> None:
        self.trigger_event(
            self.LateOrderRecorded,
            order_id=order_id,
            reservation_id=self.reservation_id,
            channel=self.channel,
            cause=cause,
        )

    def view(self) -> dict[str, Any]:
        return {
            "reservation_id": self.reservation_id,
            "channel": self.channel,
            "status": self.status,
            "expires_at": self.expires_at.isoformat(),
            "order_id": self.order_id,
            "late_orders": list(self.late_orders),
            "lines": [
                {
                    "line_id": x["line_id"],
                    "sku": x["sku"],
                    "quantity": x["quantity"],
                    "location": x.get("location"),
                    "allocations": [{"location": k, "quantity": v} for k, v in x["allocated"].items()],
                    "held": sum(x["allocations"].values()),
                }
                for x in self.lines.values()
            ],
        }
