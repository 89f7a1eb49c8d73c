"""Transfers in transit: dispatched units leave the source and are incoming at the destination;
received lands them; a receipt of a transfer never dispatched is refused (no units invented)."""

from __future__ import annotations

import pytest

from ledger import commands as c
from ledger.errors import InsufficientStockError
from tests.unit.test_sourcing import Store


def leg(status: str | None, quantity: int = 4) -> c.TransferStock:
    return c.TransferStock(
        sku="A", from_location="W1", to_location="W2", quantity=quantity, reference="TR-1", status=status
    )


def test_each_leg_of_a_transfer_has_its_own_key() -> None:
    assert [leg(s).key for s in (None, "dispatched", "received")] == [
        "transfer-line:TR-1/A/W1/W2",
        "transfer-line:TR-1/A/W1/W2/dispatched",
        "transfer-line:TR-1/A/W1/W2/received",
    ]


def test_dispatched_then_received_moves_units_through_incoming_and_fills_backorders() -> None:
    store = Store({"web": ["W2"]})
    store.receive("W1", 10)
    store.capture("o-1", 3, partial=True)  # nothing at W2 yet: backordered
    store.decide(leg("dispatched"))
    w2 = store.level("A", "W2")
    assert store.stock("A", "W1") == (6, 0) and w2 is not None and (w2.on_hand, w2.incoming) == (0, 4)
    with pytest.raises(InsufficientStockError):
        store.decide(leg("received", quantity=5))  # more than is incoming
    store.decide(leg("received"))
    w2 = store.level("A", "W2")
    assert w2 is not None and (w2.on_hand, w2.incoming, w2.reserved) == (4, 0, 3)


def test_a_received_leg_with_nothing_dispatched_is_refused() -> None:
    store = Store()
    store.receive("W1", 10)
    with pytest.raises(InsufficientStockError):
        store.decide(leg("received"))
    assert store.stock("A", "W2") == (0, 0)
