"""Commands: natural idempotency keys, content fingerprints and bounds checked before any state."""

from __future__ import annotations

from dataclasses import FrozenInstanceError
from datetime import UTC, datetime

import pytest

from ledger import commands as c
from ledger.errors import InvalidCommandError


def test_a_command_is_immutable():
    cmd = c.ReceiveStock(sku="A", location="L", quantity=1, reference="po-1")
    with pytest.raises(FrozenInstanceError):
        cmd.quantity = 2  # type: ignore[misc]


def test_each_idempotent_command_names_its_natural_key():
    assert c.ReceiveStock(sku="A", location="L", quantity=1, reference="po-1").key == "receipt:po-1"
    assert (
        c.TransferStock(sku="A", from_location="L", to_location="M", quantity=1, reference="t").key
        == "transfer:t"
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
