"""Incremental read models equal a rebuild; corrections (policy changes, rebuilds) come at newer positions."""

from __future__ import annotations

import random
import uuid

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from projection_support import LOCATIONS, SKUS, Rig, random_command, random_policy, snapshot

from adapters import outbox
from adapters.channels import ChannelPolicy
from adapters.outbox import subject_token
from projections.rebuild import rebuild
from projections.runner import Projector


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
        depth = outbox.depth(rig.db)
        for name in ("ats", "orders", "stock"):
            result = rebuild(rig.projector, name, batch_size=11)
            assert result["published"] == 0
        rig.projector.catch_up()  # the three markers: nothing to correct, nothing to publish
        assert outbox.depth(rig.db) == depth
        assert snapshot(rig.db) == live
        positions = {r["name"]: r["position"] for r in rig.projector.status()}
        assert set(positions.values()) == {rig.projector.head()}
    finally:
        rig.close()


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), steps=st.integers(5, 30))
def test_two_runners_taking_turns_never_fold_onto_rows_the_other_changed(database_url, seed, steps):
    """Each projector carries the rows of its last batch into the next (`Projector._carry`); a
    batch by another runner in between (another process) must make it read them again."""
    rnd = random.Random(seed)
    rig = Rig(database_url)
    other = Projector(rig.db, rig.ledger.app, rig.channels, batch_size=5, record=rig.ledger.execute)
    try:
        prefix = uuid.uuid4().hex[:8]
        orders: list[str] = []
        rig.channels.put(random_policy(rnd, "web"), "test")
        for _ in range(steps):
            random_command(rig, rnd, prefix, orders)
            if rnd.random() < 0.6:
                rnd.choice([rig.projector, other]).step()
        rig.projector.catch_up()
        other.catch_up()
        live = snapshot(rig.db)
        assert {(r["channel"], r["sku"]): r["available"] for r in live["ats"]} == expected_ats(rig)
        for name in ("ats", "orders", "stock"):
            assert rebuild(rig.projector, name, batch_size=11)["published"] == 0
        assert snapshot(rig.db) == live
    finally:
        rig.close()


def sent_since(rig: Rig, depth: int) -> list[dict]:
    return [orjson.loads(r["payload"]) for r in outbox.pending(rig.db, 100_000)[depth:]]


def last_positions(rig: Rig, prefix: str) -> dict[str, int]:
    """The newest position published per subject so far."""
    out: dict[str, int] = {}
    for r in outbox.pending(rig.db, 100_000):
        if r["subject"].startswith(prefix):
            out[r["subject"]] = max(out.get(r["subject"], 0), orjson.loads(r["payload"])["position"])
    return out


def test_a_rebuild_corrects_exactly_the_wrong_ats_values_at_a_strictly_newer_position(database_url):
    rig = Rig(database_url)
    try:
        rig.channels.put(ChannelPolicy("web", ("W1", "W2"), safety_stock=1), "test")
        for i, sku in enumerate(SKUS):
            rig.ledger.receive(sku, "W1", 10 + i, f"r{i}")
            rig.ledger.receive(sku, "W2", 3, f"q{i}")
        rig.projector.catch_up()
        right = expected_ats(rig)
        before = last_positions(rig, "ledger.ats.")
        depth = outbox.depth(rig.db)
        # a read-model bug: two live values are wrong (one too high, one vanished)
        rig.db.script(
            [
                f"UPDATE ats SET available = 999 WHERE sku = '{SKUS[0]}'",
                f"DELETE FROM ats WHERE sku = '{SKUS[1]}'",
            ]
        )
        result = rebuild(rig.projector, "ats")
        assert result["published"] == 2
        assert sent_since(rig, depth) == []  # nothing goes out before the marker is in the log
        marker = rig.projector.head()
        rig.projector.catch_up()
        sent = sent_since(rig, depth)
        assert {(m["channel"], m["sku"]): m["available"] for m in sent} == {
            k: v for k, v in right.items() if k[1] in SKUS[:2]
        }
        assert all(m["position"] == marker for m in sent)
        for m in sent:  # a consumer that drops messages not newer than the last one applies these
            assert m["position"] > before[f"ledger.ats.web.{subject_token(m['sku'])}"]
        assert {(r["channel"], r["sku"]): r["available"] for r in snapshot(rig.db)["ats"]} == right
        rig.projector.catch_up()
        assert len(sent_since(rig, depth)) == 2  # published once
    finally:
        rig.close()


def test_an_orders_rebuild_publishes_only_the_stages_it_corrected(database_url):
    rig = Rig(database_url)
    try:
        rig.channels.put(ChannelPolicy("web", ("W1",)), "test")
        rig.ledger.receive(SKUS[0], "W1", 10, "r")
        for o in ("o1", "o2", "o3"):
            rig.ledger.capture_order(o, "web", [{"line_id": "1", "sku": SKUS[0], "quantity": 1}])
        rig.ledger.ship("o2", "s1", [{"line_id": "1", "quantity": 1}])
        rig.projector.catch_up()
        before = last_positions(rig, "ledger.orders.")
        depth = outbox.depth(rig.db)
        rig.db.script(["UPDATE order_views SET stage = 'cancelled' WHERE order_id = 'o2'"])
        result = rebuild(rig.projector, "orders")
        assert result["published"] == 1
        rig.projector.catch_up()
        sent = sent_since(rig, depth)
        assert [(m["order_id"], m["stage"]) for m in sent] == [("o2", "shipped")]
        assert sent[0]["position"] > before["ledger.orders.o2"]
        assert sent[0]["position"] == rig.projector.head()
    finally:
        rig.close()


def test_a_policy_change_is_published_at_its_own_position_in_the_log(database_url):
    rig = Rig(database_url)
    try:
        rig.channels.put(ChannelPolicy("web", ("W1",), safety_stock=0), "test")
        rig.ledger.receive(SKUS[0], "W1", 5, "r")
        rig.ledger.receive(SKUS[0], "W2", 7, "r2")
        rig.ledger.receive(SKUS[1], "W1", 1, "r3")
        rig.projector.catch_up()
        before = last_positions(rig, "ledger.ats.")
        depth = outbox.depth(rig.db)
        rig.channels.put(ChannelPolicy("web", LOCATIONS, safety_stock=2), "test")
        changed_at = rig.projector.head()  # the PolicyChanged event
        rig.projector.catch_up()
        sent = sent_since(rig, depth)
        assert {m["sku"]: m["available"] for m in sent} == {SKUS[0]: 10, SKUS[1]: 0}
        assert all(m["position"] == changed_at for m in sent)
        assert all(m["position"] > before[f"ledger.ats.web.{subject_token(m['sku'])}"] for m in sent)
        # the same version again (a retried PUT, a restart's sync) changes nothing
        rig.channels.sync()
        rig.projector.catch_up()
        assert len(sent_since(rig, depth)) == 2
    finally:
        rig.close()


def test_policies_stored_before_they_were_facts_are_recorded_by_the_sync(database_url):
    rig = Rig(database_url)
    try:
        rig.channels.record = None  # an older version of the service: the table only
        rig.channels.put(ChannelPolicy("web", ("W1",), safety_stock=1), "test")
        rig.ledger.receive(SKUS[0], "W1", 5, "r")
        rig.projector.catch_up()
        assert snapshot(rig.db)["ats"] == []
        rig.channels.record = rig.ledger.execute
        assert rig.channels.sync() == 1
        rig.projector.catch_up()
        assert [(r["sku"], r["available"]) for r in snapshot(rig.db)["ats"]] == [(SKUS[0], 4)]
    finally:
        rig.close()
