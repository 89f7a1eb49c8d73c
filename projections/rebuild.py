"""Rebuilding a read model without downtime: shadow tables, an atomic swap, corrected ATS.

1. Replays every event from position 0 into `<table>__shadow` under the current channel
   policies, in large batches, while queries keep answering from the live tables and the
   runner keeps them current.
2. In ONE transaction: locks the projection's tracking row (the runner waits for that
   projection), applies the last events to the shadow, compares the shadow's ATS with the
   live ATS and enqueues every value that differs (and only those), drops the live tables,
   renames the shadow tables into their place and moves the tracking position. Readers see
   either the old tables or the new ones.
3. The runner carries on live from the new position.

A corrected ATS carries the ledger position the rebuild reached; when no event came since
a channel's last message for that SKU, that position equals the last one it saw, so
consumers should apply a message whose position is not *older* than the last one.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from projections.models import AtsView, Projection, all_views, ats_message
from projections.runner import Projector
from projections.store import SHADOW, Store, Table, lock_tracking, save_tracking

NAMES = ("ats", "orders", "stock")

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


def _ats_changes(tx: Any) -> list[dict[str, Any]]:
    live, shadow = AtsView.ATS.physical(), AtsView.ATS.physical(SHADOW)
    return tx.execute(
        f"SELECT s.channel, s.sku, s.available AS value FROM {shadow} s LEFT JOIN {live} l "
        "ON l.channel = s.channel AND l.sku = s.sku WHERE l.available IS NULL OR l.available <> s.available "
        f"UNION ALL SELECT l.channel, l.sku, 0 AS value FROM {live} l LEFT JOIN {shadow} s "
        "ON l.channel = s.channel AND l.sku = s.sku WHERE s.channel IS NULL AND l.available <> 0 "
        "ORDER BY 1, 2"
    ).fetchall()


def rebuild(
    projector: Projector, name: str, progress: Progress | None = None, batch_size: int = 5000
) -> dict[str, Any]:
    """Rebuilds one read model; returns {name, events, seconds, events_per_second, position, published}."""
    if name not in NAMES:
        raise KeyError(name)
    view: Projection = all_views()[name]
    db = projector.db
    started = time.perf_counter()
    with db.transaction() as tx:
        for t in view.tables:
            _drop(tx, t, SHADOW)
            for ddl in t.ddl(SHADOW):
                tx.execute(ddl)
    store = Store(view.tables, suffix=SHADOW, complete=True)
    policies = projector.channels.current()
    position, events_read = 0, 0

    def fold(tx: Any, events: list[tuple[int, Any]]) -> None:
        view.begin(policies)
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
        lock_tracking(tx, name, db.dialect)
        while True:  # the events that arrived meanwhile, inside the swap's transaction
            events = projector.events(position, batch_size)
            if not events:
                break
            fold(tx, events)
            position = events[-1][0]
            events_read += len(events)
        if name == "ats":
            tag = f":rebuild:{uuid.uuid4().hex[:12]}"
            store.bind(tx)
            for r in _ats_changes(tx):
                store.emit(*ats_message(r["channel"], r["sku"], int(r["value"]), position, tag))
                published += 1
            store.flush()
        for t in view.tables:
            _swap(tx, t, db.dialect)
        save_tracking(tx, name, position, policies.version)
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
    }
