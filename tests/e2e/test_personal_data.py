"""Personal data: never shown to an auditor (API, console, logs), erased on Shopify's compliance
requests and after the retention period, reported on a data request."""

from __future__ import annotations

import io
from typing import Any

import orjson
import shopify_payloads as sp
import test_webhooks_shopify as webhooks
from test_webhooks_shopify import SHOPIFY_WH, Shop

from adapters import erasure

shop = webhooks.shop

EMAIL, PHONE = "jane.doe@example.org", "(555) 123-4567"
ENGRAVING = "For Jane, 12 Rue de la Paix"
NOTE = "Leave it with the neighbour at 221B Baker Street"
SEEDED = (EMAIL, PHONE, ENGRAVING, NOTE, "Rue de la Paix", "Baker Street", "555) 123-4567")


def personal_order(order_id: int) -> dict[str, Any]:
    payload = sp.order(order_id, [(1, None, "SKU-A", 1)], email=EMAIL, phone=PHONE, note=NOTE)
    payload["customer"] = {"id": 6001, "email": EMAIL, "phone": PHONE, "first_name": "Jane"}
    payload["line_items"][0]["properties"] = [{"name": "Engraving", "value": ENGRAVING}]
    payload["note_attributes"] = [{"name": "gift", "value": "call me on 555-123-4567"}]
    payload["shipping_address"] = {"address1": "12 Rue de la Paix", "phone": PHONE, "city": "Paris"}
    return payload


def seen(text: str) -> list[str]:
    return [x for x in SEEDED if x in text]


def test_nothing_an_auditor_can_read_shows_the_seeded_personal_data(
    shop: Shop, json_logs: io.StringIO
) -> None:
    shop.send("orders/create", personal_order(9001))
    shop.send("fulfillments/create", sp.fulfillment(9301, 9001, SHOPIFY_WH, [(1, 1)]))
    shop.send(
        "orders/create", personal_order(9002) | {"line_items": [{"id": 1, "variant_id": 77, "quantity": 1}]}
    )
    shop.drain()
    auditor = {"Authorization": f"Bearer {shop.auditor}"}
    get = shop.client.get
    pages = ["/v1/inbox?limit=1000", "/v1/exceptions?status=all", "/v1/orders/9001"]
    pages += [f"/v1/inbox/{m['id']}" for m in shop.inbox(limit=1000)]
    pages += ["/v1/stock/SKU-A/WH1/events?limit=1000"]
    shop.container.projector.catch_up()
    for path in pages:
        r = get(path, headers=auditor)
        assert r.status_code == 200, (path, r.text)
        assert seen(r.text) == [], path
    shop.client.cookies.clear()
    r = shop.client.post("/console/login", data={"token": shop.auditor}, headers={"accept": "text/html"})
    assert r.status_code in (200, 303), r.text
    console = ["/console/operations", "/console/orders/9001", "/console/skus/SKU-A", "/console/search?q=9001"]
    console += [f"/console/messages/{m['id']}" for m in shop.inbox(limit=1000)]
    for path in console:
        r = get(path, headers={"accept": "text/html"})
        assert r.status_code == 200, (path, r.text[:300])
        assert seen(r.text) == [], path
    page = get(f"/console/messages/{shop.inbox()[0]['id']}").text
    assert "SKU-A" in page and "***" in page  # the payload is shown, masked
    assert seen(json_logs.getvalue()) == []


def body(shop: Shop, inbox_id: int) -> dict[str, Any]:
    return dict(orjson.loads(shop.container.inbox.body(inbox_id)))


def test_customers_redact_erases_that_customers_messages_and_keeps_the_movements(shop: Shop) -> None:
    shop.send("orders/create", personal_order(9011))
    other = sp.order(9012, [(1, None, "SKU-A", 1)], email="someone@example.net")
    shop.send("orders/create", other)
    shop.drain()
    ids = {m["external_id"]: m["id"] for m in shop.inbox()}
    first, second = (i for i in ids.values())
    before = shop.stock("SKU-A", webhooks.WH)
    redact = {
        "shop_id": 1,
        "shop_domain": sp.SHOP,
        "customer": {"id": 6001, "email": EMAIL, "phone": PHONE},
        "orders_to_redact": [9011],
    }
    assert shop.send("customers/redact", redact).status_code == 200
    shop.drain()
    erased = body(shop, first)
    assert seen(orjson.dumps(erased).decode()) == []
    assert (
        erased["email"] == erasure.ERASED and erased["line_items"][0]["quantity"] == 1
    )  # movements' facts kept
    assert body(shop, second)["email"] == "someone@example.net"  # another customer's message is untouched
    assert shop.stock("SKU-A", webhooks.WH) == before
    order = shop.container.ledger.history.order("9011")
    assert order is not None and order.lines["1"]["reserved"] == 1
    request = [m for m in shop.inbox() if m["kind"] == "customers/redact"][0]
    assert request["status"] == "applied" and EMAIL not in orjson.dumps(body(shop, request["id"])).decode()


def test_shop_redact_erases_every_message_of_the_shop(shop: Shop) -> None:
    shop.send("orders/create", personal_order(9021))
    shop.drain()
    shop.send("shop/redact", {"shop_id": 1, "shop_domain": sp.SHOP})
    shop.drain()
    for m in shop.inbox():
        assert seen(orjson.dumps(body(shop, m["id"])).decode()) == [], m["kind"]


def test_a_data_request_reports_what_is_held_for_the_customer(shop: Shop) -> None:
    shop.send("orders/create", personal_order(9031))
    shop.drain()
    request = {
        "shop_id": 1,
        "shop_domain": sp.SHOP,
        "customer": {"id": 6001, "email": EMAIL},
        "orders_requested": [9031],
        "data_request": {"id": 9999},
    }
    shop.send("customers/data_request", request)
    shop.drain()
    r = shop.client.get("/v1/shopify/data-requests/9999", headers={"Authorization": f"Bearer {shop.admin}"})
    assert r.status_code == 200, r.text
    (message,) = r.json()["messages"]
    assert message["orders"] == ["9031"] and EMAIL in message["personal_data"]["email"]
    assert (
        shop.client.get(
            "/v1/shopify/data-requests/9999", headers={"Authorization": f"Bearer {shop.auditor}"}
        ).status_code
        == 403
    )


def test_finished_messages_older_than_the_retention_lose_their_personal_data(shop: Shop) -> None:
    shop.send("orders/create", personal_order(9041))
    shop.drain()
    (m,) = shop.inbox()
    retention = erasure.Retention(shop.container.db, days=30)
    assert retention.step() == 0  # received just now
    shop.container.db.execute(
        "UPDATE inbox SET received_at = %s WHERE id = %s", ("2020-01-01T00:00:00+00:00", m["id"])
    )
    assert retention.step() == 1
    assert seen(orjson.dumps(body(shop, m["id"])).decode()) == []
    assert retention.step() == 0
