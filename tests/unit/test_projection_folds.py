"""Pure parts of the read models: subject tokens, the ATS formula, folds equal to the aggregates."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.channels import ChannelPolicy
from ledger.errors import InvalidCommandError
from ledger.service import Ledger
from projections import folds
from projections.models import AtsView, OrdersView, StockView
from projections.outbox import subject_token, token_value
from projections.store import Store


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


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["receive", "order", "ship", "cancel", "return", "adjust"]), st.integers(1, 4)
        ),
        max_size=12,
    )
)
def test_memory_folds_agree_with_the_aggregates(ops):
    led = Ledger()  # in-memory event store
    policy = ChannelPolicy("web", ("w1", "w2"), safety_stock=1)
    orders = []
    for i, (op, q) in enumerate(ops):
        try:
            if op == "receive":
                led.receive("s", "w1" if i % 2 else "w2", q, f"r{i}")
            elif op == "adjust":
                led.adjust("s", "w1", -q, "count", f"a{i}")
            elif op == "order":
                led.capture_order(
                    f"o{i}", "web", [{"line_id": "1", "sku": "s", "quantity": q, "location": "w1"}]
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
        except Exception:
            pass
    views = [StockView(), OrdersView(), AtsView()]
    store = Store([t for v in views for t in v.tables])
    from adapters.channels import Policies

    for v in views:
        v.begin(Policies({"web": policy}, 1))
    for n in led.app.recorder.select_notifications(1, 10_000):
        for v in views:
            v.apply(store, n.id, led.app.mapper.to_domain_event(n))
    for v in views:
        v.finish(store)
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
            total += agg.available
    ats_rows = dict(store.items("ats"))
    if total or ats_rows:
        assert ats_rows[("web", "s")]["available"] == policy.ats("s", total)
    for o in orders:
        agg = led.history.order(o)
        row = dict(store.items("order_views"))[(str(agg.id),)]
        assert row["stage"] == agg.stage
        assert folds.order_lines(row)[0]["shipped"] == agg.lines["1"]["shipped"]
    led.close()
