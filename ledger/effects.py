"""What each stock event does to the named quantities: the one table.

Every `SkuLocation` event changes `on_hand`, `reserved`, `unavailable` and `incoming` by
amounts that depend only on the event's own fields. `EFFECTS` declares those amounts once,
per event type name, reading the fields through a getter, so it serves a domain event
(`getattr`) and a stored event's JSON (`dict.get`) alike. The aggregate's apply, the read
model's fold (`projections.folds`), the reconciliation decoder (`adapters.reconciliation.facts`),
the explanation's terms and the movement a correction reverses all derive from it.

`incoming` never goes below zero: a receipt of expected units consumes at most what is incoming.
A new stock event is one new row here (and its class in `ledger.stock`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Get = Callable[[str], Any]


@dataclass(frozen=True)
class Effect:
    """The signed change a stock event makes to each quantity."""

    on_hand: int = 0
    reserved: int = 0
    unavailable: int = 0
    incoming: int = 0
    reservation_id: str | None = None  # the reservation whose holding `reserved` changes

    @property
    def available(self) -> int:
        """The change to `available` (= on_hand − reserved − unavailable)."""
        return self.on_hand - self.reserved - self.unavailable

    @property
    def is_movement(self) -> bool:
        """A physical movement: it changes what is on hand or unavailable."""
        return bool(self.on_hand or self.unavailable)

    def applied(
        self, on_hand: int, reserved: int, unavailable: int, incoming: int
    ) -> tuple[int, int, int, int]:
        """The four quantities after this effect."""
        return (
            on_hand + self.on_hand,
            reserved + self.reserved,
            unavailable + self.unavailable,
            max(0, incoming + self.incoming) if self.incoming < 0 else incoming + self.incoming,
        )


NONE = Effect()


def _q(g: Get) -> int:
    return int(g("quantity") or 0)


def _received(g: Get) -> Effect:
    # A receipt of expected (announced) units lowers incoming by the units received.
    return Effect(on_hand=_q(g), incoming=-_q(g) if g("expected") else 0)


def _sold(g: Get) -> Effect:
    rid = g("reservation_id")
    return Effect(on_hand=-_q(g), reserved=-_q(g) if rid is not None else 0, reservation_id=rid)


def _returned(g: Get) -> Effect:
    return Effect(on_hand=_q(g), unavailable=_q(g) if g("disposition") == "damaged" else 0)


EFFECTS: dict[str, Callable[[Get], Effect]] = {
    "StockReceived": _received,
    "StockExpected": lambda g: Effect(incoming=_q(g)),
    "StockReserved": lambda g: Effect(reserved=_q(g), reservation_id=g("reservation_id")),
    "ReservationReleased": lambda g: Effect(reserved=-_q(g), reservation_id=g("reservation_id")),
    "StockSold": _sold,
    "StockTransferredOut": lambda g: Effect(on_hand=-_q(g)),
    "StockTransferredIn": lambda g: Effect(on_hand=_q(g)),
    "StockReturned": _returned,
    "StockAdjusted": lambda g: Effect(on_hand=int(g("delta") or 0)),
    "StockCounted": lambda g: Effect(on_hand=int(g("delta") or 0)),
    "DamagedWrittenOff": lambda g: Effect(on_hand=-_q(g), unavailable=-_q(g)),
    "MovementCorrected": lambda g: Effect(
        on_hand=int(g("on_hand_delta") or 0), unavailable=int(g("unavailable_delta") or 0)
    ),
}


def effect_of(type_name: str, get: Get) -> Effect:
    """The effect of an event of type `type_name` whose fields `get` reads; none for other types."""
    rule = EFFECTS.get(type_name)
    return NONE if rule is None else rule(get)


def event_effect(event: Any) -> Effect:
    """The effect of a domain event (any object with the event's fields as attributes)."""
    return effect_of(type(event).__name__, lambda k: getattr(event, k, None))
