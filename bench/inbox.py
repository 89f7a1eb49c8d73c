"""`python -m bench.inbox`: stored-to-applied throughput of the inbox worker (Shopify webhooks).

Stores N signed-shape `orders/create` messages (3 lines each, variants mapped to SKUs; every
fourth order followed by an `orders/updated` of the same order) straight into the inbox of a fresh
PostgreSQL schema, then runs the intake until every message is applied and prints messages/s,
checking that each message ended `applied` and each order holds its reservations. Run it against
two checkouts back to back (`PYTHONPATH=<tree> python <this file>`) for a same-run before/after.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

import orjson

from adapters.config import Settings
from adapters.inbox import fingerprint
from bench.common import DEFAULT_URL, scratch_schema
from bootstrap import bootstrap
from ledger.ports import StaticLocations

SHOP = "bench-shop.myshopify.com"
SKUS = 50


def _order(order_id: int, topic: str) -> dict[str, Any]:
    lines = [
        {"id": order_id * 10 + i, "variant_id": 9000 + (order_id + i) % SKUS, "sku": None, "quantity": 1}
        for i in range(3)
    ]
    stamp = "2026-11-20T10:00:00-05:00" if topic == "orders/create" else "2026-11-20T10:05:00-05:00"
    return {
        "id": order_id,
        "name": f"#{order_id}",
        "order_number": order_id,
        "updated_at": stamp,
        "financial_status": "paid",
        "line_items": lines,
    }


def run(url: str, orders: int) -> dict[str, Any]:
    with scratch_schema(url) as scratch:
        c = bootstrap(Settings(database_url=scratch), locations=StaticLocations({"online": ["WH1"]}))
        try:
            inbox, intake, mappings = c.inbox, c.intake, c.mappings
            for i in range(SKUS):
                mappings.set("shopify", "sku", str(9000 + i), f"SKU-{i}", "bench")
                c.ledger.receive(f"SKU-{i}", "WH1", 1_000_000, f"seed-{i}")
            n = 0
            for o in range(1, orders + 1):
                topics = ["orders/create"] + (["orders/updated"] if o % 4 == 0 else [])
                for topic in topics:
                    payload = _order(o, topic)
                    headers = {"x-shopify-topic": topic, "x-shopify-shop-domain": SHOP}
                    inbox.store(
                        "shopify",
                        f"wh-{o}-{topic}",
                        topic,
                        orjson.dumps(payload),
                        headers,
                        fingerprint(payload),
                    )
                    n += 1
            start = time.perf_counter()
            while intake.step():
                pass
            elapsed = time.perf_counter() - start
            counts = inbox.counts()
            applied = counts.get(("shopify", "applied"), 0)
            reserved = sum(
                1
                for o in range(1, orders + 1)
                if (v := c.ledger.history.order(str(o))) is not None and v.lines
            )
            return {
                "messages": n,
                "seconds": round(elapsed, 3),
                "messages_per_s": round(n / elapsed, 1),
                "ok": applied == n and reserved == orders,
                "statuses": {f"{k[0]}/{k[1]}": v for k, v in counts.items()},
                "tree": os.environ.get("PYTHONPATH", ""),
            }
        finally:
            c.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--orders", type=int, default=1000)
    args = parser.parse_args()
    print(json.dumps(run(args.database_url, args.orders)))


if __name__ == "__main__":
    main()
