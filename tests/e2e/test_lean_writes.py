"""The hot writes on the lean path (api.fastpath): the same answers as their FastAPI routes.

Each test drives one container through two apps: the service's app (lean path in front) and the
same app without it (`create_app(lean=False)`: every request through its route), and compares.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from e2e_api import Api, make_api, put_channel, uid

from adapters.shopify import sign
from api.app import create_app
from api.fastpath import FastPath

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

SECRET = "lean-secret"
VOLATILE = {"x-request-id", "x-correlation-id", "content-length", "date"}


@pytest.fixture
def both(database_url: str) -> Iterator[tuple[Api, TestClient]]:
    """(the service's app, the same container served without the lean path)."""
    for api in make_api(database_url, shopify_webhook_secrets=SECRET):
        plain = create_app(container=api.container, run_workers=False, lean=False)
        with TestClient(plain, raise_server_exceptions=False) as client:
            yield api, client


def lean_answers(api: Api, route: str) -> int:
    layer = getattr(api.client.app, "middleware_stack", None)
    while layer is not None and not isinstance(layer, FastPath):
        layer = getattr(layer, "app", None)
    assert isinstance(layer, FastPath), "the app has no lean path"
    return layer.answered.get(route, 0)


def post(client: TestClient, api: Api, path: str, body: Any, **headers: str) -> Any:
    headers = {"Content-Type": "application/json", **headers}
    return client.post(path, content=orjson.dumps(body), headers=api.auth("ingest:write", **headers))


def same(a: Any, b: Any, **swap: str) -> None:
    """Same status, headers (but ids and length) and body, once `swap` (b's text -> a's) is applied."""
    assert a.status_code == b.status_code, (a.text, b.text)
    text = b.text
    for new, old in swap.items():
        text = text.replace(new, old)
    assert a.json() == orjson.loads(text)
    assert {k: v for k, v in a.headers.items() if k not in VOLATILE} == {
        k: v for k, v in b.headers.items() if k not in VOLATILE
    }


def receipt(sku: str, loc: str, quantity: int = 10) -> dict[str, Any]:
    return {"sku": sku, "location": loc, "quantity": quantity, "reference": uid("ref-")}


def test_receipts_on_the_lean_path_answer_and_record_what_the_route_does(
    both: tuple[Api, TestClient],
) -> None:
    api, plain = both
    sku, loc = uid("sku-"), uid("wh-")
    post(api.client, api, "/v1/stock/receipts", receipt(uid("warm-"), loc))  # keeps the key's verdict
    before = lean_answers(api, "/v1/stock/receipts")
    first, second = receipt(sku, loc), receipt(sku, loc)
    routed = post(plain, api, "/v1/stock/receipts", first)
    lean = post(api.client, api, "/v1/stock/receipts", second)
    assert lean_answers(api, "/v1/stock/receipts") == before + 1
    assert routed.status_code == lean.status_code == 201
    assert lean.json()["on_hand"] == 20 and lean.headers["etag"] == f'"{lean.json()["version"]}"'
    assert {k: v for k, v in routed.json().items() if k not in ("on_hand", "available", "version")} == {
        k: v for k, v in lean.json().items() if k not in ("on_hand", "available", "version")
    }
    repeat_routed = post(plain, api, "/v1/stock/receipts", second)
    repeat_lean = post(api.client, api, "/v1/stock/receipts", second)
    same(repeat_routed, repeat_lean)
    assert repeat_lean.headers["idempotent-replayed"] == "true"
    events = api.get(f"/v1/stock/{sku}/{loc}/events").json()["items"]
    received = [e for e in events if e["type"] == "StockReceived"]
    assert len(received) == 2
    assert received[1]["correlation_id"] == lean.headers["x-correlation-id"]
    assert received[1]["causation_id"] == lean.headers["x-request-id"]


def test_an_order_captured_on_the_lean_path_matches_the_route_and_refusals_map_alike(
    both: tuple[Api, TestClient],
) -> None:
    api, plain = both
    sku, loc = uid("sku-"), uid("wh-")
    put_channel(api.client, api.auth(), "web", loc)
    post(api.client, api, "/v1/stock/receipts", receipt(sku, loc, 10))
    lines = [
        {"line_id": "1", "sku": sku, "quantity": 2},
        {"line_id": "2", "sku": sku, "quantity": 1, "location": loc},
    ]
    a, b = uid("o-"), uid("o-")
    before = lean_answers(api, "/v1/orders")
    routed = post(plain, api, "/v1/orders", {"order_id": a, "channel": "web", "lines": lines})
    lean = post(api.client, api, "/v1/orders", {"order_id": b, "channel": "web", "lines": lines})
    assert lean_answers(api, "/v1/orders") == before + 1
    assert lean.status_code == 201, lean.text
    same(routed, lean, **{b: a})
    same(
        post(plain, api, "/v1/orders", {"order_id": b, "channel": "web", "lines": lines}),
        post(api.client, api, "/v1/orders", {"order_id": b, "channel": "web", "lines": lines}),
    )
    too_many = [{"line_id": "1", "sku": sku, "quantity": 100}]
    c, d = uid("o-"), uid("o-")
    refused_routed = post(plain, api, "/v1/orders", {"order_id": c, "channel": "web", "lines": too_many})
    refused_lean = post(api.client, api, "/v1/orders", {"order_id": d, "channel": "web", "lines": too_many})
    assert refused_lean.status_code == 409
    assert refused_lean.json()["type"].endswith("insufficient-stock")
    same(refused_routed, refused_lean, **{d: c})
    conflict = [{"line_id": "1", "sku": sku, "quantity": 1}]
    same(
        post(plain, api, "/v1/orders", {"order_id": a, "channel": "web", "lines": conflict}),
        post(api.client, api, "/v1/orders", {"order_id": a, "channel": "web", "lines": conflict}),
    )
    assert api.container.ledger.history.stock(sku, loc).reserved == 6  # type: ignore[union-attr]  # received above


@pytest.mark.parametrize(
    "body",
    [
        {"sku": "S", "location": "L", "quantity": "5", "reference": "r"},  # no coercion
        {"sku": "S", "location": "L", "quantity": 0, "reference": "r"},
        {"sku": "S", "location": "L", "quantity": 5, "reference": "r", "extra": 1},
        {"sku": "S\x00", "location": "L", "quantity": 5, "reference": "r"},
        {"sku": "S", "location": "L", "quantity": 5},
        ["not", "an", "object"],
    ],
)
def test_a_body_the_lean_path_cannot_take_is_refused_by_the_route_in_its_words(
    both: tuple[Api, TestClient], body: Any
) -> None:
    api, plain = both
    post(api.client, api, "/v1/stock/receipts", receipt(uid("warm-"), uid("wh-")))
    before = lean_answers(api, "/v1/stock/receipts")
    routed = post(plain, api, "/v1/stock/receipts", body)
    lean = post(api.client, api, "/v1/stock/receipts", body)
    assert lean.status_code == 422 and lean.headers["content-type"] == "application/problem+json"
    same(routed, lean)
    assert lean_answers(api, "/v1/stock/receipts") == before
    for raw, ctype in (
        (b"{", "application/json"),
        (b"", "application/json"),
        (orjson.dumps(receipt("S", "L")), ""),
    ):
        headers = api.auth("ingest:write", **({"Content-Type": ctype} if ctype else {}))
        r = api.client.post("/v1/stock/receipts", content=raw, headers=headers)
        same(plain.post("/v1/stock/receipts", content=raw, headers=headers), r)
        assert r.status_code in (400, 422)


def test_keys_scopes_query_and_if_match_the_lean_path_leaves_to_the_route(
    both: tuple[Api, TestClient],
) -> None:
    api, plain = both
    loc = uid("wh-")
    post(api.client, api, "/v1/stock/receipts", receipt(uid("warm-"), loc))
    before = lean_answers(api, "/v1/stock/receipts")
    for headers in ({}, {"Authorization": "Bearer nope"}, api.auth("ats:read")):
        r = api.client.post("/v1/stock/receipts", json=receipt(uid("s-"), loc), headers=headers)
        p = plain.post("/v1/stock/receipts", json=receipt(uid("s-"), loc), headers=headers)
        assert r.status_code in (401, 403)
        same(p, r)
    queried = api.client.post(
        "/v1/stock/receipts?x=1", json=receipt(uid("s-"), loc), headers=api.auth("ingest:write")
    )
    assert queried.status_code == 422
    matched = post(api.client, api, "/v1/stock/receipts", receipt(uid("s-"), loc), **{"If-Match": '"0"'})
    assert matched.status_code == 201, matched.text
    assert lean_answers(api, "/v1/stock/receipts") == before


def test_an_idempotency_key_in_front_of_the_lean_path_replays_the_stored_answer(
    both: tuple[Api, TestClient],
) -> None:
    api, _ = both
    loc, key = uid("wh-"), uid("key-")
    post(api.client, api, "/v1/stock/receipts", receipt(uid("warm-"), loc))
    body = receipt(uid("s-"), loc)
    first = post(api.client, api, "/v1/stock/receipts", body, **{"Idempotency-Key": key})
    again = post(api.client, api, "/v1/stock/receipts", body, **{"Idempotency-Key": key})
    other = post(api.client, api, "/v1/stock/receipts", receipt(uid("s-"), loc), **{"Idempotency-Key": key})
    assert first.status_code == again.status_code == 201
    assert again.content == first.content and again.headers["idempotent-replayed"] == "true"
    assert other.status_code == 422 and other.json()["type"].endswith("idempotency-key-reused")
    assert api.container.ledger.history.stock(body["sku"], loc).on_hand == 10  # type: ignore[union-attr]  # received


def test_pos_batches_and_signed_webhooks_on_the_lean_path_answer_like_their_routes(
    both: tuple[Api, TestClient],
) -> None:
    api, plain = both
    store = uid("S")
    txn = {
        "txn_id": "T1",
        "type": "sale",
        "occurred_at": "2026-11-20T10:00:00Z",
        "lines": [{"item": "I1", "quantity": 1}],
    }
    post(api.client, api, "/v1/stock/receipts", receipt(uid("warm-"), uid("wh-")))
    before = lean_answers(api, "/v1/pos/batches")
    b1 = {"store": store, "batch_id": "B1", "sequence": 1, "transactions": [txn]}
    b2 = {"store": store, "batch_id": "B2", "sequence": 2, "transactions": [txn]}
    routed, lean = post(plain, api, "/v1/pos/batches", b1), post(api.client, api, "/v1/pos/batches", b2)
    assert lean_answers(api, "/v1/pos/batches") == before + 1
    assert routed.status_code == lean.status_code == 200
    assert {k: v for k, v in routed.json().items() if k != "inbox_id"} == {
        k: v for k, v in lean.json().items() if k != "inbox_id"
    }
    same(post(plain, api, "/v1/pos/batches", b2), post(api.client, api, "/v1/pos/batches", b2))
    clash = {**b2, "batch_id": "B3"}  # sequence 2 is B2's
    same(post(plain, api, "/v1/pos/batches", clash), post(api.client, api, "/v1/pos/batches", clash))
    invalid = {**b2, "sequence": "2"}
    same(post(plain, api, "/v1/pos/batches", invalid), post(api.client, api, "/v1/pos/batches", invalid))

    def webhook(client: TestClient, order_id: int, secret: str = SECRET) -> Any:
        body = orjson.dumps({"id": order_id, "line_items": [{"id": 1, "variant_id": 7, "quantity": 1}]})
        headers = {
            "X-Shopify-Hmac-Sha256": sign(body, secret),
            "X-Shopify-Webhook-Id": f"w-{order_id}",
            "X-Shopify-Topic": "orders/create",
            "X-Shopify-Shop-Domain": "lean.myshopify.com",
            "Content-Type": "application/json",
        }
        return client.post("/v1/webhooks/shopify", content=body, headers=headers)

    before = lean_answers(api, "/v1/webhooks/shopify")
    one, two = webhook(plain, 1001), webhook(api.client, 1002)
    assert lean_answers(api, "/v1/webhooks/shopify") == before + 1  # a problem answered here counts too
    assert one.status_code == two.status_code == 200
    assert {k: v for k, v in one.json().items() if k != "inbox_id"} == {
        k: v for k, v in two.json().items() if k != "inbox_id"
    }
    same(webhook(plain, 1002), webhook(api.client, 1002))
    same(webhook(plain, 1003, "wrong"), webhook(api.client, 1003, "wrong"))
    assert webhook(api.client, 1003, "wrong").status_code == 401
