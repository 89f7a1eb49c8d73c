"""Recovery of missed Shopify webhooks: the orders query since a checkpoint, into the same inbox.

On an interval (`LEDGER_SHOPIFY_RECOVERY_INTERVAL_SECONDS`), for each shop, `orders(query:
"updated_at:>='{checkpoint}'", sortKey: UPDATED_AT)` is read page by page. Each order, its
fulfilments and its refunds are rewritten in the webhook shapes (`orders/create`,
`orders/cancelled`, `fulfillments/create`, `refunds/create`) and stored in the inbox under
their natural ids (`recovered:{shop}:{topic}:{id}`), so the same code translates them and a
second recovery stores nothing new. The translation is idempotent by the same natural ids
(an order already captured is a duplicate, a shipment is keyed by the fulfilment id, a refund
by the refund id), so a webhook arriving late, or one that did arrive, changes nothing.

The checkpoint (the newest `updatedAt` of a stored page) moves only after that page is stored;
the next run reads from it again (`>=`), and the natural ids drop what was seen. The first run
reads the orders updated since an hour before the shop was first configured.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from adapters import shopify_metrics as m
from adapters.inbox import Inbox, fingerprint
from adapters.persistence.db import Database
from adapters.shopify_admin import AdminClient, AdminError, numeric_id

SYNC = "shopify_sync"  # the per-shop status table (created by adapters.shopify_push)

log = logging.getLogger("ledger.shopify.recovery")


def _num(gid_or_id: Any) -> int:
    return int(numeric_id(str(gid_or_id)))


def webhook_payloads(order: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(topic, natural id, webhook-shaped payload) for one order of the orders query."""
    oid = int(order["legacyResourceId"])
    lines = [
        {
            "id": _num(li["id"]),
            "sku": li.get("sku"),
            "quantity": int(li["quantity"]),
            "variant_id": _num(li["variant"]["id"]) if li.get("variant") else None,
        }
        for li in (order.get("lineItems") or {}).get("nodes", [])
    ]
    base = {
        "id": oid,
        "name": order.get("name"),
        "admin_graphql_api_id": order.get("id"),
        "updated_at": order.get("updatedAt"),
        "cancelled_at": order.get("cancelledAt"),
        "cancel_reason": (order.get("cancelReason") or "").lower() or None,
        "financial_status": (order.get("displayFinancialStatus") or "").lower() or None,
        "fulfillment_status": _fulfillment_status(order.get("displayFulfillmentStatus")),
        "line_items": lines,
    }
    out: list[tuple[str, str, dict[str, Any]]] = [("orders/create", str(oid), base)]
    for f in order.get("fulfillments") or []:
        loc = f.get("location") or {}
        out.append(
            (
                "fulfillments/create",
                str(f["legacyResourceId"]),
                {
                    "id": int(f["legacyResourceId"]),
                    "order_id": oid,
                    "status": str(f.get("status") or "").lower(),
                    "location_id": int(loc["legacyResourceId"]) if loc.get("legacyResourceId") else None,
                    "line_items": [
                        {"id": _num(x["lineItem"]["id"]), "quantity": int(x["quantity"])}
                        for x in (f.get("fulfillmentLineItems") or {}).get("nodes", [])
                    ],
                },
            )
        )
    for r in order.get("refunds") or []:
        out.append(
            (
                "refunds/create",
                str(r["legacyResourceId"]),
                {
                    "id": int(r["legacyResourceId"]),
                    "order_id": oid,
                    "created_at": r.get("createdAt"),
                    "refund_line_items": [
                        {
                            "id": _num(x["lineItem"]["id"]),
                            "line_item_id": _num(x["lineItem"]["id"]),
                            "quantity": int(x["quantity"]),
                            "restock_type": str(x.get("restockType") or "no_restock").lower(),
                            "location_id": int(x["location"]["legacyResourceId"]) if x.get("location") else None,
                        }
                        for x in (r.get("refundLineItems") or {}).get("nodes", [])
                    ],
                    "transactions": [
                        {
                            "kind": str(t.get("kind") or "").lower(),
                            "status": str(t.get("status") or "").lower(),
                            "amount": t["amountSet"]["shopMoney"]["amount"],
                            "currency": t["amountSet"]["shopMoney"]["currencyCode"],
                        }
                        for t in (r.get("transactions") or {}).get("nodes", [])
                    ],
                },
            )
        )
    if order.get("cancelledAt"):
        out.append(("orders/cancelled", str(oid), base))
    return out


def _fulfillment_status(display: Any) -> str | None:
    value = str(display or "").lower()
    return {"fulfilled": "fulfilled", "partially_fulfilled": "partial", "unfulfilled": None}.get(value, value or None)


class Recovery:
    """One shop's recovery run (a `Loop` step at the recovery interval)."""

    def __init__(self, db: Database, client: AdminClient, inbox: Inbox, on_stored: Any = None,
                 page_size: int = 50) -> None:
        self.db = db
        self.client = client
        self.shop = client.shop
        self.inbox = inbox
        self.on_stored = on_stored
        self.page_size = page_size

    def checkpoint(self) -> str:
        row = self.db.query_one(f"SELECT recovery_checkpoint, configured_at FROM {SYNC} WHERE shop = %s", (self.shop,))
        if row is None or not row["configured_at"]:
            now = datetime.now(UTC).isoformat()
            self.db.execute(
                f"INSERT INTO {SYNC} (shop, configured_at) VALUES (%s, %s) ON CONFLICT (shop) DO UPDATE SET "
                f"configured_at = COALESCE({SYNC}.configured_at, excluded.configured_at)",
                (self.shop, now),
            )
            row = self.db.query_one(f"SELECT recovery_checkpoint, configured_at FROM {SYNC} WHERE shop = %s",
                                    (self.shop,))
        assert row is not None
        if row["recovery_checkpoint"]:
            return str(row["recovery_checkpoint"])
        first = datetime.fromisoformat(row["configured_at"]) - timedelta(hours=1)
        return first.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def step(self) -> int:
        """Reads every page since the checkpoint; returns how many new inbox messages it stored."""
        since = self.checkpoint()
        cursor: str | None = None
        stored = 0
        try:
            while True:
                orders, cursor = self.client.orders(since, cursor, self.page_size)
                newest = since
                for order in orders:
                    for topic, natural, payload in webhook_payloads(order):
                        body = orjson.dumps(payload)
                        s = self.inbox.store(
                            "shopify",
                            f"recovered:{self.shop}:{topic}:{natural}",
                            topic,
                            body,
                            {"x-shopify-shop-domain": self.shop, "x-shopify-topic": topic},
                            fingerprint(payload),
                        )
                        if s.created:
                            stored += 1
                            if topic == "orders/create":
                                m.RECOVERED_ORDERS.labels(self.shop).inc()
                    newest = max(newest, str(order.get("updatedAt") or since))
                self._save(newest)  # the page is stored: the checkpoint may move
                if cursor is None:
                    break
        except AdminError as e:
            log.warning("recovery of %s stopped: %s (the checkpoint stays)", self.shop, e.reason)
            return stored
        finally:
            self.db.execute(f"UPDATE {SYNC} SET recovery_run_at = %s WHERE shop = %s",
                            (datetime.now(UTC).isoformat(), self.shop))
        if stored:
            self.db.execute(f"UPDATE {SYNC} SET recovered = recovered + %s WHERE shop = %s", (stored, self.shop))
            if self.on_stored is not None:
                self.on_stored()
        return 0  # the loop idles until the next interval

    def _save(self, checkpoint: str) -> None:
        self.db.execute(f"UPDATE {SYNC} SET recovery_checkpoint = %s WHERE shop = %s", (checkpoint, self.shop))
