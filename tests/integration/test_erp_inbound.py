"""Inbound ERP messages through the inbox: goods receipts, transfers and cycle counts."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from adapters import erp
from adapters.config import Settings
from adapters.inbox import fingerprint
from bootstrap import Container, bootstrap
from ledger import commands as c
from ledger.bounds import stock_id
from ledger.ports import StaticLocations


def now() -> str:
    return datetime.now(UTC).isoformat()


@pytest.fixture
def container(database_url: str) -> Iterator[Container]:
    c = bootstrap(Settings(database_url=database_url), locations=StaticLocations({"online": ["WH1"]}))
    try:
        yield c
    finally:
        c.close()


def deliver(container: Container, kind: str, message: dict[str, Any]) -> dict[str, Any]:
    erp.SHAPES[kind].model_validate(message)
    stored = container.inbox.store(
        "erp", message["message_id"], kind, orjson.dumps(message), {}, fingerprint(message)
    )
    for _ in range(10):
        if not container.intake.step():
            break
    row = container.inbox.get(stored.row["id"])
    assert row is not None
    return row


def on_hand(container: Container, sku: str, location: str) -> tuple[int, int]:
    s = container.ledger.history.stock(sku, location)
    return (0, 0) if s is None else (s.on_hand, s.reserved)


def test_receipts_transfers_and_counts_move_stock_through_the_mappings(container: Container) -> None:
    container.mappings.set("erp", "location", "0100", "WH1", "test")
    container.mappings.set("erp", "location", "0200", "STORE1", "test")
    row = deliver(
        container,
        "goods-receipt",
        {
            "message_id": "m1",
            "receipt_id": "GR-1",
            "location": "0100",
            "lines": [{"sku": "SKU-A", "quantity": 30}, {"sku": "SKU-B", "quantity": 4}],
        },
    )
    assert row["status"] == "applied"
    deliver(
        container,
        "transfer",
        {
            "message_id": "m2",
            "transfer_id": "TR-1",
            "from_location": "0100",
            "to_location": "0200",
            "lines": [{"sku": "SKU-A", "quantity": 10}],
        },
    )
    assert on_hand(container, "SKU-A", "WH1") == (20, 0)
    assert on_hand(container, "SKU-A", "STORE1") == (10, 0)
    container.ledger.capture_order("o-1", "online", [{"line_id": "1", "sku": "SKU-A", "quantity": 5}])
    # The shelf holds 17: the count becomes an adjustment of -3 against what the ledger holds.
    row = deliver(
        container,
        "cycle-count",
        {
            "message_id": "m3",
            "count_id": "CC-1",
            "location": "0100",
            "counted_at": now(),
            "lines": [{"sku": "SKU-A", "counted": 17}, {"sku": "SKU-B", "counted": 4}],
        },
    )
    assert row["status"] == "applied" and row["reason"] is None
    # SKU-B's count matches on hand: decided by the writer, it appends nothing.
    assert [(x["type"], x["delta"]) for x in row["outcome"]["commands"]] == [
        ("CountStock", -3),
        ("CountStock", 0),
    ]
    assert on_hand(container, "SKU-A", "WH1") == (17, 5)
    s = container.ledger.history.stock("SKU-A", "WH1")
    assert s is not None
    last = list(container.ledger.history.events(s.id))[-1][1]
    assert type(last).__name__ == "StockCounted" and last.delta == -3 and last.reason == "cycle-count"
    assert last.cause["source"] == "erp" and last.cause["causation_id"] == str(row["id"])


def test_a_repeated_message_id_applies_once_and_a_count_below_reserved_is_recorded_as_a_shortfall(
    container: Container,
) -> None:
    msg = {
        "message_id": "m1",
        "receipt_id": "GR-1",
        "location": "WH1",
        "lines": [{"sku": "SKU-A", "quantity": 3}],
    }
    deliver(container, "goods-receipt", msg)
    again = deliver(container, "goods-receipt", msg)
    assert again["deliveries"] == 2
    # The same receipt under a new message id is a duplicate of facts already recorded.
    dup = deliver(container, "goods-receipt", {**msg, "message_id": "m1-resent"})
    assert dup["status"] == "duplicate"
    assert on_hand(container, "SKU-A", "WH1") == (3, 0)
    container.ledger.capture_order("o-1", "online", [{"line_id": "1", "sku": "SKU-A", "quantity": 2}])
    taken = now()
    row = deliver(
        container,
        "cycle-count",
        {
            "message_id": "m2",
            "count_id": "CC-1",
            "location": "WH1",
            "counted_at": taken,
            "lines": [{"sku": "SKU-A", "counted": 1}],
        },
    )
    # The shelf holds 1 while 2 are reserved: the count is a fact, recorded, and the shortfall named.
    assert row["status"] == "applied" and "SKU-A at WH1: counted 1 below reserved" in row["reason"]
    assert on_hand(container, "SKU-A", "WH1") == (1, 2)
    s = container.ledger.history.stock("SKU-A", "WH1")
    assert s is not None and s.available == -1
    # The same count delivered again under a new message id changes nothing.
    again = deliver(
        container,
        "cycle-count",
        {
            "message_id": "m2-resent",
            "count_id": "CC-1",
            "location": "WH1",
            "counted_at": taken,
            "lines": [{"sku": "SKU-A", "counted": 1}],
        },
    )
    assert again["status"] == "duplicate"
    assert on_hand(container, "SKU-A", "WH1") == (1, 2)


def test_a_count_on_a_hot_sku_is_decided_in_line_with_the_traffic_around_it(container: Container) -> None:
    """The count is absolute at its place in the writer's queue: movements before it are counted
    over, movements after it add to it, and nothing is retried or refused for a version change."""
    ledger = container.ledger
    ledger.receive("HOT", "WH1", 100, "seed")
    before = [
        ledger.submit(c.SellDirect(sku="HOT", location="WH1", quantity=1, reference=f"before-{i}"))
        for i in range(40)
    ]
    count = ledger.submit(c.CountStock(sku="HOT", location="WH1", counted=50, reference="CC-hot"))
    after = [
        ledger.submit(c.ReceiveStock(sku="HOT", location="WH1", quantity=2, reference=f"after-{i}"))
        for i in range(40)
    ]
    for f in before + after:
        f.result(timeout=60)
    answer = count.result(timeout=60)
    assert answer["delta"] == 50 - 60 and answer["shortfall"] == 0
    assert on_hand(container, "HOT", "WH1") == (50 + 80, 0)
    s = container.ledger.history.stock("HOT", "WH1")
    assert s is not None
    counts = [e for _, e in ledger.history.events(s.id, limit=1000) if type(e).__name__ == "StockCounted"]
    assert [(e.delta, e.reason, e.reference) for e in counts] == [(-10, "cycle-count", "CC-hot")]
    # A count that matches moves nothing; a repeat of a count is its first answer and appends nothing.
    assert (
        ledger.execute(c.CountStock(sku="HOT", location="WH1", counted=130, reference="CC-2"))["delta"] == 0
    )
    assert on_hand(container, "HOT", "WH1") == (130, 0)
    top = ledger.app.recorder.max_position()
    assert ledger.execute(c.CountStock(sku="HOT", location="WH1", counted=50, reference="CC-hot"))[
        "duplicate"
    ]
    assert ledger.app.recorder.max_position() == top


@pytest.mark.parametrize(
    "kind,message",
    [
        ("goods-receipt", {"message_id": "m", "receipt_id": "r", "location": "W", "lines": []}),
        (
            "goods-receipt",
            {"message_id": "m", "receipt_id": "r", "location": "W", "lines": [{"sku": "A", "quantity": 0}]},
        ),
        (
            "goods-receipt",
            {
                "message_id": "m",
                "receipt_id": "r",
                "location": "W",
                "lines": [{"sku": "A", "quantity": 1}, {"sku": "A", "quantity": 2}],
            },
        ),
        (
            "transfer",
            {
                "message_id": "m",
                "transfer_id": "t",
                "from_location": "W",
                "to_location": "W",
                "lines": [{"sku": "A", "quantity": 1}],
            },
        ),
        (
            "cycle-count",
            {
                "message_id": "m",
                "count_id": "c",
                "location": "W",
                "counted_at": "yesterday",
                "lines": [{"sku": "A", "counted": 1}],
            },
        ),
        (
            "cycle-count",
            {
                "message_id": "m",
                "count_id": "c",
                "location": "W",
                "counted_at": "2026-11-20T08:00:00Z",
                "lines": [{"sku": "A", "counted": -1}],
            },
        ),
        (
            "cycle-count",
            {
                "message_id": "m\n",
                "count_id": "c",
                "location": "W",
                "counted_at": "2026-11-20T08:00:00Z",
                "lines": [{"sku": "A", "counted": 1}],
            },
        ),
    ],
)
def test_malformed_erp_messages_do_not_validate(kind: str, message: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        erp.SHAPES[kind].model_validate(message)


def _transfer(container: Container, message_id: str) -> dict[str, Any]:
    return deliver(
        container,
        "transfer",
        {
            "message_id": message_id,
            "transfer_id": f"TR-{message_id}",
            "from_location": "0100",
            "to_location": "0200",
            "lines": [{"sku": "SKU-A", "quantity": 10}],
        },
    )


def test_a_transfer_records_both_legs_and_a_wrong_destination_remaps_only_the_destination(
    container: Container,
) -> None:
    mappings, remapper = container.mappings, container.remapper
    mappings.set("erp", "location", "0100", "WH1", "test")
    mappings.set("erp", "location", "0200", "STORE1", "test")  # wrong: 0200 is STORE2
    container.ledger.receive("SKU-A", "WH1", 30, "seed-wh1")
    assert _transfer(container, "t1")["status"] == "applied"
    _, event = list(container.ledger.history.events(stock_id("SKU-A", "STORE1")))[-1]
    legs = {(u["kind"], u["external_id"], u.get("value")) for u in event.cause["mappings"]}
    assert legs == {("sku", "SKU-A", "SKU-A"), ("location", "0100", "WH1"), ("location", "0200", "STORE1")}

    mappings.set("erp", "location", "0200", "STORE2", "test")
    answer = remapper.remap("erp", "location", "0200")
    assert (answer["messages"], answer["movements"], answer["failures"]) == (1, 1, [])
    assert on_hand(container, "SKU-A", "WH1") == (20, 0)  # the source leg was right: untouched
    assert on_hand(container, "SKU-A", "STORE1") == (0, 0)
    assert on_hand(container, "SKU-A", "STORE2") == (10, 0)
    assert remapper.remap("erp", "location", "0200")["movements"] == 0  # corrected once


def test_a_wrong_transfer_source_remaps_only_the_source_and_keeps_what_the_destination_received(
    container: Container,
) -> None:
    mappings, remapper = container.mappings, container.remapper
    mappings.set("erp", "location", "0100", "WH1", "test")  # wrong: 0100 is WH2
    mappings.set("erp", "location", "0200", "STORE1", "test")
    container.ledger.receive("SKU-A", "WH1", 30, "seed-wh1")
    container.ledger.receive("SKU-A", "WH2", 30, "seed-wh2")
    assert _transfer(container, "t2")["status"] == "applied"
    assert on_hand(container, "SKU-A", "WH1") == (20, 0)

    mappings.set("erp", "location", "0100", "WH2", "test")
    answer = remapper.remap("erp", "location", "0100")
    assert (answer["messages"], answer["movements"], answer["failures"]) == (1, 1, [])
    assert on_hand(container, "SKU-A", "WH1") == (30, 0)
    assert on_hand(container, "SKU-A", "WH2") == (20, 0)
    assert on_hand(container, "SKU-A", "STORE1") == (10, 0)  # the units really arrived there


def test_a_back_dated_count_keeps_the_units_shipped_after_it_and_an_older_count_moves_nothing(
    container: Container,
) -> None:
    """Counted 19 before 3 units shipped, delivered after: on hand 16, not 19 (REFERENCE, failure 3)."""
    ledger = container.ledger
    ledger.receive("SKU-C", "WH1", 20, "seed-c")
    taken = now()
    for i in range(3):
        ledger.execute(c.SellDirect(sku="SKU-C", location="WH1", quantity=1, reference=f"ship-c-{i}"))
    msg = {"count_id": "CC-back", "location": "WH1", "lines": [{"sku": "SKU-C", "counted": 19}]}
    row = deliver(container, "cycle-count", {**msg, "message_id": "cc-back", "counted_at": taken})
    assert row["status"] == "applied", row
    assert on_hand(container, "SKU-C", "WH1") == (16, 0)
    s = ledger.history.stock("SKU-C", "WH1")
    assert s is not None
    counted = list(ledger.history.events(s.id))[-1][1]
    assert type(counted).__name__ == "StockCounted" and len(counted.accounted) == 3
    assert counted.counted_at == datetime.fromisoformat(taken)
    # A count taken before that one, delivered later, is kept for audit and moves nothing.
    older = {**msg, "count_id": "CC-older", "lines": [{"sku": "SKU-C", "counted": 2}]}
    deliver(
        container, "cycle-count", {**older, "message_id": "cc-older", "counted_at": "2026-01-01T00:00:00Z"}
    )
    assert on_hand(container, "SKU-C", "WH1") == (16, 0)
    last = list(ledger.history.events(s.id))[-1][1]
    assert type(last).__name__ == "StockCounted" and last.applied is False and last.counted == 2
