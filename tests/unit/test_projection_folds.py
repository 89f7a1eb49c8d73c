"""Pure parts of the read models: subject tokens, the ATS formula, folds equal to the aggregates."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.channels import ChannelPolicy
from adapters.outbox import subject_token, token_value
from adapters.persistence.urls import ledger_env
from ledger.bounds import stock_id
from ledger.channels import Channel
from ledger.commands import ChangeChannelPolicy
from ledger.errors import InvalidCommandError, LedgerError
from ledger.orders import Order
from ledger.service import Ledger
from ledger.stock import SkuLocation
from projections import folds
from projections.models import AtsView, OrdersView, StockView
from projections.store import Store

NOW = datetime.now(UTC)


@given(st.text(min_size=1, max_size=128))
def test_any_identifier_becomes_one_valid_subject_token_and_back(s):
    token = subject_token(s)
    assert token and token.isascii() and token.isprintable()
    assert not set(token) & {".", "*", ">", " ", "\t"}
    assert token_value(token) == s


def test_subject_tokens_are_readable_for_plain_ids():
    assert subject_token("SKU-1_b") == "SKU-1_b"
    assert subject_token("a.b") == "a~2Eb" and subject_token("~") == "~7E"


@pytest.mark.parametrize(
    ("policy", "total", "sku", "ats"),
    [
        (ChannelPolicy("c", ("w",), safety_stock=2), 10, "s", 8),
        (ChannelPolicy("c", ("w",), safety_stock=2), 1, "s", 0),
        (ChannelPolicy("c", ("w",), safety_stock=0, buffer_units=3), 10, "s", 7),
        (ChannelPolicy("c", ("w",), safety_stock=0, buffer_percent=10), 11, "s", 9),  # 10 % of 11, rounded up
        (ChannelPolicy("c", ("w",), safety_stock=1, safety_stock_overrides={"s": 5}), 10, "s", 5),
        (ChannelPolicy("c", ("w",), safety_stock=0, excluded_skus=frozenset({"s"})), 10, "s", 0),
        (ChannelPolicy("c", ("w",), safety_stock=0, buffer_percent=50), -4, "s", 0),
    ],
)
def test_ats_formula(policy, total, sku, ats):
    assert policy.ats(sku, total) == ats


def test_a_policy_refuses_nonsense():
    for kw in (
        {"locations": ()},
        {"locations": ("w", "w")},
        {"locations": ("w",), "buffer_percent": 101},
        {"locations": ("w",), "buffer_units": 1, "buffer_percent": 1},
        {"locations": ("w",), "safety_stock": -1},
    ):
        with pytest.raises(InvalidCommandError):
            ChannelPolicy("c", **kw)


OPS = ["receive", "order", "hold", "ship", "cancel", "return", "adjust", "expire", "policy"]


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(OPS), st.integers(1, 4)), max_size=14))
def test_the_folds_agree_with_the_aggregates(ops):
    """Given any history (policies in the log, expiring holds), the folds equal the aggregates."""
    with tempfile.TemporaryDirectory() as tmp, Ledger(ledger_env(f"sqlite:///{tmp}/l.db")) as led:
        version = 1
        led.execute(change(ChannelPolicy("web", ("w1", "w2"), safety_stock=1), version))
        orders: list[str] = []
        past = datetime.now(UTC) - timedelta(minutes=1)
        for i, (op, q) in enumerate(ops):
            try:
                if op == "receive":
                    led.receive("s", "w1" if i % 2 else "w2", q, f"r{i}")
                elif op == "adjust":
                    led.adjust("s", "w1", -q, "count", f"a{i}")
                elif op in ("order", "hold"):
                    led.capture_order(
                        f"o{i}",
                        "web",
                        [{"line_id": "1", "sku": "s", "quantity": q, "location": "w1"}],
                        expires_at=past if op == "hold" else None,
                    )
                    orders.append(f"o{i}")
                elif op == "ship" and orders:
                    led.ship(orders[-1], f"sh{i}", [{"line_id": "1", "quantity": 1}])
                elif op == "cancel" and orders:
                    led.cancel(orders[0], "x")
                elif op == "return" and orders:
                    led.return_items(
                        orders[-1], f"rt{i}", [{"line_id": "1", "quantity": 1, "disposition": "damaged"}]
                    )
                elif op == "expire":
                    led.release_expired("s", "w1", datetime.now(UTC))
                elif op == "policy":
                    version += 1
                    led.execute(
                        change(
                            ChannelPolicy("web", ("w1",) if q % 2 else ("w1", "w2"), safety_stock=q), version
                        )
                    )
            except LedgerError:
                pass
        views = [StockView(), OrdersView(), AtsView()]
        store = Store([t for v in views for t in v.tables])
        for v in views:
            v.begin(store)
        for n in led.app.recorder.select_notifications(1, 10_000):
            for v in views:
                v.apply(store, n.id, led.app.mapper.to_domain_event(n))
        for v in views:
            v.finish(store)
        policy = views[2].policies.by_channel["web"]
        assert policy.version == version
        total = 0
        for loc in ("w1", "w2"):
            agg = led.history.stock("s", loc)
            row = dict(store.items("stock_levels")).get((str(agg.id),)) if agg else None
            if agg is not None:
                assert (row["on_hand"], row["reserved"], row["unavailable"], row["available"]) == (
                    agg.on_hand,
                    agg.reserved,
                    agg.unavailable,
                    agg.available,
                )
                opened = sorted(
                    ((k[1], r) for k, r in store.items("stock_reservations") if k[0] == str(agg.id)),
                    key=lambda x: x[1]["since"],
                )  # its open reservations, in the order the aggregate opened them
                assert [(rid, r["quantity"], r["expires_at"]) for rid, r in opened] == [
                    (rid, h["quantity"], folds.epoch(h["expires_at"])) for rid, h in agg.reservations.items()
                ]
                if loc in policy.locations:
                    total += agg.available
        ats_rows = dict(store.items("ats"))
        if ("web", "s") in ats_rows or total:
            assert ats_rows[("web", "s")]["available"] == policy.ats("s", total)
        for o in orders:
            agg = led.history.order(o)
            row = dict(store.items("order_views"))[(str(agg.id),)]
            assert row["stage"] == agg.stage
            line = folds.order_lines(row)[0]
            assert line["shipped"] == agg.lines["1"]["shipped"]
            assert line["reserved"] == Order.held_quantity(agg.lines["1"])


def change(policy: ChannelPolicy, version: int) -> ChangeChannelPolicy:
    return ChangeChannelPolicy(
        channel=policy.channel, version=version, policy=policy.rules(), changed_by="test"
    )


def policy_changed(
    originator_version: int, version: int, policy: dict[str, Any], by: str
) -> Channel.PolicyChanged:
    return Channel.PolicyChanged(
        originator_id=uuid4(),
        originator_version=originator_version,
        timestamp=NOW,
        channel="web",
        version=version,
        policy=policy,
        changed_by=by,
        cause={},
    )


def test_a_policy_change_in_the_log_recomputes_the_channel_at_that_position():
    """Given ATS published at a position, a later PolicyChanged publishes the changed values at its own."""
    view = AtsView()
    store = Store(view.tables)
    view.begin(store)
    view.apply(store, 1, policy_changed(2, version=1, policy=ChannelPolicy("web", ("w1",)).rules(), by="a"))
    opened = SkuLocation.Opened(
        originator_id=stock_id("s", "w1"),
        originator_version=1,
        timestamp=NOW,
        originator_topic="",
        sku="s",
        location="w1",
        cause={},
    )
    view.apply(store, 2, opened)
    view.apply(
        store,
        3,
        SkuLocation.StockReceived(
            originator_id=opened.originator_id,
            originator_version=2,
            timestamp=NOW,
            quantity=5,
            reference="r",
            expected=False,
            cause={},
        ),
    )
    view.finish(store)
    first = store.messages[:]
    assert [(m[1]["available"], m[1]["position"]) for m in first] == [(5, 3)]
    store.messages.clear()
    view.begin(store)
    newer = ChannelPolicy("web", ("w1",), safety_stock=2).rules()
    view.apply(store, 9, policy_changed(3, version=2, policy=newer, by="b"))
    # an older or malformed version in the log changes nothing
    view.apply(store, 10, policy_changed(4, version=1, policy=newer, by="c"))
    view.apply(store, 11, policy_changed(5, version=3, policy={"locations": "w1"}, by="d"))
    view.finish(store)
    assert [(m[1]["available"], m[1]["position"]) for m in store.messages] == [(3, 9)]
    assert dict(store.items("ats_policies"))[("web",)]["version"] == 2


def test_the_order_references_read_model_maps_every_outside_id_to_its_order():
    view = OrdersView()
    store = Store(view.tables)
    view.begin(store)
    oid = uuid4()
    captured = Order.Captured(
        originator_id=oid,
        originator_version=1,
        timestamp=NOW,
        originator_topic="",
        order_id="820982911946154508",
        channel="online",
        lines=[{"line_id": "1", "sku": "s", "quantity": 1}],
        external_refs={"shopify_name": "#1001", "shopify_number": 1001},
        platform_status={},
        cause={},
    )
    view.apply(store, 1, captured)
    view.apply(
        store,
        2,
        Order.CorrelationIdsRecorded(
            originator_id=oid, originator_version=2, timestamp=NOW, ids={"pos": "T-9"}, cause={}
        ),
    )
    view.apply(
        store,
        3,
        Order.PostedToErp(
            originator_id=oid,
            originator_version=3,
            timestamp=NOW,
            document="so",
            attempts=1,
            erp_reference="SO-77",
            cause={},
        ),
    )
    refs = {k for k, _ in store.items("order_refs")}
    assert refs == {
        ("#1001", "820982911946154508", "shopify_name"),
        ("1001", "820982911946154508", "shopify_number"),
        ("T-9", "820982911946154508", "pos"),
        ("SO-77", "820982911946154508", "erp"),
    }
