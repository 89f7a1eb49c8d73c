"""What each console page shows, gathered from the ledger, the read models and the adapters' stores.

Every function takes the container and returns plain data for a template; nothing here writes.
Personal data (customer e-mail, phone, name, address) is masked unless `reveal` is true (admin).
"""

from __future__ import annotations

import heapq
from datetime import UTC, datetime
from typing import Any

from adapters import outbox
from adapters.exceptions import list_exceptions
from adapters.logs import mask
from bootstrap import Container
from ledger.bounds import order_id as order_uuid
from ledger.bounds import stock_id
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
    if c.db.query_one("SELECT 1 AS x FROM stock_levels WHERE sku = %s LIMIT 1", (q,)):
        hits.append({"kind": "sku", "label": q, "href": f"/console/skus/{q}"})
    if c.db.query_one("SELECT 1 AS x FROM stock_levels WHERE location = %s LIMIT 1", (q,)):
        hits.append({"kind": "location", "label": q, "href": f"/console/locations/{q}"})
    for m in c.db.query(
        "SELECT source, kind, canonical FROM mappings WHERE external_id = %s ORDER BY source, kind", (q,)
    ):
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
    rows = c.db.query(
        "SELECT DISTINCT order_id FROM order_refs WHERE reference = %s ORDER BY order_id LIMIT %s",
        (ref, REFERENCE_LIMIT),
    )
    return [r["order_id"] for r in rows]


# ------------------------------------------------------------------ SKU


def sku_page(c: Container, sku: str) -> dict[str, Any]:
    history = c.ledger.history
    locations = [
        r["location"]
        for r in c.db.query("SELECT location FROM stock_levels WHERE sku = %s ORDER BY location", (sku,))
    ]
    policies = c.channels.cached().by_channel
    for p in policies.values():
        locations += [
            loc for loc in p.locations if loc not in locations and history.stock(sku, loc) is not None
        ]
    levels = []
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
    return c.db.query(
        "SELECT sku, on_hand, reserved, unavailable, available, position FROM stock_levels "
        "WHERE location = %s ORDER BY sku LIMIT 1000",
        (location,),
    )


# ------------------------------------------------------------------ orders


def order_page(c: Container, order_id: str, reveal: bool) -> dict[str, Any] | None:
    history = c.ledger.history
    agg = None
    stages = []
    events = []
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
    queue: list[dict[str, Any]] = []
    try:
        queue = c.db.query(
            "SELECT document, kind, status, attempts, last_error, erp_reference FROM erp_queue "
            "WHERE order_id = %s ORDER BY id",
            (order_id,),
        )
    except Exception:  # no ERP queue table in this database
        queue = []
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
    rows = c.db.query(
        "SELECT mapping FROM inbox_uses WHERE inbox_id = %s AND version = 0 ORDER BY mapping", (inbox_id,)
    )
    out = []
    for r in rows:
        source, kind, external_id = r["mapping"].split("/", 2)
        out.append({"source": source, "kind": kind, "external_id": external_id, "key": r["mapping"]})
    return out


def operations(c: Container) -> dict[str, Any]:
    parked = c.inbox.list(status="parked", limit=200)
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
    import orjson

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
        "history": c.db.query(
            "SELECT version, source, kind, external_id, old, new, actor, at FROM mapping_history "
            "ORDER BY version DESC LIMIT 500"
        ),
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
