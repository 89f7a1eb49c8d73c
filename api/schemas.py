"""Answer models of the routes beyond stock and orders (those are in `api.models`): what
`/openapi.json` declares for each answer, with field descriptions and an example each.

Answers allow members beyond the declared ones (`Answer`): a field added later reaches old
clients unchanged. Moments are RFC 3339 strings, as the routes write them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Moment = str  # RFC 3339, with its offset


def example(*examples: dict[str, Any]) -> ConfigDict:
    """An answer's model config: extra members allowed, and its examples."""
    return ConfigDict(extra="allow", json_schema_extra={"examples": list(examples)})


class Answer(BaseModel):
    model_config = ConfigDict(extra="allow")


RFC3339 = "RFC 3339, with its offset"
WHO = "Who made the change: the key's name and id."

# ------------------------------------------------------------------ health


class Health(Answer):
    """The process is up."""

    status: Literal["ok"] = Field(description="Always `ok` when the process answers.")
    model_config = example({"status": "ok"})


DependencyState = Literal["ok", "degraded", "not-configured", "down"]


class Readiness(Answer):
    """The database answers; every other dependency named with its state."""

    status: Literal["ok", "unavailable"] = Field(
        description="`unavailable` (with 503) when the database is down."
    )
    checks: dict[str, DependencyState] = Field(
        description="Each dependency (`database`, `nats`, `projections`, `erp`, ...) and its state; "
        "`down` only for the database."
    )
    model_config = example(
        {
            "status": "ok",
            "checks": {"database": "ok", "nats": "not-configured", "projections": "ok", "erp": "degraded"},
        }
    )


# ------------------------------------------------------------------ orders


class OrderLineSummary(Answer):
    line_id: str = Field(description="The line's id within the order.")
    sku: str = Field(description="The canonical SKU.")
    location: str | None = Field(None, description="Where the line is reserved (its first location).")
    ordered: int = Field(description="Units ordered.")
    reserved: int = Field(description="Units still held for the line.")
    released: int = Field(description="Units whose hold was released (cancelled or edited out).")
    shipped: int = Field(description="Units shipped.")
    cancelled: int = Field(description="Units cancelled.")
    returned: int = Field(description="Units returned.")


class OrderSummary(Answer):
    order_id: str = Field(description="The order's id in the ledger.")
    channel: str = Field(description="The channel the order was captured on.")
    stage: str = Field(
        description="Where the order stands: `reserved`, `posted`, `shipped`, `cancelled`, ..."
    )
    open: list[str] = Field(description="What is still to happen (`ship`, `post`, `invoice`, ...).")
    lines: list[OrderLineSummary] = Field(description="Per line, the units at each step.")
    position: int = Field(description="The ledger position of the order's newest fact in the read model.")


class OrderPage(Answer):
    """Orders by id, from the `orders` read model."""

    items: list[OrderSummary] = Field(description="At most `limit` orders, by order id.")
    next: str | None = Field(description="Pass as `after` for the next page; null on the last page.")
    model_config = example(
        {
            "items": [
                {
                    "order_id": "1001",
                    "channel": "online",
                    "stage": "posted",
                    "open": ["ship", "invoice"],
                    "lines": [
                        {
                            "line_id": "1",
                            "sku": "SKU-RED-M",
                            "location": "WH1",
                            "ordered": 2,
                            "reserved": 2,
                            "released": 0,
                            "shipped": 0,
                            "cancelled": 0,
                            "returned": 0,
                        }
                    ],
                    "position": 42,
                }
            ],
            "next": None,
        }
    )


# ------------------------------------------------------------------ inbound messages


InboxStatus = Literal["received", "applied", "parked", "waiting", "duplicate", "rejected"]


class StoredMessage(Answer):
    """An inbound message stored (or found stored): the worker applies it a moment later."""

    inbox_id: int = Field(description="The message's id in the inbox (`GET /v1/inbox/{inbox_id}`).")
    status: InboxStatus = Field(description="Its status now; `received` until the worker applies it.")
    reason: str | None = Field(description="Why it is parked, waiting or rejected.")
    duplicate: bool = Field(description="True when this delivery was already stored: nothing changes.")
    outcome: dict[str, Any] | None = Field(
        description="What applying it did (movements, orders), once applied; null before."
    )
    model_config = example(
        {"inbox_id": 17, "status": "received", "reason": None, "duplicate": False, "outcome": None}
    )


class InboxMessage(Answer):
    id: int = Field(description="The message's id in the inbox.")
    source: Literal["shopify", "pos", "erp"] = Field(description="Who sent it.")
    external_id: str = Field(description="The sender's delivery id (webhook id, POS batch, ERP message_id).")
    kind: str = Field(description="What it is: a Shopify topic, `batch`, `goods-receipt`, ...")
    status: InboxStatus = Field(description="Where it stands.")
    reason: str | None = Field(description="Why it is parked, waiting or rejected.")
    received_at: Moment = Field(description=f"When it first arrived ({RFC3339}).")
    updated_at: Moment = Field(description=f"When its status last changed ({RFC3339}).")
    deliveries: int = Field(description="How many times it was delivered.")
    attempts: int = Field(description="How many times the worker tried to apply it.")
    wait_for: str | None = Field(description="What a waiting message waits for (an order, a mapping).")
    mapping_version: int = Field(description="The mapping version it was translated with.")
    outcome: dict[str, Any] | None = Field(description="What applying it did; null before.")


INBOX_EXAMPLE = {
    "id": 17,
    "source": "erp",
    "external_id": "msg-88",
    "kind": "goods-receipt",
    "status": "parked",
    "reason": "no mapping erp/location/DC-9",
    "received_at": "2026-11-20T10:00:00+00:00",
    "updated_at": "2026-11-20T10:00:01+00:00",
    "deliveries": 1,
    "attempts": 1,
    "wait_for": "erp/location/DC-9",
    "mapping_version": 0,
    "outcome": None,
}


class InboxPage(Answer):
    """Inbound messages, oldest first."""

    items: list[InboxMessage] = Field(description="At most `limit` messages.")
    next: int | None = Field(description="Pass as `after` for the next page; null on the last page.")
    model_config = example({"items": [INBOX_EXAMPLE], "next": None})


class InboxMessageDetail(InboxMessage):
    """One inbound message: its kept headers and outcome, never its raw body."""

    headers: dict[str, str] = Field(
        description="The delivery headers kept for audit (Shopify's, for webhooks)."
    )
    model_config = example({**INBOX_EXAMPLE, "headers": {"x-shopify-topic": "orders/create"}})


# ------------------------------------------------------------------ mappings


MappingSource = Literal["shopify", "pos", "erp"]
MappingKind = Literal["sku", "location", "channel", "inventory_item"]


class MappingChange(Answer):
    """A mapping set: its new version, and the parked messages retried with it."""

    source: MappingSource = Field(description="The outside system.")
    kind: MappingKind = Field(description="What is mapped.")
    external_id: str = Field(description="The outside code.")
    canonical: str = Field(description="The ledger's name for it.")
    version: int = Field(description="The mapping's version after this change.")
    old: str | None = Field(description="The value before; null for a new mapping.")
    changed: bool = Field(description="False when the mapping already had this value (no new version).")
    requeued: int = Field(description="Parked messages that needed this mapping, retried now.")
    model_config = example(
        {
            "source": "pos",
            "kind": "sku",
            "external_id": "ITEM-1",
            "canonical": "SKU-RED-M",
            "version": 2,
            "old": "SKU-RED-L",
            "changed": True,
            "requeued": 3,
        }
    )


class Mapping(Answer):
    source: MappingSource = Field(description="The outside system.")
    kind: MappingKind = Field(description="What is mapped.")
    external_id: str = Field(description="The outside code.")
    canonical: str = Field(description="The ledger's name for it.")
    version: int = Field(description="The current version.")
    updated_by: str = Field(description=WHO)
    updated_at: Moment = Field(description=f"When ({RFC3339}).")


class MappingList(Answer):
    """Current mappings."""

    items: list[Mapping] = Field(description="Every current mapping (of the source and kind asked for).")
    model_config = example(
        {
            "items": [
                {
                    "source": "pos",
                    "kind": "sku",
                    "external_id": "ITEM-1",
                    "canonical": "SKU-RED-M",
                    "version": 2,
                    "updated_by": "ops (4be0c3a1d2e9)",
                    "updated_at": "2026-11-20T10:00:00+00:00",
                }
            ]
        }
    )


class MappingVersion(Answer):
    version: int = Field(description="The version this change made.")
    old: str | None = Field(description="The value before.")
    new: str = Field(description="The value set.")
    actor: str = Field(description=WHO)
    at: Moment = Field(description=f"When ({RFC3339}).")


class MappingHistory(Answer):
    """A mapping's current value and every version."""

    source: MappingSource = Field(description="The outside system.")
    kind: MappingKind = Field(description="What is mapped.")
    external_id: str = Field(description="The outside code.")
    canonical: str | None = Field(description="The current value.")
    version: int | None = Field(description="The current version.")
    history: list[MappingVersion] = Field(description="Every version, oldest first.")
    model_config = example(
        {
            "source": "pos",
            "kind": "sku",
            "external_id": "ITEM-1",
            "canonical": "SKU-RED-M",
            "version": 1,
            "history": [
                {
                    "version": 1,
                    "old": None,
                    "new": "SKU-RED-M",
                    "actor": "ops (4be0c3a1d2e9)",
                    "at": "2026-11-20T10:00:00+00:00",
                }
            ],
        }
    )


class RemapResult(Answer):
    """What a remap re-translated and corrected."""

    mapping: str = Field(description="The mapping, as `source/kind/external_id`.")
    canonical: str | None = Field(description="Its current value.")
    version: int | None = Field(description="Its current version.")
    messages: int = Field(description="Inbound messages re-translated.")
    movements: int = Field(description="Stock movements corrected (correction events; nothing deleted).")
    orders: int = Field(description="Orders whose lines were corrected.")
    order_lines: int = Field(description="Order lines corrected.")
    order_lines_unreserved: int = Field(description="Corrected order lines that could not be reserved again.")
    parked_applied: int = Field(description="Parked messages applied with the mapping.")
    examined: int = Field(description="Messages examined.")
    failures: list[dict[str, Any]] = Field(
        description="Messages that could not be re-translated, each with its id and the reason."
    )
    model_config = example(
        {
            "mapping": "pos/sku/ITEM-1",
            "canonical": "SKU-RED-M",
            "version": 2,
            "messages": 4,
            "movements": 6,
            "orders": 0,
            "order_lines": 0,
            "order_lines_unreserved": 0,
            "parked_applied": 1,
            "examined": 4,
            "failures": [],
        }
    )


# ------------------------------------------------------------------ exceptions


class ExceptionView(Answer):
    kind: str = Field(
        description="`drift`, `pos-sequence-gap`, `parked-message`, `stuck-order`, `held-order`, `shortfall`, ..."
    )
    key: str = Field(description="What it is about, unique within its kind (e.g. `erp/SKU-1/WH1`).")
    status: Literal["open", "closed"] = Field(description="Open until what raised it is resolved.")
    detail: dict[str, Any] = Field(description="The kind's facts: amounts, ids, the explanation.")
    position: int | None = Field(
        description="The ledger position of the fact that raised it, when there is one."
    )
    opened_at: Moment = Field(description=f"When it was (last) opened ({RFC3339}).")
    closed_at: Moment | None = Field(description=f"When it was closed ({RFC3339}); null while open.")
    model_config = example(
        {
            "kind": "late-order",
            "key": "SO-1001",
            "status": "closed",
            "detail": {
                "order_id": "SO-1001",
                "channel": "web",
                "reservation_id": "cart-77",
                "resolved_by": "ops-key",
            },
            "position": 41,
            "opened_at": "2026-11-20T10:00:00+00:00",
            "closed_at": "2026-11-20T10:20:00+00:00",
        }
    )


class ExceptionList(Answer):
    """Exceptions, newest first."""

    items: list[ExceptionView] = Field(description="At most 1,000 exceptions.")
    model_config = example(
        {
            "items": [
                {
                    "kind": "drift",
                    "key": "erp/SKU-RED-M/WH1",
                    "status": "open",
                    "detail": {
                        "source": "erp",
                        "sku": "SKU-RED-M",
                        "location": "WH1",
                        "external": 3,
                        "ledger": 8,
                        "delta": -5,
                    },
                    "position": 20,
                    "opened_at": "2026-11-20T10:00:00+00:00",
                    "closed_at": None,
                }
            ]
        }
    )


# ------------------------------------------------------------------ reconciliations


class CauseEvent(Answer):
    position: int = Field(description="The event's ledger position.")
    type: str = Field(description="The event type.")
    recorded_at: Moment = Field(description=f"When it was recorded ({RFC3339}).")


class Cause(Answer):
    kind: str = Field(description="The cause: `reservations-not-counted`, `in-flight`, `unexplained`, ...")
    quantity: int = Field(description="The units of the difference it explains (signed).")
    basis: str = Field(description="How sure: `exact` from the ledger's facts, `residual` for what is left.")
    detail: str = Field(description="The cause in words.")
    events: list[CauseEvent] = Field(default_factory=list, description="The events behind it.")


class Mismatch(Answer):
    sku: str = Field(description="The SKU.")
    location: str = Field(description="The location.")
    external: int = Field(description="What the outside system counted.")
    ledger: int = Field(description="What the ledger holds as of `observed_at`.")
    delta: int = Field(description="external − ledger.")
    explanation: str = Field(description="The causes, ranked, in words.")
    causes: list[Cause] = Field(description="The ranked causes, each with its units and events.")
    drift: bool = Field(
        description="True when the unexplained rest exceeds the threshold (a drift exception)."
    )


class ExceptionCounts(Answer):
    drift: int = Field(description="Mismatches over the threshold.")
    opened: int = Field(description="Drift exceptions opened by this run.")
    closed: int = Field(description="Drift exceptions this run found resolved.")


RECONCILIATION_EXAMPLE: dict[str, Any] = {
    "id": "1745dc1e-04ad-46b3-93cb-ef10b915bba5",
    "source": "erp",
    "measure": "on_hand",
    "observed_at": "2026-11-20T10:00:00+00:00",
    "ran_at": "2026-11-20T10:00:02+00:00",
    "origin": "api",
    "compared": 2,
    "matched": 1,
    "position": 20,
    "threshold": "0/0%",
    "mismatches": [
        {
            "sku": "SKU-RED-M",
            "location": "WH1",
            "external": 3,
            "ledger": 4,
            "delta": -1,
            "explanation": "reservations-not-counted -1: the outside system already deducted reservation 1001/1",
            "causes": [
                {
                    "kind": "reservations-not-counted",
                    "quantity": -1,
                    "basis": "exact",
                    "detail": "the outside system already deducted reservation 1001/1",
                    "events": [
                        {"position": 9, "type": "StockReserved", "recorded_at": "2026-11-20T09:00:00+00:00"}
                    ],
                }
            ],
            "drift": False,
        }
    ],
    "timing": [],
    "exceptions": {"drift": 0, "opened": 0, "closed": 0},
}


class Reconciliation(Answer):
    """A reconciliation run's report."""

    id: str = Field(description="The run's id (`GET /v1/reconciliations/{run_id}`).")
    source: Literal["shopify", "erp", "pos"] = Field(description="Whose levels were compared.")
    measure: str = Field(description="What was compared (`on_hand`, or `available` for Shopify).")
    observed_at: Moment = Field(description=f"When the outside levels were true ({RFC3339}).")
    ran_at: Moment = Field(description=f"When the run ran ({RFC3339}).")
    origin: str = Field(description="Who ran it: `api`, `cli` or a scheduled source.")
    compared: int = Field(description="SKU-locations compared.")
    matched: int = Field(description="SKU-locations that matched.")
    position: int = Field(description="The ledger position the ledger side was read at.")
    threshold: str = Field(description="The drift threshold in force (units/percent).")
    mismatches: list[Mismatch] = Field(description="Each SKU-location that differs, with its causes.")
    timing: list[dict[str, Any]] = Field(
        description="Differences explained by timing alone (movements in flight at `observed_at`)."
    )
    exceptions: ExceptionCounts = Field(description="Drift exceptions opened and closed by the run.")
    model_config = example(RECONCILIATION_EXAMPLE)


class ReconciliationSummary(Answer):
    id: str = Field(description="The run's id.")
    source: str = Field(description="Whose levels were compared.")
    observed_at: Moment = Field(description=f"When the outside levels were true ({RFC3339}).")
    ran_at: Moment = Field(description=f"When the run ran ({RFC3339}).")
    compared: int = Field(description="SKU-locations compared.")
    mismatches: int = Field(description="SKU-locations that differ.")
    drift: int = Field(description="Mismatches over the threshold.")


class ReconciliationList(Answer):
    """Recent runs, newest first."""

    items: list[ReconciliationSummary] = Field(description="At most `limit` runs.")
    model_config = example(
        {
            "items": [
                {
                    "id": "1745dc1e-04ad-46b3-93cb-ef10b915bba5",
                    "source": "erp",
                    "observed_at": "2026-11-20T10:00:00+00:00",
                    "ran_at": "2026-11-20T10:00:02+00:00",
                    "compared": 2,
                    "mismatches": 1,
                    "drift": 0,
                }
            ]
        }
    )


# ------------------------------------------------------------------ channels


class BufferView(Answer):
    units: int | None = Field(None, description="Units held back from the ATS.")
    percent: int | None = Field(None, description="Percent of the available held back.")


class Policy(Answer):
    channel: str = Field(description="The channel.")
    version: int = Field(description="The policy's version.")
    locations: list[str] = Field(description="The channel's location group.")
    safety_stock: int = Field(description="Units held back per SKU.")
    safety_stock_overrides: dict[str, int] = Field(description="Safety stock per SKU, where it differs.")
    buffer: BufferView = Field(description="A further buffer, in units or percent.")
    excluded_skus: list[str] = Field(description="SKUs the channel never sells (ATS 0).")
    include_incoming_days: int = Field(
        0, description="Incoming units due within this many days of their notice count in the ATS (0: none)."
    )
    changed_by: str = Field(description=WHO)
    changed_at: Moment = Field(description=f"When ({RFC3339}).")


class ShopifyTargetView(Answer):
    shop: str = Field(description="The shop domain (one of LEDGER_SHOPIFY_SHOPS).")
    location_id: str = Field(description="Shopify's location gid the channel's ATS is written to.")


POLICY_EXAMPLE: dict[str, Any] = {
    "channel": "online",
    "version": 3,
    "locations": ["WH1", "STORE1"],
    "safety_stock": 2,
    "safety_stock_overrides": {"SKU-RED-M": 5},
    "buffer": {"percent": 10},
    "excluded_skus": [],
    "include_incoming_days": 0,
    "changed_by": "ops (4be0c3a1d2e9)",
    "changed_at": "2026-11-20T10:00:00+00:00",
}


class ChannelPolicy(Policy):
    """A channel's policy as set."""

    shopify: ShopifyTargetView | None = Field(description="Where the channel's ATS is written in Shopify.")
    model_config = example(
        {
            **POLICY_EXAMPLE,
            "shopify": {"shop": "acme.myshopify.com", "location_id": "gid://shopify/Location/1"},
        }
    )


class ChannelHistory(ChannelPolicy):
    """A channel's current policy and its earlier versions."""

    versions: list[Policy] = Field(description="Every version, newest first.")
    model_config = example({**POLICY_EXAMPLE, "shopify": None, "versions": [POLICY_EXAMPLE]})


# ------------------------------------------------------------------ projections


class ProjectionStatus(Answer):
    name: Literal["ats", "stock", "orders"] = Field(description="The read model.")
    position: int = Field(description="The ledger position it has applied.")
    head: int = Field(description="The ledger's newest position.")
    lag_positions: int = Field(description="head − position.")
    lag_seconds: float = Field(description="How long ago the newest unapplied event was recorded.")
    updated_at: Moment | None = Field(description=f"When it last applied an event ({RFC3339}).")


class RebuildJob(Answer):
    """A rebuild of a read model (shadow tables, then an atomic swap)."""

    id: str = Field(description="The job's id.")
    name: str = Field(description="The read model rebuilt.")
    state: Literal["running", "done", "failed"] = Field(description="Where the job stands.")
    started_at: Moment = Field(description=f"When it started ({RFC3339}).")
    started_by: str = Field(description="The name of the key that started it.")
    finished_at: Moment | None = Field(None, description="When it finished.")
    result: dict[str, Any] | None = Field(None, description="What the rebuild did (events, rows, seconds).")
    error: str | None = Field(None, description="Why it failed.")
    model_config = example(
        {
            "id": "429ddc848a49",
            "name": "ats",
            "state": "running",
            "started_at": "2026-11-20T10:00:00+00:00",
            "started_by": "ops",
        }
    )


class ProjectionList(Answer):
    """Each read model with its position and lag, and recent rebuilds."""

    items: list[ProjectionStatus] = Field(description="The read models.")
    jobs: list[RebuildJob] = Field(description="The 20 most recent rebuild jobs.")
    model_config = example(
        {
            "items": [
                {
                    "name": "ats",
                    "position": 20,
                    "head": 21,
                    "lag_positions": 1,
                    "lag_seconds": 0.004,
                    "updated_at": "2026-11-20T10:00:00+00:00",
                }
            ],
            "jobs": [],
        }
    )


# ------------------------------------------------------------------ explain


class EventCause(Answer):
    correlation_id: str | None = Field(None, description="The correlation id of the request or message.")
    causation_id: str | None = Field(None, description="The request or message that caused it.")
    source: str | None = Field(None, description="`api`, `shopify`, `pos`, `erp`, ...")
    reference: str | None = Field(None, description="The document it came from.")


class ExplainedEvent(Answer):
    position: int = Field(description="The event's ledger position.")
    version: int = Field(description="Its version in the SKU-location's stream.")
    type: str = Field(description="The event type.")
    recorded_at: Moment = Field(description=f"When ({RFC3339}).")
    moved: dict[str, int] = Field(description="What it moved, per term (`on_hand`, `reserved`, ...).")
    cause: EventCause = Field(description="Why it happened.")


class ExplainedEvents(Answer):
    count: int = Field(description="Events of the SKU-location up to the position.")
    by_term: dict[str, int] = Field(description="How many of them moved each term.")
    href: str = Field(description="Where to page through them.")
    items: list[ExplainedEvent] = Field(description="The newest of them.")


class IncomingLot(Answer):
    due_at: Moment = Field(description=f"When the units are due ({RFC3339}).")
    quantity: int = Field(description="Units still incoming.")
    lead_days: float = Field(description="Days from the notice to the due date.")
    counted: bool = Field(description="Whether the channel's ATS counts them (`include_incoming_days`).")


class IncomingTerm(Answer):
    units: int = Field(description="Units incoming (not yet received).")
    counted: int = Field(description="Of them, the units the ATS counts.")
    lots: list[IncomingLot] = Field(description="Each notice line or dispatched transfer still incoming.")


class ExplainedLocation(Answer):
    location: str = Field(description="A location of the channel's group.")
    known: bool = Field(description="False when the SKU has no events there.")
    on_hand: int = Field(description="Units on hand.")
    reserved: int = Field(description="Units reserved.")
    unavailable: int = Field(description="Units on hand that cannot be sold (damaged, held).")
    available: int = Field(description="on_hand − reserved − unavailable.")
    incoming: IncomingTerm = Field(description="Its incoming units, and those the ATS counts.")
    version: int = Field(description="The SKU-location's stream version.")
    position: int = Field(description="The ledger position the terms are taken at.")
    events: ExplainedEvents = Field(description="The events that moved the terms.")


class SafetyStockTerm(Answer):
    value: int = Field(description="Units held back.")
    source: str = Field(description="`default` or `override` (a per-SKU value).")


class BufferTerm(Answer):
    kind: str = Field(description="`units`, `percent` or `none`.")
    setting: int = Field(description="The policy's value.")
    value: int = Field(description="Units it holds back here.")


class IncomingTotal(Answer):
    days: int = Field(description="The policy's `include_incoming_days` (0: none counted).")
    counted: int = Field(description="Incoming units counted over the group's locations.")


class ReadModelValue(Answer):
    available: int = Field(description="The ATS the read model shows.")
    position: int = Field(description="The position it has applied.")


class Explanation(Answer):
    """An ATS broken into its terms, each linked to its events."""

    channel: str = Field(description="The channel.")
    sku: str = Field(description="The SKU.")
    available: int = Field(description="The ATS the terms add up to.")
    position: int = Field(description="The ledger position of the terms.")
    locations: list[ExplainedLocation] = Field(description="Per location of the group.")
    total_available: int = Field(description="The group's summed available.")
    incoming: IncomingTotal = Field(description="The incoming units the ATS counts.")
    safety_stock: SafetyStockTerm = Field(description="The safety stock taken off.")
    buffer: BufferTerm = Field(description="The buffer taken off.")
    excluded: bool = Field(description="True when the policy excludes the SKU (ATS 0).")
    formula: str = Field(description="The arithmetic, in words.")
    policy: Policy = Field(description="The policy version in force.")
    as_of: Moment | None = Field(description="The moment asked for; null for now.")
    read_model: ReadModelValue | None = Field(
        None, description="What the `ats` read model shows (without `as_of`)."
    )
    model_config = example(
        {
            "channel": "online",
            "sku": "SKU-RED-M",
            "available": 5,
            "position": 20,
            "locations": [
                {
                    "location": "WH1",
                    "known": True,
                    "on_hand": 8,
                    "reserved": 1,
                    "unavailable": 0,
                    "available": 7,
                    "incoming": {"units": 0, "counted": 0, "lots": []},
                    "version": 9,
                    "position": 20,
                    "events": {
                        "count": 9,
                        "by_term": {"on_hand": 5, "reserved": 4, "unavailable": 0},
                        "href": "/v1/stock/SKU-RED-M/WH1/events",
                        "items": [
                            {
                                "position": 4,
                                "version": 2,
                                "type": "StockReceived",
                                "recorded_at": "2026-11-20T10:00:00+00:00",
                                "moved": {"on_hand": 10},
                                "cause": {"source": "api", "reference": "po-1"},
                            }
                        ],
                    },
                }
            ],
            "total_available": 7,
            "incoming": {"days": 0, "counted": 0},
            "safety_stock": {"value": 1, "source": "default"},
            "buffer": {"kind": "units", "setting": 1, "value": 1},
            "excluded": False,
            "formula": "max(0, 7 − 1 − 1) = 5",
            "policy": POLICY_EXAMPLE,
            "as_of": None,
            "read_model": {"available": 5, "position": 20},
        }
    )


# ------------------------------------------------------------------ compliance


Scalar = str | int | float | bool | None
# A personal value as the payload held it: a text, a number, an address object, a list of them.
PersonalValue = Scalar | dict[str, Any] | list[Scalar | dict[str, Any]]


class HeldMessage(Answer):
    inbox_id: int = Field(description="The inbound message.")
    kind: str = Field(description="Its Shopify topic.")
    orders: list[str] = Field(description="The orders it is about.")
    personal_data: dict[str, list[PersonalValue]] = Field(
        description="The personal values it holds, per field."
    )


class DataRequestReport(Answer):
    """What a `customers/data_request` found held for the customer."""

    request_id: str = Field(description="Shopify's data request id.")
    shop: str = Field(description="The shop domain.")
    customer_id: str | None = Field(description="Shopify's customer id.")
    messages: list[HeldMessage] = Field(description="The inbound messages about the customer.")
    ledger_events: str = Field(description="What the ledger's events hold (never personal data).")
    model_config = example(
        {
            "request_id": "9999",
            "shop": "acme.myshopify.com",
            "customer_id": "207119551",
            "messages": [
                {
                    "inbox_id": 3,
                    "kind": "orders/create",
                    "orders": ["820982911946154508"],
                    "personal_data": {"email": ["jon@example.com"]},
                }
            ],
            "ledger_events": "order events hold order ids, SKUs, quantities and amounts; no personal data",
        }
    )
