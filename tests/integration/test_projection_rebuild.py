"""Read models kept incrementally equal a rebuild from scratch; a policy fix + rebuild publishes only changes."""

from __future__ import annotations

import random
import uuid

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from projection_support import LOCATIONS, SKUS, Rig, random_command, random_policy, snapshot

from adapters.channels import ChannelPolicy
from projections import outbox
from projections.rebuild import rebuild


def expected_ats(rig: Rig) -> dict[tuple[str, str], int]:
    """The oracle: ATS straight from the ledger's aggregates and the policy formula."""
    out = {}
    for ch, policy in rig.channels.current().by_channel.items():
        for sku in SKUS:
            levels = [rig.ledger.history.stock(sku, loc) for loc in policy.locations]
            if any(s is not None for s in levels):
                out[(ch, sku)] = policy.ats(sku, sum(s.available for s in levels if s is not None))
    return out


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), steps=st.integers(1, 25))
def test_incremental_read_models_equal_a_rebuild_from_scratch(database_url, seed, steps):
    rnd = random.Random(seed)
    rig = Rig(database_url)
    try:
        prefix = uuid.uuid4().hex[:8]
        orders: list[str] = []
        for ch in ("web", "pos"):
            rig.channels.put(random_policy(rnd, ch), "test")
        for _ in range(steps):
            random_command(rig, rnd, prefix, orders)
            if rnd.random() < 0.4:
                rig.projector.step()  # a batch of at most 7 events: catch-up crosses batch borders
            if rnd.random() < 0.1:
                rig.channels.put(random_policy(rnd, rnd.choice(["web", "pos"])), "test")
        rig.projector.catch_up()
        live = snapshot(rig.db)
        ats = {(r["channel"], r["sku"]): r["available"] for r in live["ats"]}
        assert ats == expected_ats(rig)
        for name in ("ats", "orders", "stock"):
            result = rebuild(rig.projector, name, batch_size=11)
            assert result["published"] == 0
        assert snapshot(rig.db) == live
        positions = {r["name"]: r["position"] for r in rig.projector.status()}
        assert set(positions.values()) == {rig.projector.head()}
    finally:
        rig.close()


def test_a_policy_fix_and_a_rebuild_publish_exactly_the_ats_values_that_changed(database_url):
    rig = Rig(database_url)
    try:
        rig.channels.put(ChannelPolicy("web", ("W1", "W2"), safety_stock=1), "test")
        for i, sku in enumerate(SKUS):
            rig.ledger.receive(sku, "W1", 10 + i, f"r{i}")
            rig.ledger.receive(sku, "W2", 3, f"q{i}")
        rig.projector.catch_up()
        before = {(r["channel"], r["sku"]): r["available"] for r in snapshot(rig.db)["ats"]}
        depth = outbox.depth(rig.db)
        # the fix: one SKU gets an override, one is excluded, one stays as it was
        rig.channels.put(
            ChannelPolicy(
                "web",
                ("W1", "W2"),
                safety_stock=1,
                safety_stock_overrides={SKUS[0]: 4},
                excluded_skus=frozenset({SKUS[1]}),
            ),
            "test",
        )
        result = rebuild(rig.projector, "ats")
        sent = [orjson.loads(r["payload"]) for r in outbox.pending(rig.db, 1000)[depth:]]
        after = expected_ats(rig)
        changed = {k: v for k, v in after.items() if before.get(k) != v}
        assert {(m["channel"], m["sku"]): m["available"] for m in sent} == changed
        assert len(sent) == len(changed) == result["published"] == 2
        assert all(m["position"] == rig.projector.head() for m in sent)
        rig.projector.catch_up()  # the runner sees the policy it was rebuilt under: nothing more to send
        assert outbox.depth(rig.db) == depth + 2
        assert {(r["channel"], r["sku"]): r["available"] for r in snapshot(rig.db)["ats"]} == after
    finally:
        rig.close()


def test_a_policy_change_is_applied_and_published_by_the_runner_without_a_rebuild(database_url):
    rig = Rig(database_url)
    try:
        rig.channels.put(ChannelPolicy("web", ("W1",), safety_stock=0), "test")
        rig.ledger.receive(SKUS[0], "W1", 5, "r")
        rig.ledger.receive(SKUS[0], "W2", 7, "r2")
        rig.projector.catch_up()
        depth = outbox.depth(rig.db)
        rig.channels.put(ChannelPolicy("web", LOCATIONS, safety_stock=2), "test")
        rig.projector.catch_up()
        sent = [orjson.loads(r["payload"]) for r in outbox.pending(rig.db, 1000)[depth:]]
        assert [(m["sku"], m["available"]) for m in sent] == [(SKUS[0], 10)]
    finally:
        rig.close()
