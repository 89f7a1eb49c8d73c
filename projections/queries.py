"""Reads of the read models' tables for the console and other readers that are not folds.

The tables are declared in `projections/models.py` (`StockView.LEVELS` is `stock_levels`,
`OrdersView.REFS` is `order_refs`); a reader outside `projections/` calls these functions
instead of writing SQL on them.
"""

from __future__ import annotations

from typing import Any

import orjson

from adapters.persistence.db import Database
from projections.folds import order_lines, order_open
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


ORDERS = OrdersView.ORDERS.name


def orders(
    db: Database, stage: str | None = None, channel: str | None = None, after: str = "", limit: int = 100
) -> list[dict[str, Any]]:
    """Orders from the `orders` read model by order id after `after`, optionally of one stage and
    channel: each with its stage, what is still open, per-line quantities and its position."""
    sql = f"SELECT order_id, channel, stage, state, captured_at, position FROM {ORDERS} WHERE order_id > %s"
    params: list[Any] = [after]
    if stage is not None:
        sql += " AND stage = %s"
        params.append(stage)
    if channel is not None:
        sql += " AND channel = %s"
        params.append(channel)
    rows = db.query(sql + " ORDER BY order_id LIMIT %s", (*params, limit))
    out = []
    for r in rows:
        row = {**r, "state": orjson.loads(r["state"]) if isinstance(r["state"], str | bytes) else r["state"]}
        out.append(
            {
                "order_id": r["order_id"],
                "channel": r["channel"],
                "stage": r["stage"],
                "open": order_open(row),
                "lines": order_lines(row),
                "position": r["position"],
            }
        )
    return out
