"""The one table of stock-event effects: every stock event has its row, and the aggregate,
the read-model fold and the reconciliation decoder all read their quantities from it."""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

from adapters.reconciliation.facts import decode
from ledger.effects import EFFECTS, event_effect
from ledger.policy import ChannelPolicy, available_to_sell
from ledger.stock import SkuLocation
from projections import folds

QUANTITY_FREE = {"Opened", "Created", "BackordersConfigured"}  # events that change no quantity


def test_every_stock_event_has_a_row_in_the_table() -> None:
    events = {
        name
        for name, v in vars(SkuLocation).items()
        if isinstance(v, type) and issubclass(v, SkuLocation.Event) and v is not SkuLocation.Event
    }
    assert events - QUANTITY_FREE == set(EFFECTS)


def test_the_aggregate_the_fold_and_the_decoder_agree_event_by_event() -> None:
    s = SkuLocation.open("A", "W1")
    s.expect(4, "asn-1", {})
    s.receive(6, "po-1", {}, expected=True)
    rid = s.reserve("o-1", "l-1", 3, {})
    s.sell(2, "ship-1", {}, rid)
    s.release(rid, 1, "cancelled", {})
    s.accept_return("r-1", 1, "damaged", {})
    s.write_off_damaged(1, "wo-1", {})
    s.adjust(-1, "found broken", "adj-1", {})
    events = s.collect_events()
    row = None
    for i, e in enumerate(events, start=1):
        row = folds.fold_stock(row, e, i)
        state = orjson.dumps({**e.__dict__, "timestamp": e.timestamp.isoformat()}, default=str)
        fact = decode(i, e.originator_version, f"ledger.stock:SkuLocation.{type(e).__name__}", state)
        eff = event_effect(e)
        assert (fact.on_hand, fact.reserved, fact.unavailable) == (eff.on_hand, eff.reserved, eff.unavailable)
        assert folds.available_delta(e) == eff.available
    assert row is not None
    assert (row["on_hand"], row["reserved"], row["unavailable"], row["incoming"]) == (
        s.on_hand,
        s.reserved,
        s.unavailable,
        s.incoming,
    )


@given(
    st.dictionaries(st.sampled_from(["W1", "W2", "W3"]), st.integers(-50, 500)),
    st.integers(0, 20),
    st.integers(0, 100),
)
def test_ats_is_the_formula_over_the_group(available: dict[str, int], safety: int, percent: int) -> None:
    policy = ChannelPolicy("web", ("W1", "W2"), safety_stock=safety, buffer_percent=percent)
    total = available.get("W1", 0) + available.get("W2", 0)
    buffer = -(-max(total, 0) * percent // 100)
    assert available_to_sell(policy, "A", available) == max(0, total - safety - buffer)
    excluded = ChannelPolicy("web", ("W1", "W2"), excluded_skus=frozenset({"A"}))
    assert available_to_sell(excluded, "A", available) == 0
