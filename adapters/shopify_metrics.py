"""Prometheus metrics of the Shopify push and recovery (in the service's one registry)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from adapters.metrics import REGISTRY

PUSH_LAG = Histogram(
    "ledger_shopify_push_lag_seconds",
    "From an ATS change reaching the push queue to Shopify accepting it",
    ["shop"],
    registry=REGISTRY,
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
)
QUEUE_DEPTH = Gauge(
    "ledger_shopify_queue_depth", "Items whose newest value Shopify has not accepted", ["shop"], registry=REGISTRY
)
THROTTLE_WAITS = Counter(
    "ledger_shopify_throttle_waits_total", "Calls that waited for Shopify's cost bucket or were throttled",
    ["shop"], registry=REGISTRY,
)
STALE_COMPARES = Counter(
    "ledger_shopify_stale_compares_total", "Quantities refused with CHANGE_FROM_QUANTITY_STALE", ["shop"],
    registry=REGISTRY,
)
MUTATIONS = Counter(
    "ledger_shopify_mutations_total", "inventorySetQuantities calls sent", ["shop"], registry=REGISTRY
)
FAILED_WRITES = Counter(
    "ledger_shopify_failed_writes_total", "Writes kept as failed (with a reason)", ["shop"], registry=REGISTRY
)
RECOVERED_ORDERS = Counter(
    "ledger_shopify_recovered_orders_total", "Orders recovered from the orders query that no webhook brought",
    ["shop"], registry=REGISTRY,
)
