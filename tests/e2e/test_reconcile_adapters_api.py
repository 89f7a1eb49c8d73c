"""Diagnosis kinds produced by real scenarios through the POS adapter and the inbox."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from e2e_api import uid


def now() -> str:
    time.sleep(0.002)
    return datetime.now(UTC).isoformat()


def batch(store: str, batch_id: str, seq: int, item: str, qty: int) -> dict:
    return {
        "store": store,
        "batch_id": batch_id,
        "sequence": seq,
        "transactions": [
            {
                "txn_id": uid("t"),
                "type": "sale",
                "occurred_at": now(),
                "lines": [{"item": item, "quantity": qty}],
            }
        ],
    }


def setup(api) -> tuple[str, str, str]:
    store, item, sku = uid("S"), uid("I"), uid("SKU-")
    api.container.mappings.set("pos", "location", store, "STORE-" + store, "test")
    api.container.mappings.set("pos", "sku", item, sku, "test")
    r = api.post(
        "/v1/stock/receipts",
        {"sku": sku, "location": "STORE-" + store, "quantity": 10, "reference": uid("po-")},
    )
    assert r.status_code in (200, 201), r.text
    return store, item, sku


def post_batch(api, body: dict) -> None:
    r = api.post("/v1/pos/batches", body)
    assert r.status_code in (200, 201, 202), r.text
    while api.container.intake.step():
        pass


def reconcile(api, source: str, sku: str, location: str, quantity: int) -> dict:
    r = api.post(
        "/v1/reconciliations",
        {
            "source": source,
            "observed_at": now(),
            "levels": [{"sku": sku, "location": location, "quantity": quantity}],
        },
        scope="audit:read",
    )
    assert r.status_code == 200, r.text
    return r.json()


def test_a_missing_pos_batch_is_named_as_the_possible_cause(api):
    store, item, sku = setup(api)
    post_batch(api, batch(store, "b1", 1, item, 1))
    post_batch(api, batch(store, "b3", 3, item, 1))  # batch 2 (3 units sold) never arrived
    (m,) = reconcile(api, "pos", sku, store, 5)["mismatches"]
    assert m["ledger"] == 8 and m["delta"] == -3
    assert [(c["kind"], c["basis"]) for c in m["causes"]] == [("pos-sequence-gap", "possible")]
    assert f"pos:{store}:2" in m["causes"][0]["messages"]


def test_a_batch_delivered_twice_explains_an_erp_that_counted_it_twice(api):
    store, item, sku = setup(api)
    b = batch(store, "b1", 1, item, 2)
    post_batch(api, b)
    post_batch(api, b)
    (m,) = reconcile(api, "erp", sku, "STORE-" + store, 6)["mismatches"]
    assert m["ledger"] == 8
    assert [(c["kind"], c["quantity"]) for c in m["causes"]] == [("duplicate-refused", -2)]


def test_a_batch_parked_for_an_unknown_item_explains_the_store_count(api):
    store, item, sku = setup(api)
    post_batch(api, batch(store, "b1", 1, uid("UNKNOWN-"), 4))
    (m,) = reconcile(api, "pos", sku, store, 6)["mismatches"]
    assert m["ledger"] == 10
    assert [(c["kind"], c["quantity"]) for c in m["causes"]] == [("parked-message", -4)]
