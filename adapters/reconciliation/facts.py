"""Stock facts of many SKU-locations at once, and the fold that gives quantities as of a moment.

Reconciling 100,000 levels cannot replay 100,000 aggregates one query at a time. `StockStreams`
reads the stored events of many streams in a few chunked queries and decodes only what a
reconciliation needs (quantities, references, timestamps) straight from the stored JSON. `fold`
is the pure part: it gives the quantities as of `observed_at` and keeps the facts recorded near
or after that moment, for the timing diagnosis.

The decoding reads each event's effect from `ledger.effects.EFFECTS`, the table the aggregate
applies too; a property test checks that the fold agrees with the aggregate itself
(tests/unit/test_reconcile_facts.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import orjson

from adapters.persistence.db import Database
from ledger.bounds import stock_id
from ledger.effects import effect_of

STOCK_TOPIC = "ledger.stock:SkuLocation."


@dataclass(frozen=True)
class Fact:
    """One stored stock event, reduced to its effect on the three quantities."""

    position: int
    version: int
    type: str
    at: datetime
    on_hand: int = 0
    reserved: int = 0
    unavailable: int = 0
    reservation_id: str | None = None
    reference: str | None = None
    data: dict[str, Any] = field(default_factory=dict, compare=False)

    def effect(self, measure: str) -> int:
        """The change this fact made to `measure` (`on_hand` or `available`)."""
        if measure == "on_hand":
            return self.on_hand
        return self.on_hand - self.reserved - self.unavailable

    def ref(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "position": self.position,
            "type": self.type,
            "recorded_at": self.at.isoformat(),
        }
        if self.reference:
            out["reference"] = self.reference
        if self.reservation_id:
            out["reservation_id"] = self.reservation_id
        return out


def _timestamp(value: Any) -> datetime:
    if isinstance(value, dict):
        value = value.get("_data_")
    return datetime.fromisoformat(str(value))


def decode(position: int, version: int, topic: str, state: bytes) -> Fact:
    """A stored SkuLocation event as a `Fact` (unknown event types change nothing)."""
    kind = topic[len(STOCK_TOPIC) :] if topic.startswith(STOCK_TOPIC) else topic.rsplit(".", 1)[-1]
    d = orjson.loads(state)
    at = _timestamp(d.get("timestamp"))
    effect = effect_of(kind, d.get)
    on_hand, reserved, unavailable = effect.on_hand, effect.reserved, effect.unavailable
    rid = effect.reservation_id
    reference = d.get("reference") or d.get("transfer_id") or d.get("return_id")
    if kind == "MovementCorrected":
        reference = (d.get("corrects") or {}).get("correction") or reference
    keep = {k: d[k] for k in ("reason", "order_id", "corrects", "disposition", "cause") if d.get(k)}
    return Fact(position, version, kind, at, on_hand, reserved, unavailable, rid, reference, keep)


@dataclass
class AsOf:
    """One SKU-location as of a moment, with the facts a diagnosis looks at."""

    on_hand: int = 0
    reserved: int = 0
    unavailable: int = 0
    position: int = 0  # the last fact counted
    reservations: dict[str, list[Fact]] = field(default_factory=dict)  # held as of the moment
    corrections: list[Fact] = field(default_factory=list)  # counted, newest last
    before: list[Fact] = field(default_factory=list)  # counted, inside the window before the moment
    after: list[Fact] = field(default_factory=list)  # recorded after the moment
    exists: bool = False

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved - self.unavailable

    def value(self, measure: str) -> int:
        return self.on_hand if measure == "on_hand" else self.available

    def held(self) -> dict[str, int]:
        """Reservation id -> units still held as of the moment."""
        out = {}
        for rid, facts in self.reservations.items():
            n = sum(f.reserved for f in facts)
            if n > 0:
                out[rid] = n
        return out


def fold(facts: Iterable[Fact], observed_at: datetime, window: timedelta = timedelta(minutes=2)) -> AsOf:
    """Quantities as of `observed_at`: every fact recorded at or before it counts; later facts
    are kept apart in `after`. Facts must come in stream order."""
    s = AsOf()
    start = observed_at - window
    for f in facts:
        s.exists = True
        if f.at > observed_at:
            s.after.append(f)
            continue
        s.on_hand += f.on_hand
        s.reserved += f.reserved
        s.unavailable += f.unavailable
        s.position = max(s.position, f.position)
        if f.reservation_id is not None and f.reserved:
            s.reservations.setdefault(f.reservation_id, []).append(f)
        if f.type == "MovementCorrected":
            s.corrections.append(f)
        if f.at >= start and (f.on_hand or f.reserved or f.unavailable):
            s.before.append(f)
    return s


class StockStreams:
    """Reads the stock streams of many SKU-locations from the ledger's event table in bulk."""

    CHUNK = 2000

    def __init__(self, db: Database, events_table: str) -> None:
        self.db = db
        self.table = events_table

    @classmethod
    def of(cls, db: Database, app: Any) -> StockStreams:
        return cls(db, app.recorder.events_table_name)

    def facts(self, pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], list[Fact]]:
        """(sku, location) -> its facts in stream order; pairs with no events are absent."""
        by_id = {stock_id(sku, loc): (sku, loc) for sku, loc in pairs}
        out: dict[tuple[str, str], list[Fact]] = {}
        ids = list(by_id)
        chunk = self.CHUNK if self.db.dialect == "postgres" else 900  # SQLite's parameter limit
        for i in range(0, len(ids), chunk):
            for agg_id, position, version, topic, state in self._rows(ids[i : i + chunk]):
                out.setdefault(by_id[agg_id], []).append(decode(position, version, topic, state))
        return out

    def _rows(self, ids: list[UUID]) -> Iterator[tuple[UUID, int, int, str, bytes]]:
        if self.db.dialect == "postgres":
            rows = self.db.query(
                f"SELECT originator_id AS id, notification_id AS p, originator_version AS v, topic, state "
                f"FROM {self.table} WHERE originator_id = ANY(%s) ORDER BY originator_id, originator_version",
                (ids,),
            )
            for r in rows:
                yield r["id"], r["p"], r["v"], r["topic"], bytes(r["state"])
        else:
            marks = ",".join("%s" for _ in ids)
            rows = self.db.query(
                f"SELECT originator_id AS id, rowid AS p, originator_version AS v, topic, state "
                f"FROM {self.table} WHERE originator_id IN ({marks}) ORDER BY originator_id, originator_version",
                [i.hex for i in ids],
            )
            for r in rows:
                yield UUID(r["id"]), r["p"], r["v"], r["topic"], bytes(r["state"])
