"""A stand-in of Shopify's GraphQL Admin API: a real HTTP server parsing real GraphQL documents.

It implements the subset the ledger uses, after Shopify's documentation (API 2026-04):

- `POST /admin/api/{version}/graphql.json` with `X-Shopify-Access-Token` (401 for an unknown token);
- `inventorySetQuantities(input: {name, reason, referenceDocumentUri, quantities: [{inventoryItemId,
  locationId, quantity, changeFromQuantity}]})`: every quantity must carry `changeFromQuantity`
  (explicit `null` opts out); a mismatch voids the whole call with the user error
  `CHANGE_FROM_QUANTITY_STALE`; `@idempotent(key:)` returns the first result of a key;
- `nodes(ids:)` on inventory items with `inventoryLevel(locationId:) { quantities(names:) }`;
- `productVariants(first:, query: "sku:…")`;
- `orders(first:, after:, query: "updated_at:>='…'", sortKey: UPDATED_AT)` with cursor pagination;
- the leaky bucket: each answer carries `extensions.cost` with `throttleStatus`; a request whose
  cost exceeds what is available answers `errors: [{message: "Throttled", extensions: {code:
  "THROTTLED"}}]` (with HTTP 429 when `throttle_429` is set, 200 otherwise);
- fault switches: `fail_next(n, status)`, `delay_seconds`, `drop_next(n)` (connection closed
  without an answer, after or before applying: `drop_after_apply`).

`set_level` changes Shopify's quantity "behind the ledger's back" (a sale, a merchant edit).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from graphql import (
    DirectiveNode,
    FieldNode,
    GraphQLError,
    OperationDefinitionNode,
    OperationType,
    build_schema,
    graphql_sync,
    parse,
    validate,
    value_from_ast_untyped,
)

SDL = """
directive @idempotent(key: String!) on FIELD

scalar DateTime
scalar URL

interface Node { id: ID! }

type InventoryQuantity { name: String! quantity: Int! }
type InventoryLevel { id: ID! quantities(names: [String!]!): [InventoryQuantity!]! }
type InventoryItem implements Node {
  id: ID!
  sku: String
  inventoryLevel(locationId: ID!): InventoryLevel
}
type ProductVariant implements Node { id: ID! sku: String inventoryItem: InventoryItem! }
type ProductVariantConnection { nodes: [ProductVariant!]! }

type PageInfo { hasNextPage: Boolean! endCursor: String }
type LineItem { id: ID! sku: String quantity: Int! currentQuantity: Int! variant: ProductVariant }
type LineItemConnection { nodes: [LineItem!]! }
type LocationRef { legacyResourceId: String! }
type FulfillmentLineItem { quantity: Int! lineItem: LineItem! }
type FulfillmentLineItemConnection { nodes: [FulfillmentLineItem!]! }
type Fulfillment {
  legacyResourceId: String!
  status: String!
  location: LocationRef
  fulfillmentLineItems(first: Int!): FulfillmentLineItemConnection!
}
type RefundLineItem { quantity: Int! restockType: String! location: LocationRef lineItem: LineItem! }
type RefundLineItemConnection { nodes: [RefundLineItem!]! }
type Money { amount: String! currencyCode: String! }
type MoneyBag { shopMoney: Money! }
type OrderTransaction { kind: String! status: String! amountSet: MoneyBag! }
type OrderTransactionConnection { nodes: [OrderTransaction!]! }
type Refund {
  legacyResourceId: String!
  createdAt: DateTime!
  refundLineItems(first: Int!): RefundLineItemConnection!
  transactions(first: Int!): OrderTransactionConnection!
}
type Order implements Node {
  id: ID!
  legacyResourceId: String!
  name: String!
  updatedAt: DateTime!
  createdAt: DateTime!
  cancelledAt: DateTime
  cancelReason: String
  displayFinancialStatus: String
  displayFulfillmentStatus: String!
  lineItems(first: Int!): LineItemConnection!
  fulfillments(first: Int): [Fulfillment!]!
  refunds(first: Int): [Refund!]!
}
type OrderConnection { nodes: [Order!]! pageInfo: PageInfo! }
enum OrderSortKeys { UPDATED_AT CREATED_AT ID }

type InventoryChange { name: String! delta: Int! quantityAfterChange: Int item: InventoryItem location: Location }
type Location { id: ID! }
type InventoryAdjustmentGroup {
  createdAt: DateTime!
  reason: String!
  referenceDocumentUri: String
  changes: [InventoryChange!]!
}
enum InventorySetQuantitiesUserErrorCode {
  CHANGE_FROM_QUANTITY_STALE
  INVALID_INVENTORY_ITEM
  INVALID_LOCATION
  INVALID_QUANTITY_NAME
  INVALID_REASON
  ITEM_NOT_STOCKED_AT_LOCATION
  NO_DUPLICATE_INVENTORY_ITEM_ID_GROUPED_LOCATION_ID
  INVALID_QUANTITY_TOO_HIGH
  INVALID_QUANTITY_TOO_LOW
}
type InventorySetQuantitiesUserError {
  code: InventorySetQuantitiesUserErrorCode
  field: [String!]
  message: String!
}
type InventorySetQuantitiesPayload {
  inventoryAdjustmentGroup: InventoryAdjustmentGroup
  userErrors: [InventorySetQuantitiesUserError!]!
}
input InventorySetQuantityInput {
  inventoryItemId: ID!
  locationId: ID!
  quantity: Int!
  changeFromQuantity: Int
}
input InventorySetQuantitiesInput {
  name: String!
  reason: String!
  referenceDocumentUri: URL
  quantities: [InventorySetQuantityInput!]!
  ignoreCompareQuantity: Boolean
}

type Query {
  nodes(ids: [ID!]!): [Node]!
  productVariants(first: Int!, query: String): ProductVariantConnection!
  orders(first: Int!, after: String, query: String, sortKey: OrderSortKeys): OrderConnection!
}
type Mutation {
  inventorySetQuantities(input: InventorySetQuantitiesInput!): InventorySetQuantitiesPayload
}
"""

SCHEMA = build_schema(SDL)
REASONS = frozenset(
    {"correction", "cycle_count_available", "damaged", "movement_created", "movement_updated",
     "movement_received", "movement_canceled", "other", "promotion", "quality_control",
     "received", "reservation_created", "reservation_deleted", "reservation_updated",
     "restock", "safety_stock", "shrinkage"}
)
MUTATION_COST = 10


def _type_of(obj: Any, *_: Any) -> str:
    return str(obj["__typename"])


for _name in ("Node",):
    SCHEMA.type_map[_name].resolve_type = _type_of  # type: ignore[attr-defined]  # graphql-core's resolver hook


@dataclass
class Call:
    """One request the stand-in answered (for the tests' assertions)."""

    kind: str  # "mutation" | "query" | "throttled" | "fault"
    quantities: int = 0
    idempotency_key: str | None = None
    stale: bool = False
    replayed: bool = False


@dataclass
class ShopState:
    levels: dict[tuple[str, str], int] = field(default_factory=dict)  # (item gid, location gid) -> available
    skus: dict[str, str] = field(default_factory=dict)  # item gid -> sku
    variants: dict[str, str] = field(default_factory=dict)  # item gid -> variant gid
    orders: list[dict[str, Any]] = field(default_factory=list)
    bucket: float = 0.0
    stamp: float = 0.0
    results: dict[str, dict[str, Any]] = field(default_factory=dict)  # idempotency key -> first result


class ShopifyAdminStandIn:
    """Start with `start()`, stop with `stop()`; `url` is the base for LEDGER_SHOPIFY_ADMIN_URL."""

    def __init__(
        self,
        tokens: dict[str, str],  # token -> shop domain
        restore_rate: float = 100.0,
        maximum_available: float = 2000.0,
        api_version: str = "2026-04",
        throttle_429: bool = False,
        clock: Callable[[], float] = time.monotonic,  # seconds: the bucket restores as it moves
    ) -> None:
        self.tokens = tokens
        self.clock = clock
        self.restore_rate = restore_rate
        self.maximum_available = maximum_available
        self.api_version = api_version
        self.throttle_429 = throttle_429
        self.shops: dict[str, ShopState] = {
            shop: ShopState(bucket=maximum_available, stamp=clock()) for shop in tokens.values()
        }
        self.calls: list[Call] = []
        self.lock = threading.RLock()
        self.delay_seconds = 0.0
        self._fail: list[int] = []
        self._drop = 0
        self.drop_after_apply = False
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ control (tests)

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> ShopifyAdminStandIn:
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                stand_in._handle(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="shopify-standin")
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def add_item(self, shop: str, item_id: str, sku: str, levels: dict[str, int]) -> None:
        """An inventory item with its SKU (and variant), stocked at these locations."""
        with self.lock:
            st = self.shops[shop]
            st.skus[item_id] = sku
            st.variants[item_id] = item_id.replace("InventoryItem", "ProductVariant")
            for loc, q in levels.items():
                st.levels[(item_id, loc)] = q

    def set_level(self, shop: str, item_id: str, location_id: str, available: int) -> None:
        """Changes Shopify's `available` behind the ledger's back."""
        with self.lock:
            self.shops[shop].levels[(item_id, location_id)] = available

    def level(self, shop: str, item_id: str, location_id: str) -> int | None:
        with self.lock:
            return self.shops[shop].levels.get((item_id, location_id))

    def add_order(self, shop: str, order: dict[str, Any]) -> None:
        with self.lock:
            self.shops[shop].orders.append(order)

    def fail_next(self, n: int, status: int = 503) -> None:
        with self.lock:
            self._fail.extend([status] * n)

    def drop_next(self, n: int) -> None:
        with self.lock:
            self._drop += n

    def mutations(self) -> list[Call]:
        with self.lock:
            return [c for c in self.calls if c.kind == "mutation"]

    def count(self, kind: str) -> int:
        with self.lock:
            return sum(1 for c in self.calls if c.kind == kind)

    # ------------------------------------------------------------------ HTTP

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length)
        if self.delay_seconds:
            time.sleep(self.delay_seconds)
        with self.lock:
            status = self._fail.pop(0) if self._fail else None
            drop = self._drop > 0
            if drop:
                self._drop -= 1
        if status is not None:
            self.calls.append(Call("fault"))
            self._send(h, status, {"errors": [{"message": "Service Unavailable"}]})
            return
        if drop and not self.drop_after_apply:
            self.calls.append(Call("fault"))
            self._drop_connection(h)
            return
        if h.path != f"/admin/api/{self.api_version}/graphql.json":
            self._send(h, 404, {"errors": "Not Found"})
            return
        shop = self.tokens.get(h.headers.get("X-Shopify-Access-Token") or "")
        if shop is None:
            message = "[API] Invalid API key or access token (unrecognized login or wrong password)"
            self._send(h, 401, {"errors": message})
            return
        try:
            body = json.loads(raw)
            query, variables = body["query"], body.get("variables") or {}
            if not isinstance(query, str) or not isinstance(variables, dict):
                raise ValueError
        except (ValueError, KeyError, TypeError):
            self._send(h, 400, {"errors": {"query": "Required parameter missing or invalid"}})
            return
        status, answer = self.execute(shop, query, variables)
        if drop:  # applied, but the answer never arrives
            self.calls.append(Call("fault"))
            self._drop_connection(h)
            return
        self._send(h, status, answer)

    @staticmethod
    def _drop_connection(h: BaseHTTPRequestHandler) -> None:
        h.close_connection = True
        try:
            h.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    # ------------------------------------------------------------------ GraphQL

    def _cost(self, doc: Any, variables: dict[str, Any]) -> tuple[int, OperationDefinitionNode]:
        op = next(d for d in doc.definitions if isinstance(d, OperationDefinitionNode))
        if op.operation == OperationType.MUTATION:
            return MUTATION_COST * len(op.selection_set.selections), op
        cost = 0
        for sel in op.selection_set.selections:
            if not isinstance(sel, FieldNode):
                continue
            args = {a.name.value: value_from_ast_untyped(a.value, variables) for a in sel.arguments or ()}
            n = args.get("first") or len(args.get("ids") or []) or 1
            cost += 2 + int(n)  # the connection itself and one point per object asked for
        return cost, op

    def _restore(self, st: ShopState) -> None:
        now = self.clock()
        st.bucket = min(self.maximum_available, st.bucket + (now - st.stamp) * self.restore_rate)
        st.stamp = now

    def _throttle(self, st: ShopState) -> dict[str, Any]:
        return {
            "maximumAvailable": self.maximum_available,
            "currentlyAvailable": int(st.bucket),
            "restoreRate": self.restore_rate,
        }

    def execute(self, shop: str, query: str, variables: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        try:
            doc = parse(query)
        except GraphQLError as e:
            return 200, {"errors": [e.formatted]}
        errors = validate(SCHEMA, doc)
        if errors:
            return 200, {"errors": [e.formatted for e in errors]}
        with self.lock:
            st = self.shops[shop]
            cost, op = self._cost(doc, variables)
            self._restore(st)
            if cost > st.bucket:
                self.calls.append(Call("throttled"))
                return (429 if self.throttle_429 else 200), {
                    "errors": [
                        {
                            "message": "Throttled",
                            "extensions": {
                                "code": "THROTTLED",
                                "documentation": "https://shopify.dev/api/usage/rate-limits",
                            },
                        }
                    ],
                    "extensions": {
                        "cost": {
                            "requestedQueryCost": cost,
                            "actualQueryCost": None,
                            "throttleStatus": self._throttle(st),
                        }
                    },
                }
            st.bucket -= cost
            result = graphql_sync(
                SCHEMA,
                query,
                root_value=_Root(self, shop, st, op, variables),
                variable_values=variables,
                context_value={"calls": []},
            )
            answer: dict[str, Any] = {}
            if result.errors:
                answer["errors"] = [e.formatted for e in result.errors]
            if result.data is not None:
                answer["data"] = result.data
            answer["extensions"] = {
                "cost": {
                    "requestedQueryCost": cost,
                    "actualQueryCost": cost,
                    "throttleStatus": self._throttle(st),
                }
            }
            if op.operation != OperationType.MUTATION:
                self.calls.append(Call("query"))
            return 200, answer


def _directive_key(op: OperationDefinitionNode, name: str, variables: dict[str, Any]) -> str | None:
    for sel in op.selection_set.selections:
        if isinstance(sel, FieldNode) and sel.name.value == name:
            for d in sel.directives or ():
                if isinstance(d, DirectiveNode) and d.name.value == "idempotent":
                    for a in d.arguments or ():
                        if a.name.value == "key":
                            return str(value_from_ast_untyped(a.value, variables))
    return None


def _gid_num(gid: str) -> int:
    try:
        return int(gid.rsplit("/", 1)[-1])
    except ValueError:
        return 0


class _Root:
    """Root resolvers (graphql-core calls attributes of the root value)."""

    def __init__(
        self, api: ShopifyAdminStandIn, shop: str, st: ShopState, op: OperationDefinitionNode,
        variables: dict[str, Any],
    ) -> None:
        self.api, self.shop, self.st, self.op, self.variables = api, shop, st, op, variables

    # ---- queries

    def _item(self, gid: str) -> dict[str, Any] | None:
        st = self.st
        if gid not in st.skus:
            return None

        def level(_info: Any, locationId: str) -> dict[str, Any] | None:  # noqa: N803
            if (gid, locationId) not in st.levels:
                return None

            def quantities(_info: Any, names: list[str]) -> list[dict[str, Any]]:
                q = st.levels[(gid, locationId)]
                return [{"name": n, "quantity": q if n == "available" else 0} for n in names]

            return {"id": f"{gid}?location={locationId}", "quantities": quantities}

        return {"__typename": "InventoryItem", "id": gid, "sku": st.skus[gid], "inventoryLevel": level}

    def nodes(self, _: Any, ids: list[str]) -> list[Any]:
        return [self._item(i) for i in ids]

    def productVariants(self, _: Any, first: int, query: str | None = None) -> dict[str, Any]:  # noqa: N802
        sku = None
        if query and query.startswith("sku:"):
            sku = query[4:].strip().strip("'\"")
        found = [
            {"id": self.st.variants[item], "sku": s, "inventoryItem": self._item(item)}
            for item, s in sorted(self.st.skus.items())
            if sku is None or s == sku
        ]
        return {"nodes": found[:first]}

    def orders(
        self, _: Any, first: int, after: str | None = None, query: str | None = None, sortKey: str | None = None  # noqa: N803
    ) -> dict[str, Any]:
        since = ""
        if query and query.startswith("updated_at:>="):
            since = query[len("updated_at:>=") :].strip("'\"")
        rows = sorted(
            (o for o in self.st.orders if o["updatedAt"] >= since), key=lambda o: (o["updatedAt"], o["id"])
        )
        start = 0
        if after:
            start = next((i + 1 for i, o in enumerate(rows) if o["id"] == after), len(rows))
        page = rows[start : start + first]
        return {
            "nodes": [{"lineItems": {"nodes": []}, "fulfillments": [], "refunds": [], **o} for o in page],
            "pageInfo": {
                "hasNextPage": start + first < len(rows),
                "endCursor": page[-1]["id"] if page else after,
            },
        }

    # ---- mutation

    def inventorySetQuantities(self, _: Any, input: dict[str, Any]) -> dict[str, Any]:  # noqa: N802, A002
        api, st = self.api, self.st
        key = _directive_key(self.op, "inventorySetQuantities", self.variables)
        qs = input["quantities"]
        if key is not None and key in st.results:
            api.calls.append(Call("mutation", len(qs), key, replayed=True))
            return st.results[key]
        result = self._set(input)
        if key is not None:
            st.results[key] = result
        stale = any(e.get("code") == "CHANGE_FROM_QUANTITY_STALE" for e in result["userErrors"])
        api.calls.append(Call("mutation", len(qs), key, stale=stale))
        return result

    def _set(self, input: dict[str, Any]) -> dict[str, Any]:  # noqa: A002
        st = self.st
        errors: list[dict[str, Any]] = []
        if input["name"] != "available":
            errors.append({"code": "INVALID_QUANTITY_NAME", "field": ["input", "name"],
                           "message": "The quantity name must be available or on_hand."})
        if input["reason"] not in REASONS:
            errors.append({"code": "INVALID_REASON", "field": ["input", "reason"],
                           "message": "The reason is invalid."})
        seen: set[tuple[str, str]] = set()
        for i, q in enumerate(input["quantities"]):
            k = (q["inventoryItemId"], q["locationId"])
            path = ["input", "quantities", str(i)]
            if "changeFromQuantity" not in q and not input.get("ignoreCompareQuantity"):
                errors.append({"code": None, "field": [*path, "changeFromQuantity"],
                               "message": "changeFromQuantity is required (pass null to opt out)."})
            elif k in seen:
                errors.append({"code": "NO_DUPLICATE_INVENTORY_ITEM_ID_GROUPED_LOCATION_ID", "field": path,
                               "message": "An inventory item and location appear twice."})
            elif q["inventoryItemId"] not in st.skus:
                errors.append({"code": "INVALID_INVENTORY_ITEM", "field": [*path, "inventoryItemId"],
                               "message": "The specified inventory item could not be found."})
            elif k not in st.levels:
                errors.append({"code": "ITEM_NOT_STOCKED_AT_LOCATION", "field": [*path, "locationId"],
                               "message": "The item is not stocked at the location."})
            elif q["quantity"] < -1_000_000_000 or q["quantity"] > 1_000_000_000:
                errors.append({"code": "INVALID_QUANTITY_TOO_HIGH", "field": [*path, "quantity"],
                               "message": "The quantity is out of range."})
            elif q.get("changeFromQuantity") is not None and st.levels[k] != q["changeFromQuantity"]:
                errors.append({"code": "CHANGE_FROM_QUANTITY_STALE", "field": [*path, "changeFromQuantity"],
                               "message": "The specified compare quantity does not match the current quantity."})
            seen.add(k)
        if errors:  # any user error voids the whole call: nothing is applied
            return {"inventoryAdjustmentGroup": None, "userErrors": errors}
        changes = []
        for q in input["quantities"]:
            k = (q["inventoryItemId"], q["locationId"])
            delta = q["quantity"] - st.levels[k]
            st.levels[k] = q["quantity"]
            changes.append({"name": "available", "delta": delta, "quantityAfterChange": q["quantity"],
                            "item": self._item(k[0]), "location": {"id": k[1]}})
        return {
            "inventoryAdjustmentGroup": {
                "createdAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "reason": input["reason"],
                "referenceDocumentUri": input.get("referenceDocumentUri"),
                "changes": changes,
            },
            "userErrors": [],
        }
