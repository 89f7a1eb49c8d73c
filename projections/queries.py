"""Reads of the read models' tables for the console and other readers that are not folds.

The tables are declared in `projections/models.py` (`StockView.LEVELS` is `stock_levels`,
`OrdersView.REFS` is `order_refs`); a reader outside `projections/` calls these functions
instead of writing SQL on them.
"""

from __future__ import annotations

from typing import Any

import orjson

from adapters.persistence.db import Database, like_prefix
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
    return [
        r["location"]
        for r in db.query(f"SELECT location FROM {LEVELS} WHERE sku = %s ORDER BY location", (sku,))
    ]


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


def _prefixed(db: Database, table: str, column: str, text: str, limit: int) -> list[str]:
    rows = db.query(
        f"SELECT DISTINCT {column} AS v FROM {table} WHERE lower({column}) LIKE %s ESCAPE '\\' "
        f"ORDER BY {column} LIMIT %s",
        (like_prefix(text.lower()), limit),
    )
    return [r["v"] for r in rows]


def skus_starting(db: Database, text: str, limit: int = 20) -> list[str]:
    """SKUs of the `stock` read model that start with `text`, ignoring case, in name order."""
    return _prefixed(db, LEVELS, "sku", text, limit)


def locations_starting(db: Database, text: str, limit: int = 20) -> list[str]:
    """Locations of the `stock` read model that start with `text`, ignoring case."""
    return _prefixed(db, LEVELS, "location", text, limit)


def orders_starting(db: Database, text: str, limit: int = 20) -> list[str]:
    """Order ids of the `orders` read model that start with `text`, ignoring case."""
    return _prefixed(db, ORDERS, "order_id", text, limit)


def references_starting(db: Database, text: str, limit: int = 20) -> list[dict[str, Any]]:
    """Correlation ids (Shopify name, ERP reference...) that start with `text`, ignoring case,
    each with its order: [{reference, order_id}]."""
    return db.query(
        f"SELECT DISTINCT reference, order_id FROM {REFS} WHERE lower(reference) LIKE %s ESCAPE '\\' "
        "ORDER BY reference, order_id LIMIT %s",
        (like_prefix(text.lower()), limit),
    )


SCAN_CAP = 5000  # rows one page of `newest_orders` reads at most when filtering on open work


def newest_orders(
    db: Database,
    stage: str | None = None,
    channel: str | None = None,
    open_work: str | None = None,
    before: tuple[float, str] | None = None,
    limit: int = 50,
) -> tuple[list[dict[str, Any]], tuple[float, str] | None]:
    """Orders of the `orders` read model, newest captured first, optionally of one stage and
    channel and with one kind of open work (`ship`, `post`...; `any` for any): (page, cursor of
    the next page or None). The cursor is the last row's (captured_at, order_id).

    Open work lives in each row's state, so that filter reads pages of rows and keeps the
    matching ones, at most `SCAN_CAP` rows per page asked for; the cursor then resumes after
    the last row read."""
    base = f"SELECT order_id, channel, stage, state, captured_at, position FROM {ORDERS} WHERE 1=1"
    params: list[Any] = []
    if stage is not None:
        base += " AND stage = %s"
        params.append(stage)
    if channel is not None:
        base += " AND channel = %s"
        params.append(channel)
    out: list[dict[str, Any]] = []
    read = 0
    cursor = before
    while True:
        sql, args = base, list(params)
        if cursor is not None:
            sql += " AND (captured_at < %s OR (captured_at = %s AND order_id < %s))"
            args += [cursor[0], cursor[0], cursor[1]]
        batch = limit if open_work is None else min(500, SCAN_CAP)
        rows = db.query(sql + " ORDER BY captured_at DESC, order_id DESC LIMIT %s", (*args, batch + 1))
        more, page = len(rows) > batch, rows[:batch]
        for i, r in enumerate(page):
            read += 1
            row = {
                **r,
                "state": orjson.loads(r["state"]) if isinstance(r["state"], str | bytes) else r["state"],
            }
            cursor = (float(r["captured_at"]), str(r["order_id"]))
            work = order_open(row)
            if open_work is not None and not (work if open_work == "any" else open_work in work):
                continue
            out.append(
                {
                    "order_id": r["order_id"],
                    "channel": r["channel"],
                    "stage": r["stage"],
                    "open": work,
                    "lines": order_lines(row),
                    "captured_at": float(r["captured_at"]),
                    "position": r["position"],
                }
            )
            if len(out) == limit:
                return out, (cursor if more or i < len(page) - 1 else None)
        if not more:
            return out, None
        if read >= SCAN_CAP:
            return out, cursor


def order_state(db: Database, order_id: str) -> dict[str, Any] | None:
    """One order of the `orders` read model: {stage, open, erp}, `erp` the postings of its ERP
    documents (posted, attempts, last_error per document); None before it is projected."""
    r = db.query_one(f"SELECT order_id, stage, state FROM {ORDERS} WHERE order_id = %s", (order_id,))
    if r is None:
        return None
    row = {**r, "state": orjson.loads(r["state"]) if isinstance(r["state"], str | bytes) else r["state"]}
    return {"stage": r["stage"], "open": order_open(row), "erp": row["state"].get("erp", {})}


def sku_totals(db: Database, text: str = "", after: str = "", limit: int = 100) -> list[dict[str, Any]]:
    """SKUs of the `stock` read model in name order after `after`, those starting with `text`
    (ignoring case) when given: each with its locations and its summed on hand, reserved and
    available."""
    return db.query(
        f"SELECT sku, COUNT(*) AS locations, SUM(on_hand) AS on_hand, SUM(reserved) AS reserved, "
        f"SUM(available) AS available FROM {LEVELS} WHERE sku > %s AND lower(sku) LIKE %s ESCAPE '\\' "
        "GROUP BY sku ORDER BY sku LIMIT %s",
        (after, like_prefix(text.lower()), limit),
    )
