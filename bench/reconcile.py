"""Benchmark: reconcile a snapshot of N levels (default 100,000) against PostgreSQL.

    ledger bench reconcile [--levels N] [--database-url URL]

Seeds N SKU-locations (one receipt each, plus a sale on every tenth after the snapshot moment,
so the as-of fold has work to do), then times one `Reconciler.reconcile` of N levels where every
hundredth level is off by one. Target: under 60 s on the 2-core machine.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from adapters.persistence.db import Database
from adapters.persistence.migrate import migrate
from adapters.persistence.urls import ledger_env
from adapters.reconciliation.engine import Reconciler
from adapters.reconciliation.facts import StockStreams
from adapters.reconciliation.ports import Level, Snapshot
from bench.common import Result
from ledger import commands as c
from ledger.service import Ledger


def reconcile(url: str, levels: int = 100_000) -> Result:
    """`url` names a scratch schema (bench.common.scratch_schema); the run is timed on it."""
    ledger = Ledger(ledger_env(url))
    db = Database(url)
    migrate(db)
    try:
        t = time.perf_counter()
        futures = [
            ledger.submit(c.ReceiveStock(sku=f"S{i}", location="L", quantity=10, reference=f"r{i}"))
            for i in range(levels)
        ]
        for f in futures:
            f.result()
        at = datetime.now(UTC)
        futures = [
            ledger.submit(c.SellDirect(sku=f"S{i}", location="L", quantity=1, reference=f"s{i}"))
            for i in range(0, levels, 10)
        ]
        for f in futures:
            f.result()
        seeded = time.perf_counter() - t
        snap = Snapshot("erp", at, [Level(f"S{i}", "L", 10 + (i % 100 == 0)) for i in range(levels)])
        r = Reconciler(StockStreams.of(db, ledger.app))
        t = time.perf_counter()
        report = r.reconcile(snap, keep=False)
        took = time.perf_counter() - t
        expected = len(range(0, levels, 100))
        found = len(report["mismatches"])
        return Result(
            name="reconcile",
            ok=found == expected and took < 60,
            checks={"mismatches": found, "expected": expected, "under_60_s": took < 60},
            extra={
                "levels": levels,
                "seed_seconds": round(seeded, 1),
                "reconcile_seconds": round(took, 2),
                "levels_per_second": round(levels / took),
            },
        )
    finally:
        ledger.close()
        db.close()
