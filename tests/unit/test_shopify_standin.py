"""The Admin API stand-in behaves as Shopify documents it (and the ledger's client reads it right)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from standins.shopify_admin import ShopifyAdminStandIn

from adapters.shopify_admin import SET_QUANTITIES, AdminClient, Refused, Throttled, Unavailable

SHOP = "a.myshopify.com"
ITEM, ITEM2, LOC = "gid://shopify/InventoryItem/1", "gid://shopify/InventoryItem/2", "gid://shopify/Location/9"
MUTATION = SET_QUANTITIES % ' @idempotent(key: $key)'
MUTATION = MUTATION.replace("mutation SetAvailable($input: InventorySetQuantitiesInput!)",
                            "mutation SetAvailable($input: InventorySetQuantitiesInput!, $key: String!)")


@pytest.fixture
def api() -> Iterator[ShopifyAdminStandIn]:
    s = ShopifyAdminStandIn({"tok": SHOP}).start()
    s.add_item(SHOP, ITEM, "SKU-1", {LOC: 5})
    s.add_item(SHOP, ITEM2, "SKU-2", {LOC: 1})
    yield s
    s.stop()


def post(api: ShopifyAdminStandIn, query: str, variables: dict[str, Any] | None = None,
         token: str = "tok") -> httpx.Response:
    return httpx.post(
        f"{api.url}/admin/api/2026-04/graphql.json",
        json={"query": query, "variables": variables or {}},
        headers={"X-Shopify-Access-Token": token},
    )


def set_input(*qs: dict[str, Any]) -> dict[str, Any]:
    return {"name": "available", "reason": "correction", "referenceDocumentUri": "ledger://x/positions/1",
            "quantities": list(qs)}


def test_every_answer_carries_the_cost_and_throttle_status(api: ShopifyAdminStandIn) -> None:
    body = post(api, '{ productVariants(first: 5, query: "sku:SKU-1") { nodes { sku inventoryItem { id } } } }').json()
    assert body["data"]["productVariants"]["nodes"] == [{"sku": "SKU-1", "inventoryItem": {"id": ITEM}}]
    cost = body["extensions"]["cost"]
    assert cost["requestedQueryCost"] == cost["actualQueryCost"] > 0
    assert set(cost["throttleStatus"]) == {"maximumAvailable", "currentlyAvailable", "restoreRate"}
    assert cost["throttleStatus"]["restoreRate"] == 100.0


class PausableClock:
    """Monotonic time that stands still while frozen: the bucket restores only when the test
    lets time run, so a busy machine cannot refill it between two requests."""

    def __init__(self) -> None:
        self.offset = 0.0
        self.frozen_at: float | None = None

    def __call__(self) -> float:
        return self.frozen_at if self.frozen_at is not None else time.monotonic() - self.offset

    def freeze(self) -> None:
        self.frozen_at = self()

    def thaw(self) -> None:
        assert self.frozen_at is not None
        self.offset = time.monotonic() - self.frozen_at
        self.frozen_at = None


def test_an_empty_bucket_answers_throttled_and_restores_at_the_restore_rate() -> None:
    clock = PausableClock()
    clock.freeze()
    api = ShopifyAdminStandIn({"tok": SHOP}, restore_rate=5.0, maximum_available=30.0, clock=clock).start()
    try:
        api.add_item(SHOP, ITEM, "SKU-1", {LOC: 5})
        q = {"input": set_input({"inventoryItemId": ITEM, "locationId": LOC, "quantity": 1,
                                 "changeFromQuantity": None}), "key": "k"}
        answers = [post(api, MUTATION, {**q, "key": f"k{i}"}).json() for i in range(6)]
        throttled = [a for a in answers if "errors" in a]
        assert throttled, "six mutations of 10 points exceed a bucket of 30"
        t = throttled[0]
        assert t["errors"][0]["message"] == "Throttled"
        assert t["errors"][0]["extensions"]["code"] == "THROTTLED"
        assert t["extensions"]["cost"]["actualQueryCost"] is None
        assert "data" not in t
        low = t["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"]
        assert low < 10
        client = AdminClient(SHOP, "tok", api.url, clock=clock)  # the stand-in's time, as a real shop's
        client.throttle = None
        with pytest.raises(Throttled):  # the client learns the bucket from the answer
            client.levels([(ITEM, LOC)])
        throttled = api.count("throttled")
        clock.thaw()  # from here the bucket restores, in real time, at the restore rate
        for i in range(3):  # paced: it waits until the cost fits, and is not throttled again
            client.call(MUTATION, {**q, "key": f"x{i}"}, cost=10)
        assert client.levels([(ITEM, LOC)]) == {(ITEM, LOC): 1}
        assert client.throttle_waits >= 1 and api.count("throttled") == throttled
    finally:
        api.stop()


def test_http_429_throttling_is_reported_as_throttled() -> None:
    api = ShopifyAdminStandIn({"tok": SHOP}, maximum_available=5.0, throttle_429=True).start()
    try:
        r = post(api, "mutation($i: InventorySetQuantitiesInput!) { inventorySetQuantities(input: $i) "
                      "{ userErrors { code } } }",
                 {"i": set_input()})
        assert r.status_code == 429
        client = AdminClient(SHOP, "tok", api.url, sleep=lambda s: None)
        with pytest.raises(Throttled) as e:
            client.set_available([], "correction", "ledger://x", "k")
        assert e.value.retry_after > 0
    finally:
        api.stop()


def test_compare_and_set_stale_voids_the_whole_call(api: ShopifyAdminStandIn) -> None:
    r = post(api, MUTATION, {"key": "a", "input": set_input(
        {"inventoryItemId": ITEM, "locationId": LOC, "quantity": 8, "changeFromQuantity": 5},
        {"inventoryItemId": ITEM2, "locationId": LOC, "quantity": 3, "changeFromQuantity": 0},  # Shopify holds 1
    )}).json()
    errors = r["data"]["inventorySetQuantities"]["userErrors"]
    assert [e["code"] for e in errors] == ["CHANGE_FROM_QUANTITY_STALE"]
    assert errors[0]["field"] == ["input", "quantities", "1", "changeFromQuantity"]
    assert r["data"]["inventorySetQuantities"]["inventoryAdjustmentGroup"] is None
    assert api.level(SHOP, ITEM, LOC) == 5 and api.level(SHOP, ITEM2, LOC) == 1


def test_change_from_quantity_is_mandatory_and_null_opts_out(api: ShopifyAdminStandIn) -> None:
    r = post(api, MUTATION, {"key": "b", "input": set_input(
        {"inventoryItemId": ITEM, "locationId": LOC, "quantity": 8})}).json()
    assert r["data"]["inventorySetQuantities"]["userErrors"][0]["field"][-1] == "changeFromQuantity"
    assert api.level(SHOP, ITEM, LOC) == 5
    r = post(api, MUTATION, {"key": "c", "input": set_input(
        {"inventoryItemId": ITEM, "locationId": LOC, "quantity": 8, "changeFromQuantity": None})}).json()
    group = r["data"]["inventorySetQuantities"]["inventoryAdjustmentGroup"]
    assert group["changes"] == [{"name": "available", "delta": 3, "quantityAfterChange": 8}]
    assert group["referenceDocumentUri"] == "ledger://x/positions/1"


def test_idempotent_key_returns_the_first_result_and_applies_once(api: ShopifyAdminStandIn) -> None:
    v = {"key": "same", "input": set_input(
        {"inventoryItemId": ITEM, "locationId": LOC, "quantity": 9, "changeFromQuantity": 5})}
    first = post(api, MUTATION, v).json()["data"]
    api.set_level(SHOP, ITEM, LOC, 2)  # a sale in between
    again = post(api, MUTATION, v).json()["data"]
    assert again == first and not first["inventorySetQuantities"]["userErrors"]
    assert api.level(SHOP, ITEM, LOC) == 2  # the retry did not apply again
    assert [m.replayed for m in api.mutations()] == [False, True]


def test_documents_are_parsed_and_validated_against_the_schema(api: ShopifyAdminStandIn) -> None:
    assert "errors" in post(api, "{ nodes(ids: [1]) { id ").json()
    bad = post(api, "{ shop { name } }").json()
    assert "Cannot query field 'shop'" in bad["errors"][0]["message"]
    assert post(api, "{ nodes(ids: []) { id } }", token="wrong").status_code == 401


def test_levels_query_and_orders_pagination(api: ShopifyAdminStandIn) -> None:
    client = AdminClient(SHOP, "tok", api.url)
    assert client.levels([(ITEM, LOC), (ITEM2, LOC), (ITEM, "gid://shopify/Location/1")]) == {
        (ITEM, LOC): 5, (ITEM2, LOC): 1, (ITEM, "gid://shopify/Location/1"): None}
    for n in range(5):
        api.add_order(SHOP, {"id": f"gid://shopify/Order/{n}", "legacyResourceId": str(n), "name": f"#{n}",
                             "createdAt": "2026-01-01T00:00:00Z", "updatedAt": f"2026-01-0{n + 1}T00:00:00Z",
                             "displayFulfillmentStatus": "UNFULFILLED"})
    seen, cursor = [], None
    while True:
        nodes, cursor = client.orders("2026-01-02T00:00:00Z", cursor, first=2)
        seen += [o["legacyResourceId"] for o in nodes]
        if cursor is None:
            break
    assert seen == ["1", "2", "3", "4"]


def test_fault_switches(api: ShopifyAdminStandIn) -> None:
    client = AdminClient(SHOP, "tok", api.url, timeout=2.0)
    api.fail_next(1, 503)
    with pytest.raises(Unavailable):
        client.levels([(ITEM, LOC)])
    api.drop_next(1)
    with pytest.raises(Unavailable):
        client.levels([(ITEM, LOC)])
    api.delay_seconds = 3.0
    with pytest.raises(Unavailable):
        client.levels([(ITEM, LOC)])
    api.delay_seconds = 0
    assert client.levels([(ITEM, LOC)]) == {(ITEM, LOC): 5}
    with pytest.raises(Refused):
        AdminClient(SHOP, "revoked", api.url).levels([(ITEM, LOC)])
