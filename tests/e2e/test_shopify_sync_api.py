"""`PUT /v1/channels/{channel}` with a Shopify target, `GET /v1/shopify/sync`, `inventory_item` mappings."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from e2e_api import Api, make_api, project
from standins.shopify_admin import ShopifyAdminStandIn

from ledger import commands as c

SHOP = "e2e.myshopify.com"
LOC = "gid://shopify/Location/5"
ITEM = "gid://shopify/InventoryItem/42"


@pytest.fixture
def shopify() -> Iterator[ShopifyAdminStandIn]:
    s = ShopifyAdminStandIn({"tok": SHOP}).start()
    yield s
    s.stop()


@pytest.fixture
def sapi(sqlite_url: str, shopify: ShopifyAdminStandIn) -> Iterator[Api]:
    yield from make_api(sqlite_url, shopify_shops=f"{SHOP}=tok", shopify_admin_url=shopify.url)


def run_push(api: Api) -> None:
    project(api)
    for worker in api.container.shopify_sync.workers:  # feeder first, then the shop's pusher
        while worker.step():
            pass


def test_a_channel_with_a_shopify_target_is_pushed_and_the_sync_is_visible(
    sapi: Api, shopify: ShopifyAdminStandIn
) -> None:
    shopify.add_item(SHOP, ITEM, "TEE-M", {LOC: 0})
    body = {"locations": ["WH1"], "safety_stock": 1, "shopify": {"shop": SHOP, "location_id": LOC}}
    r = sapi.client.put("/v1/channels/online", json=body, headers=sapi.auth("admin"))
    assert r.status_code == 200, r.text
    assert r.json()["shopify"] == {"shop": SHOP, "location_id": LOC}
    assert sapi.get("/v1/channels/online").json()["shopify"] == {"shop": SHOP, "location_id": LOC}
    sapi.container.ledger.execute(c.ReceiveStock(sku="TEE-M", location="WH1", quantity=6, reference="r1"))
    project(sapi)
    before = sapi.get("/v1/shopify/sync").json()["shops"][0]
    assert before["shop"] == SHOP and before["recovery"] == {"checkpoint": None, "last_run_at": None}
    run_push(sapi)
    assert shopify.level(SHOP, ITEM, LOC) == 5
    r = sapi.get("/v1/shopify/sync")
    assert r.status_code == 200
    shop = r.json()["shops"][0]
    assert set(shop) == {"shop", "pending", "oldest_pending_seconds", "last_accepted", "throttle",
                         "stale_compares", "failed", "recovery"}
    assert shop["pending"] == 0 and shop["oldest_pending_seconds"] == 0 and shop["failed"] == 0
    assert shop["last_accepted"]["position"] == sapi.container.projector.head()
    assert set(shop["throttle"]) == {"currently_available", "maximum_available", "restore_rate"}
    m = sapi.get("/v1/mappings/shopify/inventory_item/42")
    assert m.status_code == 200 and m.json()["canonical"] == "TEE-M"
    assert "ledger_shopify_mutations_total" in sapi.client.get("/metrics").text
    # the console's operations page shows the same status
    r = sapi.client.post("/console/login", data={"token": sapi.tokens["audit:read"]},
                         headers={"accept": "text/html"}, follow_redirects=False)
    assert r.status_code == 303
    page = sapi.client.get("/console/operations", headers={"accept": "text/html"}).text
    assert 'id="shopify"' in page and f'data-shop="{SHOP}"' in page


def test_bad_targets_and_mappings_are_refused(sapi: Api) -> None:
    admin = sapi.auth("admin")
    for target in ({"shop": "other.myshopify.com", "location_id": LOC}, {"shop": SHOP, "location_id": "77"},
                   {"shop": SHOP}):
        r = sapi.client.put("/v1/channels/web", json={"locations": ["W"], "safety_stock": 0, "shopify": target},
                            headers=admin)
        assert r.status_code == 422, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
    assert sapi.get("/v1/channels/web").status_code == 404  # nothing written
    r = sapi.client.put("/v1/mappings/pos/inventory_item/1", json={"canonical": "X"}, headers=admin)
    assert r.status_code == 422
    assert sapi.client.get("/v1/shopify/sync").status_code == 401
    assert sapi.get("/v1/shopify/sync", scope="ingest:write").status_code == 403
