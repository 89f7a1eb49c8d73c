"""Read-side facts in the domain: channel policy versions, rebuild markers, released order lines."""

from __future__ import annotations

import pytest

from ledger.channels import Channel, ReadModel, channel_id, read_model_id
from ledger.commands import ChangeChannelPolicy, RecordRebuild
from ledger.errors import InvalidCommandError, OrderConflictError
from ledger.orders import Order

CAUSE = {"source": "test"}


def types(agg) -> list[str]:
    return [type(e).__name__ for e in agg.collect_events()]


def test_a_channel_records_only_newer_policy_versions():
    ch = Channel.open("web", CAUSE)
    assert ch.id == channel_id("web") != channel_id("pos")
    assert ch.change_policy(3, {"locations": ["W1"]}, "ann", CAUSE)
    assert not ch.change_policy(3, {"locations": ["W2"]}, "bob", CAUSE)  # a repeat
    assert not ch.change_policy(2, {"locations": ["W2"]}, "bob", CAUSE)  # an older version, late
    assert ch.change_policy(4, {"locations": ["W2"]}, "bob", CAUSE)
    assert types(ch) == ["Opened", "PolicyChanged", "PolicyChanged"]
    assert (ch.policy_version, ch.policy, ch.version) == (4, {"locations": ["W2"]}, 3)


def test_every_rebuild_is_a_new_marker():
    rm = ReadModel.open("ats", CAUSE)
    rm.record_rebuild(10, 2, "cli", CAUSE)
    rm.record_rebuild(12, 0, "cli", CAUSE)
    assert rm.id == read_model_id("ats") and rm.rebuilds == 2
    assert [e.name for e in rm.collect_events()[1:]] == ["ats", "ats"]


@pytest.mark.parametrize(
    "cmd",
    [
        dict(channel="", version=1, policy={}, changed_by="x"),
        dict(channel="web", version=0, policy={}, changed_by="x"),
        dict(channel="web", version=1, policy=[], changed_by="x"),
        dict(channel="web", version=1, policy={}, changed_by=None),
    ],
)
def test_a_policy_command_refuses_nonsense(cmd):
    with pytest.raises(InvalidCommandError):
        ChangeChannelPolicy(**cmd).validate()


def test_a_rebuild_command_refuses_nonsense():
    with pytest.raises(InvalidCommandError):
        RecordRebuild(name="ats", position=-1, corrected=0, by="x").validate()
    assert (
        ChangeChannelPolicy(channel="web", version=2, policy={}, changed_by="x").key == "channel-policy:web:2"
    )


def reserved_order() -> Order:
    o = Order.capture("1001", "web", [{"line_id": "L1", "sku": "S", "quantity": 3}], CAUSE)
    o.record_reservation("L1", "W1", 3, "1001/L1", CAUSE)
    return o


def test_a_released_line_no_longer_holds_units_and_the_order_is_no_longer_reserved():
    o = reserved_order()
    assert o.stage == "reserved"
    o.record_release("L1", 2, "expired", CAUSE)
    assert Order.held_quantity(o.lines["L1"]) == 1 and o.stage == "captured"
    with pytest.raises(OrderConflictError):
        o.record_release("L1", 2, "expired", CAUSE)  # more than it holds
    assert types(o)[-1] == "LineReleased"
