"""Missed webhooks recovered through the orders query (stand-in), into the inbox, exactly once."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import orjson
import pytest
from standins.shopify_admin import ShopifyAdminStandIn

from adapters.config import Settings
from adapters.inbox import fingerprint
from adapters.shopify_admin import AdminClient
from adapters.shopify_recovery import Recovery
from bootstrap import Container, bootstrap
from ledger import commands as c

SHOP = "recover.myshopify.com"


def wait_until(cond: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def order(n: int, updated: str, cancelled: bool = False) -> dict[str, object]:
    oid = 5550000 + n
    return {
        "id": f"gid://shopify/Order/{oid}",
        "legacyResourceId": str(oid),
        "name": f"#{n}",
        "createdAt": updated,
        "updatedAt": updated,
        "cancelledAt": updated if cancelled else None,
        "cancelReason": "CUSTOMER" if cancelled else None,
        "displayFinancialStatus": "PAID",
        "displayFulfillmentStatus": "UNFULFILLED",
        "lineItems": {
            "nodes": [
                {
                    "id": f"gid://shopify/LineItem/{oid}1",
                    "sku": "MUG",
                    "quantity": 1,
                    "currentQuantity": 1,
                    "variant": None,
                }
            ]
        },
    }


@pytest.fixture
def shopify() -> Iterator[ShopifyAdminStandIn]:
    s = ShopifyAdminStandIn({"tok": SHOP}).start()
    yield s
    s.stop()


@pytest.fixture
def container(pg_url: str, shopify: ShopifyAdminStandIn) -> Iterator[Container]:
    cont = bootstrap(
        Settings(database_url=pg_url, shopify_shops=f"{SHOP}=tok", shopify_admin_url=shopify.url)
    )
    yield cont
    cont.close()


def drain(cont: Container) -> None:
    intake = cont.intake
    while intake.step():
        pass


def test_missed_orders_are_recovered_once_and_a_late_webhook_changes_nothing(
    container: Container, shopify: ShopifyAdminStandIn
) -> None:
    container.ledger.execute(c.ReceiveStock(sku="MUG", location="WH1", quantity=20, reference="r"))
    from adapters.channels import ChannelPolicy

    container.channels.put(ChannelPolicy("online", ("WH1",)), "test")
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for n in range(7):
        shopify.add_order(SHOP, order(n, now, cancelled=(n == 6)))
    recovery = Recovery(container.db, AdminClient(SHOP, "tok", shopify.url), container.inbox, page_size=3)
    recovery.step()
    drain(container)
    history = container.ledger.history
    assert all(history.order(str(5550000 + n)) is not None for n in range(7))
    first = container.ledger.app.recorder.max_position()  # type: ignore[attr-defined]  # the ledger's recorders add it
    status = container.shopify_sync.status()["shops"][0]
    assert status["recovery"]["checkpoint"] == now and status["recovery"]["last_run_at"]
    assert shopify.count("query") == 3  # pages of 3, 3 and 1
    # a late webhook of a recovered order, and a second recovery run: nothing new in the ledger
    late = {"id": 5550001, "line_items": [{"id": 55500011, "sku": "MUG", "quantity": 1}]}
    container.inbox.store(
        "shopify",
        "webhook-late-1",
        "orders/create",
        orjson.dumps(late),
        {"x-shopify-shop-domain": SHOP},
        fingerprint(late),
    )
    recovery.step()
    drain(container)
    assert container.ledger.app.recorder.max_position() == first  # type: ignore[attr-defined]  # the ledger's recorders add it
    assert history.order("5550006").stage == "cancelled"  # type: ignore[union-attr]  # the order exists


def test_the_checkpoint_stays_when_a_page_fails(container: Container, shopify: ShopifyAdminStandIn) -> None:
    for n in range(4):
        shopify.add_order(SHOP, order(n, f"2099-01-0{n + 1}T00:00:00Z"))
    recovery = Recovery(container.db, AdminClient(SHOP, "tok", shopify.url), container.inbox, page_size=2)
    start = recovery.checkpoint()
    shopify.fail_next(1, 503)
    recovery.step()
    assert recovery.checkpoint() == start  # nothing stored, nothing moved
    recovery.step()
    assert recovery.checkpoint() == "2099-01-04T00:00:00Z"
    rows = container.db.query("SELECT COUNT(*) AS n FROM inbox WHERE external_id LIKE 'recovered:%%'")
    assert rows[0]["n"] == 4
