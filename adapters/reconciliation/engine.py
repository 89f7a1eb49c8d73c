"""The reconciler: outside levels against the ledger as of `observed_at`, diagnosed, with drift kept.

One run: translate each level's ids through the source's mappings (a level may name canonical ids
or the source's own), read the facts of every SKU-location in bulk, fold each to the moment the
level was observed, compare in the quantity the source reports (`ports.MEASURE`), diagnose each
difference, open a `drift` exception (key `source/sku/location`) for each mismatch over the
source's threshold, close the open ones that now match, and keep the run (`RunLog`).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from adapters.persistence.db import Database
from adapters.reconciliation.diagnosis import explain, summary
from adapters.reconciliation.facts import StockStreams, fold
from adapters.reconciliation.ports import (
    MEASURE,
    SOURCES,
    Closing,
    ExceptionBook,
    IdentityMap,
    InboundEvidence,
    InboundMessage,
    MemoryExceptions,
    MessageEffect,
    NoMappings,
    Opening,
    SequenceGap,
    SequenceGaps,
    Snapshot,
    StaticEvidence,
    StaticGaps,
)
from adapters.reconciliation.thresholds import Threshold
from ledger.bounds import MAX_QUANTITY, check_id
from ledger.errors import InvalidCommandError

DRIFT = "drift"
MAX_LEVELS = 1_000_000


def drift_key(source: str, sku: str, location: str) -> str:
    return f"{source}/{sku}/{location}"


def check_snapshot(snap: Snapshot) -> None:
    """Refuses (InvalidCommandError, a 422) a snapshot that breaks a bound; nothing is read."""
    if snap.source not in SOURCES:
        raise InvalidCommandError(f"source must be one of {', '.join(SOURCES)}", field="source")
    if snap.observed_at.tzinfo is None:
        raise InvalidCommandError("observed_at needs a time zone offset", field="observed_at")
    if len(snap.levels) > MAX_LEVELS:
        raise InvalidCommandError(f"at most {MAX_LEVELS} levels per reconciliation", field="levels")
    for i, lv in enumerate(snap.levels):
        check_id(lv.sku, f"levels[{i}].sku")
        check_id(lv.location, f"levels[{i}].location")
        q = lv.quantity
        if isinstance(q, bool) or not isinstance(q, int) or abs(q) > MAX_QUANTITY:
            raise InvalidCommandError(
                f"levels[{i}].quantity must be a whole number within ±{MAX_QUANTITY}",
                field=f"levels[{i}].quantity",
            )
        if lv.observed_at is not None and lv.observed_at.tzinfo is None:
            raise InvalidCommandError(
                f"levels[{i}].observed_at needs a time zone offset", field=f"levels[{i}].observed_at"
            )


class RunLog:
    """Every reconciliation run with its full report, for audit and the finance export."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def save(self, report: dict[str, Any]) -> None:
        self.db.execute(
            "INSERT INTO reconciliations (id, source, observed_at, ran_at, compared, mismatches, drift, report) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (
                report["id"],
                report["source"],
                report["observed_at"],
                report["ran_at"],
                report["compared"],
                len(report["mismatches"]),
                report["exceptions"]["drift"],
                orjson.dumps(report).decode(),
            ),
        )

    def get(self, run_id: str) -> dict[str, Any] | None:
        row = self.db.query_one("SELECT report FROM reconciliations WHERE id = %s", (run_id,))
        return None if row is None else orjson.loads(row["report"])

    def recent(self, source: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        sql = "SELECT id, source, observed_at, ran_at, compared, mismatches, drift FROM reconciliations"
        params: list[Any] = []
        if source:
            sql += " WHERE source = %s"
            params.append(source)
        return self.db.query(sql + " ORDER BY ran_at DESC LIMIT %s", (*params, limit))


class _Evidence:
    """Unapplied inbound messages indexed by the SKU their effects name."""

    def __init__(self, messages: Sequence[InboundMessage]) -> None:
        self.by_sku: dict[str, list[InboundMessage]] = {}
        self.unresolved: list[InboundMessage] = []
        for m in messages:
            for e in m.effects:
                if not e.resolved:
                    self.unresolved.append(m)
                    break
            for sku in {e.sku for e in m.effects if e.resolved}:
                self.by_sku.setdefault(sku, []).append(m)

    def near(self, source: str, skus: set[str]) -> list[InboundMessage]:
        out = [m for s in skus for m in self.by_sku.get(s, ())]
        out += [m for m in self.unresolved if m.source == source][:20]
        return out


class Reconciler:
    def __init__(
        self,
        streams: StockStreams,
        mappings: IdentityMap | None = None,
        evidence: InboundEvidence | None = None,
        gaps: SequenceGaps | None = None,
        exceptions: ExceptionBook | None = None,
        thresholds: dict[str, Threshold] | None = None,
        runs: RunLog | None = None,
        window: timedelta = timedelta(minutes=2),
    ) -> None:
        self.streams = streams
        self.mappings = mappings or NoMappings()
        self.evidence = evidence or StaticEvidence()
        self.gaps = gaps or StaticGaps()
        self.exceptions = exceptions or MemoryExceptions()
        self.thresholds = thresholds or {}
        self.runs = runs
        self.window = window

    def threshold(self, source: str) -> Threshold:
        return self.thresholds.get(source, Threshold())

    def reconcile(self, snap: Snapshot, keep: bool = True, dry_run: bool = False) -> dict[str, Any]:
        """Compares a snapshot with the ledger; the report (see docs/ARCHITECTURE.md). A dry run
        records no run and opens or closes no drift exception: `opened`/`closed` say what would."""
        check_snapshot(snap)
        source, measure = snap.source, MEASURE[snap.source]
        sku_ids = self.mappings.canonical_ids(source, "sku")
        loc_ids = self.mappings.canonical_ids(source, "location")
        pairs: dict[tuple[str, str], int] = {}
        for i, lv in enumerate(snap.levels):
            pair = (sku_ids.get(lv.sku, lv.sku), loc_ids.get(lv.location, lv.location))
            if pair in pairs:
                raise InvalidCommandError(
                    f"levels[{i}] names {pair[0]} at {pair[1]} again (first at levels[{pairs[pair]}])",
                    field=f"levels[{i}]",
                )
            pairs[pair] = i
        facts = self.streams.facts(list(pairs))
        evidence = _Evidence(self.evidence.unapplied())
        gaps_at: dict[str, list[SequenceGap]] = {}
        for g in self.gaps.gaps():
            gaps_at.setdefault(g.location, []).append(g)
            if g.store != g.location:
                gaps_at.setdefault(g.store, []).append(g)
        limit = self.threshold(source)
        mismatches: list[dict[str, Any]] = []
        timing: list[dict[str, Any]] = []
        calm: list[str] = []  # keys that match (or only differ by timing or within the threshold)
        opened: list[Opening] = []
        position = 0
        for (sku, loc), i in pairs.items():
            lv = snap.levels[i]
            at = lv.observed_at or snap.observed_at
            s = fold(facts.get((sku, loc), ()), at, self.window)
            position = max(position, s.position)
            near = evidence.near(source, {sku, lv.sku})
            names_sku, names_loc = {sku, lv.sku}, {loc, lv.location}

            def match(
                e: MessageEffect, names_sku: set[str] = names_sku, names_loc: set[str] = names_loc
            ) -> bool:
                return (not e.resolved or e.sku in names_sku) and (
                    e.location is None or e.location in names_loc
                )

            gaps = gaps_at.get(loc, []) or gaps_at.get(lv.location, [])
            status, causes = explain(measure, lv.quantity, s, near, gaps, match)
            key = drift_key(source, sku, loc)
            if status == "matched":
                calm.append(key)
                continue
            ledger = s.value(measure)
            row: dict[str, Any] = {
                "sku": sku,
                "location": loc,
                "external": lv.quantity,
                "ledger": ledger,
                "delta": lv.quantity - ledger,
                "explanation": summary(causes),
                "causes": [c.as_dict() for c in causes],
                "position": s.position,
                "observed_at": at.isoformat(),
            }
            if (lv.sku, lv.location) != (sku, loc):
                row["external_ids"] = {"sku": lv.sku, "location": lv.location}
            if status == "timing":
                timing.append(row)
                calm.append(key)
                continue
            row["drift"] = limit.exceeded(row["delta"], ledger)
            mismatches.append(row)
            if row["drift"]:
                detail = {
                    k: row[k] for k in ("sku", "location", "external", "ledger", "delta", "explanation")
                }
                opened.append((key, {"source": source, "measure": measure, **detail}, s.position))
            else:
                calm.append(key)
        run_id = str(uuid.uuid4())
        open_now = self.exceptions.open_keys(DRIFT, f"{source}/")
        closing: list[Closing] = [(k, {"closed_by": run_id}) for k in calm if k in open_now]
        for o in opened:
            o[1]["reconciliation"] = run_id
        if dry_run:
            n_opened, n_closed = len([o for o in opened if o[0] not in open_now]), len(closing)
        else:
            n_opened, n_closed = self.exceptions.apply(DRIFT, opened, closing)
        report = {
            "id": run_id,
            "source": source,
            "measure": measure,
            "observed_at": snap.observed_at.isoformat(),
            "ran_at": datetime.now(UTC).isoformat(),
            "origin": snap.origin,
            "compared": len(pairs),
            "matched": len(pairs) - len(mismatches) - len(timing),
            "position": position,
            "threshold": str(limit),
            "mismatches": mismatches,
            "timing": timing,
            "exceptions": {"drift": len(opened), "opened": n_opened, "closed": n_closed},
        }
        if dry_run:
            report["dry_run"] = True
        elif keep and self.runs is not None:
            self.runs.save(report)
        return report
