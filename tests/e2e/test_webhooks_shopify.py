"""Shopify webhooks over HTTP: signatures, duplicates, every topic, out-of-order delivery, parking."""

from __future__ import annotations

import logging
import random
import warnings
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

import shopify_payloads as sp
from e2e_api import put_channel, read_ats

from adapters.config import Settings
from adapters.exceptions import list_exceptions
from adapters.metrics import REGISTRY
from adapters.shopify import observations, sign
from api.app import create_app
from bootstrap import Container, bootstrap
from ledger.orders import Order
from ledger.ports import StaticLocations

SECRET = "shpss_current"
OLD_SECRET = "shpss_previous"
WH, STORE = "WH1", "STORE1"
SHOPIFY_WH, SHOPIFY_STORE = 655441491, 905684977


class Shop:
    def __init__(
        self, client: TestClient, container: Container, admin: str, auditor: str, reader: str
    ) -> None:
        self.client = client
        self.container = container
        self.admin = admin
        self.auditor = auditor
        self.reader = reader

    def send(
        self,
        topic: str,
        payload: dict[str, Any],
        webhook_id: str | None = None,
        secret: str = SECRET,
        signature: str | None = None,
        **headers: str,
    ) -> Any:
        body = orjson.dumps(payload)
        h = {
            "X-Shopify-Topic": topic,
            "X-Shopify-Shop-Domain": sp.SHOP,
            "X-Shopify-API-Version": "2025-07",
            "X-Shopify-Webhook-Id": webhook_id or f"wh-{random.getrandbits(64):x}",
            "X-Shopify-Triggered-At": "2026-11-20T15:00:00.000Z",
            "Content-Type": "application/json",
            **headers,
        }
        if signature is not False:
            h["X-Shopify-Hmac-Sha256"] = signature if signature is not None else sign(body, secret)
        return self.client.post("/v1/webhooks/shopify", content=body, headers=h)

    def drain(self) -> None:
        """Applies everything the inbox holds (what the inbox worker does in the background)."""
        intake = self.container.intake
        for _ in range(20):
            if not intake.step():
                return

    def map(self, kind: str, external_id: Any, canonical: str) -> Any:
        r = self.client.put(
            f"/v1/mappings/shopify/{kind}/{external_id}",
            json={"canonical": canonical},
            headers={"Authorization": f"Bearer {self.admin}"},
        )
        assert r.status_code == 200, r.text
        return r.json()

    def inbox(self, **params: Any) -> list[dict[str, Any]]:
        r = self.client.get("/v1/inbox", params=params, headers={"Authorization": f"Bearer {self.auditor}"})
        assert r.status_code == 200, r.text
        return r.json()["items"]

    def stock(self, sku: str, location: str) -> tuple[int, int]:
        s = self.container.ledger.history.stock(sku, location)
        return (0, 0) if s is None else (s.on_hand, s.reserved)

    def channel(self, channel: str, *locations: str) -> None:
        put_channel(self.client, {"Authorization": f"Bearer {self.admin}"}, channel, *locations)

    def ats(self, sku: str, channel: str = "online") -> int:
        return read_ats(self.client, self.container, {"Authorization": f"Bearer {self.reader}"}, channel, sku)

    def stage(self, order_id: int) -> str | None:
        o = self.container.ledger.history.order(str(order_id))
        return None if o is None else o.stage


@pytest.fixture
def shop(database_url: str) -> Iterator[Shop]:
    container = bootstrap(
        Settings(database_url=database_url, shopify_webhook_secrets=f"{SECRET},{OLD_SECRET}"),
        locations=StaticLocations({"online": [WH], "wholesale": [WH, STORE]}),
    )
    app = create_app(container=container, run_workers=False)
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            admin = container.keys.create("admin", ["admin"])[1]
            auditor = container.keys.create("auditor", ["audit:read"])[1]
            reader = container.keys.create("reader", ["ats:read"])[1]
            s = Shop(client, container, admin, auditor, reader)
            s.channel("online", WH)
            s.channel("wholesale", WH, STORE)
            s.map("location", SHOPIFY_WH, WH)
            s.map("location", SHOPIFY_STORE, STORE)
            for sku in ("SKU-A", "SKU-B"):
                container.ledger.receive(sku, WH, 10, f"seed-{sku}")
            yield s
    finally:
        container.close()


def _stored(shop: Shop) -> int:
    return len(shop.inbox(limit=1000))


def test_forged_missing_and_wrong_secret_signatures_are_refused_and_nothing_is_stored(shop: Shop) -> None:
    payload = sp.order(1001, [(1, None, "SKU-A", 1)])
    for kwargs in (
        {"signature": False},
        {"signature": "bm90IGEgc2lnbmF0dXJl"},
        {"secret": "someone-else"},
        {"signature": ""},
    ):
        r = shop.send("orders/create", payload, **kwargs)
        assert r.status_code == 401
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["type"].endswith("invalid-signature")
    # The body altered after signing no longer verifies.
    body = orjson.dumps(payload)
    r = shop.client.post(
        "/v1/webhooks/shopify",
        content=body.replace(b'"quantity":1', b'"quantity":9'),
        headers={
            "X-Shopify-Hmac-Sha256": sign(body, SECRET),
            "X-Shopify-Topic": "orders/create",
            "X-Shopify-Webhook-Id": "w-tampered",
            "Content-Type": "application/json",
        },
    )
    assert r.status_code == 401
    assert _stored(shop) == 0
    shop.drain()
    assert shop.stage(1001) is None


def test_the_previous_secret_still_verifies_during_a_rotation(shop: Shop) -> None:
    r = shop.send("orders/create", sp.order(1002, [(1, None, "SKU-A", 2)]), secret=OLD_SECRET)
    assert r.status_code == 200, r.text
    shop.drain()
    assert shop.stock("SKU-A", WH) == (10, 2)


def test_order_created_captures_and_reserves_once_however_often_it_is_delivered(shop: Shop) -> None:
    payload = sp.order(
        820982911946154508, [(466157049, 39072856, "SKU-A", 2), (518995019, 49148385, "SKU-B", 1)]
    )
    first = shop.send("orders/create", payload, webhook_id="b54557e4-bdd9-4b37-8a5f-bf7d70bcd043")
    assert first.status_code == 200 and first.json()["status"] == "received"
    again = shop.send("orders/create", payload, webhook_id="b54557e4-bdd9-4b37-8a5f-bf7d70bcd043")
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert again.json()["inbox_id"] == first.json()["inbox_id"]
    shop.drain()
    # A redelivery under a new webhook id is a new message whose commands were already recorded.
    third = shop.send("orders/create", payload)
    shop.drain()
    assert shop.stock("SKU-A", WH) == (10, 2)
    assert shop.stock("SKU-B", WH) == (10, 1)
    assert (shop.ats("SKU-A"), shop.ats("SKU-B")) == (8, 9)
    order = shop.container.ledger.history.order("820982911946154508")
    assert order is not None and order.stage == "reserved" and order.channel == "online"
    assert order.external_refs["admin_graphql_api_id"] == "gid://shopify/Order/820982911946154508"
    assert order.external_refs["name"] == payload["name"]
    assert order.platform_status["financial_status"] == "paid"
    rows = {r["id"]: r for r in shop.inbox(limit=1000)}
    assert rows[first.json()["inbox_id"]]["status"] == "applied"
    assert rows[first.json()["inbox_id"]]["deliveries"] == 2
    assert rows[third.json()["inbox_id"]]["status"] == "duplicate"
    # The events name their inbox message.
    events = [e for _, e in shop.container.ledger.history.events(order.id)]
    assert events[0].cause["source"] == "shopify"
    assert events[0].cause["causation_id"] == str(first.json()["inbox_id"])


def test_the_shop_channel_mapping_chooses_the_channel(shop: Shop) -> None:
    shop.map("channel", sp.SHOP, "wholesale")
    shop.send("orders/create", sp.order(2001, [(1, None, "SKU-A", 1)]))
    shop.drain()
    order = shop.container.ledger.history.order("2001")
    assert order is not None and order.channel == "wholesale"
    assert order.view()["lines"][0]["location"] == WH


def test_fulfillment_sells_from_the_reservation_at_the_fulfilling_location(shop: Shop) -> None:
    shop.send("orders/create", sp.order(3001, [(11, None, "SKU-A", 3), (12, None, "SKU-B", 1)]))
    shop.send("fulfillments/create", sp.fulfillment(9001, 3001, SHOPIFY_WH, [(11, 2)]))
    shop.send("fulfillments/create", sp.fulfillment(9002, 3001, SHOPIFY_WH, [(12, 1)], status="cancelled"))
    shop.drain()
    assert shop.stock("SKU-A", WH) == (8, 1)
    assert shop.stock("SKU-B", WH) == (10, 1)  # a cancelled fulfillment moves nothing
    assert shop.stage(3001) == "partially_shipped"
    shop.send("fulfillments/create", sp.fulfillment(9003, 3001, SHOPIFY_WH, [(11, 1), (12, 1)]))
    shop.drain()
    assert shop.stock("SKU-A", WH) == (7, 0)
    assert shop.stock("SKU-B", WH) == (9, 0)
    assert shop.stage(3001) == "shipped"


def test_cancellation_releases_what_is_reserved(shop: Shop) -> None:
    shop.send("orders/create", sp.order(4001, [(1, None, "SKU-A", 4)]))
    shop.drain()
    assert shop.stock("SKU-A", WH) == (10, 4)
    cancelled = sp.order(
        4001,
        [(1, None, "SKU-A", 4)],
        cancelled_at="2026-11-20T11:00:00-05:00",
        cancel_reason="customer",
        financial_status="refunded",
        updated_at="2026-11-20T11:00:00-05:00",
    )
    shop.send("orders/cancelled", cancelled)
    shop.drain()
    assert shop.stock("SKU-A", WH) == (10, 0)
    assert shop.stage(4001) == "cancelled"
    order = shop.container.ledger.history.order("4001")
    assert order is not None and order.platform_status["financial_status"] == "refunded"


def test_refunds_restock_release_or_change_nothing_per_restock_type(shop: Shop) -> None:
    shop.send("orders/create", sp.order(5001, [(1, None, "SKU-A", 3), (2, None, "SKU-B", 2)]))
    shop.send("fulfillments/create", sp.fulfillment(9101, 5001, SHOPIFY_WH, [(1, 3)]))
    shop.drain()
    assert shop.stock("SKU-A", WH) == (7, 0)
    # One unit returned to the store, one refunded with no restock, one unfulfilled unit of B released.
    shop.send(
        "refunds/create",
        sp.refund(
            7001, 5001, [(1, 1, "return", SHOPIFY_STORE), (1, 1, "no_restock", None), (2, 1, "cancel", None)]
        ),
    )
    shop.drain()
    assert shop.stock("SKU-A", WH) == (7, 0)
    assert shop.stock("SKU-A", STORE) == (1, 0)
    assert shop.stock("SKU-B", WH) == (10, 1)
    order = shop.container.ledger.history.order("5001")
    assert order is not None and order.refunds["7001"]["amount"] == "10.00"
    # Its transactions succeeded: confirmed; settled only once the ERP accepts the credit memo.
    assert order.refunds["7001"]["status"] == "confirmed" and not order.refunds["7001"]["settled"]
    assert order.stage == "partially_shipped"  # a unit of B is still to ship: never `settled`
    assert order.open_work == ["ship", "post", "invoice", "settle-refund"]


def test_a_refund_before_its_order_waits_and_then_applies(shop: Shop) -> None:
    r = shop.send("refunds/create", sp.refund(7101, 6001, [(1, 2, "cancel", None)]))
    assert r.status_code == 200
    shop.drain()
    assert [m["status"] for m in shop.inbox()] == ["waiting"]
    assert shop.stage(6001) is None
    assert shop.ats("SKU-A") == 10
    shop.send("orders/create", sp.order(6001, [(1, None, "SKU-A", 5)]))
    shop.drain()
    assert {m["status"] for m in shop.inbox()} == {"applied"}
    assert shop.stock("SKU-A", WH) == (10, 3)
    assert shop.ats("SKU-A") == 7
    order = shop.container.ledger.history.order("6001")
    assert order is not None and order.lines["1"]["cancelled"] == 2
    assert order.stage == "partially_cancelled" and "settle-refund" in order.open_work


def test_an_older_status_never_overwrites_a_newer_one(shop: Shop) -> None:
    shop.send("orders/create", sp.order(6101, [(1, None, "SKU-A", 1)]))
    newer = sp.order(
        6101, [(1, None, "SKU-A", 1)], financial_status="refunded", updated_at="2026-11-20T12:00:00-05:00"
    )
    older = sp.order(
        6101, [(1, None, "SKU-A", 1)], financial_status="paid", updated_at="2026-11-20T11:00:00-05:00"
    )
    shop.send("orders/updated", newer)
    shop.send("orders/updated", older)
    shop.drain()
    order = shop.container.ledger.history.order("6101")
    assert order is not None and order.platform_status["financial_status"] == "refunded"
    assert order.stage == "reserved"  # the platform's status is never our stage


def test_inventory_topics_are_observations_never_movements(shop: Shop) -> None:
    before = shop.container.ledger.app.recorder.max_position()
    shop.send(
        "inventory_levels/update",
        sp.inventory_level(271878346596884015, SHOPIFY_WH, 4, "2026-11-20T12:00:00-05:00"),
    )
    shop.send(
        "inventory_levels/update",
        sp.inventory_level(271878346596884015, SHOPIFY_WH, 9, "2026-11-20T11:00:00-05:00"),
    )
    shop.send(
        "inventory_items/update", sp.inventory_item(271878346596884015, "SKU-A", "2026-11-20T12:00:00-05:00")
    )
    shop.drain()
    assert shop.container.ledger.app.recorder.max_position() == before
    levels = observations(shop.container.db, "level")
    assert [(r["object_id"], r["available"]) for r in levels] == [("271878346596884015", 4)]
    assert [r["sku"] for r in observations(shop.container.db, "item")] == ["SKU-A"]


def test_an_unknown_variant_parks_the_order_until_its_mapping_exists(shop: Shop) -> None:
    shop.send("orders/create", sp.order(8001, [(1, 4455667788, None, 2)]))
    shop.drain()
    parked = shop.inbox(status="parked")
    assert len(parked) == 1 and "4455667788" in parked[0]["reason"]
    assert REGISTRY.get_sample_value("ledger_parked_messages", {"source": "shopify"}) == 1
    keys = [e["key"] for e in list_exceptions(shop.container.db, "parked-message")]
    assert keys == [str(parked[0]["id"])]
    assert shop.stage(8001) is None
    assert shop.ats("SKU-B") == 10
    change = shop.map("sku", 4455667788, "SKU-B")
    assert change["requeued"] == 1
    shop.drain()
    assert shop.inbox(status="parked") == []
    assert shop.stock("SKU-B", WH) == (10, 2)
    assert shop.ats("SKU-B") == 8
    assert shop.stage(8001) == "reserved"
    assert list_exceptions(shop.container.db, "parked-message") == []
    assert REGISTRY.get_sample_value("ledger_parked_messages", {"source": "shopify"}) == 0
    order = shop.container.ledger.history.order("8001")
    assert order is not None
    first = next(iter(shop.container.ledger.history.events(order.id)))[1]
    assert first.cause["mapping_version"] == change["version"]


def test_unsupported_topics_are_kept_as_rejected_and_malformed_bodies_refused(shop: Shop) -> None:
    r = shop.send("products/create", {"id": 1, "title": "x"})
    assert r.status_code == 200 and r.json()["status"] == "rejected"
    r = shop.send("orders/create", {"id": "not a number", "line_items": []})
    assert r.status_code == 422
    body = b"{not json"
    r = shop.client.post(
        "/v1/webhooks/shopify",
        content=body,
        headers={
            "X-Shopify-Hmac-Sha256": sign(body, SECRET),
            "X-Shopify-Topic": "orders/create",
            "X-Shopify-Webhook-Id": "w-bad-json",
            "Content-Type": "application/json",
        },
    )
    assert r.status_code == 400
    r = shop.send("orders/create", sp.order(1, [(1, None, "A", 1)]), webhook_id="\x07bell")
    assert r.status_code == 400
    assert [m["status"] for m in shop.inbox()] == ["rejected"]


def test_personal_data_is_never_logged_nor_shown(shop: Shop, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    shop.send("orders/create", sp.order(9901, [(1, None, "SKU-A", 1)]))
    shop.send("orders/create", sp.order(9902, [(1, 4242, None, 1)]))  # parks
    shop.drain()
    listing = orjson.dumps(shop.inbox()).decode()
    text = caplog.text + listing
    for secret in (sp.CUSTOMER["email"], sp.CUSTOMER["phone"], "Jane", "1 Main Street"):
        assert secret not in text


def test_orders_captured_through_a_wrong_variant_mapping_move_their_reservations_on_remap(shop: Shop) -> None:
    variant = 39072856
    wrong = shop.map("sku", variant, "SKU-B")
    shop.send("orders/create", sp.order(10001, [(1, variant, None, 2), (2, None, "SKU-A", 1)]))
    shop.send("orders/create", sp.order(10002, [(1, variant, None, 1)]))
    shop.send("orders/create", sp.order(10003, [(7, variant, None, 3)]))
    shop.send("fulfillments/create", sp.fulfillment(9201, 10002, SHOPIFY_WH, [(1, 1)]))
    shop.drain()
    assert shop.stock("SKU-B", WH) == (9, 5) and shop.stock("SKU-A", WH) == (10, 1)
    assert (shop.ats("SKU-A"), shop.ats("SKU-B")) == (9, 4)

    fixed = shop.map("sku", variant, "SKU-A")
    r = shop.client.post(
        f"/v1/mappings/shopify/sku/{variant}/remap", headers={"Authorization": f"Bearer {shop.admin}"}
    )
    assert r.status_code == 200, r.text
    answer = r.json()
    assert (answer["orders"], answer["order_lines"], answer["order_lines_unreserved"]) == (2, 2, 0)
    assert answer["messages"] == 2 and answer["movements"] == 0
    # The order already shipped on the wrong SKU is not silently rewritten: it is listed.
    [refused] = answer["failures"]
    assert refused["order_id"] == "10002" and "shipped" in refused["error"]
    assert shop.stock("SKU-B", WH) == (9, 0) and shop.stock("SKU-A", WH) == (10, 6)
    assert (shop.ats("SKU-A"), shop.ats("SKU-B")) == (4, 9)
    order = shop.container.ledger.history.order("10001")
    assert order is not None and order.stage == "reserved"
    assert [(x["sku"], x["location"], Order.held_quantity(x)) for x in order.lines.values()] == [
        ("SKU-A", WH, 2),
        ("SKU-A", WH, 1),
    ]
    [remapped] = [
        e for _, e in shop.container.ledger.history.events(order.id) if type(e).__name__ == "LineRemapped"
    ]
    assert (remapped.line_id, remapped.from_sku, remapped.to_sku) == ("1", "SKU-B", "SKU-A")
    assert remapped.mapping == {"key": f"shopify/sku/{variant}", "version": fixed["version"]}
    assert (remapped.released, remapped.reserved, remapped.location) == (2, 2, WH)
    assert fixed["version"] > wrong["version"]
    view = shop.client.get("/v1/orders/10001", headers={"Authorization": f"Bearer {shop.auditor}"}).json()
    assert view["stage"] == "reserved" and {x["sku"] for x in view["lines"]} == {"SKU-A"}

    # The line now ships the right SKU; remapping again moves nothing more.
    shop.send("fulfillments/create", sp.fulfillment(9202, 10001, SHOPIFY_WH, [(1, 2)]))
    shop.drain()
    assert shop.stock("SKU-A", WH) == (8, 4) and shop.stock("SKU-B", WH) == (9, 0)
    again = shop.client.post(
        f"/v1/mappings/shopify/sku/{variant}/remap", headers={"Authorization": f"Bearer {shop.admin}"}
    ).json()
    assert (again["orders"], again["order_lines"]) == (0, 0)
    assert shop.stock("SKU-A", WH) == (8, 4) and (shop.ats("SKU-A"), shop.ats("SKU-B")) == (4, 9)
    assert shop.stage(10001) == "partially_shipped" and shop.stage(10003) == "reserved"


def test_a_shopify_order_over_the_ats_of_one_location_is_split_and_the_next_is_not_oversold(
    shop: Shop,
) -> None:
    """Two locations of 3 show ATS 6: a Shopify order of 5 is reserved across them, and the next
    order of 3 reserves only the one unit left (the rest backordered), never 8 sold against 6."""
    shop.container.ledger.receive("SKU-C", WH, 3, "seed-c-wh")
    shop.container.ledger.receive("SKU-C", STORE, 3, "seed-c-store")
    assert shop.ats("SKU-C", "wholesale") == 6
    shop.map("channel", sp.SHOP, "wholesale")
    shop.send("orders/create", sp.order(7001, [(71, None, "SKU-C", 5)]))
    shop.drain()
    assert (shop.stock("SKU-C", WH), shop.stock("SKU-C", STORE)) == ((3, 3), (3, 2))
    assert shop.ats("SKU-C", "wholesale") == 1
    shop.send("orders/create", sp.order(7002, [(72, None, "SKU-C", 3)]))
    shop.drain()
    second = shop.container.ledger.history.order("7002")
    assert second is not None
    line = second.view()["lines"][0]
    assert (line["allocations"], line["backordered"]) == ([{"location": STORE, "quantity": 1}], 2)
    assert shop.ats("SKU-C", "wholesale") == 0
