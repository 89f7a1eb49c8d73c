"""Two inbox workers on one PostgreSQL database: each message is applied once, orders in order."""

from __future__ import annotations

import threading
from typing import Any

import orjson

from adapters.config import Settings
from adapters.inbox import Status, fingerprint
from bootstrap import Container, bootstrap
from ledger.ports import StaticLocations

SHOP = "two-workers.myshopify.com"
ORDERS = 30


def _order(order_id: int, updated: bool) -> dict[str, Any]:
    return {
        "id": order_id,
        "name": f"#{order_id}",
        "updated_at": "2026-11-20T10:05:00-05:00" if updated else "2026-11-20T10:00:00-05:00",
        "financial_status": "refunded" if updated else "paid",
        "line_items": [{"id": order_id * 10, "variant_id": 700 + order_id % 3, "sku": None, "quantity": 1}],
    }


def _deliver(c: Container) -> int:
    n = 0
    for o in range(1, ORDERS + 1):
        for topic in ["orders/create"] + (["orders/updated"] if o % 3 == 0 else []):
            payload = _order(o, topic != "orders/create")
            headers = {"x-shopify-topic": topic, "x-shopify-shop-domain": SHOP}
            stored = c.inbox.store(
                "shopify", f"wh-{o}-{topic}", topic, orjson.dumps(payload), headers, fingerprint(payload)
            )
            assert stored.created
            n += 1
    return n


def test_two_workers_apply_every_message_once_with_the_right_status_and_orders_in_order(pg_url: str) -> None:
    locations = StaticLocations({"online": ["WH1"]})
    a = bootstrap(Settings(database_url=pg_url), locations=locations)
    b = bootstrap(Settings(database_url=pg_url), locations=locations)
    try:
        for i in range(3):
            a.mappings.set("shopify", "sku", str(700 + i), f"SKU-{i}", "test")
            a.ledger.receive(f"SKU-{i}", "WH1", 100, f"seed-{i}")
        total = _deliver(a)
        start = threading.Barrier(2)
        errors: list[BaseException] = []

        def work(c: Container) -> None:
            try:
                start.wait(timeout=30)
                for _ in range(10_000):
                    c.intake.step(limit=4)  # small claims, so the two interleave
                    if not c.inbox.list(status=Status.RECEIVED, limit=1):
                        return
                raise AssertionError("the inbox did not drain")
            except BaseException as e:
                errors.append(e)

        threads = [threading.Thread(target=work, args=(c,)) for c in (a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert errors == [] and not any(t.is_alive() for t in threads)

        rows = a.inbox.list(limit=1000)
        assert len(rows) == total
        # Once each: no single delivery is mislabelled duplicate, none was tried twice (an update
        # applied before its order's capture would have waited first).
        assert {r["status"] for r in rows} == {Status.APPLIED}, [(r["id"], r["status"]) for r in rows]
        assert {r["attempts"] for r in rows} == {1}
        for o in range(1, ORDERS + 1):
            order = a.ledger.history.order(str(o))
            assert order is not None
            assert order.platform_status["financial_status"] == ("refunded" if o % 3 == 0 else "paid")
        reserved = sum(s.reserved for i in range(3) if (s := a.ledger.history.stock(f"SKU-{i}", "WH1")))
        assert reserved == ORDERS
    finally:
        b.close()
        a.close()


def test_one_step_applies_each_order_in_order_and_other_orders_alongside(database_url: str) -> None:
    c = bootstrap(Settings(database_url=database_url), locations=StaticLocations({"online": ["WH1"]}))
    try:
        for i in range(3):
            c.mappings.set("shopify", "sku", str(700 + i), f"SKU-{i}", "test")
            c.ledger.receive(f"SKU-{i}", "WH1", 100, f"seed-{i}")
        total = _deliver(c)  # order 3's update comes right after its capture, before order 4
        assert c.intake.step() == total  # the updates wait for a second run of the same step
        rows = c.inbox.list(limit=1000)
        assert {r["status"] for r in rows} == {Status.APPLIED} and {r["attempts"] for r in rows} == {1}
        for o in (3, 4, 6):
            order = c.ledger.history.order(str(o))
            assert order is not None
            assert order.platform_status["financial_status"] == ("refunded" if o % 3 == 0 else "paid")
    finally:
        c.close()


def test_a_run_reads_from_the_store_only_the_orders_that_exist(database_url: str) -> None:
    """A run asks once which of the orders it names exist: a new order's `orders/create` is
    translated without reading its stream, a create sent again for an order that exists is read
    and recognised as a duplicate."""
    from ledger.bounds import order_id as order_uuid

    c = bootstrap(Settings(database_url=database_url), locations=StaticLocations({"online": ["WH1"]}))
    try:
        for i in range(3):
            c.mappings.set("shopify", "sku", str(700 + i), f"SKU-{i}", "test")
            c.ledger.receive(f"SKU-{i}", "WH1", 100, f"seed-{i}")

        def deliver(orders: range, tag: str) -> None:
            for o in orders:
                payload = _order(o, False)
                headers = {"x-shopify-topic": "orders/create", "x-shopify-shop-domain": SHOP}
                body = orjson.dumps(payload)
                assert c.inbox.store(
                    "shopify", f"wh-{tag}-{o}", "orders/create", body, headers, fingerprint(payload)
                ).created

        deliver(range(1, 6), "first")
        assert c.intake.step() == 5
        read: list[Any] = []
        repository = c.ledger.app.repository
        inner = repository.get

        def counted(agg_id: Any, *args: Any, **kwargs: Any) -> Any:
            read.append(agg_id)
            return inner(agg_id, *args, **kwargs)

        repository.get = counted  # type: ignore[method-assign]  # counting the store reads of this step
        deliver(range(1, 21), "again")  # orders 1-5 again (another webhook id), 6-20 new
        assert c.intake.step() == 20
        repository.get = inner  # type: ignore[method-assign]  # as it was
        new = {order_uuid(str(o)) for o in range(6, 21)}
        assert not new & set(read), "a new order's stream was read"
        assert {order_uuid(str(o)) for o in range(1, 6)} <= set(read)
        rows = {r["external_id"]: r["status"] for r in c.inbox.list(limit=1000)}
        assert {rows[f"wh-again-{o}"] for o in range(1, 6)} == {Status.DUPLICATE}
        assert {rows[f"wh-again-{o}"] for o in range(6, 21)} == {Status.APPLIED}
        assert all(c.ledger.history.order(str(o)) is not None for o in range(1, 21))
    finally:
        c.close()
