"""Where scheduled reconciliations get their snapshots (`InventorySnapshotSource` adapters).

- `ShopifyObservedLevels`: the ledger cannot call Shopify's API from here, so it reads the
  `inventory_levels/update` observations the webhook adapter keeps (`shopify_observations`):
  each level is Shopify's `available` for an inventory item at a location, compared as of its own
  `updated_at`. The SKU is the one an `inventory_items/update` observation gave the item, else the
  inventory item id (translated through `shopify/sku` mappings); the location is Shopify's
  location id (translated through `shopify/location`).
- `ShopifyApiLevels` (when `LEDGER_SHOPIFY_SHOPS` is set): Shopify's `available` read through the
  GraphQL Admin API for every (inventory item, location) the push knows (`shopify_writes` with a
  resolved item), as of the moment the first request was sent; SKUs are canonical already,
  locations are Shopify's numeric ids (translated through `shopify/location`).
- `HttpErpInventory`: `GET {LEDGER_ERP_URL}/inventory` answering
  `{"observed_at": RFC 3339 (optional), "levels": [{"sku", "location", "quantity"}]}` (or the
  bare list): the ERP's on hand; without `observed_at` the moment the request was sent is used.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import httpx

from adapters.persistence.db import Database
from adapters.reconciliation.ports import Level, Snapshot


class SnapshotError(Exception):
    """The outside system answered something that is not a snapshot."""


def _time(value: Any) -> datetime | None:
    if not value:
        return None
    t = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=UTC)


class ShopifyObservedLevels:
    source = "shopify"

    def __init__(self, db: Database) -> None:
        self.db = db

    def snapshot(self) -> Snapshot | None:
        rows = self.db.query(
            "SELECT kind, object_id, location_id, available, sku, updated_at "
            "FROM shopify_observations ORDER BY kind, object_id, location_id"
        )
        skus = {r["object_id"]: r["sku"] for r in rows if r["kind"] == "item" and r["sku"]}
        levels = [
            Level(
                skus.get(r["object_id"], r["object_id"]),
                r["location_id"],
                int(r["available"]),
                _time(r["updated_at"]),
            )
            for r in rows
            if r["kind"] == "level" and r["available"] is not None
        ]
        if not levels:
            return None
        latest = max((lv.observed_at for lv in levels if lv.observed_at), default=None)
        return Snapshot("shopify", latest or datetime.now(UTC), levels, origin="shopify_observations")


class ShopifyApiLevels:
    source = "shopify"

    def __init__(self, db: Database, clients: list[Any]) -> None:
        self.db = db
        self.clients = clients  # adapters.shopify_admin.AdminClient, one per shop

    def snapshot(self) -> Snapshot | None:
        from adapters.shopify_admin import AdminError, numeric_id

        sent = datetime.now(UTC)
        levels: list[Level] = []
        for client in self.clients:
            rows = self.db.query(
                "SELECT DISTINCT sku, item_id, location_id FROM shopify_writes WHERE shop = %s AND item_id IS NOT NULL "
                "ORDER BY sku, location_id",
                (client.shop,),
            )
            try:
                got = client.levels([(r["item_id"], r["location_id"]) for r in rows])
            except AdminError as e:
                raise SnapshotError(f"Shopify {client.shop}: {e.reason}") from None
            for r in rows:
                q = got.get((r["item_id"], r["location_id"]))
                if q is not None:
                    levels.append(Level(r["sku"], numeric_id(r["location_id"]), q, sent))
        if not levels:
            return None
        return Snapshot("shopify", sent, levels, origin="shopify-admin-api")


class HttpErpInventory:
    source = "erp"

    def __init__(self, base_url: str, timeout: float = 30.0, client: httpx.Client | None = None) -> None:
        self.url = base_url.rstrip("/") + "/inventory"
        self.client = client or httpx.Client(timeout=timeout)

    def snapshot(self) -> Snapshot | None:
        sent = datetime.now(UTC)
        r = self.client.get(self.url, headers={"Accept": "application/json"})
        if r.status_code != 200:
            raise SnapshotError(f"GET {self.url} answered {r.status_code}")
        try:
            body = r.json()
            items = body if isinstance(body, list) else body["levels"]
            at = None if isinstance(body, list) else _time(body.get("observed_at"))
            levels = [Level(str(x["sku"]), str(x["location"]), x["quantity"]) for x in items]
        except (ValueError, KeyError, TypeError) as e:
            raise SnapshotError(f"GET {self.url} did not answer an inventory snapshot: {e}") from None
        return Snapshot("erp", at or sent, levels, origin=self.url)

    def close(self) -> None:
        self.client.close()


def read_file(
    source: str,
    text: str,
    observed_at: datetime | None = None,
    name: str = "",
    default: datetime | None = None,
) -> Snapshot:
    """A snapshot from a file: JSON (`{observed_at?, levels: [...]}` or a bare list) or CSV with a
    header `sku,location,quantity[,observed_at]`. The snapshot's moment: `observed_at` given here,
    else the file's `observed_at`, else the latest of the rows' `observed_at`, else `default`
    (SnapshotError when none). A row's own `observed_at` wins for that row. Errors are plain words."""
    stripped = text.lstrip()
    at = observed_at
    levels: list[Level] = []
    if stripped.startswith(("{", "[")):
        import orjson

        try:
            body = orjson.loads(stripped)
        except orjson.JSONDecodeError as e:
            raise SnapshotError(f"{name or 'the file'} is not valid JSON: {e}") from None
        items = body if isinstance(body, list) else body.get("levels") if isinstance(body, dict) else None
        if not isinstance(items, list):
            raise SnapshotError(
                f"{name or 'the file'}: a JSON snapshot is a list of levels or {{levels: [...]}}"
            )
        if at is None and isinstance(body, dict):
            at = _moment(body.get("observed_at"), "observed_at")
        for i, x in enumerate(items):
            where = f"levels[{i}]"
            if not isinstance(x, dict):
                raise SnapshotError(f"{where} must be an object with sku, location and quantity")
            levels.append(_level(where, x))
    else:
        import csv
        import io

        reader = csv.DictReader(io.StringIO(text))
        if not {"sku", "location", "quantity"} <= set(reader.fieldnames or ()):
            raise SnapshotError("a CSV snapshot needs the columns sku, location, quantity")
        for row in reader:
            levels.append(_level(f"line {reader.line_num}", row))
    at = at or max((lv.observed_at for lv in levels if lv.observed_at), default=None) or default
    if at is None:
        raise SnapshotError("observed_at is needed: in the file or with --observed-at")
    return Snapshot(source, at, levels, origin=name)


def _moment(value: Any, where: str) -> datetime | None:
    try:
        return _time(value)
    except (TypeError, ValueError):
        raise SnapshotError(
            f"{where} must be an RFC 3339 time such as 2026-05-01T12:00:00Z, got {value!r}"
        ) from None


def _level(where: str, x: dict[str, Any]) -> Level:
    """One row of a file, or SnapshotError in plain words naming the row and the field."""
    for f in ("sku", "location", "quantity"):
        if x.get(f) is None or x.get(f) == "":
            raise SnapshotError(f"{where}: {f} is missing")
    q = x["quantity"]
    if isinstance(q, bool) or not (
        isinstance(q, int) or (isinstance(q, str) and re.fullmatch(r"\s*[+-]?\d+\s*", q))
    ):
        raise SnapshotError(f"{where}: quantity must be a whole number, got {q!r}")
    return Level(
        str(x["sku"]), str(x["location"]), int(q), _moment(x.get("observed_at"), f"{where}: observed_at")
    )
