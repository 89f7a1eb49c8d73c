"""The bulk fold agrees with the SKU-location aggregate, event for event."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.reconciliation.facts import Fact, decode, fold
from ledger.application import LedgerApplication
from ledger.errors import LedgerError
from ledger.stock import SkuLocation

step = st.one_of(
    st.tuples(st.just("receive"), st.integers(1, 20)),
    st.tuples(st.just("reserve"), st.integers(1, 10)),
    st.tuples(st.just("release"), st.integers(1, 10)),
    st.tuples(st.just("sell_reserved"), st.integers(1, 10)),
    st.tuples(st.just("sell"), st.integers(1, 10)),
    st.tuples(st.just("adjust"), st.integers(-10, 10).filter(bool)),
    st.tuples(st.just("return_damaged"), st.integers(1, 5)),
    st.tuples(st.just("write_off"), st.integers(1, 5)),
    st.tuples(st.just("transfer_out"), st.integers(1, 5)),
    st.tuples(st.just("transfer_in"), st.integers(1, 5)),
    st.tuples(st.just("correct"), st.integers(1, 30)),
)


def run(s: SkuLocation, op: str, n: int, i: int) -> None:
    cause: dict = {}
    rid = f"o{n % 3}/1"
    if op == "receive":
        s.receive(n, f"r{i}", cause)
    elif op == "reserve":
        s.reserve(f"o{n % 3}", "1", n, cause)
    elif op == "release":
        s.release(rid, n, "cancelled", cause)
    elif op == "sell_reserved":
        s.sell(n, f"s{i}", cause, reservation_id=rid)
    elif op == "sell":
        s.sell(n, f"s{i}", cause)
    elif op == "adjust":
        s.adjust(n, "count", f"a{i}", cause)
    elif op == "return_damaged":
        s.accept_return(f"ret{i}", n, "damaged", cause)
    elif op == "write_off":
        s.write_off_damaged(n, f"w{i}", cause)
    elif op == "transfer_out":
        s.transfer_out(f"t{i}", "elsewhere", n, cause)
    elif op == "transfer_in":
        s.transfer_in(f"t{i}", "elsewhere", n, cause)
    elif op == "correct":
        s.correct(
            {"sku": s.sku, "location": s.location, "version": n, "correction": f"c{i}"}, -1, 0, "fix", cause
        )


@settings(max_examples=60, deadline=None)
@given(st.lists(step, max_size=30))
def test_fold_of_stored_events_matches_the_aggregate(steps):
    app = LedgerApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    s = SkuLocation.open("SKU", "LOC")
    for i, (op, n) in enumerate(steps):
        try:
            run(s, op, n, i)
        except LedgerError:
            pass
    events = s.collect_events()
    facts = [
        decode(
            pos,
            e.originator_version,
            app.mapper.to_stored_event(e).topic,
            app.mapper.to_stored_event(e).state,
        )
        for pos, e in enumerate(events, 1)
    ]
    now = datetime.now(UTC) + timedelta(seconds=1)
    as_of = fold(facts, now)
    assert (as_of.on_hand, as_of.reserved, as_of.unavailable) == (s.on_hand, s.reserved, s.unavailable)
    assert as_of.held() == {rid: r["quantity"] for rid, r in s.reservations.items()}


def test_facts_recorded_after_the_moment_are_kept_apart():
    t0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    facts = [
        Fact(1, 1, "Opened", t0),
        Fact(2, 2, "StockReceived", t0 + timedelta(seconds=1), on_hand=10),
        Fact(3, 3, "StockReserved", t0 + timedelta(seconds=2), reserved=4, reservation_id="o1/1"),
        Fact(4, 4, "StockSold", t0 + timedelta(seconds=3), on_hand=-3),
    ]
    as_of = fold(facts, t0 + timedelta(seconds=2))
    assert (as_of.on_hand, as_of.reserved, as_of.available) == (10, 4, 6)
    assert [f.position for f in as_of.after] == [4]
    assert as_of.position == 3
    assert as_of.held() == {"o1/1": 4}
    assert [f.position for f in as_of.before] == [2, 3]
