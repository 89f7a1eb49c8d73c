"""`include_incoming_days`: a channel counts the incoming units due within N days of their notice.

The `ats` read model and the explanation are checked against a plain reference model: lots of
incoming units with their lead (notice → due date), landed earliest-due first, counted when the
lead is at most N days (N = 0 counts none).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.channels import Channel, channel_id
from ledger.errors import InvalidCommandError
from ledger.policy import ChannelPolicy
from ledger.stock import SkuLocation
from projections.explain import explain
from projections.models import AtsView
from projections.store import Store

SKU = "sku-1"
LOCATIONS = ("w1", "w2")
LEADS = (None, 0.5, 2.5, 6.5, 29.5)  # days from the notice to the due date (None: at once)

step = st.tuples(
    st.sampled_from(LOCATIONS),
    st.sampled_from(["receive", "expect", "receive_expected", "reserve", "sell"]),
    st.integers(1, 9),
    st.sampled_from(LEADS),
)
policy_st = st.builds(
    lambda days, safety, percent: ChannelPolicy(
        "web", LOCATIONS, safety_stock=safety, buffer_percent=percent, include_incoming_days=days, version=3
    ),
    st.sampled_from([0, 1, 3, 7, 30]),
    st.integers(0, 5),
    st.sampled_from([0, 10, 50]),
)


class Reference:
    """What the ATS should be: available per location, and incoming lots (due, quantity, lead)."""

    def __init__(self) -> None:
        self.available = dict.fromkeys(LOCATIONS, 0)
        self.lots: dict[str, list[list[Any]]] = {loc: [] for loc in LOCATIONS}

    def expect(self, loc: str, q: int, due: float, lead: float) -> None:
        self.lots[loc].append([due, q, lead])
        self.lots[loc].sort(key=lambda x: x[0])

    def land(self, loc: str, q: int) -> None:
        for lot in self.lots[loc]:
            taken = min(q, lot[1])
            lot[1] -= taken
            q -= taken
        self.lots[loc] = [lot for lot in self.lots[loc] if lot[1] > 0]

    def ats(self, days: int, safety: int, percent: int) -> int:
        counted = sum(q for loc in LOCATIONS for _, q, lead in self.lots[loc] if days and lead <= days * 86400)
        total = sum(self.available.values()) + counted
        return max(0, total - safety - -(-max(total, 0) * percent // 100))


def history(steps: list[tuple[str, str, int, float | None]]) -> tuple[list, dict[str, list], Reference]:
    aggs = {loc: SkuLocation.open(SKU, loc) for loc in LOCATIONS}
    ref = Reference()
    log: list = []
    streams: dict[str, list] = {loc: [] for loc in LOCATIONS}
    n = 0
    for i, (loc, verb, q, lead) in enumerate(steps):
        s = aggs[loc]
        if verb == "receive":
            s.receive(q, f"r{i}", {})
        elif verb == "expect":
            s.expect(q, f"asn{i}", {}, due_at=None if lead is None else datetime.now(UTC) + timedelta(days=lead))
        elif verb == "receive_expected":
            q = min(q, s.incoming)
            if q:
                s.receive(q, f"g{i}", {}, expected=True)
                ref.land(loc, q)
        elif verb == "reserve" and s.can_reserve(q):
            s.reserve(f"o{i}", "1", q, {})
        elif verb == "sell" and s.can_sell_direct(q):
            s.sell(q, f"s{i}", {})
        for e in s.collect_events():
            n += 1
            if isinstance(e, SkuLocation.StockExpected):
                at = e.timestamp.timestamp()
                due = at if e.due_at is None else e.due_at.timestamp()
                ref.expect(loc, e.quantity, due, due - at)
            log.append((n, e))
            streams[loc].append((n, e))
        ref.available[loc] = s.available
    return log, streams, ref


def read_model(policy: ChannelPolicy, log: list, batch: int) -> int:
    """The `ats` projection over the log, folded `batch` events at a time (a new batch each time,
    as the runner does; batch = everything is a rebuild)."""
    view, store = AtsView(), Store(AtsView.tables)
    changed = Channel.PolicyChanged(
        originator_id=channel_id("web"),
        originator_version=2,
        timestamp=datetime.now(UTC),
        channel="web",
        version=policy.version,
        policy=policy.rules(),
        changed_by="test",
        cause={},
    )
    view.begin(store)
    view.apply(store, 0, changed)
    view.finish(store)
    for start in range(0, len(log), batch):
        view.begin(store)
        for position, event in log[start : start + batch]:
            view.apply(store, position, event)
        view.finish(store)
    row = store.get("ats", ("web", SKU))
    return 0 if row is None else int(row["available"])


@settings(max_examples=200, deadline=None)
@given(st.lists(step, max_size=30), policy_st, st.integers(1, 5))
def test_the_ats_counts_incoming_due_within_the_window_as_the_reference_model(steps, policy, batch):
    log, streams, ref = history(steps)
    expected = ref.ats(policy.include_incoming_days, policy.safety_stock, policy.buffer_percent)
    live = read_model(policy, log, batch)
    assert live == expected
    assert read_model(policy, log, len(log) or 1) == live  # a rebuild equals the live projection
    e = explain(policy, SKU, streams)
    assert e["available"] == expected
    assert e["incoming"]["counted"] == sum(x["incoming"]["counted"] for x in e["locations"])
    for x in e["locations"]:
        assert x["incoming"]["units"] == sum(q for _, q, _ in ref.lots[x["location"]])


def test_zero_days_counts_nothing_and_the_window_is_the_lead_from_notice_to_due_date():
    policy = ChannelPolicy("web", ("w1",), include_incoming_days=7)
    assert policy.counted_incoming([[0, 5, 6.9 * 86400], [0, 3, 7.1 * 86400], [0, 2, 0.0]]) == 7
    assert ChannelPolicy("web", ("w1",)).counted_incoming([[0, 5, 0.0]]) == 0
    assert policy.ats("x", 4, 7) == 11


@pytest.mark.parametrize("days", [-1, 3651, True, 1.5])
def test_a_window_outside_the_bounds_is_refused(days: Any) -> None:
    with pytest.raises(InvalidCommandError):
        ChannelPolicy("web", ("w1",), include_incoming_days=days)


def test_a_policy_recorded_before_the_window_existed_counts_nothing():
    rules = ChannelPolicy("web", ("w1",)).rules()
    del rules["include_incoming_days"]
    assert ChannelPolicy.from_rules("web", rules, 1).include_incoming_days == 0
