"""What each console page shows, gathered from the ledger, the read models and the adapters' stores.

Every function takes the container and returns plain data for a template; nothing here writes,
and nothing here writes SQL: each table is read through a function of the module that owns it
(`projections.queries`, the stores in `adapters/`, `adapters.exceptions`, `adapters.outbox`).
Personal data (customer e-mail, phone, name, address) is masked unless `reveal` is true (admin).
"""

from __future__ import annotations

import heapq
import math
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import orjson

from adapters import outbox
from adapters.exceptions import list_exceptions, open_about
from adapters.inbox import Status
from adapters.logs import mask
from adapters.shopify import DEFAULT_CHANNEL
from api.console import words
from bootstrap import Container
from ledger.bounds import order_id as order_uuid
from ledger.bounds import stock_id
from ledger.orders import OPEN_WORK, STAGES
from ledger.stock import SkuLocation
from projections import queries
from projections.explain import Explainer

TIMELINE = 200
REFERENCE_LIMIT = 100  # orders a correlation-id search lists at most
SEARCH_LIMIT = 20  # hits of each kind a prefix search lists at most
ORDER_PAGE = 50
RUNS = 50


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
    """Matches of a SKU, a location, an order id or an outside id: [{kind, label, href}].

    SKUs, locations, order ids and correlation ids match by prefix, ignoring case (`tee` finds
    `TEE-RED-M`); an exact match comes first and, alone, opens its page. Outside codes of the
    mappings match exactly."""
    q = q.strip()
    hits: list[dict[str, Any]] = []

    def add(kind: str, label: str, href: str, exact: bool) -> None:
        hits.append({"kind": kind, "label": label, "href": href, "exact": exact})

    for order in queries.orders_starting(c.db, q, SEARCH_LIMIT):
        add("order", order, words.order_href(order), order == q)
    if q not in {h["label"] for h in hits} and c.ledger.history.order(q) is not None:
        add("order", q, words.order_href(q), True)  # captured, not projected yet
    for sku in queries.skus_starting(c.db, q, SEARCH_LIMIT):
        add("SKU", sku, words.sku_href(sku), sku == q)
    for loc in queries.locations_starting(c.db, q, SEARCH_LIMIT):
        add("location", loc, words.location_href(loc), loc == q)
    for m in c.mappings.by_external_id(q):
        href = {"sku": words.sku_href, "location": words.location_href}.get(m["kind"])
        add(
            f"{m['source']} {m['kind']}",
            f"{q} → {m['canonical']}",
            href(m["canonical"]) if href else "/console/mappings",
            True,
        )
    for r in queries.references_starting(c.db, q, SEARCH_LIMIT):
        if r["order_id"] != r["reference"]:
            label = f"{r['reference']} → {r['order_id']}"
            add("order (outside id)", label, words.order_href(r["order_id"]), r["reference"] == q)
    hits.sort(key=lambda h: not h["exact"])  # exact matches first, each kind in name order
    return hits


def orders_by_reference(c: Container, ref: str) -> list[str]:
    """Orders whose correlation ids (Shopify name, order number, ERP reference...) include `ref`.

    Answered by the `orders` read model's `order_refs` table (one indexed lookup), not a scan of the log.
    """
    return queries.orders_by_reference(c.db, ref, REFERENCE_LIMIT)


# ------------------------------------------------------------------ SKU


def key_names(c: Container) -> dict[str, str]:
    """API key ids to their names, so a cause reads "by ops-team", not "by k_3f9a"."""
    return {str(k["id"]): str(k["name"]) for k in c.keys.list()}


def sku_page(c: Container, sku: str, as_of: datetime | None = None) -> dict[str, Any]:
    """The SKU now, or as it stood at `as_of`: levels, ATS per channel term by term, the
    chart, the open exceptions about it and its newest events in plain words."""
    history = c.ledger.history
    locations = queries.locations_of(c.db, sku)
    policies = c.channels.cached().by_channel
    for p in policies.values():
        locations += [
            loc for loc in p.locations if loc not in locations and history.stock(sku, loc) is not None
        ]
    levels: list[dict[str, Any]] = []
    for loc in locations:
        s = history.stock(sku, loc) if as_of is None else history.as_of_time(stock_id(sku, loc), as_of)
        if isinstance(s, SkuLocation):
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
        explanation = ex.now(name, sku) if as_of is None else ex.as_of(name, sku, as_of)
        if explanation is not None and as_of is not None:
            explanation["read_model"] = {"available": explanation["available"], "position": None}
        channels.append({"channel": name, "explanation": explanation})
        series[name] = ex.chart(name, sku)
    return {
        "sku": sku,
        "as_of": as_of.astimezone(UTC).isoformat() if as_of else "",
        "known": bool(locations),
        "levels": levels,
        "channels": channels,
        "series": series,
        "exceptions": [describe_exception(c, x) for x in open_about(c.db, sku=sku)],
        "timeline": timeline(c, sku, locations, until=as_of),
    }


def timeline(
    c: Container, sku: str, locations: list[str], limit: int = TIMELINE, until: datetime | None = None
) -> list[dict[str, Any]]:
    """The newest events of the SKU's streams (up to `until`), newest first, in plain words
    with their causes linked."""
    ex = explainer(c)
    streams = []
    for loc in locations:
        events = ex.stream(sku, loc, until=until)
        streams.append([(-p, loc, e) for p, e in reversed(events[-limit:])])
    names = key_names(c)
    out = []
    for neg, loc, e in heapq.merge(*streams, key=lambda x: x[0]):
        rid = getattr(e, "reservation_id", None)
        order = getattr(e, "order_id", None) or words.order_of(rid)
        out.append(
            {
                "position": -neg,
                "location": loc,
                "type": type(e).__name__,
                "version": e.originator_version,
                "at": e.timestamp.isoformat(timespec="seconds"),
                "words": words.sentence(e, loc),
                "because": words.cause(_cause(e), names),
                "order_id": order,
            }
        )
        if len(out) >= limit:
            break
    return out


def location_page(c: Container, location: str) -> list[dict[str, Any]]:
    return queries.levels_at(c.db, location)


# ------------------------------------------------------------------ orders


def rfc3339(value: Any) -> str:
    """A moment as RFC 3339 UTC: epoch seconds (the read models' `captured_at`) or ISO text."""
    if isinstance(value, int | float):
        return datetime.fromtimestamp(float(value), UTC).isoformat(timespec="seconds")
    return str(value or "")[:19]


def run_href(run_id: str) -> str:
    return f"/console/reconciliations/{quote(str(run_id), safe='')}"


def stuck_reason(c: Container, order_id: str, detail: dict[str, Any]) -> list[words.Part]:
    """Why an order has not reached the ERP: the ERP's own answer when it refused, else what
    the order or the service still waits for."""
    T = words.text
    deadline = detail.get("deadline_seconds", c.settings.erp_posting_deadline_seconds)
    head = [T(f"captured {rfc3339(detail.get('captured_at'))}, not posted to the ERP within {deadline} s: ")]
    queue = c.erp_queue.rows(order_id)
    state = queries.order_state(c.db, order_id) or {"open": [], "erp": {}}
    refused = [
        (name, doc)
        for name, doc in state["erp"].get("documents", {}).items()
        if doc.get("last_error") and not doc.get("posted")
    ]
    refused += [(q["document"], q) for q in queue if q.get("status") != "posted" and q.get("last_error")]
    why: list[str] = []
    if refused:
        name, doc = refused[-1]
        why.append(
            f"the ERP refused {name} {doc.get('attempts', 1)} time(s), last with “{doc['last_error']}”"
        )
    elif not c.settings.erp_url:
        why.append("the ERP is not configured (LEDGER_ERP_URL is unset), so postings wait in their queue")
    elif not queue:
        why.append("no ERP document is queued for it yet (the ERP feeder has not reached it)")
    else:
        waiting = [q for q in queue if q.get("status") not in ("posted", "voided")]
        why.append(
            f"{waiting[0]['document']} is queued ({waiting[0]['status']}), with no answer from the ERP yet"
            if waiting
            else "its documents are posted; the exception closes at the next sweep"
        )
    if "reserve" in state["open"]:
        why.append("and some of its units are still waiting for stock to be reserved")
    return [*head, T("; ".join(why))]


def describe_exception(c: Container, x: dict[str, Any]) -> dict[str, Any]:
    """An open exception in plain words, with links to what it is about and what explains it."""
    d, kind = x["detail"], x["kind"]
    T, L = words.text, words.link
    sku, loc = d.get("sku"), d.get("location")
    about: list[words.Part] = []
    if sku:
        about += [L(sku, words.sku_href(sku))]
    if loc:
        about += [T(" at "), L(loc, words.location_href(loc))]
    if kind == "drift":
        delta = int(d.get("delta", 0))
        says = [
            T(f"{d.get('source')} counts {d.get('external')} {d.get('measure', '')} of "),
            *about,
            T(f"; the ledger had {d.get('ledger')} ({words.signed(delta)}). {d.get('explanation', '')}"),
        ]
        if d.get("reconciliation"):
            says += [T(" "), L("see the reconciliation run", run_href(d["reconciliation"]))]
    elif kind == "stuck-order":
        oid = d.get("order_id", x["key"])
        says = [T("Order "), L(oid, words.order_href(oid)), T(" "), *stuck_reason(c, oid, d)]
    elif kind == "shortfall":
        says = [*about, T(f" is short {d.get('short')}: reserved units no stock covers")]
        for i, u in enumerate(d.get("uncovered", [])[:10]):
            says.append(T(", " if i else " ("))
            if u.get("order_id"):
                says += [
                    T(f"{u.get('quantity')} for order "),
                    L(u["order_id"], words.order_href(u["order_id"])),
                ]
            else:
                says.append(T(f"{u.get('quantity')} for hold {u.get('reservation_id')}"))
        if d.get("uncovered"):
            says.append(T(")"))
    elif kind == "negative-stock":
        incoming = int(d.get("incoming") or 0)
        says = [
            *about,
            T(
                f" shows {d.get('on_hand')} on hand: more units left than the ledger saw arrive"
                + (f" ({incoming} incoming there: is its receipt recorded?)" if incoming else "; a count is due")
            ),
        ]
    elif kind == "reservation-expired":
        says = [
            T("Holds on "),
            *about,
            T(f" expired at {rfc3339(d.get('expired_at'))} and are being released"),
        ]
    elif kind == "parked-message":
        says = [
            L(f"{d.get('source')} message {x['key']}", f"/console/messages/{quote(x['key'], safe='')}"),
            T(f" ({d.get('external_id')}) is parked: {d.get('reason')}"),
        ]
    elif kind == "pos-sequence-gap":
        says = [
            T(
                f"POS store {d.get('store')} sent batches up to {d.get('seen_up_to')}, but not {d.get('sequence')}"
            )
        ]
    else:
        says = [T(f"{x['key']}: {words.plain(d)}")]
    return {**x, "words": says, "opened": rfc3339(x.get("opened_at"))}


def order_page(
    c: Container, order_id: str, reveal: bool, as_of: datetime | None = None
) -> dict[str, Any] | None:
    """The order's story: stage timeline, lines, outside documents, ERP postings, open
    exceptions (stuck, with the reason), and every event in plain words; up to `as_of` if given."""
    history = c.ledger.history
    agg = None
    stages: list[dict[str, Any]] = []
    events: list[tuple[int, Any]] = []
    refs: dict[str, Any] = {}
    after = None
    done = False
    while not done:
        page = list(history.events(order_uuid(order_id), after=after, limit=500))
        for position, e in page:
            if as_of is not None and e.timestamp > as_of:
                done = True
                break
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
                        "at": e.timestamp.isoformat(timespec="seconds"),
                        "type": type(e).__name__,
                    }
                )
        if len(page) < 500:
            break
        after = page[-1][0]
    if agg is None:
        if as_of is not None and history.order(order_id) is not None:
            return {"not_yet": True}
        return None
    view = agg.view()
    names = key_names(c)
    erp = [
        {"position": p, "at": e.timestamp.isoformat(timespec="seconds"), "words": words.sentence(e)}
        for p, e in events
        if type(e).__name__ in ("ErpPostingFailed", "PostedToErp")
    ]
    exceptions = (
        [describe_exception(c, x) for x in open_about(c.db, order_id=order_id)] if as_of is None else []
    )
    return {
        "order": shown(view, reveal)
        | {
            "order_id": view["order_id"],
            "stage": view["stage"],
            "lines": view["lines"],
            "open": view["open"],
        },
        "as_of": as_of.astimezone(UTC).isoformat() if as_of else "",
        "stages": stages,
        "stuck": [x for x in exceptions if x["kind"] == "stuck-order"],
        "exceptions": exceptions,
        "held": [dict(x) for x in (agg.validation or {}).get("holds", [])] if agg.held else [],
        "refs": shown({**refs, **view["external_refs"]}, reveal),
        "platform_status": shown(view["platform_status"], reveal),
        "erp_events": erp,
        "erp_queue": c.erp_queue.rows(order_id),
        "events": [
            {
                "position": p,
                "type": type(e).__name__,
                "at": e.timestamp.isoformat(timespec="seconds"),
                "words": words.sentence(e),
                "because": words.cause(_cause(e), names),
            }
            for p, e in reversed(events)
        ],
    }


def orders_page(
    c: Container,
    stage: str | None,
    channel: str | None,
    open_work: str | None,
    before: tuple[float, str] | None,
) -> dict[str, Any]:
    """One page of the order list, newest captured first, with the open stuck-order exceptions."""
    items, nxt = queries.newest_orders(c.db, stage, channel, open_work, before, ORDER_PAGE)
    stuck = {x["key"] for x in list_exceptions(c.db, "stuck-order", limit=10_000)}
    for o in items:
        o["captured"] = rfc3339(o["captured_at"])
        o["stuck"] = o["order_id"] in stuck
    return {
        "items": items,
        "next": f"{nxt[0]!r}~{nxt[1]}" if nxt else "",
        "stages": STAGES,
        "open_kinds": OPEN_WORK,
        "channels": sorted(c.channels.cached().by_channel),
        "filters": {"stage": stage or "", "channel": channel or "", "open": open_work or ""},
    }


SKU_PAGE = 100


def skus_page(c: Container, prefix: str, after: str) -> dict[str, Any]:
    """One page of the SKU browse, in name order, optionally of the SKUs starting with `prefix`."""
    rows = queries.sku_totals(c.db, prefix, after, SKU_PAGE + 1)
    return {
        "items": [{**r, "href": words.sku_href(r["sku"])} for r in rows[:SKU_PAGE]],
        "next": rows[SKU_PAGE - 1]["sku"] if len(rows) > SKU_PAGE else "",
        "prefix": prefix,
    }


def parse_cursor(text: str) -> tuple[float, str] | None:
    """The `before` cursor of the order list (`{captured_at}~{order_id}`); ValueError if malformed."""
    if not text:
        return None
    at, sep, order = text.partition("~")
    moment = float(at)
    if not sep or not order or not math.isfinite(moment):
        raise ValueError("before must be a cursor from the order list")
    return moment, order


# ------------------------------------------------------------------ reconciliations


def reconciliations_page(c: Container, source: str | None = None) -> list[dict[str, Any]]:
    """The newest reconciliation runs, newest first."""
    runs = c.reconciler.runs.recent(source, RUNS) if c.reconciler.runs is not None else []
    return [{**r, "href": run_href(r["id"]), "ran": rfc3339(r["ran_at"])} for r in runs]


def reconciliation_page(c: Container, run_id: str) -> dict[str, Any] | None:
    """One run: what was compared, each mismatch with its explanation and the ledger events and
    inbound messages that explain it, linked."""
    report = c.reconciler.runs.get(run_id) if c.reconciler.runs is not None else None
    if report is None:
        return None
    T, L = words.text, words.link
    for row in [*report.get("mismatches", []), *report.get("timing", [])]:
        row["sku_href"], row["location_href"] = (
            words.sku_href(row["sku"]),
            words.location_href(row["location"]),
        )
        for cause in row.get("causes", []):
            evidence: list[words.Part] = []
            for e in cause.get("events", []):
                evidence += [
                    T(" · "),
                    L(
                        f"{words.humanize(str(e.get('type', 'event')))} at position {e.get('position')}",
                        f"{row['sku_href']}#event-{e.get('position')}",
                    ),
                ]
                order = words.order_of(e.get("reservation_id"))
                if order:
                    evidence += [T(" for order "), L(order, words.order_href(order))]
            for m in cause.get("messages", []):
                ref = str(m)
                if ref.startswith("inbox:"):
                    evidence += [
                        T(" · "),
                        L(f"message {ref[6:]}", f"/console/messages/{quote(ref[6:], safe='')}"),
                    ]
                else:
                    evidence += [T(f" · {ref}")]
            cause["evidence"] = evidence
    return report


# ------------------------------------------------------------------ operations


# Mappings a translation looks up but can do without, and what happens without them.
OPTIONAL = {("shopify", "channel"): f"optional: an unmapped shop sells on channel {DEFAULT_CHANNEL}"}


def missing_mappings(c: Container, inbox_id: int) -> list[dict[str, Any]]:
    """The mappings a message asked for and did not find, the ones it needs first; an optional
    one (a Shopify shop's channel) says so and what applies without it."""
    out = []
    for key in c.inbox.missing(inbox_id):
        source, kind, external_id = key.split("/", 2)
        note = OPTIONAL.get((source, kind))
        out.append(
            {
                "source": source,
                "kind": kind,
                "external_id": external_id,
                "key": key,
                "optional": note is not None,
                "note": note,
            }
        )
    return sorted(out, key=lambda m: m["optional"])


def operations(c: Container) -> dict[str, Any]:
    """The operator's worklist: read models, outbox, Shopify sync, parked messages and open
    exceptions (each in plain words), the newest inbound messages; every list newest first."""
    parked = c.inbox.newest(200, status=Status.PARKED)
    for row in parked:
        row["missing"] = missing_mappings(c, int(row["id"]))
    exceptions = [describe_exception(c, x) for x in list_exceptions(c.db, limit=500)]
    return {
        "projections": c.projector.status(),
        "jobs": c.rebuilds.recent(10),
        "outbox": outbox.depth(c.db),
        "parked": parked,
        "exceptions": exceptions,
        "stuck": [x for x in exceptions if x["kind"] == "stuck-order"],
        "drift": [x for x in exceptions if x["kind"] == "drift"],
        "recent": c.inbox.newest(20),
        "runs": reconciliations_page(c)[:5],
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
