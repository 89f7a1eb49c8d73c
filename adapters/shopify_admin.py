"""Shopify's GraphQL Admin API, as the ledger uses it: levels, SKU lookups, `inventorySetQuantities`, orders.

One `AdminClient` per shop. It paces itself by the leaky bucket Shopify reports in every answer
(`extensions.cost.throttleStatus`): before a call it estimates what the bucket holds now (what
was reported, plus `restoreRate` per second since) and waits until the call's cost fits. An
answer `THROTTLED` (HTTP 200 or 429) is back-pressure: `Throttled` says how long to wait, and
nothing is lost. The errors tell the caller what is known about the call:

- `Throttled`: not executed; wait `retry_after` seconds and send it again;
- `Unavailable`: a 5xx, a timeout, a dropped connection: the outcome is unknown (send it again
  with the same idempotency key, or let the compare-and-set catch a double);
- `Refused`: an answer that is not understood or says no (401/403, not JSON, an unknown
  GraphQL error): keep the write as failed with `reason`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from adapters.shopify_metrics import MUTATIONS, THROTTLE_WAITS

DEFAULT_API_VERSION = "2026-04"
MUTATION_COST = 10  # Shopify's estimate for a mutation

SET_QUANTITIES = """
mutation SetAvailable($input: InventorySetQuantitiesInput!) {
  inventorySetQuantities(input: $input)%s {
    inventoryAdjustmentGroup { referenceDocumentUri changes { name delta quantityAfterChange } }
    userErrors { code field message }
  }
}
"""
LEVELS = """
query Levels($ids: [ID!]!, $location: ID!) {
  nodes(ids: $ids) {
    ... on InventoryItem {
      id
      inventoryLevel(locationId: $location) { quantities(names: ["available"]) { name quantity } }
    }
  }
}
"""
VARIANT_BY_SKU = """
query VariantBySku($query: String!) {
  productVariants(first: 5, query: $query) { nodes { id sku inventoryItem { id } } }
}
"""
ORDERS = """
query Orders($first: Int!, $after: String, $query: String!) {
  orders(first: $first, after: $after, query: $query, sortKey: UPDATED_AT) {
    pageInfo { hasNextPage endCursor }
    nodes {
      id legacyResourceId name createdAt updatedAt cancelledAt cancelReason
      displayFinancialStatus displayFulfillmentStatus
      lineItems(first: 250) { nodes { id sku quantity variant { id } } }
      fulfillments(first: 50) {
        legacyResourceId status location { legacyResourceId }
        fulfillmentLineItems(first: 250) { nodes { quantity lineItem { id } } }
      }
      refunds(first: 50) {
        legacyResourceId createdAt
        refundLineItems(first: 250) { nodes { quantity restockType location { legacyResourceId } lineItem { id } } }
        transactions(first: 20) { nodes { kind status amountSet { shopMoney { amount currencyCode } } } }
      }
    }
  }
}
"""


class AdminError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Throttled(AdminError):
    def __init__(self, reason: str, retry_after: float) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class Unavailable(AdminError):
    """The outcome of the call is unknown (5xx, timeout, dropped connection)."""


class Refused(AdminError):
    """An answer the ledger does not understand or that refuses the call (never retried blindly)."""


@dataclass
class Throttle:
    currently_available: float
    maximum_available: float
    restore_rate: float
    at: float  # the client's clock at the answer

    def now(self, clock: float) -> float:
        return min(self.maximum_available, self.currently_available + (clock - self.at) * self.restore_rate)

    def as_dict(self) -> dict[str, float]:
        return {
            "currently_available": self.currently_available,
            "maximum_available": self.maximum_available,
            "restore_rate": self.restore_rate,
        }


def gid(kind: str, value: str) -> str:
    """`gid://shopify/{kind}/{value}` unless the value already is a gid."""
    return value if value.startswith("gid://") else f"gid://shopify/{kind}/{value}"


def numeric_id(value: str) -> str:
    """The number at the end of a gid (webhooks carry numbers, GraphQL carries gids)."""
    return value.rsplit("/", 1)[-1] if value.startswith("gid://") else value


def accepts_idempotent(api_version: str) -> bool:
    """The `@idempotent` directive exists from 2026-01 (mandatory for the inventory deltas from 2026-04)."""
    return api_version >= "2026-01"


class AdminClient:
    def __init__(
        self,
        shop: str,
        token: str,
        base_url: str | None = None,
        api_version: str = DEFAULT_API_VERSION,
        timeout: float = 10.0,
        sleep: Callable[[float], Any] = time.sleep,
        client: httpx.Client | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.shop = shop
        self.api_version = api_version
        base = (base_url or f"https://{shop}").rstrip("/")
        self.url = f"{base}/admin/api/{api_version}/graphql.json"
        self.headers = {"X-Shopify-Access-Token": token, "Content-Type": "application/json"}
        self.client = client or httpx.Client(timeout=timeout)
        self.sleep = sleep
        self.clock = clock  # monotonic seconds: how long the bucket has been restoring
        self.throttle: Throttle | None = None
        self.throttle_waits = 0  # calls that waited for the bucket, or were throttled
        self.calls = 0
        self._lock = threading.Lock()

    def close(self) -> None:
        self.client.close()

    # ------------------------------------------------------------------ pacing

    def wait_for(self, cost: float) -> float:
        """Seconds to wait until `cost` points fit in the bucket (0 when they do, or nothing is known)."""
        with self._lock:
            t = self.throttle
        if t is None or t.restore_rate <= 0:
            return 0.0
        have = t.now(self.clock())
        need = min(cost, t.maximum_available)
        return 0.0 if have >= need else (need - have) / t.restore_rate

    def pace(self, cost: float) -> None:
        wait = self.wait_for(cost)
        if wait > 0:
            self.throttle_waits += 1
            THROTTLE_WAITS.labels(self.shop).inc()
            self.sleep(wait)

    def _note_cost(self, body: Any) -> float | None:
        """Records the throttle status of an answer; returns the requested cost, if any."""
        try:
            cost = body["extensions"]["cost"]
            ts = cost["throttleStatus"]
            t = Throttle(
                float(ts["currentlyAvailable"]),
                float(ts["maximumAvailable"]),
                float(ts["restoreRate"]),
                self.clock(),
            )
        except (KeyError, TypeError, ValueError):
            return None
        with self._lock:
            self.throttle = t
        requested = cost.get("requestedQueryCost")
        return float(requested) if isinstance(requested, int | float) else None

    # ------------------------------------------------------------------ one call

    def call(self, query: str, variables: dict[str, Any], cost: float = 1.0) -> dict[str, Any]:
        """Runs one GraphQL document; returns `data`. Raises Throttled, Unavailable or Refused."""
        self.pace(cost)
        self.calls += 1
        try:
            r = self.client.post(self.url, json={"query": query, "variables": variables}, headers=self.headers)
        except httpx.TimeoutException:
            raise Unavailable("Shopify did not answer in time") from None
        except httpx.TransportError as e:
            raise Unavailable(f"connection to Shopify failed ({type(e).__name__})") from None
        if r.status_code >= 500:
            raise Unavailable(f"Shopify answered HTTP {r.status_code}")
        try:
            body = r.json()
        except ValueError:
            if r.status_code == 429:
                raise Throttled("HTTP 429", self._retry_after(r, cost)) from None
            raise Refused(f"Shopify answered HTTP {r.status_code} that is not JSON") from None
        requested = self._note_cost(body)
        errors = body.get("errors") if isinstance(body, dict) else None
        codes = {
            (e.get("extensions") or {}).get("code") for e in errors if isinstance(e, dict)
        } if isinstance(errors, list) else set()
        if r.status_code == 429 or "THROTTLED" in codes:
            raise Throttled("THROTTLED", self._retry_after(r, requested or cost))
        if r.status_code in (401, 403):
            raise Refused(f"Shopify refused the access token (HTTP {r.status_code})")
        if r.status_code != 200:
            raise Refused(f"Shopify answered HTTP {r.status_code}")
        if errors:
            first = errors[0] if isinstance(errors, list) and errors else errors
            message = first.get("message") if isinstance(first, dict) else str(first)
            raise Refused(f"GraphQL error: {str(message)[:200]}")
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, dict):
            raise Refused("Shopify's answer carries no data")
        return data

    def _retry_after(self, r: httpx.Response, cost: float) -> float:
        header = r.headers.get("Retry-After")
        if header:
            try:
                return max(0.0, float(header))
            except ValueError:
                pass
        wait = self.wait_for(cost)
        return wait if wait > 0 else 1.0

    # ------------------------------------------------------------------ what the ledger asks

    def levels(self, pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int | None]:
        """Shopify's `available` of (inventory item gid, location gid) pairs; None where not stocked."""
        by_location: dict[str, list[str]] = {}
        for item, loc in pairs:
            by_location.setdefault(loc, []).append(item)
        out: dict[tuple[str, str], int | None] = {}
        for loc, items in by_location.items():
            for i in range(0, len(items), 100):
                chunk = items[i : i + 100]
                data = self.call(LEVELS, {"ids": chunk, "location": loc}, cost=2 + len(chunk))
                nodes = data.get("nodes")
                if not isinstance(nodes, list) or len(nodes) != len(chunk):
                    raise Refused("Shopify's levels answer does not match the items asked for")
                for item, node in zip(chunk, nodes, strict=True):
                    level = (node or {}).get("inventoryLevel")
                    qs = (level or {}).get("quantities") or []
                    out[(item, loc)] = next(
                        (int(q["quantity"]) for q in qs if q.get("name") == "available"), None
                    ) if level else None
        return out

    def items_for_sku(self, sku: str) -> list[str]:
        """Inventory item gids of the variants whose SKU is exactly `sku`."""
        quoted = sku.replace("\\", "\\\\").replace('"', '\\"')
        data = self.call(VARIANT_BY_SKU, {"query": f'sku:"{quoted}"'}, cost=7)
        nodes = ((data.get("productVariants") or {}).get("nodes")) or []
        return sorted(
            {n["inventoryItem"]["id"] for n in nodes if n.get("sku") == sku and n.get("inventoryItem")}
        )

    def set_available(
        self, quantities: list[dict[str, Any]], reason: str, reference: str, key: str
    ) -> list[dict[str, Any]]:
        """One `inventorySetQuantities` call; returns its user errors (empty: all applied)."""
        directive = f" @idempotent(key: {_string(key)})" if accepts_idempotent(self.api_version) else ""
        data = self.call(
            SET_QUANTITIES % directive,
            {
                "input": {
                    "name": "available",
                    "reason": reason,
                    "referenceDocumentUri": reference,
                    "quantities": quantities,
                }
            },
            cost=MUTATION_COST,
        )
        MUTATIONS.labels(self.shop).inc()
        payload = data.get("inventorySetQuantities")
        if not isinstance(payload, dict) or not isinstance(payload.get("userErrors"), list):
            raise Refused("inventorySetQuantities answered no payload")
        return list(payload["userErrors"])

    def orders(self, since: str, after: str | None, first: int = 50) -> tuple[list[dict[str, Any]], str | None]:
        """One page of orders updated since `since` (oldest first); the cursor of the next page or None."""
        data = self.call(
            ORDERS, {"first": first, "after": after, "query": f"updated_at:>='{since}'"}, cost=2 + first
        )
        conn = data.get("orders") or {}
        info = conn.get("pageInfo") or {}
        nodes = conn.get("nodes")
        if not isinstance(nodes, list):
            raise Refused("the orders answer carries no nodes")
        return nodes, (info.get("endCursor") if info.get("hasNextPage") else None)


def _string(value: str) -> str:
    """A GraphQL string literal."""
    import json

    return json.dumps(value)
