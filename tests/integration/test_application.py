"""The ledger's application service on a real store: each test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from adapters.persistence.urls import ledger_env
from ledger import commands as c
from ledger.application import SNAPSHOT_INTERVAL
from ledger.bounds import order_id as order_uuid
from ledger.bounds import stock_id
from ledger.errors import (
    CorrectionError,
    IdempotencyConflictError,
    InsufficientStockError,
    InvalidCommandError,
    OrderConflictError,
    OrderNotFoundError,
    ReservationError,
    StockNotFoundError,
    VersionConflictError,
)
from ledger.ports import StaticLocations
from ledger.service import Ledger

GROUPS = StaticLocations({"online": ["wh-1", "store-2"]})
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def open_ledger(database_url):
    opened: list[Ledger] = []

    def open_() -> Ledger:
        ledger = Ledger(ledger_env(database_url), GROUPS)
        opened.append(ledger)
        return ledger

    yield open_
    for ledger in opened:
        ledger.close()


@pytest.fixture
def ledger(open_ledger) -> Ledger:
    return open_ledger()


def sku() -> str:
    return "SKU-" + uuid.uuid4().hex[:8]


def position(ledger: Ledger) -> int:
    return ledger.app.recorder.max_position()


def stock(ledger: Ledger, s: str, location: str) -> tuple[int, int, int]:
    x = ledger.history.stock(s, location)
    assert x is not None
    return x.on_hand, x.reserved, x.unavailable


# ------------------------------------------------------------------ stock verbs


def test_receiving_stock_opens_the_sku_location_and_raises_on_hand(ledger):
    s = sku()
    out = ledger.receive(s, "wh-1", 5, "po-1", cause={"correlation_id": "corr-1"})
    assert (out["on_hand"], out["available"], out["version"]) == (5, 5, 2)
    assert stock(ledger, s, "wh-1") == (5, 0, 0)
    [(_, opened), (_, received)] = list(ledger.history.events(stock_id(s, "wh-1")))
    assert received.cause == {"correlation_id": "corr-1"} and received.reference == "po-1"


def test_adjusting_stock_counts_up_and_down_but_never_below_reserved(ledger):
    s = sku()
    ledger.receive(s, "wh-1", 5, "po-1")
    ledger.reserve(s, "wh-1", "o-1", "1", 3)
    assert ledger.adjust(s, "wh-1", -2, "cycle-count", "cc-1")["on_hand"] == 3
    with pytest.raises(InsufficientStockError):
        ledger.adjust(s, "wh-1", -1, "cycle-count", "cc-2")
    with pytest.raises(InsufficientStockError):
        ledger.adjust(sku(), "wh-1", -1, "cycle-count", "cc-3")
    assert ledger.adjust(s, "wh-1", 4, "found", "cc-4")["available"] == 4


def test_a_transfer_moves_units_between_two_streams_in_one_transaction(ledger):
    s = sku()
    ledger.receive(s, "wh-1", 5, "po-1")
    before = position(ledger)
    out = ledger.transfer(s, "wh-1", "store-2", 3, "tr-1")
    assert (out["from"]["on_hand"], out["to"]["on_hand"]) == (2, 3)
    assert position(ledger) == before + 3  # out, opened, in: all in one save
    src = [e for _, e in ledger.history.events(stock_id(s, "wh-1"))][-1]
    dst = [e for _, e in ledger.history.events(stock_id(s, "store-2"))][-1]
    assert (type(src).__name__, type(dst).__name__) == ("StockTransferredOut", "StockTransferredIn")
    assert src.transfer_id == dst.transfer_id == "tr-1"


def test_a_refused_transfer_changes_neither_stream(ledger):
    s = sku()
    ledger.receive(s, "wh-1", 2, "po-1")
    ledger.reserve(s, "wh-1", "o-1", "1", 1)
    before = position(ledger)
    with pytest.raises(InsufficientStockError):
        ledger.transfer(s, "wh-1", "store-2", 2, "tr-1")
    with pytest.raises(InvalidCommandError):
        ledger.transfer(s, "wh-1", "wh-1", 1, "tr-2")
    assert position(ledger) == before
    assert ledger.history.stock(s, "store-2") is None


def test_reservations_are_released_sold_and_expired(ledger):
    s = sku()
    ledger.receive(s, "wh-1", 10, "po-1")
    ledger.reserve(s, "wh-1", "cart-1", "1", 3, expires_at=T0)
    ledger.reserve(s, "wh-1", "o-2", "1", 4)
    with pytest.raises(InsufficientStockError) as refused:
        ledger.reserve(s, "wh-1", "o-3", "1", 4)
    assert refused.value.code == "insufficient-stock"
    ledger.execute(
        c.ReleaseReservation(
            sku=s, location="wh-1", reservation_id="o-2/1", quantity=1, reason="cancelled", reference="rel-1"
        )
    )
    with pytest.raises(ReservationError):
        ledger.execute(
            c.ReleaseReservation(
                sku=s,
                location="wh-1",
                reservation_id="o-2/1",
                quantity=4,
                reason="cancelled",
                reference="rel-2",
            )
        )
    ledger.execute(
        c.SellDirect(sku=s, location="wh-1", quantity=2, reference="ship-1", reservation_id="o-2/1")
    )
    assert stock(ledger, s, "wh-1") == (8, 4, 0)
    assert ledger.release_expired(s, "wh-1", T0 - timedelta(minutes=1))["released"] == 0
    assert ledger.release_expired(s, "wh-1", T0)["released"] == 3
    assert stock(ledger, s, "wh-1") == (8, 1, 0)
    with pytest.raises(StockNotFoundError):
        ledger.release_expired(sku(), "wh-1", T0)


def test_an_expiry_survives_a_restart(open_ledger):
    s = sku()
    first = open_ledger()
    first.receive(s, "wh-1", 2, "po-1")
    first.reserve(s, "wh-1", "cart-1", "1", 2, expires_at=T0)
    first.close()
    again = open_ledger()
    assert again.release_expired(s, "wh-1", T0 + timedelta(seconds=1))["available"] == 2


def test_store_sales_returns_write_offs_and_backorders(ledger):
    s = sku()
    ledger.receive(s, "store-2", 2, "po-1")
    with pytest.raises(InsufficientStockError):
        ledger.execute(c.SellDirect(sku=s, location="store-2", quantity=3, reference="till-1"))
    ledger.execute(c.ConfigureBackorders(sku=s, location="store-2", allowed=True))
    ledger.execute(c.SellDirect(sku=s, location="store-2", quantity=3, reference="till-2"))
    ledger.execute(
        c.ReturnToStock(sku=s, location="store-2", quantity=2, disposition="damaged", reference="ret-1")
    )
    assert stock(ledger, s, "store-2") == (1, 0, 2)
    ledger.execute(c.WriteOffDamaged(sku=s, location="store-2", quantity=2, reference="wo-1"))
    assert stock(ledger, s, "store-2") == (-1, 0, 0)


def test_a_correction_moves_a_mis_posted_receipt_and_names_it_once(ledger):
    s = sku()
    version = ledger.receive(s, "wrong-store", 4, "po-9")["version"]
    fix = c.CorrectMovement(
        sku=s,
        location="wrong-store",
        version=version,
        reason="mapping",
        reference="fix-1",
        to_location="wh-1",
    )
    out = ledger.execute(fix)
    assert (out["reversed"]["on_hand"], out["reposted"]["on_hand"]) == (0, 4)
    [(_, reposted)] = [(p, e) for p, e in ledger.history.events(stock_id(s, "wh-1"))][-1:]
    assert reposted.corrects["version"] == version and reposted.corrects["reference"] == "po-9"
    with pytest.raises(CorrectionError):
        ledger.execute(
            c.CorrectMovement(sku=s, location="wrong-store", version=version, reason="m", reference="fix-2")
        )
    with pytest.raises(CorrectionError):
        ledger.execute(
            c.CorrectMovement(sku=s, location="wrong-store", version=1, reason="m", reference="fix-3")
        )


# ------------------------------------------------------------------ orders


def capture(ledger: Ledger, order: str, *lines: tuple[str, str, int, str | None], **kw):
    return ledger.capture_order(
        order,
        "online",
        [{"line_id": lid, "sku": s, "quantity": q, "location": loc} for lid, s, q, loc in lines],
        **kw,
    )


def test_capturing_an_order_reserves_each_line_at_its_location_in_one_transaction(ledger):
    a, b = sku(), sku()
    ledger.receive(a, "wh-1", 1, "po-a")
    ledger.receive(a, "store-2", 5, "po-a2")
    ledger.receive(b, "store-2", 5, "po-b")
    before = position(ledger)
    out = capture(
        ledger, "1001", ("1", a, 2, None), ("2", b, 1, "store-2"), external_refs={"shopify": "gid://1"}
    )
    assert out["stage"] == "reserved"
    assert [x["location"] for x in out["lines"]] == ["store-2", "store-2"]  # wh-1 has too few
    assert position(ledger) == before + 5  # order captured + 2 line reservations + 2 stock reservations
    assert stock(ledger, a, "store-2") == (5, 2, 0)
    assert ledger.history.order("1001").external_refs == {"shopify": "gid://1"}


def test_a_refused_order_leaves_no_event_anywhere(ledger):
    a, b = sku(), sku()
    ledger.receive(a, "wh-1", 5, "po-a")
    ledger.receive(b, "wh-1", 1, "po-b")
    before = position(ledger)
    with pytest.raises(InsufficientStockError) as refused:
        capture(ledger, "1002", ("1", a, 2, "wh-1"), ("2", b, 2, "wh-1"))
    assert refused.value.details["lines"] == [{"line_id": "2", "sku": b, "quantity": 2}]
    assert position(ledger) == before
    assert ledger.history.order("1002") is None
    assert stock(ledger, a, "wh-1") == (5, 0, 0)


def test_a_partial_capture_keeps_unreservable_lines_unreserved(ledger):
    a = sku()
    ledger.receive(a, "wh-1", 1, "po-a")
    out = capture(ledger, "1003", ("1", a, 1, None), ("2", a, 1, None), allow_partial=True)
    assert out["stage"] == "captured"
    assert [x["reserved"] for x in out["lines"]] == [1, 0]


def test_capturing_the_same_order_again_answers_the_first_capture_and_other_lines_conflict(ledger):
    a = sku()
    ledger.receive(a, "wh-1", 5, "po-a")
    first = capture(ledger, "1004", ("1", a, 2, "wh-1"))
    before = position(ledger)
    assert capture(ledger, "1004", ("1", a, 2, "wh-1")) == first
    with pytest.raises(OrderConflictError):
        capture(ledger, "1004", ("1", a, 3, "wh-1"))
    assert position(ledger) == before and stock(ledger, a, "wh-1") == (5, 2, 0)


def test_an_order_ships_partially_then_split_across_locations(ledger):
    a = sku()
    ledger.receive(a, "wh-1", 3, "po-1")
    ledger.receive(a, "store-2", 3, "po-2")
    capture(ledger, "1005", ("1", a, 3, "wh-1"))
    assert ledger.ship("1005", "s1", [{"line_id": "1", "quantity": 1}])["stage"] == "partially_shipped"
    assert stock(ledger, a, "wh-1") == (2, 2, 0)
    out = ledger.ship(
        "1005",
        "s2",
        [{"line_id": "1", "quantity": 1}, {"line_id": "1", "quantity": 1, "location": "store-2"}],
    )
    assert out["stage"] == "shipped"
    assert stock(ledger, a, "wh-1") == (1, 0, 0)  # the reservation moved with the unit shipped elsewhere
    assert stock(ledger, a, "store-2") == (2, 0, 0)
    with pytest.raises(OrderConflictError):
        ledger.ship("1005", "s3", [{"line_id": "1", "quantity": 1}])
    with pytest.raises(OrderNotFoundError):
        ledger.ship("no-such-order", "s1", [{"line_id": "1", "quantity": 1}])


def test_cancelling_a_line_then_the_order_releases_the_reservations(ledger):
    a, b = sku(), sku()
    ledger.receive(a, "wh-1", 5, "po-a")
    ledger.receive(b, "wh-1", 5, "po-b")
    capture(ledger, "1006", ("1", a, 2, "wh-1"), ("2", b, 3, "wh-1"))
    out = ledger.cancel("1006", "customer", [{"line_id": "2", "quantity": 1}], reference="c-1")
    assert out["stage"] == "partially_cancelled"
    assert stock(ledger, b, "wh-1") == (5, 2, 0)
    assert ledger.cancel("1006", "customer")["stage"] == "cancelled"
    assert stock(ledger, a, "wh-1") == (5, 0, 0) and stock(ledger, b, "wh-1") == (5, 0, 0)
    before = position(ledger)
    ledger.cancel("1006", "customer")
    assert position(ledger) == before


def test_returns_restock_or_quarantine_and_refunds_are_settled(ledger):
    a = sku()
    ledger.receive(a, "wh-1", 3, "po-a")
    capture(ledger, "1007", ("1", a, 3, "wh-1"))
    ledger.ship("1007", "s1", [{"line_id": "1", "quantity": 3}])
    out = ledger.return_items(
        "1007",
        "r1",
        [
            {"line_id": "1", "quantity": 1, "disposition": "restock"},
            {"line_id": "1", "quantity": 1, "disposition": "damaged"},
        ],
    )
    assert out["stage"] == "partially_returned"
    assert stock(ledger, a, "wh-1") == (2, 0, 1)
    with pytest.raises(OrderConflictError):
        ledger.return_items("1007", "r2", [{"line_id": "1", "quantity": 2, "disposition": "restock"}])
    ledger.execute(c.RecordRefund(order_id="1007", refund_id="rf-1", amount="10.00", currency="EUR"))
    ledger.execute(c.SettleRefund(order_id="1007", refund_id="rf-1", settlement_reference="bank-1"))
    o = ledger.history.order("1007")
    assert o.refunds["rf-1"]["status"] == "settled"
    assert o.stage == "refunded" and o.open_work == ["post", "invoice"]  # not settled while work is open


def test_erp_attempts_posting_invoice_status_and_correlation_ids(ledger):
    a = sku()
    ledger.receive(a, "wh-1", 1, "po-a")
    capture(ledger, "1008", ("1", a, 1, "wh-1"))
    ledger.execute(c.RecordErpFailure(order_id="1008", document="sales-order", attempt=1, error="HTTP 503"))
    ledger.execute(
        c.RecordErpPosting(order_id="1008", document="sales-order", attempts=2, erp_reference="SO-1")
    )
    ledger.execute(c.ObservePlatformStatus(order_id="1008", status={"financial_status": "refunded"}))
    ledger.execute(c.AddCorrelationIds(order_id="1008", ids={"pos": "R-1"}))
    o = ledger.history.order("1008")
    assert o.stage == "posted"
    assert o.erp["attempts"] == 2 and o.external_refs == {"erp": "SO-1", "pos": "R-1"}
    assert o.platform_status == {"financial_status": "refunded"}
    ledger.ship("1008", "s1", [{"line_id": "1", "quantity": 1}])
    assert ledger.execute(c.InvoiceOrder(order_id="1008", invoice_id="INV-1"))["stage"] == "invoiced"


# ------------------------------------------------------------------ idempotency


def test_a_repeated_command_answers_its_first_outcome_and_appends_nothing(ledger):
    s = sku()
    first = ledger.receive(s, "wh-1", 5, "po-1")
    ledger.receive(s, "wh-1", 1, "po-2")
    before = position(ledger)
    again = ledger.receive(s, "wh-1", 5, "po-1")
    assert again == {**first, "duplicate": True}
    assert position(ledger) == before and stock(ledger, s, "wh-1") == (6, 0, 0)
    with pytest.raises(IdempotencyConflictError):
        ledger.receive(s, "wh-1", 6, "po-1")
    assert position(ledger) == before


def test_duplicates_in_one_batch_append_once(ledger):
    s = sku()
    cmd = c.ReceiveStock(sku=s, location="wh-1", quantity=2, reference="po-1")
    futures = [ledger.submit(cmd) for _ in range(20)]
    outcomes = [f.result(timeout=30) for f in futures]
    assert sum(1 for o in outcomes if not o.get("duplicate")) == 1
    assert stock(ledger, s, "wh-1") == (2, 0, 0)


def test_a_repeat_after_a_restart_appends_nothing(open_ledger):
    s = sku()
    first = open_ledger()
    a = first.receive(s, "wh-1", 5, "po-1")
    t = first.transfer(s, "wh-1", "store-2", 2, "tr-1")
    first.close()
    again = open_ledger()
    before = position(again)
    assert again.receive(s, "wh-1", 5, "po-1") == {**a, "duplicate": True}
    assert again.transfer(s, "wh-1", "store-2", 2, "tr-1") == {**t, "duplicate": True}
    assert position(again) == before


def test_a_repeat_days_later_after_many_other_commands_appends_nothing(ledger):
    s = sku()
    first = ledger.receive(s, "wh-1", 5, "po-first")
    futures = [
        ledger.submit(c.ReceiveStock(sku=sku(), location="wh-1", quantity=1, reference=f"po-{i}"))
        for i in range(300)
    ]
    for f in futures:
        f.result(timeout=60)
    ledger.writer.evict()  # the writer's cache is long gone by then
    before = position(ledger)
    assert ledger.receive(s, "wh-1", 5, "po-first") == {**first, "duplicate": True}
    assert position(ledger) == before


# ------------------------------------------------------------------ long streams


def test_a_stream_longer_than_the_snapshot_interval_loads_from_a_snapshot(open_ledger):
    s = sku()
    ledger = open_ledger()
    futures = [
        ledger.submit(c.ReceiveStock(sku=s, location="wh-1", quantity=1, reference=f"po-{i}"))
        for i in range(SNAPSHOT_INTERVAL + 20)
    ]
    for f in futures:
        f.result(timeout=120)
    agg_id = stock_id(s, "wh-1")
    snaps = list(ledger.app.snapshots.get(agg_id))
    assert snaps and snaps[-1].originator_version >= SNAPSHOT_INTERVAL
    ledger.close()
    fresh = open_ledger()
    x = fresh.history.stock(s, "wh-1")
    assert (x.on_hand, x.version) == (SNAPSHOT_INTERVAL + 20, SNAPSHOT_INTERVAL + 21)
    assert fresh.receive(s, "wh-1", 1, "po-after")["on_hand"] == SNAPSHOT_INTERVAL + 21
    assert fresh.history.order("never") is None and order_uuid("never") != agg_id


def test_a_correction_may_name_a_movement_decided_earlier_in_the_same_batch(ledger):
    s = sku()
    warmup = [
        ledger.submit(c.ReceiveStock(sku=sku(), location="wh-1", quantity=1, reference=f"w-{i}"))
        for i in range(50)
    ]
    receipt = ledger.submit(c.ReceiveStock(sku=s, location="wrong-store", quantity=4, reference="po-1"))
    fix = ledger.submit(
        c.CorrectMovement(
            sku=s, location="wrong-store", version=2, reason="mapping", reference="fix-1", to_location="wh-1"
        )
    )
    for f in warmup:
        f.result(timeout=30)
    assert receipt.result(timeout=30)["on_hand"] == 4
    out = fix.result(timeout=30)
    assert (out["reversed"]["on_hand"], out["reposted"]["on_hand"]) == (0, 4)


def test_a_shipment_that_fails_half_way_changes_nothing_and_its_batch_still_commits(ledger):
    a, b = sku(), sku()
    ledger.receive(a, "wh-1", 2, "po-a")
    ledger.receive(b, "wh-1", 2, "po-b")
    capture(ledger, "1009", ("1", a, 2, "wh-1"), ("2", b, 2, "wh-1"))
    before = position(ledger)
    bad = ledger.submit(
        c.ShipOrder(
            order_id="1009",
            shipment_id="s1",
            lines=(
                {"line_id": "1", "quantity": 2},
                {"line_id": "2", "quantity": 2, "location": "empty-store"},
            ),
        )
    )
    good = ledger.submit(c.ReceiveStock(sku=a, location="store-2", quantity=1, reference="po-c"))
    with pytest.raises(InsufficientStockError):
        bad.result(timeout=30)
    assert good.result(timeout=30)["on_hand"] == 1
    assert position(ledger) == before + 2  # only the receipt (and its stream's opening)
    assert stock(ledger, a, "wh-1") == (2, 2, 0) and stock(ledger, b, "wh-1") == (2, 2, 0)
    assert ledger.history.order("1009").stage == "reserved"
    assert ledger.ship("1009", "s1", [{"line_id": "1", "quantity": 2}])["stage"] == "partially_shipped"


def test_a_compare_and_set_write_names_the_version_it_read(ledger):
    s = sku()
    with pytest.raises(VersionConflictError):
        ledger.receive(s, "wh-1", 1, "po-0", if_match=3)
    assert ledger.history.stock(s, "wh-1") is None
    version = ledger.receive(s, "wh-1", 5, "po-1", if_match=0)["version"]
    with pytest.raises(VersionConflictError) as refused:
        ledger.adjust(s, "wh-1", -1, "cycle-count", "cc-1", if_match=version - 1)
    assert refused.value.code == "version-conflict" and refused.value.details["current"] == version
    assert ledger.adjust(s, "wh-1", -1, "cycle-count", "cc-2", if_match=version)["on_hand"] == 4


def test_expected_stock_is_incoming_until_it_arrives(ledger):
    s = sku()
    ledger.execute(c.ExpectStock(sku=s, location="wh-1", quantity=10, reference="asn-1"))
    x = ledger.history.stock(s, "wh-1")
    assert (x.incoming, x.on_hand, x.available) == (10, 0, 0)
    ledger.receive(s, "wh-1", 6, "asn-1-part", expected=True)
    x = ledger.history.stock(s, "wh-1")
    assert (x.incoming, x.on_hand, x.available) == (4, 6, 6)
