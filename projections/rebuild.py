"""Rebuilding a read model without downtime: shadow tables, an atomic swap, corrected ATS.

1. Replays every event from position 0 into `<table>__shadow` (channel policies included:
   they are `PolicyChanged` facts in the log), in large batches, while queries keep answering
   from the live tables and the runner keeps them current.
2. In ONE transaction: locks the projection's tracking row (the runner waits for that
   projection), applies the last events to the shadow, compares the shadow's published
   values (ATS, order stages) with the live ones and notes every key that differs (and only
   those) in `projection_corrections`, drops the live tables, renames the shadow tables into
   their place and moves the tracking position. Readers see either the old tables or the new.
3. Appends a `ReadModel.Rebuilt` marker to the ledger. The runner carries on live from the
   new position and, reaching the marker, publishes the noted keys' current values at the
   marker's position: strictly newer than any message published before, so a consumer that
   drops messages not newer than the last it applied still takes the correction.

If the marker cannot be appended (the process dies right after the swap), the noted keys
wait and are published at the next rebuild's marker of the same read model.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from ledger.commands import RecordRebuild
from projections.models import AtsView, OrdersView, Projection, all_views
from projections.runner import Projector
from projections.store import SHADOW, Store, Table, add_corrections, lock_tracking, save_tracking

NAMES = ("ats", "orders", "stock")

log = logging.getLogger("ledger.projections")

Progress = Callable[[int, int], None]  # (position reached, head)


def _drop(tx: Any, table: Table, suffix: str) -> None:
    tx.execute(f"DROP TABLE IF EXISTS {table.physical(suffix)}")


def _swap(tx: Any, table: Table, dialect: str) -> None:
    live, shadow = table.physical(), table.physical(SHADOW)
    tx.execute(f"DROP TABLE IF EXISTS {live}")
    tx.execute(f"ALTER TABLE {shadow} RENAME TO {live}")
    if dialect == "postgres":
        tx.execute(f"ALTER TABLE {live} RENAME CONSTRAINT {shadow}__pk TO {live}__pk")
        for ix in table.indexes:
            tx.execute(f"ALTER INDEX {table.index_name(ix, SHADOW)} RENAME TO {table.index_name(ix)}")
    else:
        for ix in table.indexes:
            tx.execute(f"DROP INDEX IF EXISTS {table.index_name(ix, SHADOW)}")
            tx.execute(f"CREATE INDEX IF NOT EXISTS {table.index_name(ix)} ON {live} ({', '.join(ix)})")


def _ats_changes(tx: Any) -> list[tuple[Any, ...]]:
    """(channel, sku) whose ATS differs between the shadow and the live table (absent = 0)."""
    live, shadow = AtsView.ATS.physical(), AtsView.ATS.physical(SHADOW)
    rows = tx.execute(
        f"SELECT s.channel, s.sku FROM {shadow} s LEFT JOIN {live} l "
        "ON l.channel = s.channel AND l.sku = s.sku WHERE l.available IS NULL OR l.available <> s.available "
        f"UNION ALL SELECT l.channel, l.sku FROM {live} l LEFT JOIN {shadow} s "
        "ON l.channel = s.channel AND l.sku = s.sku WHERE s.channel IS NULL AND l.available <> 0 "
        "ORDER BY 1, 2"
    ).fetchall()
    return [(r["channel"], r["sku"]) for r in rows]


def _stage_changes(tx: Any) -> list[tuple[Any, ...]]:
    """Orders whose stage differs between the shadow and the live table (or that live lacks)."""
    live, shadow = OrdersView.ORDERS.physical(), OrdersView.ORDERS.physical(SHADOW)
    rows = tx.execute(
        f"SELECT s.order_key FROM {shadow} s LEFT JOIN {live} l ON l.order_key = s.order_key "
        "WHERE l.stage IS NULL OR l.stage <> s.stage ORDER BY 1"
    ).fetchall()
    return [(r["order_key"],) for r in rows]


CHANGES = {"ats": _ats_changes, "orders": _stage_changes}


def rebuild(
    projector: Projector,
    name: str,
    progress: Progress | None = None,
    batch_size: int = 5000,
    by: str = "",
) -> dict[str, Any]:
    """Rebuilds one read model.

    Returns {name, events, seconds, events_per_second, position, published, marked}: `published`
    values are corrected, at the position of the marker appended after the swap (`marked`; a
    script with no writer wired appends none, and the corrections wait for the next marker).
    """
    if name not in NAMES:
        raise KeyError(name)
    record = projector.record or projector.channels.record  # the ledger's writer, when wired
    view: Projection = all_views()[name]
    db = projector.db
    started = time.perf_counter()
    if name == "ats":
        projector.channels.sync()  # policy versions stored before they were facts in the log
    with db.transaction() as tx:
        for t in view.tables:
            _drop(tx, t, SHADOW)
            for ddl in t.ddl(SHADOW):
                tx.execute(ddl)
    store = Store(view.tables, suffix=SHADOW, complete=True)
    position, events_read = 0, 0

    def fold(tx: Any, events: list[tuple[int, Any]]) -> None:
        view.begin(store)
        for p, e in events:
            view.apply(store, p, e)
        store.messages.clear()  # a replay publishes nothing; the swap publishes the differences
        store.bind(tx).flush()
        store.bind(None)

    head = projector.head()
    while True:
        events = projector.events(position, batch_size)
        if not events:
            break
        with db.transaction() as tx:
            fold(tx, events)
        position = events[-1][0]
        events_read += len(events)
        if progress:
            progress(position, max(head, position))
        if len(events) < batch_size:
            break

    published = 0
    with db.transaction() as tx:
        _, policy_version = lock_tracking(tx, name, db.dialect)
        while True:  # the events that arrived meanwhile, inside the swap's transaction
            events = projector.events(position, batch_size)
            if not events:
                break
            fold(tx, events)
            position = events[-1][0]
            events_read += len(events)
        if name in CHANGES:
            keys = CHANGES[name](tx)
            add_corrections(tx, name, keys)
            published = len(keys)
        for t in view.tables:
            _swap(tx, t, db.dialect)
        save_tracking(tx, name, position, policy_version)
    marker = None
    if record is not None:
        marker = record(
            RecordRebuild(
                name=name,
                position=position,
                corrected=published,
                by=by or "rebuild",
                cause={"source": "projections", "reference": f"rebuild:{name}:{uuid.uuid4().hex[:12]}"},
            )
        )
    elif published:
        log.warning("no writer wired: %d corrected %s value(s) wait for a marker", published, name)
    if progress:
        progress(position, max(head, position))
    seconds = time.perf_counter() - started
    return {
        "name": name,
        "events": events_read,
        "seconds": round(seconds, 3),
        "events_per_second": round(events_read / seconds, 1) if seconds else None,
        "position": position,
        "published": published,
        "marked": marker is not None,
    }
