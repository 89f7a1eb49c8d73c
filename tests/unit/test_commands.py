"""Commands: natural idempotency keys, content fingerprints and bounds checked before any state."""

from __future__ import annotations

from dataclasses import FrozenInstanceError
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import commands as c
from ledger.errors import InvalidCommandError, LedgerError
from ledger.writer import StorageError


def test_a_command_is_immutable():
    cmd = c.ReceiveStock(sku="A", location="L", quantity=1, reference="po-1")
    with pytest.raises(FrozenInstanceError):
        cmd.quantity = 2  # type: ignore[misc]  # frozen, on purpose


def test_each_idempotent_command_names_its_natural_key():
    assert c.ReceiveStock(sku="A", location="L", quantity=1, reference="po-1").key == "receipt-line:po-1/A/L"
    assert (
        c.TransferStock(sku="A", from_location="L", to_location="M", quantity=1, reference="t").key
        == "transfer-line:t/A/L/M"
    )
    assert c.Reserve(sku="A", location="L", order_id="o", line_id="1", quantity=1).key == "reservation:o/1"
    assert c.ShipOrder(order_id="o", shipment_id="s", lines=()).key == "shipment:o/s"
    assert c.CancelOrder(order_id="o", reason="r").key == "cancellation:o/whole"
    assert c.CancelOrder(order_id="o", reason="r", lines=(), reference="x").key == "cancellation:o/x"
    assert c.RecordErpFailure(order_id="o", document="d", attempt=2, error="e").key == "erp-failed:o/d/2"
    assert c.CaptureOrder(order_id="o", channel="web", lines=()).key is None


def test_the_fingerprint_ignores_the_cause_but_not_the_content():
    a = c.ReceiveStock(sku="A", location="L", quantity=1, reference="po-1", cause={"correlation_id": "x"})
    b = c.ReceiveStock(sku="A", location="L", quantity=1, reference="po-1", cause={"correlation_id": "y"})
    other = c.ReceiveStock(sku="A", location="L", quantity=2, reference="po-1")
    assert a.fingerprint() == b.fingerprint() != other.fingerprint()
    assert a == b


def test_the_fingerprint_tells_command_types_apart():
    a = c.ExpectStock(sku="A", location="L", quantity=1, reference="r")
    b = c.WriteOffDamaged(sku="A", location="L", quantity=1, reference="r")
    assert a.fingerprint() != b.fingerprint()


def test_the_fingerprint_handles_datetimes_and_nested_lines():
    at = datetime(2026, 1, 1, tzinfo=UTC)
    r = c.Reserve(sku="A", location="L", order_id="o", line_id="1", quantity=1, expires_at=at)
    assert len(r.fingerprint()) == 64
    o = c.CaptureOrder(order_id="o", channel="web", lines=({"line_id": "1", "sku": "A", "quantity": 1},))
    assert (
        o.fingerprint()
        == c.CaptureOrder(
            order_id="o", channel="web", lines=({"quantity": 1, "sku": "A", "line_id": "1"},)
        ).fingerprint()
    )


VALID = [
    c.ReceiveStock(sku="A", location="L", quantity=1, reference="r"),
    c.AdjustStock(sku="A", location="L", delta=-3, reason="count", reference="r"),
    c.TransferStock(sku="A", from_location="L", to_location="M", quantity=1, reference="r"),
    c.ReturnToStock(sku="A", location="L", quantity=1, disposition="damaged", reference="r"),
    c.CorrectMovement(sku="A", location="L", version=2, reason="x", reference="r", to_location="M"),
    c.CaptureOrder(order_id="o", channel="web", lines=({"line_id": "1", "sku": "A", "quantity": 1},)),
    c.ShipOrder(order_id="o", shipment_id="s", lines=({"line_id": "1", "quantity": 1},)),
    c.CancelOrder(order_id="o", reason="r", lines=({"line_id": "1", "quantity": 1},), reference="c1"),
    c.ReturnItems(
        order_id="o", return_id="r", lines=({"line_id": "1", "quantity": 1, "disposition": "restock"},)
    ),
    c.AddCorrelationIds(order_id="o", ids={"pos": "R-1"}),
]


@pytest.mark.parametrize("cmd", VALID, ids=lambda x: type(x).__name__)
def test_a_command_within_the_bounds_validates(cmd):
    cmd.validate()


INVALID = [
    c.ReceiveStock(sku="", location="L", quantity=1, reference="r"),
    c.ReceiveStock(sku="A", location="L" * 129, quantity=1, reference="r"),
    c.ReceiveStock(sku="A", location="L", quantity=0, reference="r"),
    c.ReceiveStock(sku="A", location="L", quantity=1_000_000_001, reference="r"),
    c.ReceiveStock(sku="A", location="L", quantity=1, reference="r\n"),
    c.AdjustStock(sku="A", location="L", delta=0, reason="count", reference="r"),
    c.AdjustStock(sku="A", location="L", delta=1, reason="", reference="r"),
    c.TransferStock(sku="A", from_location="L", to_location="L", quantity=1, reference="r"),
    c.Reserve(sku="A", location="L", order_id="o", line_id="", quantity=1),
    c.ReturnToStock(sku="A", location="L", quantity=1, disposition="lost", reference="r"),
    c.CorrectMovement(sku="A", location="L", version=0, reason="x", reference="r"),
    c.CorrectMovement(sku="A", location="L", version=True, reason="x", reference="r"),
    c.CaptureOrder(order_id="o", channel="web", lines=()),
    c.CaptureOrder(order_id="o", channel="web", lines=({"line_id": "1", "sku": "A", "quantity": "1"},)),
    c.CaptureOrder(
        order_id="o",
        channel="web",
        lines=({"line_id": "1", "sku": "A", "quantity": 1}, {"line_id": "1", "sku": "B", "quantity": 1}),
    ),
    c.CaptureOrder(
        order_id="o", channel="web", lines=({"line_id": "1", "sku": "A", "quantity": 1, "location": ""},)
    ),
    c.ShipOrder(order_id="o", shipment_id="s", lines=()),
    c.CancelOrder(order_id="o", reason="r", lines=({"line_id": "1", "quantity": 1},)),
    c.ReturnItems(order_id="o", return_id="r", lines=({"line_id": "1", "quantity": 1, "disposition": "??"},)),
    c.AddCorrelationIds(order_id="o", ids={"pos": "\x00"}),
]


@pytest.mark.parametrize("cmd", INVALID, ids=lambda x: type(x).__name__)
def test_a_command_outside_the_bounds_is_refused_before_any_state_is_read(cmd):
    with pytest.raises(InvalidCommandError) as refused:
        cmd.validate()
    assert refused.value.code == "validation-error"


# ------------------------------------------------------------------ hostile commands

valid_ids = st.sampled_from(["A", "L", "M", "o-1", "1"])
ids = st.one_of(valid_ids, valid_ids, valid_ids, valid_ids, st.text(max_size=130))
small = st.integers(-1, 5)
numbers = st.one_of(small, small, small, st.integers(-(2**63), 2**63), st.sampled_from([10**9, 10**9 + 1]))
anything = st.one_of(ids, numbers, st.none(), st.booleans(), st.floats(allow_nan=True))
line = st.fixed_dictionaries(
    {"line_id": st.one_of(ids, anything), "sku": ids, "quantity": st.one_of(numbers, anything)},
    optional={
        "location": st.one_of(ids, st.none()),
        "disposition": st.sampled_from(["restock", "damaged", "x"]),
    },
)
lines = st.lists(st.one_of(line, anything), max_size=3).map(tuple)

hostile = st.one_of(
    st.builds(c.ReceiveStock, sku=ids, location=ids, quantity=numbers, reference=ids),
    st.builds(c.AdjustStock, sku=ids, location=ids, delta=numbers, reason=ids, reference=ids),
    st.builds(c.TransferStock, sku=ids, from_location=ids, to_location=ids, quantity=numbers, reference=ids),
    st.builds(c.Reserve, sku=ids, location=ids, order_id=ids, line_id=ids, quantity=numbers),
    st.builds(
        c.ReleaseReservation,
        sku=ids,
        location=ids,
        reservation_id=ids,
        quantity=numbers,
        reason=ids,
        reference=ids,
    ),
    st.builds(
        c.SellDirect, sku=ids, location=ids, quantity=numbers, reference=ids, reservation_id=st.none() | ids
    ),
    st.builds(c.ReturnToStock, sku=ids, location=ids, quantity=numbers, disposition=ids, reference=ids),
    st.builds(c.WriteOffDamaged, sku=ids, location=ids, quantity=numbers, reference=ids),
    st.builds(
        c.CorrectMovement, sku=ids, location=ids, version=numbers, reason=ids, reference=ids, to_location=ids
    ),
    st.builds(c.CaptureOrder, order_id=ids, channel=ids, lines=lines, allow_partial=st.booleans()),
    st.builds(c.ShipOrder, order_id=ids, shipment_id=ids, lines=lines),
    st.builds(c.CancelOrder, order_id=ids, reason=ids, lines=st.none() | lines, reference=st.none() | ids),
    st.builds(c.ReturnItems, order_id=ids, return_id=ids, lines=lines),
    st.builds(c.RecordRefund, order_id=ids, refund_id=ids, amount=ids, currency=ids, lines=lines),
    st.builds(c.SettleRefund, order_id=ids, refund_id=ids, settlement_reference=ids),
    st.builds(c.RecordErpFailure, order_id=ids, document=ids, attempt=numbers, error=ids),
    st.builds(
        c.RecordErpPosting, order_id=ids, document=ids, attempts=numbers, erp_reference=st.none() | ids
    ),
    st.builds(c.InvoiceOrder, order_id=ids, invoice_id=ids),
    st.builds(
        c.ObservePlatformStatus, order_id=ids, status=st.dictionaries(ids, anything, max_size=2) | anything
    ),
    st.builds(c.AddCorrelationIds, order_id=ids, ids=st.dictionaries(ids, ids, max_size=2) | anything),
    st.builds(c.ConfigureBackorders, sku=ids, location=ids, allowed=st.booleans()),
)


@pytest.fixture(scope="module")
def hostile_ledger(tmp_path_factory):
    from adapters.persistence.urls import ledger_env
    from ledger.ports import StaticLocations
    from ledger.service import Ledger

    path = tmp_path_factory.mktemp("hostile") / "ledger.db"
    with Ledger(ledger_env(f"sqlite:///{path}"), StaticLocations({"A": ["L", "M"]})) as ledger:
        ledger.receive("A", "L", 5, "seed-1")
        ledger.capture_order("o-1", "A", [{"line_id": "1", "sku": "A", "quantity": 2}])
        yield ledger


@settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(cmds=st.lists(hostile, min_size=1, max_size=4))
def test_a_hostile_command_is_refused_with_a_domain_error_never_a_crash(hostile_ledger, cmds):
    """Whatever a caller sends, the answer is an outcome or a LedgerError that names the problem;
    never an unexpected exception, and never a decider crash (which the writer reports as storage)."""
    futures = []
    for cmd in cmds:
        try:
            futures.append(hostile_ledger.submit(cmd))
        except LedgerError as e:  # refused before it was queued
            assert not isinstance(e, StorageError)
    for f in futures:
        try:
            f.result(timeout=30)
        except LedgerError as e:
            assert not isinstance(e, StorageError), f"{e!r}"
