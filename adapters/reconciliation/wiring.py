"""The reconciler's ports wired to the service's tables: mappings, inbox, POS gaps, exceptions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from adapters.exceptions import close_exception, list_exceptions, open_exception
from adapters.persistence.db import Database
from adapters.reconciliation.engine import Reconciler, RunLog
from adapters.reconciliation.facts import StockStreams
from adapters.reconciliation.ports import (
    Closing,
    IdentityMap,
    InboundMessage,
    MessageEffect,
    Opening,
    SequenceGap,
)
from adapters.reconciliation.thresholds import parse_thresholds

EVIDENCE_LIMIT = 5000


class SqlIdentityMap:
    """Current mappings from the `mappings` table (adapters/mappings.py), one query per source and kind."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def canonical_ids(self, source: str, kind: str) -> dict[str, str]:
        rows = self.db.query(
            "SELECT external_id, canonical FROM mappings WHERE source = %s AND kind = %s", (source, kind)
        )
        return {r["external_id"]: r["canonical"] for r in rows}


class InboxEvidence:
    """Parked messages and refused repeats from the inbox (adapters/inbox.py), with what each would
    have moved, read from the raw body the inbox kept (Shopify orders, POS batches)."""

    def __init__(self, db: Database, mappings: IdentityMap) -> None:
        self.db = db
        self.mappings = mappings

    def unapplied(self, source: str | None = None) -> Sequence[InboundMessage]:
        sql = (
            "SELECT id, source, kind, status, reason, deliveries, received_at, body FROM inbox "
            "WHERE (status IN ('parked', 'duplicate') OR deliveries > 1)"
        )
        params: list[Any] = []
        if source:
            sql += " AND source = %s"
            params.append(source)
        rows = self.db.query(sql + " ORDER BY id DESC LIMIT %s", (*params, EVIDENCE_LIMIT))
        maps: dict[tuple[str, str], dict[str, str]] = {}

        def canon(src: str, kind: str, code: Any) -> tuple[str, bool]:
            table = maps.setdefault((src, kind), self.mappings.canonical_ids(src, kind))
            code = str(code)
            return (table[code], True) if code in table else (code, False)

        out = []
        for r in rows:
            try:
                payload = orjson.loads(bytes(r["body"]))
                effects = self._effects(r["source"], r["kind"], payload, canon)
            except (orjson.JSONDecodeError, TypeError, ValueError, KeyError, AttributeError):
                effects = []
            if not effects:
                continue
            status, reason = r["status"], r["reason"] or ""
            if status not in ("parked", "duplicate"):
                status, reason = "duplicate", f"delivered {r['deliveries']} times, applied once"
            out.append(
                InboundMessage(f"inbox:{r['id']}", r["source"], status, reason, r["received_at"], effects)
            )
        return out

    @staticmethod
    def _effects(source: str, kind: str, p: dict[str, Any], canon: Any) -> list[MessageEffect]:
        effects = []
        if source == "shopify" and kind == "orders/create":
            for li in p.get("line_items") or []:
                q = int(li.get("quantity") or 0)
                if q <= 0:
                    continue
                sku, ok = (
                    canon("shopify", "sku", li["variant_id"])
                    if li.get("variant_id") is not None
                    else ("", False)
                )
                if not ok and li.get("sku"):
                    sku, ok = str(li["sku"]), True
                if sku:
                    # A Shopify order commits units: available falls, on hand does not until fulfilment.
                    effects.append(MessageEffect(sku, None, 0, -q, ok))
        elif source == "pos":
            location, loc_ok = canon("pos", "location", p["store"])
            for t in p.get("transactions") or []:
                sign = {"sale": -1, "return": 1}.get(t.get("type"), 0)
                for line in (t.get("lines") or []) if sign else []:
                    sku, ok = canon("pos", "sku", line["item"])
                    q = sign * int(line["quantity"])
                    effects.append(MessageEffect(sku, location, q, q, ok and loc_ok))
        return effects


class PosGaps:
    """Open `pos-sequence-gap` exceptions (adapters/pos.py), grouped by store."""

    def __init__(self, db: Database, mappings: IdentityMap) -> None:
        self.db = db
        self.mappings = mappings

    def gaps(self) -> Sequence[SequenceGap]:
        by_store: dict[str, list[int]] = {}
        for e in list_exceptions(self.db, "pos-sequence-gap", open_only=True, limit=100_000):
            d = e["detail"]
            store, seq = d.get("store"), d.get("sequence")
            if store is None or seq is None:
                store, _, seq = e["key"].rpartition(":")
            by_store.setdefault(str(store), []).append(int(seq))
        stores = self.mappings.canonical_ids("pos", "location")
        return [SequenceGap(s, stores.get(s, s), sorted(n)) for s, n in sorted(by_store.items())]


class StoredExceptions:
    """The exceptions store (adapters/exceptions.py): each change also goes to the outbox."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def open_keys(self, kind: str, prefix: str = "") -> set[str]:
        rows = list_exceptions(self.db, kind, open_only=True, limit=10_000_000)
        return {r["key"] for r in rows if r["key"].startswith(prefix)}

    def apply(self, kind: str, opened: Sequence[Opening], closed: Sequence[Closing]) -> tuple[int, int]:
        n_open = n_closed = 0
        with self.db.transaction() as tx:
            for key, detail, position in opened:
                n_open += open_exception(tx, kind, key, detail, position)
            for key, detail in closed:
                n_closed += close_exception(tx, kind, key, detail)
        return n_open, n_closed


def build(db: Database, app: Any, thresholds: str = "") -> Reconciler:
    """The reconciler over the service's tables (`bootstrap()` keeps one in its container)."""
    mappings = SqlIdentityMap(db)
    return Reconciler(
        StockStreams.of(db, app),
        mappings=mappings,
        evidence=InboxEvidence(db, mappings),
        gaps=PosGaps(db, mappings),
        exceptions=StoredExceptions(db),
        thresholds=parse_thresholds(thresholds),
        runs=RunLog(db),
    )
