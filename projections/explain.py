"""Explaining an ATS: the terms that make up one channel's available-to-sell for one SKU.

`ATS = max(0, Σ over the channel's locations of (on_hand − reserved − unavailable) + the
incoming units counted − safety stock − buffer)`, or 0 when the policy excludes the SKU
(`ledger.policy`; incoming lots are counted by `include_incoming_days`). `explain()`
is pure: given the policy version in force and each location's events (with their ledger
positions), it folds the events with the read model's own fold (`folds.fold_stock`) and
returns every term with the events that moved it. So the terms add up to what the `ats` read
model shows at the same position, by construction and by test.

`Explainer` loads what `explain()` needs: the streams from the ledger (up to a position, or up
to a moment for `as_of`) and the policy version in force (the one the `ats` read model applied,
or, for a past moment, the newest version written at or before it). `series()` draws the ATS
over time from the same facts, for the console's chart.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from adapters.channels import ChannelPolicies
from adapters.persistence.db import Database
from ledger.application import History
from ledger.bounds import parse_hold_reservation_id, parse_reservation_id, stock_id
from ledger.policy import DAY, ChannelPolicy, available_to_sell
from ledger.stock import fold_lots
from projections import folds

TERMS = ("on_hand", "reserved", "unavailable")
MAX_LINKED = 50  # events listed per location (the newest); the count covers all of them
PAGE = 500

Stream = Sequence[tuple[int, Any]]  # (ledger position, domain event) of one SKU-location, in order


def event_link(
    position: int, event: Any, before: dict[str, Any] | None, after: dict[str, Any]
) -> dict[str, Any]:
    """One event as the explanation cites it: where it is, what it was, which terms it moved."""
    cause = dict(getattr(event, "cause", None) or {})
    moved = {t: after[t] - (before[t] if before else 0) for t in TERMS}
    link: dict[str, Any] = {
        "position": position,
        "version": int(event.originator_version),
        "type": type(event).__name__,
        "recorded_at": event.timestamp.isoformat(),
        "moved": {t: d for t, d in moved.items() if d},
        "cause": {
            k: cause[k]
            for k in ("correlation_id", "causation_id", "source", "reference", "mapping_version")
            if cause.get(k) is not None
        },
    }
    order_id = getattr(event, "order_id", None)
    rid = getattr(event, "reservation_id", None)
    held = parse_hold_reservation_id(rid) if isinstance(rid, str) else None
    if held is not None:  # a hold's line (`POST /v1/reservations`), no order's
        link["hold"] = held[0]
        return link
    if order_id is None:
        parsed = parse_reservation_id(rid) if isinstance(rid, str) else None
        order_id = parsed[0] if parsed else None
    if order_id is not None:
        link["order_id"] = order_id
    return link


def segment(value: str) -> str:
    """An id as one path segment: percent-encoded, `.` and `..` too (clients drop dot segments)."""
    return quote(value, safe="") if value.strip(".") else value.replace(".", "%2E")


def location_terms(
    sku: str, location: str, stream: Stream, policy: ChannelPolicy | None = None
) -> dict[str, Any]:
    """A location's on hand, reserved, unavailable and available, each with the events that moved
    it, and its incoming lots (those `policy` counts marked)."""
    row: dict[str, Any] | None = None
    lots: list[list[Any]] = []
    links: list[dict[str, Any]] = []
    counts = dict.fromkeys(TERMS, 0)
    for position, event in stream:
        folded = fold_lots(lots, event)
        lots = lots if folded is None else folded
        after = folds.fold_stock(row, event, position)
        if after is None:
            continue
        link = event_link(position, event, row, after)
        for t in link["moved"]:
            counts[t] += 1
        links.append(link)
        row = after
    levels = row or folds.new_stock_row(sku, location)
    return {
        "location": location,
        "known": row is not None,
        "on_hand": levels["on_hand"],
        "reserved": levels["reserved"],
        "unavailable": levels["unavailable"],
        "available": levels["available"],
        "incoming": incoming_term(lots, policy),
        "version": levels["version"],
        "position": levels["position"],
        "events": {
            "count": len(links),
            "by_term": counts,
            "href": f"/v1/stock/{segment(sku)}/{segment(location)}/events",
            "items": links[-MAX_LINKED:],
        },
    }


def incoming_term(lots: list[list[Any]], policy: ChannelPolicy | None) -> dict[str, Any]:
    """A location's incoming lots, and the units of them `policy` counts."""
    items = [
        {
            "due_at": datetime.fromtimestamp(due, UTC).isoformat(),
            "quantity": quantity,
            "lead_days": round(lead / DAY, 3),
            "counted": policy is not None and policy.counted_incoming([[due, quantity, lead]]) > 0,
        }
        for due, quantity, lead in lots
    ]
    return {
        "units": sum(int(x[1]) for x in lots),
        "counted": 0 if policy is None else policy.counted_incoming(lots),
        "lots": items,
    }


def explain(policy: ChannelPolicy, sku: str, streams: Mapping[str, Stream]) -> dict[str, Any]:
    """Every term of `policy`'s ATS for `sku`, given each of the channel's locations' events."""
    locations = [location_terms(sku, loc, streams.get(loc, ()), policy) for loc in policy.locations]
    seen = any(x["known"] for x in locations)
    available = sum(x["available"] for x in locations)
    counted = sum(x["incoming"]["counted"] for x in locations)
    total = available + counted
    override = sku in policy.safety_stock_overrides
    safety = policy.safety_for(sku)
    if policy.buffer_percent:
        buffer = {
            "kind": "percent",
            "setting": policy.buffer_percent,
            "value": policy.buffer_for(total),
        }
    else:
        buffer = {"kind": "units", "setting": policy.buffer_units, "value": policy.buffer_units}
    excluded = sku in policy.excluded_skus
    ats = policy.ats(sku, available, counted) if seen else 0
    if excluded:
        formula = f"{sku} is excluded from {policy.channel}: 0"
    elif not seen:
        formula = f"no location of {policy.channel} has ever held {sku}: 0"
    elif policy.include_incoming_days:
        formula = f"max(0, {available} + {counted} incoming − {safety} − {buffer['value']}) = {ats}"
    else:
        formula = f"max(0, {available} − {safety} − {buffer['value']}) = {ats}"
    return {
        "channel": policy.channel,
        "sku": sku,
        "available": ats,
        "position": max((x["position"] for x in locations), default=0),
        "locations": locations,
        "total_available": available,
        "incoming": {"days": policy.include_incoming_days, "counted": counted},
        "safety_stock": {"value": safety, "source": "override" if override else "default"},
        "buffer": buffer,
        "excluded": excluded,
        "formula": formula,
        "policy": policy.as_dict(),
    }


def series(policies: Sequence[ChannelPolicy], sku: str, streams: dict[str, Stream]) -> list[dict[str, Any]]:
    """The ATS after each event of the channel's streams: [{position, at, available}], oldest first.

    `policies` are the channel's versions, oldest first; each step uses the version in force at
    the event's moment (the first one before any was written).
    """
    if not policies:
        return []
    rows: dict[str, dict[str, Any]] = {}
    lots: dict[str, list[list[Any]]] = {}
    merged: Iterator[tuple[int, str, Any]] = heapq.merge(
        *[[(p, loc, e) for p, e in stream] for loc, stream in streams.items()], key=lambda x: x[0]
    )
    out: list[dict[str, Any]] = []
    for position, loc, event in merged:
        folded = fold_lots(lots.get(loc), event)
        if folded is not None:
            lots[loc] = folded
        row = folds.fold_stock(rows.get(loc), event, position)
        if row is None:
            continue
        rows[loc] = row
        policy = in_force(policies, event.timestamp) or policies[0]
        seen = any(x in policy.locations for x in rows)
        available = {x: r["available"] for x, r in rows.items()}
        value = available_to_sell(policy, sku, available, lots) if seen else 0
        if out and out[-1]["available"] == value and out[-1]["version"] == policy.version:
            continue
        out.append(
            {
                "position": position,
                "at": event.timestamp.isoformat(),
                "available": value,
                "version": policy.version,
            }
        )
    return out


def in_force(policies: Sequence[ChannelPolicy], moment: datetime) -> ChannelPolicy | None:
    """The newest policy version written at or before `moment` (`policies` oldest first)."""
    found = None
    for p in policies:
        if datetime.fromisoformat(p.at) <= moment:
            found = p
    return found


@dataclass
class Explainer:
    """Loads the facts `explain()` and `series()` need from the ledger and the policy store."""

    db: Database
    history: History
    channels: ChannelPolicies

    def stream(
        self, sku: str, location: str, until_position: int | None = None, until: datetime | None = None
    ) -> list[tuple[int, Any]]:
        """A SKU-location's events, up to a position or a moment (the rule of `History.as_of_time`)."""
        out: list[tuple[int, Any]] = []
        after: int | None = None
        agg = stock_id(sku, location)
        while True:
            page = list(self.history.events(agg, after=after, limit=PAGE))
            for position, event in page:
                if until_position is not None and position > until_position:
                    return out
                if until is not None and event.timestamp > until:
                    return out
                out.append((position, event))
            if len(page) < PAGE:
                return out
            after = page[-1][0]

    def versions(self, channel: str) -> list[ChannelPolicy]:
        """The channel's policy versions, oldest first."""
        return list(reversed(self.channels.history(channel, limit=10_000)))

    def tracked(self, channel: str) -> tuple[int, int]:
        """(position, the channel's policy version) the `ats` read model has applied."""
        row = self.db.query_one("SELECT position FROM projection_tracking WHERE name = 'ats'")
        applied = self.db.query_one("SELECT version FROM ats_policies WHERE channel = %s", (channel,))
        return (
            0 if row is None else int(row["position"]),
            0 if applied is None else int(applied["version"]),
        )

    def read_model(self, channel: str, sku: str) -> int:
        row = self.db.query_one("SELECT available FROM ats WHERE channel = %s AND sku = %s", (channel, sku))
        return 0 if row is None else int(row["available"])

    def now(self, channel: str, sku: str) -> dict[str, Any] | None:
        """The ATS the read model shows, term by term, at the read model's position."""
        position, policy_version = self.tracked(channel)
        policy = next((p for p in reversed(self.versions(channel)) if p.version == policy_version), None)
        if policy is None:
            return None
        streams = {loc: self.stream(sku, loc, until_position=position) for loc in policy.locations}
        answer = explain(policy, sku, streams)
        answer.update(
            position=position,
            as_of=None,
            read_model={"available": self.read_model(channel, sku), "position": position},
        )
        return answer

    def as_of(self, channel: str, sku: str, moment: datetime) -> dict[str, Any] | None:
        """The ATS as it stood at `moment`, under the policy version in force then."""
        moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        policy = in_force(self.versions(channel), moment)
        if policy is None:
            return None
        streams = {loc: self.stream(sku, loc, until=moment) for loc in policy.locations}
        answer = explain(policy, sku, streams)
        answer["as_of"] = moment.isoformat()
        return answer

    def chart(self, channel: str, sku: str) -> list[dict[str, Any]]:
        versions = self.versions(channel)
        locations: set[str] = {loc for p in versions for loc in p.locations}
        return series(versions, sku, {loc: self.stream(sku, loc) for loc in sorted(locations)})
