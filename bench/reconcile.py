"""Benchmark: reconcile a snapshot of N levels (default 100,000) against PostgreSQL.

    .venv/bin/python -m bench.reconcile [N] [URL]

Seeds N SKU-locations (one receipt each, plus a sale on every tenth after the snapshot moment,
so the as-of fold has work to do), then times one `Reconciler.reconcile` of N levels where every
hundredth level is off by one. Target: under 60 s on the 2-core machine.
"""

from __future__ import annotations

import sys
import time
import uuid
from datetime import UTC, datetime

import psycopg

from adapters.persistence.db import Database
from adapters.persistence.urls import ledger_env, pg_conninfo
from adapters.reconciliation.engine import Reconciler
from adapters.reconciliation.facts import StockStreams
from adapters.reconciliation.ports import Level, Snapshot
from ledger import commands as c
from ledger.service import Ledger

DEFAULT_URL = "postgresql://root@127.0.0.1:5432/test"


def reconcile(levels: int = 100_000, url: str = DEFAULT_URL) -> dict[str, float]:
    schema = "bench_rec_" + uuid.uuid4().hex[:8]
    url = f"{url}?schema={schema}"
    ledger = Ledger(ledger_env(url))
    db = Database(url)
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
        out = {
            "levels": levels,
            "seed_seconds": round(seeded, 1),
            "reconcile_seconds": round(took, 2),
            "levels_per_second": round(levels / took),
            "mismatches": len(report["mismatches"]),
        }
        assert out["mismatches"] == len(range(0, levels, 100)), out
        return out
    finally:
        ledger.close()
        db.close()
        with psycopg.connect(pg_conninfo(url), autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    print(reconcile(n, sys.argv[2] if len(sys.argv) > 2 else DEFAULT_URL))
