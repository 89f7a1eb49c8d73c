"""Shopify-shaped webhook payloads, built from the field names of Shopify's webhook reference."""

from __future__ import annotations

from typing import Any

SHOP = "test-shop.myshopify.com"
CUSTOMER = {
    "id": 115310627314723954,
    "email": "jane.doe@example.com",
    "phone": "+16135551234",
    "first_name": "Jane",
    "last_name": "Doe",
    "default_address": {"address1": "1 Main Street", "city": "Ottawa", "zip": "K2P 1L4"},
}


def order(
    order_id: int, lines: list[tuple[int, int | None, str | None, int]], **extra: Any
) -> dict[str, Any]:
    """orders/create (and orders/cancelled) payload; lines are (line id, variant_id, sku, quantity)."""
    body = {
        "id": order_id,
        "admin_graphql_api_id": f"gid://shopify/Order/{order_id}",
        "name": f"#{order_id % 10000}",
        "order_number": order_id % 10000,
        "created_at": "2026-11-20T10:00:00-05:00",
        "updated_at": "2026-11-20T10:00:00-05:00",
        "cancelled_at": None,
        "cancel_reason": None,
        "financial_status": "paid",
        "fulfillment_status": None,
        "source_name": "web",
        "location_id": None,
        "currency": "USD",
        "email": CUSTOMER["email"],
        "phone": CUSTOMER["phone"],
        "customer": CUSTOMER,
        "billing_address": {"first_name": "Jane", "address1": "1 Main Street", "phone": CUSTOMER["phone"]},
        "shipping_address": {"first_name": "Jane", "address1": "1 Main Street", "phone": CUSTOMER["phone"]},
        "line_items": [
            {
                "id": lid,
                "variant_id": variant,
                "product_id": 632910392,
                "sku": sku,
                "title": "IPod Nano - 8gb",
                "quantity": qty,
                "fulfillable_quantity": qty,
                "fulfillment_status": None,
                "price": "199.00",
            }
            for lid, variant, sku, qty in lines
        ],
    }
    body.update(extra)
    return body


def fulfillment(
    fulfillment_id: int,
    order_id: int,
    location_id: int,
    lines: list[tuple[int, int]],
    status: str = "success",
) -> dict[str, Any]:
    """fulfillments/create payload; lines are (order line item id, quantity)."""
    return {
        "id": fulfillment_id,
        "order_id": order_id,
        "status": status,
        "location_id": location_id,
        "created_at": "2026-11-21T10:00:00-05:00",
        "tracking_company": "UPS",
        "tracking_number": "1Z2345",
        "tracking_numbers": ["1Z2345"],
        "destination": {"first_name": "Jane", "address1": "1 Main Street", "phone": CUSTOMER["phone"]},
        "line_items": [{"id": lid, "variant_id": 808950810, "sku": "x", "quantity": q} for lid, q in lines],
    }


def refund(
    refund_id: int,
    order_id: int,
    lines: list[tuple[int, int, str, int | None]],
    amount: str = "10.00",
    status: str = "success",
) -> dict[str, Any]:
    """refunds/create payload; lines are (order line item id, quantity, restock_type, location_id)."""
    return {
        "id": refund_id,
        "order_id": order_id,
        "created_at": "2026-11-22T10:00:00-05:00",
        "note": "it broke during shipping",
        "restock": True,
        "refund_line_items": [
            {
                "id": refund_id * 10 + i,
                "line_item_id": lid,
                "quantity": q,
                "restock_type": rt,
                "location_id": loc,
                "subtotal": 10.0,
                "total_tax": 0.0,
            }
            for i, (lid, q, rt, loc) in enumerate(lines)
        ],
        "transactions": [
            {
                "id": refund_id * 100,
                "kind": "refund",
                "status": status,
                "amount": amount,
                "currency": "USD",
                "gateway": "bogus",
            }
        ],
    }


def inventory_level(item_id: int, location_id: int, available: int, updated_at: str) -> dict[str, Any]:
    return {
        "inventory_item_id": item_id,
        "location_id": location_id,
        "available": available,
        "updated_at": updated_at,
        "admin_graphql_api_id": f"gid://shopify/InventoryLevel/{item_id}",
    }


def inventory_item(item_id: int, sku: str, updated_at: str) -> dict[str, Any]:
    return {
        "id": item_id,
        "sku": sku,
        "tracked": True,
        "requires_shipping": True,
        "cost": "25.00",
        "created_at": "2026-01-01T00:00:00-05:00",
        "updated_at": updated_at,
    }
