"""Shopify: signatures and translation into canonical commands, without a database."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from adapters import shopify
from adapters.mappings import Lookup
from adapters.translate import Apply, Context, MappingUse, Park, Wait, WaitKey
from ledger import commands as c


class Mappings:
    """A mapping table in memory (the MappingStore role)."""

    def __init__(self, table: dict[tuple[str, str, str], str]) -> None:
        self.table = table

    def get(self, source: str, kind: str, external_id: str) -> tuple[str, int] | None:
        hit = self.table.get((source, kind, external_id))
        return None if hit is None else (hit, 7)


class NoOrders:
    def order(self, order_id: str) -> Any:
        return None


def translate(
    topic: str,
    payload: dict[str, Any],
    table: dict[tuple[str, str, str], str] | None = None,
    shop: str = "shop.myshopify.com",
) -> tuple[Any, Lookup]:
    lookup = Lookup(Mappings(table or {}), "shopify")
    row = {"id": 1, "kind": topic, "headers": {"x-shopify-shop-domain": shop}}
    return shopify.translate(row, payload, lookup, Context(NoOrders(), None)), lookup  # type: ignore[arg-type]  # a stand-in ledger


@given(st.binary(max_size=2000), st.text(min_size=1, max_size=40))
def test_a_signature_verifies_only_its_own_body_and_secret(body: bytes, secret: str) -> None:
    signature = shopify.sign(body, secret)
    assert shopify.verify_hmac(body, signature, ["other", secret])
    assert not shopify.verify_hmac(body + b"x", signature, [secret])
    assert not shopify.verify_hmac(body, signature, [secret + "x"])
    assert not shopify.verify_hmac(body, None, [secret])
    assert not shopify.verify_hmac(body, signature, [])


def test_an_order_captures_on_the_mapped_channel_with_mapped_variants_and_keeps_its_ids() -> None:
    payload = {
        "id": 820982911946154508,
        "name": "#1001",
        "order_number": 1001,
        "admin_graphql_api_id": "gid://shopify/Order/820982911946154508",
        "financial_status": "paid",
        "updated_at": "2026-11-20T10:00:00-05:00",
        "email": "a@b.example",
        "line_items": [
            {"id": 1, "variant_id": 11, "sku": "ignored", "quantity": 2},
            {"id": 2, "variant_id": 22, "sku": "FALLBACK", "quantity": 1},
            {"id": 3, "variant_id": None, "sku": None, "quantity": 1},
            {"id": 4, "variant_id": 44, "sku": "X", "quantity": 0},
        ],
    }
    t, lookup = translate(
        "orders/create",
        payload,
        {("shopify", "sku", "11"): "SKU-A", ("shopify", "channel", "shop.myshopify.com"): "web-eu"},
    )
    assert isinstance(t, Apply)
    (item,) = t.items
    assert item.mappings == [MappingUse("shopify", "channel", "shop.myshopify.com", 7, "web-eu")]
    cmd = item.command
    assert isinstance(cmd, c.CaptureOrder)
    assert cmd.order_id == "820982911946154508" and cmd.channel == "web-eu" and cmd.allow_partial
    assert cmd.lines == (
        {"line_id": "1", "sku": "SKU-A", "quantity": 2},
        {"line_id": "2", "sku": "FALLBACK", "quantity": 1},
        {"line_id": "3", "sku": "custom-item", "quantity": 1, "stock": False},  # recorded, no stock
    )
    assert cmd.external_refs == {
        "name": "#1001",
        "order_number": "1001",
        "admin_graphql_api_id": "gid://shopify/Order/820982911946154508",
    }
    assert cmd.platform_status["financial_status"] == "paid"
    assert "a@b.example" not in repr(cmd)
    assert lookup.uses == {"shopify/channel/shop.myshopify.com": 7, "shopify/sku/11": 7, "shopify/sku/22": 0}
    assert lookup.version == 7


def test_an_unmapped_shop_sells_online_and_an_unknown_variant_with_no_sku_parks() -> None:
    t, _ = translate("orders/create", {"id": 5, "line_items": [{"id": 1, "sku": "A", "quantity": 1}]})
    assert t.items[0].command.channel == "online"
    t, lookup = translate(
        "orders/create", {"id": 5, "line_items": [{"id": 1, "variant_id": 99, "quantity": 1}]}
    )
    assert t == Park("unknown variant 99")
    assert lookup.uses == {"shopify/channel/shop.myshopify.com": 0, "shopify/sku/99": 0}


@pytest.mark.parametrize(
    "topic", ["orders/cancelled", "orders/updated", "fulfillments/create", "refunds/create"]
)
def test_messages_about_an_order_not_yet_captured_wait_for_it(topic: str) -> None:
    payload = {
        "id": 9,
        "order_id": 5,
        "status": "success",
        "location_id": 1,
        "line_items": [],
        "refund_line_items": [],
        "transactions": [],
    }
    t, _ = translate(topic, payload, {("shopify", "location", "1"): "WH1"})
    assert t == Wait(WaitKey.order("5" if topic in ("fulfillments/create", "refunds/create") else "9"))
    assert WaitKey.parse(str(t.key)) == t.key


@pytest.mark.parametrize(
    "topic,payload",
    [
        ("orders/create", {"id": "x", "line_items": []}),
        ("orders/create", {"id": 1, "line_items": [{"id": 1, "quantity": -1}]}),
        ("fulfillments/create", {"order_id": 1}),
        ("refunds/create", {"id": 1, "order_id": 2, "refund_line_items": [{"id": 1, "quantity": 1}]}),
        ("inventory_levels/update", {"inventory_item_id": 1}),
    ],
)
def test_payloads_without_the_documented_fields_do_not_validate(topic: str, payload: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        shopify.parse(topic, payload)


def test_inventory_topics_translate_to_no_command() -> None:
    t, _ = translate("inventory_levels/update", {"inventory_item_id": 1, "location_id": 2, "available": 3})
    assert isinstance(t, Apply) and t.items == [] and t.after is not None
