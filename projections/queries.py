"""Reads of the read models' tables for the console and other readers that are not folds.

The tables are declared in `projections/models.py` (`StockView.LEVELS` is `stock_levels`,
`OrdersView.REFS` is `order_refs`); a reader outside `projections/` calls these functions
instead of writing SQL on them.
"""

from __future__ import annotations

from typing import Any

from adapters.persistence.db import Database
from projections.models import OrdersView, StockView

LEVELS = StockView.LEVELS.name
REFS = OrdersView.REFS.name


def has_sku(db: Database, sku: str) -> bool:
    """Whether the `stock` read model holds a level of the SKU at any location."""
    return db.query_one(f"SELECT 1 AS x FROM {LEVELS} WHERE sku = %s LIMIT 1", (sku,)) is not None


def has_location(db: Database, location: str) -> bool:
    """Whether the `stock` read model holds a level of any SKU at the location."""
    return db.query_one(f"SELECT 1 AS x FROM {LEVELS} WHERE location = %s LIMIT 1", (location,)) is not None


def locations_of(db: Database, sku: str) -> list[str]:
    """The locations holding a level of the SKU, in name order."""
    return [r["location"] for r in db.query(f"SELECT location FROM {LEVELS} WHERE sku = %s ORDER BY location", (sku,))]


def levels_at(db: Database, location: str, limit: int = 1000) -> list[dict[str, Any]]:
    """The levels at a location, by SKU: on hand, reserved, unavailable, available, position."""
    return db.query(
        f"SELECT sku, on_hand, reserved, unavailable, available, position FROM {LEVELS} "
        "WHERE location = %s ORDER BY sku LIMIT %s",
        (location, limit),
    )


def orders_by_reference(db: Database, reference: str, limit: int) -> list[str]:
    """Orders whose correlation ids (Shopify name, order number, ERP reference...) include `reference`:
    one indexed lookup in `order_refs`, not a scan of the log."""
    rows = db.query(
        f"SELECT DISTINCT order_id FROM {REFS} WHERE reference = %s ORDER BY order_id LIMIT %s",
        (reference, limit),
    )
    return [r["order_id"] for r in rows]
