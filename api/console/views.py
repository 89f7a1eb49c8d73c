"""What each console page shows, gathered from the ledger, the read models and the adapters' stores.

Every function takes the container and returns plain data for a template; nothing here writes,
and nothing here writes SQL: each table is read through a function of the module that owns it
(`projections.queries`, the stores in `adapters/`, `adapters.exceptions`, `adapters.outbox`).
Personal data (customer e-mail, phone, name, address) is masked unless `reveal` is true (admin).
"""

from __future__ import annotations

import heapq
from datetime import UTC, datetime
from typing import Any

import orjson

from adapters import outbox
from adapters.exceptions import list_exceptions
from adapters.inbox import Status
from adapters.logs import mask
from bootstrap import Container
from ledger.bounds import order_id as order_uuid
from ledger.bounds import stock_id
from projections import queries
from projections.explain import Explainer

TIMELINE = 200
REFERENCE_LIMIT = 100  # orders a correlation-id search lists at most


def explainer(c: Container) -> Explainer:
    return Explainer(c.db, c.ledger.history, c.channels)


def shown(value: Any, reveal: bool) -> Any:
    return value if reveal else mask(value)


def _cause(event: Any) -> dict[str, Any]:
    cause = dict(getattr(event, "cause", None) or {})
    return {
        k: cause[k]
        for k in ("correlation_id", "causation_id", "source", "reference", "mapping_version", "actor")
        if cause.get(k) is not None
    }


def _data(event: Any) -> dict[str, Any]:
    hidden = {"originator_id", "originator_version", "timestamp", "cause", "originator_topic"}
    return {k: v for k, v in vars(event).items() if k not in hidden and not k.startswith("_")}


# ------------------------------------------------------------------ search


def search(c: Container, q: str) -> list[dict[str, Any]]:
    """Matches of a SKU, a location, an order id or an outside id: [{kind, label, href}]."""
    q = q.strip()
    hits: list[dict[str, Any]] = []
    if c.ledger.history.order(q) is not None:
        hits.append({"kind": "order", "label": q, "href": f"/console/orders/{q}"})
    if queries.has_sku(c.db, q):
        hits.append({"kind": "sku", "label": q, "href": f"/console/skus/{q}"})
    if queries.has_location(c.db, q):
        hits.append({"kind": "location", "label": q, "href": f"/console/locations/{q}"})
    for m in c.mappings.by_external_id(q):
        target = {"sku": "skus", "location": "locations"}.get(m["kind"])
        hits.append(
            {
                "kind": f"{m['source']} {m['kind']}",
                "label": f"{q} → {m['canonical']}",
                "href": f"/console/{target}/{m['canonical']}" if target else "/console/mappings",
            }
        )
    for order_id in orders_by_reference(c, q):
        if order_id != q:
            hits.append(
                {
                    "kind": "order (outside id)",
                    "label": f"{q} → {order_id}",
                    "href": f"/console/orders/{order_id}",
                }
            )
    return hits


def orders_by_reference(c: Container, ref: str) -> list[str]:
    """Orders whose correlation ids (Shopify name, order number, ERP reference...) include `ref`.

    Answered by the `orders` read model's `order_refs` table (one indexed lookup), not a scan of the log.
    """
    return queries.orders_by_reference(c.db, ref, REFERENCE_LIMIT)


# ------------------------------------------------------------------ SKU


def sku_page(c: Container, sku: str) -> dict[str, Any]:
    history = c.ledger.history
    locations = queries.locations_of(c.db, sku)
    policies = c.channels.cached().by_channel
    for p in policies.values():
        locations += [
            loc for loc in p.locations if loc not in locations and history.stock(sku, loc) is not None
        ]
    levels: list[dict[str, Any]] = []
    for loc in locations:
        s = history.stock(sku, loc)
        if s is not None:
            levels.append(
                {
                    "location": loc,
                    "on_hand": s.on_hand,
                    "reserved": s.reserved,
                    "unavailable": s.unavailable,
                    "incoming": s.incoming,
                    "available": s.available,
                    "version": s.version,
                }
            )
    ex = explainer(c)
    channels = []
    series: dict[str, list[dict[str, Any]]] = {}
    for name in sorted(policies):
        if not set(policies[name].locations) & set(locations):
            continue
        explanation = ex.now(name, sku)
        channels.append({"channel": name, "explanation": explanation})
        series[name] = ex.chart(name, sku)
    return {
        "sku": sku,
        "levels": levels,
        "channels": channels,
        "series": series,
        "timeline": timeline(c, sku, [x["location"] for x in levels]),
    }


def timeline(c: Container, sku: str, locations: list[str], limit: int = TIMELINE) -> list[dict[str, Any]]:
    """The newest events of the SKU's streams, newest first, with their causes."""
    streams = []
    for loc in locations:
        events = explainer(c).stream(sku, loc)
        streams.append([(-p, loc, e) for p, e in reversed(events[-limit:])])
    out = []
    for neg, loc, e in heapq.merge(*streams, key=lambda x: x[0]):
        rid = getattr(e, "reservation_id", None)
        order = getattr(e, "order_id", None) or (
            rid.rsplit("/", 1)[0] if isinstance(rid, str) and "/" in rid else None
        )
        out.append(
            {
                "position": -neg,
                "location": loc,
                "type": type(e).__name__,
                "version": e.originator_version,
                "at": e.timestamp.isoformat(),
                "cause": _cause(e),
                "data": _data(e),
                "order_id": order,
            }
        )
        if len(out) >= limit:
            break
    return out


def location_page(c: Container, location: str) -> list[dict[str, Any]]:
    return queries.levels_at(c.db, location)


# ------------------------------------------------------------------ orders


def order_page(c: Container, order_id: str, reveal: bool) -> dict[str, Any] | None:
    history = c.ledger.history
    agg = None
    stages: list[dict[str, Any]] = []
    events: list[tuple[int, Any]] = []
    refs: dict[str, Any] = {}
    after = None
    while True:
        page = list(history.events(order_uuid(order_id), after=after, limit=500))
        for position, e in page:
            agg = e.mutate(agg)
            events.append((position, e))
            cause = _cause(e)
            if cause.get("correlation_id"):
                refs.setdefault(f"{cause.get('source', 'api')} correlation", cause["correlation_id"])
            if not stages or stages[-1]["stage"] != agg.stage:
                stages.append(
                    {
                        "stage": agg.stage,
                        "position": position,
                        "at": e.timestamp.isoformat(),
                        "type": type(e).__name__,
                    }
                )
        if len(page) < 500:
            break
        after = page[-1][0]
    if agg is None:
        return None
    view = agg.view()
    erp = [
        {"position": p, "type": type(e).__name__, "at": e.timestamp.isoformat(), "data": _data(e)}
        for p, e in events
        if type(e).__name__ in ("ErpPostingFailed", "PostedToErp")
    ]
    queue = c.erp_queue.rows(order_id)
    return {
        "order": shown(view, reveal)
        | {"order_id": view["order_id"], "stage": view["stage"], "lines": view["lines"]},
        "stages": stages,
        "refs": shown({**refs, **view["external_refs"]}, reveal),
        "platform_status": shown(view["platform_status"], reveal),
        "erp_events": erp,
        "erp_queue": queue,
        "events": [
            {
                "position": p,
                "type": type(e).__name__,
                "at": e.timestamp.isoformat(),
                "cause": _cause(e),
                "data": shown(_data(e), reveal),
            }
            for p, e in events
        ],
    }


# ------------------------------------------------------------------ operations


def missing_mappings(c: Container, inbox_id: int) -> list[dict[str, str]]:
    out = []
    for key in c.inbox.missing(inbox_id):
        source, kind, external_id = key.split("/", 2)
        out.append({"source": source, "kind": kind, "external_id": external_id, "key": key})
    return out


def operations(c: Container) -> dict[str, Any]:
    parked = c.inbox.list(status=Status.PARKED, limit=200)
    for row in parked:
        row["missing"] = missing_mappings(c, int(row["id"]))
    exceptions = list_exceptions(c.db)
    return {
        "projections": c.projector.status(),
        "jobs": c.rebuilds.recent(10),
        "outbox": outbox.depth(c.db),
        "parked": parked,
        "exceptions": exceptions,
        "stuck": [x for x in exceptions if x["kind"] == "stuck-order"],
        "drift": [x for x in exceptions if x["kind"] == "drift"],
        "recent": c.inbox.list(limit=1000)[-20:][::-1],
        "shopify": c.shopify_sync.status()["shops"],
    }


def message_page(c: Container, inbox_id: int, reveal: bool) -> dict[str, Any] | None:
    row = c.inbox.get(inbox_id)
    if row is None:
        return None
    try:
        payload = orjson.loads(c.inbox.body(inbox_id))
    except orjson.JSONDecodeError:
        payload = None
    return {
        "message": row,
        "payload": shown(payload, reveal),
        "headers": shown(row["headers"], reveal),
        "missing": missing_mappings(c, inbox_id),
    }


# ------------------------------------------------------------------ mappings, channels


def mappings_page(c: Container) -> dict[str, Any]:
    return {
        "current": c.mappings.list(),
        "history": c.mappings.changes(500),
    }


def channels_page(c: Container) -> list[dict[str, Any]]:
    channels = c.channels
    return [
        {"channel": name, "current": p.as_dict(), "versions": [v.as_dict() for v in channels.history(name)]}
        for name, p in sorted(channels.current().by_channel.items())
    ]


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def stock_key(sku: str, location: str) -> str:
    return str(stock_id(sku, location))
