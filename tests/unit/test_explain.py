"""The terms of an explained ATS add up to what the `ats` read model computes from the same events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.channels import ChannelPolicy
from ledger.channels import Channel, channel_id
from ledger.stock import SkuLocation
from projections.explain import explain, in_force, series
from projections.models import AtsView
from projections.store import Store

SKU = "sku-1"
LOCATIONS = ("w1", "w2", "w3")

step = st.tuples(
    st.sampled_from(LOCATIONS),
    st.sampled_from(
        ["receive", "reserve", "release", "sell", "sell_direct", "adjust", "damaged", "write_off"]
    ),
    st.integers(1, 20),
)
policy_st = st.builds(
    lambda locs, safety, override, units, percent, use_percent, excluded: ChannelPolicy(
        channel="web",
        locations=tuple(locs),
        safety_stock=safety,
        safety_stock_overrides={SKU: override} if override is not None else {},
        buffer_units=0 if use_percent else units,
        buffer_percent=percent if use_percent else 0,
        excluded_skus=frozenset({SKU}) if excluded else frozenset(),
        version=7,
        actor="tester",
        at="2024-01-01T00:00:00+00:00",
    ),
    st.lists(st.sampled_from(LOCATIONS), min_size=1, max_size=3, unique=True),
    st.integers(0, 15),
    st.none() | st.integers(0, 15),
    st.integers(0, 10),
    st.integers(0, 100),
    st.booleans(),
    st.booleans(),
)


def history(steps: list[tuple[str, str, int]]) -> tuple[dict[str, SkuLocation], dict[str, list], list]:
    """Runs random commands through the aggregates (refused ones are skipped); their events, positioned."""
    aggs: dict[str, SkuLocation] = {}
    streams: dict[str, list] = {}
    log: list = []
    n = 0
    for i, (loc, verb, q) in enumerate(steps):
        s = aggs.get(loc)
        if s is None:
            s = aggs[loc] = SkuLocation.open(SKU, loc)
        rid = next(iter(s.reservations), None)
        if verb == "receive":
            s.receive(q, f"r{i}", {})
        elif verb == "reserve" and s.can_reserve(q):
            s.reserve(f"o{i}", "1", q, {})
        elif verb == "release" and rid is not None:
            s.release(rid, min(q, s.reserved_for(rid)), "cancelled", {})
        elif verb == "sell" and rid is not None:
            s.sell(min(q, s.reserved_for(rid)), f"s{i}", {}, rid)
        elif verb == "sell_direct" and s.can_sell_direct(q):
            s.sell(q, f"s{i}", {})
        elif verb == "adjust" and s.can_adjust(-q):
            s.adjust(-q, "count", f"a{i}", {})
        elif verb == "damaged":
            s.accept_return(f"ret{i}", q, "damaged", {})
        elif verb == "write_off" and s.unavailable:
            s.write_off_damaged(min(q, s.unavailable), f"w{i}", {})
        for e in s.collect_events():
            n += 1
            streams.setdefault(loc, []).append((n, e))
            log.append((n, e))
    return aggs, streams, log


def read_model_ats(policy: ChannelPolicy, log: list) -> int:
    """The ATS the `ats` projection computes from the same events (in memory)."""
    view, store = AtsView(), Store(AtsView.tables)
    view.begin(store)
    changed = Channel.PolicyChanged(  # the policy, as a fact in the log before the stock events
        originator_id=channel_id(policy.channel),
        originator_version=2,
        timestamp=datetime.now(UTC),
        channel=policy.channel,
        version=policy.version,
        policy=policy.rules(),
        changed_by="test",
        cause={},
    )
    view.apply(store, 0, changed)
    for position, event in log:
        view.apply(store, position, event)
    view.finish(store)
    row = store.get("ats", (policy.channel, SKU))
    return 0 if row is None else int(row["available"])


@settings(max_examples=200, deadline=None)
@given(st.lists(step, max_size=40), policy_st)
def test_terms_add_up_to_the_ats_the_read_model_computes(steps, policy):
    aggs, streams, log = history(steps)
    e = explain(policy, SKU, streams)
    assert e["available"] == read_model_ats(policy, log)
    in_group = [x for x in e["locations"] if x["location"] in aggs]
    assert e["total_available"] == sum(
        x["on_hand"] - x["reserved"] - x["unavailable"] for x in e["locations"]
    )
    for x in in_group:  # each location's terms are the aggregate's own quantities
        s = aggs[x["location"]]
        assert (x["on_hand"], x["reserved"], x["unavailable"]) == (s.on_hand, s.reserved, s.unavailable)
        assert x["events"]["count"] == len(streams[x["location"]])
    if not e["excluded"] and in_group:
        assert e["available"] == max(
            0, e["total_available"] - e["safety_stock"]["value"] - e["buffer"]["value"]
        )
    if e["excluded"]:
        assert e["available"] == 0


@settings(max_examples=100, deadline=None)
@given(st.lists(step, max_size=40), policy_st)
def test_each_linked_event_moves_its_terms_by_what_it_says(steps, policy):
    _, streams, _ = history(steps)
    for x in explain(policy, SKU, streams)["locations"]:
        moved = {t: 0 for t in ("on_hand", "reserved", "unavailable")}
        for link in x["events"]["items"]:
            for t, d in link["moved"].items():
                moved[t] += d
        if x["events"]["count"] <= len(x["events"]["items"]):  # every event listed: they sum to the terms
            assert (moved["on_hand"], moved["reserved"], moved["unavailable"]) == (
                x["on_hand"],
                x["reserved"],
                x["unavailable"],
            )


@settings(max_examples=100, deadline=None)
@given(st.lists(step, min_size=1, max_size=30), policy_st)
def test_the_chart_ends_at_the_explained_value(steps, policy):
    _, streams, _ = history(steps)
    points = series([policy], SKU, streams)
    expected = explain(policy, SKU, {k: v for k, v in streams.items() if k in policy.locations})["available"]
    assert (points[-1]["available"] if points else 0) == expected
    assert [p["position"] for p in points] == sorted(p["position"] for p in points)


def test_an_excluded_sku_explains_zero_and_says_why():
    policy = ChannelPolicy(
        channel="web", locations=("w1",), excluded_skus=frozenset({SKU}), version=1, at="x"
    )
    aggs, streams, _ = history([("w1", "receive", 5)])
    e = explain(policy, SKU, streams)
    assert e["available"] == 0 and e["excluded"] and "excluded" in e["formula"]
    assert e["locations"][0]["on_hand"] == 5
    assert e["locations"][0]["events"]["items"][-1]["type"] == "StockReceived"


def test_a_reservation_links_to_its_order():
    aggs, streams, _ = history([("w1", "receive", 5), ("w1", "reserve", 2)])
    policy = ChannelPolicy(channel="web", locations=("w1",), version=1, at="x")
    items = explain(policy, SKU, streams)["locations"][0]["events"]["items"]
    reserved = [i for i in items if i["type"] == "StockReserved"]
    assert reserved and reserved[0]["order_id"] == "o1" and reserved[0]["moved"] == {"reserved": 2}


def test_the_policy_in_force_is_the_newest_written_by_then():
    t = datetime(2024, 5, 1, tzinfo=UTC)
    versions = [
        ChannelPolicy(channel="web", locations=("w1",), version=v, at=(t + timedelta(hours=v)).isoformat())
        for v in (1, 2, 3)
    ]
    assert in_force(versions, t) is None
    assert in_force(versions, t + timedelta(hours=2, minutes=30)).version == 2
    assert in_force(versions, t + timedelta(days=1)).version == 3
