"""The outbound ATS push against the Admin API stand-in (PostgreSQL): convergence, coalescing,
pacing, stale compares, outage and restart, two workers, unresolvable SKUs."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from standins.shopify_admin import ShopifyAdminStandIn

from adapters.channels import ChannelPolicy
from adapters.config import Settings
from adapters.exceptions import list_exceptions
from adapters.shopify_admin import AdminClient
from adapters.shopify_push import Feeder, Pusher, failed_writes
from bootstrap import Container, bootstrap
from ledger import commands as c

SHOP = "ledger-test.myshopify.com"
TOKEN = "shpat_test"
LOC = "gid://shopify/Location/77"
WH = "WH1"


def item(n: int) -> str:
    return f"gid://shopify/InventoryItem/{1000 + n}"


def wait_until(cond: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def shopify() -> Iterator[ShopifyAdminStandIn]:
    s = ShopifyAdminStandIn({TOKEN: SHOP}).start()
    yield s
    s.stop()


def make(pg_url: str, shopify: ShopifyAdminStandIn) -> Container:
    return bootstrap(
        Settings(database_url=pg_url, shopify_shops=f"{SHOP}={TOKEN}", shopify_admin_url=shopify.url)
    )


@pytest.fixture
def container(pg_url: str, shopify: ShopifyAdminStandIn) -> Iterator[Container]:
    cont = make(pg_url, shopify)
    yield cont
    cont.close()


def target(cont: Container, channel: str = "online") -> None:
    cont.channels.put(ChannelPolicy(channel, (WH,)), "test")
    cont.shopify_sync.targets.set(channel, SHOP, LOC, "test")


def receive(cont: Container, sku: str, q: int) -> None:
    cont.ledger.execute(c.ReceiveStock(sku=sku, location=WH, quantity=q, reference=uuid.uuid4().hex))


def adjust(cont: Container, sku: str, delta: int) -> None:
    cont.ledger.execute(
        c.AdjustStock(sku=sku, location=WH, delta=delta, reason="cycle_count", reference=uuid.uuid4().hex)
    )


def test_ats_changes_reach_shopify_coalesced_with_compare_and_idempotency(
    container: Container, shopify: ShopifyAdminStandIn
) -> None:
    for n in range(5):
        shopify.add_item(SHOP, item(n), f"SKU-{n}", {LOC: 3})
    target(container)
    for n in range(5):
        receive(container, f"SKU-{n}", 10 + n)
    for _ in range(20):  # bursts on one SKU: only the newest value matters
        adjust(container, "SKU-0", 1)
    container.start_workers()
    wait_until(
        lambda: all(shopify.level(SHOP, item(n), LOC) == (30 if n == 0 else 10 + n) for n in range(5)),
        what="Shopify to hold the ATS",
    )
    muts = shopify.mutations()
    assert sum(m.quantities for m in muts) < 25  # 25 changes, coalesced and batched
    assert all(m.idempotency_key for m in muts)
    wait_until(lambda: container.shopify_sync.status()["shops"][0]["pending"] == 0, what="no pending")
    status = container.shopify_sync.status()["shops"][0]
    assert status["shop"] == SHOP and status["failed"] == 0
    assert status["last_accepted"]["position"] > 0
    assert status["throttle"]["restore_rate"] == 100.0
    # learned identity: a versioned mapping shopify/inventory_item/{id} -> SKU
    mappings = container.mappings
    wait_until(
        lambda: mappings.get("shopify", "inventory_item", "1000") is not None, what="the learned mapping"
    )
    assert mappings.get("shopify", "inventory_item", "1000")[0] == "SKU-0"


def test_edit_behind_the_ledgers_back_is_a_stale_compare_then_fixed(
    container: Container, shopify: ShopifyAdminStandIn
) -> None:
    shopify.add_item(SHOP, item(1), "SKU-1", {LOC: 0})
    target(container)
    receive(container, "SKU-1", 10)
    container.start_workers()
    wait_until(lambda: shopify.level(SHOP, item(1), LOC) == 10, what="first push")
    shopify.set_level(SHOP, item(1), LOC, 7)  # a sale or a merchant edit in Shopify
    adjust(container, "SKU-1", 5)
    wait_until(lambda: shopify.level(SHOP, item(1), LOC) == 15, what="the push after a stale compare")
    assert any(m.stale for m in shopify.mutations())
    status = container.shopify_sync.status()["shops"][0]
    assert status["stale_compares"] >= 1
    obs = container.db.query(
        "SELECT available FROM shopify_observations WHERE kind = 'level' AND object_id = '1001' AND location_id = '77'"
    )
    assert obs and obs[0]["available"] in (7, 15)
    drift = list_exceptions(container.db, "drift")
    assert [d["key"] for d in drift] == [f"shopify/SKU-1/{LOC}"]  # not explained by the ledger's record
    assert drift[0]["detail"]["external"] == 7 and drift[0]["detail"]["ledger"] == 15


def test_a_stale_compare_explained_by_the_ledgers_own_sales_is_routine(
    container: Container, shopify: ShopifyAdminStandIn
) -> None:
    shopify.add_item(SHOP, item(2), "SKU-2", {LOC: 0})
    target(container)
    receive(container, "SKU-2", 10)
    container.start_workers()
    wait_until(lambda: shopify.level(SHOP, item(2), LOC) == 10, what="first push")
    shopify.set_level(SHOP, item(2), LOC, 8)  # Shopify sold 2 ...
    adjust(container, "SKU-2", -3)  # ... and the ledger's own record took 3 (the captured order and more)
    wait_until(lambda: shopify.level(SHOP, item(2), LOC) == 7, what="the push after a routine stale compare")
    assert any(m.stale for m in shopify.mutations())
    assert list_exceptions(container.db, "drift") == []


def test_throttling_is_back_pressure_and_nothing_is_lost(pg_url: str) -> None:
    shopify = ShopifyAdminStandIn(
        {TOKEN: SHOP}, restore_rate=20.0, maximum_available=25.0, throttle_429=True
    ).start()
    try:
        cont = make(pg_url, shopify)
        try:
            for n in range(8):
                shopify.add_item(SHOP, item(n), f"SKU-{n}", {LOC: 0})
            target(cont)
            for n in range(8):
                receive(cont, f"SKU-{n}", 1 + n)
            cont.start_workers()
            for round_ in range(6):  # changes keep coming while the bucket is small
                adjust(cont, f"SKU-{round_}", 2)
                time.sleep(0.05)
            want = {n: 1 + n + (2 if n < 6 else 0) for n in range(8)}
            wait_until(
                lambda: all(shopify.level(SHOP, item(n), LOC) == want[n] for n in range(8)),
                60,
                "convergence under a small bucket",
            )
        finally:
            cont.close()
    finally:
        shopify.stop()


def test_outage_and_restart_lose_nothing_and_apply_nothing_twice(
    pg_url: str, shopify: ShopifyAdminStandIn
) -> None:
    shopify.add_item(SHOP, item(1), "SKU-1", {LOC: 0})
    shopify.add_item(SHOP, item(2), "SKU-2", {LOC: 0})
    cont = make(pg_url, shopify)
    try:
        target(cont)
        receive(cont, "SKU-1", 4)
        shopify.fail_next(2, 503)
        shopify.drop_after_apply = True
        shopify.drop_next(1)  # applied, but the answer is lost
        cont.start_workers()
        wait_until(lambda: shopify.level(SHOP, item(1), LOC) == 4, what="the write through the faults")
    finally:
        cont.close()
    receive_later = make(pg_url, shopify)  # a restart: changes made while no pusher ran
    try:
        receive(receive_later, "SKU-2", 9)
        adjust(receive_later, "SKU-1", 1)
        receive_later.start_workers()
        wait_until(
            lambda: shopify.level(SHOP, item(2), LOC) == 9 and shopify.level(SHOP, item(1), LOC) == 5,
            what="the push after a restart",
        )
        wait_until(lambda: receive_later.shopify_sync.status()["shops"][0]["pending"] == 0, what="drained")
    finally:
        receive_later.close()
    applied = [m for m in shopify.mutations() if not m.stale and not m.replayed]
    # each value was applied once: 4 for SKU-1, then 9 and 5 (one batch or two), never a replayed double
    assert sum(m.quantities for m in applied) <= 3


def test_two_workers_never_push_the_same_write_twice(pg_url: str, shopify: ShopifyAdminStandIn) -> None:
    a, b = make(pg_url, shopify), make(pg_url, shopify)
    try:
        for n in range(40):
            shopify.add_item(SHOP, item(n), f"SKU-{n}", {LOC: 0})
        target(a)
        for n in range(40):
            receive(a, f"SKU-{n}", 5)
        a.projector.catch_up()
        Feeder(a.db, [SHOP]).step()
        pa = Pusher(a.db, AdminClient(SHOP, TOKEN, shopify.url), a.mappings, batch=5)
        pb = Pusher(b.db, AdminClient(SHOP, TOKEN, shopify.url), b.mappings, batch=5)
        import threading

        def run(p: Pusher) -> None:
            while p.step():
                pass

        ts = [threading.Thread(target=run, args=(p,)) for p in (pa, pb)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        assert all(shopify.level(SHOP, item(n), LOC) == 5 for n in range(40))
        applied = [m for m in shopify.mutations() if not m.stale]
        assert sum(m.quantities for m in applied) == 40  # every item written exactly once
        assert pa.accepted and pb.accepted  # both worked
    finally:
        a.close()
        b.close()


def test_unresolvable_sku_is_an_exception_and_blocks_nothing(
    container: Container, shopify: ShopifyAdminStandIn
) -> None:
    shopify.add_item(SHOP, item(1), "SKU-1", {LOC: 0})
    target(container)
    receive(container, "GHOST", 3)  # Shopify has no variant with this SKU
    receive(container, "SKU-1", 6)
    container.start_workers()
    wait_until(lambda: shopify.level(SHOP, item(1), LOC) == 6, what="the resolvable SKU")
    wait_until(lambda: bool(list_exceptions(container.db, "shopify-unresolved-sku")), what="the exception")
    exc = list_exceptions(container.db, "shopify-unresolved-sku")[0]
    assert "GHOST" in exc["detail"]["reason"]
    assert failed_writes(container.db, SHOP)[0]["sku"] == "GHOST"
    # an operator sets the mapping: the write goes through
    shopify.add_item(SHOP, item(9), "ghost-renamed", {LOC: 1})
    container.mappings.set("shopify", "inventory_item", "1009", "GHOST", "ops")
    container.db.execute("UPDATE shopify_writes SET next_at = 0 WHERE sku = 'GHOST'")
    wait_until(lambda: shopify.level(SHOP, item(9), LOC) == 3, what="the write after the mapping")


def test_refused_token_is_a_failed_write_with_a_reason(pg_url: str, shopify: ShopifyAdminStandIn) -> None:
    shopify.add_item(SHOP, item(1), "SKU-1", {LOC: 0})
    cont = bootstrap(
        Settings(database_url=pg_url, shopify_shops=f"{SHOP}=revoked", shopify_admin_url=shopify.url)
    )
    try:
        target(cont)
        receive(cont, "SKU-1", 2)
        cont.start_workers()
        wait_until(lambda: bool(list_exceptions(cont.db, "shopify-write")), what="the failed write")
        status = cont.shopify_sync.status()["shops"][0]
        assert status["pending"] == 1 and status["failed"] == 1
        assert "access token" in failed_writes(cont.db, SHOP)[0]["reason"]
    finally:
        cont.close()


def test_a_sku_that_leaves_the_channel_is_written_as_zero(container: Container, shopify: ShopifyAdminStandIn) -> None:
    shopify.add_item(SHOP, item(3), "SKU-3", {LOC: 0})
    container.channels.put(ChannelPolicy("online", (WH, "WH2")), "test")
    container.shopify_sync.targets.set("online", SHOP, LOC, "test")
    container.ledger.execute(c.ReceiveStock(sku="SKU-3", location="WH2", quantity=4, reference="r-wh2"))
    container.start_workers()
    wait_until(lambda: shopify.level(SHOP, item(3), LOC) == 4, what="first push")
    container.channels.put(ChannelPolicy("online", (WH,)), "test")  # WH2 leaves the channel
    container.runner.wake()
    wait_until(lambda: shopify.level(SHOP, item(3), LOC) == 0, what="the SKU written as 0")


def test_reconciliation_reads_shopifys_levels_through_the_api(
    container: Container, shopify: ShopifyAdminStandIn
) -> None:
    from adapters.reconciliation.sources import ShopifyApiLevels

    for n in range(3):
        shopify.add_item(SHOP, item(n), f"SKU-{n}", {LOC: 0})
    target(container)
    for n in range(3):
        receive(container, f"SKU-{n}", 5)
    container.start_workers()
    wait_until(lambda: all(shopify.level(SHOP, item(n), LOC) == 5 for n in range(3)), what="the push")
    wait_until(lambda: container.shopify_sync.status()["shops"][0]["pending"] == 0, what="accepted")
    container.mappings.set("shopify", "location", "77", WH, "test")
    shopify.set_level(SHOP, item(2), LOC, 1)  # behind the ledger's back
    snap = ShopifyApiLevels(container.db, [AdminClient(SHOP, TOKEN, shopify.url)]).snapshot()
    assert snap is not None and snap.origin == "shopify-admin-api" and len(snap.levels) == 3
    report = container.reconciler.reconcile(snap)
    assert [(m["sku"], m["location"], m["delta"]) for m in report["mismatches"]] == [("SKU-2", WH, -4)]


def test_a_wrong_item_mapping_is_a_failed_write_until_the_operator_fixes_it(
    container: Container, shopify: ShopifyAdminStandIn
) -> None:
    shopify.add_item(SHOP, item(1), "SKU-1", {LOC: 0})
    container.mappings.set("shopify", "inventory_item", "999999", "SKU-1", "ops")  # no such item in Shopify
    target(container)
    receive(container, "SKU-1", 4)
    container.projector.catch_up()
    Feeder(container.db, [SHOP]).step()
    pusher = Pusher(container.db, AdminClient(SHOP, TOKEN, shopify.url), container.mappings)
    pusher.step()
    failed = failed_writes(container.db, SHOP)
    assert failed and failed[0]["sku"] == "SKU-1" and failed[0]["reason"]
    assert list_exceptions(container.db, "shopify-write")
    container.mappings.set("shopify", "inventory_item", "1001", "SKU-1", "ops")
    container.db.execute("UPDATE shopify_writes SET next_at = 0")
    pusher.step()
    pusher.step()
    assert shopify.level(SHOP, item(1), LOC) == 4
    assert failed_writes(container.db, SHOP) == []
    assert list_exceptions(container.db, "shopify-write") == []  # closed when Shopify accepted
