"""A hot SKU's open reservations in the stock read model: does an event cost the same when
thousands are open as when a few are?

One SKU-location takes `reservations` one-unit reservations (half with an expiry an hour out),
none released, as a flash sale leaves them before payment. The `stock` view then folds them in
batches, as the live runner does, and the rate of its last `window` events is compared with the
rate of its first (the same run's own baseline), with the WAL PostgreSQL wrote per event in each.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from adapters.persistence.urls import pg_conninfo
from bench.common import Result, drive, make_ledger
from ledger import commands as c


def _wal(url: str) -> int:
    with psycopg.connect(pg_conninfo(url), autocommit=True) as conn:
        row = conn.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").fetchone()
        return int(row[0]) if row else 0


def open_reservations(
    url: str, reservations: int = 20_000, window: int = 2_000, callers: int = 64, spread: int = 2_000
) -> Result:
    """The hot SKU's stock view: its last window's rate vs its first. Then, in a scratch schema
    of its own, the same reservations spread over `spread` SKU-locations (the everyday shape):
    its whole rate and WAL per event, beside."""
    from bench.common import scratch_schema

    r = Result("open-reservations", baseline=f"its own first {window} events")
    hot = _fold(url, reservations, 1, callers)
    first = _window(hot["marks"], 0, window)
    last = _window(hot["marks"], max(0, hot["head"] - window), hot["head"])
    with scratch_schema(url) as other:
        wide = _fold(other, reservations, spread, callers)
    r.events_per_s = last["events_per_s"]
    r.baseline_rate = first["events_per_s"]
    r.ratio = last["events_per_s"] / first["events_per_s"] if first["events_per_s"] else 0.0
    r.checks = {"hot": hot["checks"], "spread": wide["checks"]}
    r.ok = hot["ok"] and wide["ok"]
    r.extra = {
        "first": first,
        "last": last,
        "hot_stock_row_bytes": hot["row_bytes"],
        "spread": {"sku_locations": spread, **_window(wide["marks"], 0, wide["head"])},
        "reservations": reservations,
    }
    return r


def _fold(url: str, reservations: int, skus: int, callers: int) -> dict[str, Any]:
    """`reservations` one-unit reservations over `skus` SKU-locations (half expiring), then the
    stock view folds them in batches of 500: its position, time and WAL after each batch."""
    from adapters.channels import ChannelPolicies
    from adapters.persistence.db import Database
    from adapters.persistence.migrate import migrate
    from projections.models import StockView
    from projections.runner import Projector

    run = uuid.uuid4().hex[:6]
    loc = "WH-1"
    names = [f"HOT-{run}-{i}" for i in range(skus)]
    later = datetime.now(UTC) + timedelta(hours=1)
    db = Database(url)
    migrate(db)
    try:
        with make_ledger(url) as ledger:
            stock = [
                c.ReceiveStock(
                    sku=n, location=loc, quantity=reservations // skus + 1, reference=f"{run}-po{i}"
                )
                for i, n in enumerate(names)
            ]
            drive(ledger.submit_async, stock, callers)
            cmds = [
                c.Reserve(
                    sku=names[i % skus],
                    location=loc,
                    order_id=f"{run}-o{i}",
                    line_id="1",
                    quantity=1,
                    expires_at=later if i % 2 else None,
                )
                for i in range(reservations)
            ]
            drive(ledger.submit_async, cmds, callers)
            projector = Projector(
                db, ledger.app, ChannelPolicies(db), views={"stock": StockView()}, batch_size=500
            )
            head = projector.head()
            marks: list[tuple[int, float, int]] = [(_position(db), time.perf_counter(), _wal(url))]
            while projector.step():
                marks.append((_position(db), time.perf_counter(), _wal(url)))
            levels = db.query_one(
                "SELECT coalesce(sum(reserved), 0) AS reserved, count(*) AS rows FROM stock_levels"
            )
            held = db.query_one(
                "SELECT count(*) AS n, coalesce(sum(quantity), 0) AS units, count(expires_at) AS expiring "
                "FROM stock_reservations"
            )
            size = db.query_one(
                "SELECT max(pg_column_size(s.*)) AS bytes FROM stock_levels s WHERE sku = %s", (names[0],)
            )
        checks = {"levels": levels, "open": held, "head": head, "position": _position(db)}
        ok = (
            levels is not None
            and int(levels["reserved"]) == reservations
            and held is not None
            and int(held["n"]) == int(held["units"]) == reservations
            and int(held["expiring"]) == reservations // 2
            and _position(db) == head
        )
        return {"marks": marks, "head": head, "checks": checks, "ok": ok, "row_bytes": size and size["bytes"]}
    finally:
        db.close()


def _position(db: Any) -> int:
    from projections.store import read_tracking

    row = read_tracking(db).get("stock")
    return int(row["position"]) if row else 0  # none before its first step


def _window(marks: list[tuple[int, float, int]], start: int, end: int) -> dict[str, Any]:
    """The rate and WAL per event over the batches that folded positions `start` to `end`."""
    a = max((m for m in marks if m[0] <= start), key=lambda m: m[0], default=marks[0])
    b = min((m for m in marks if m[0] >= end), key=lambda m: m[0], default=marks[-1])
    events = max(1, b[0] - a[0])
    seconds = max(b[1] - a[1], 1e-9)
    return {
        "events": events,
        "events_per_s": round(events / seconds),
        "wal_bytes_per_event": round((b[2] - a[2]) / events),
    }
