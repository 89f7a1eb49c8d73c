"""The projection runner: catches up, then follows the ledger with low latency.

`Projector.step()` is one batch: in ONE database transaction it locks each projection's
tracking row, reads the events after it (`select_notifications`), folds them, writes the
changed rows and their outbox messages and moves the tracking position. A crash anywhere
before the commit leaves nothing behind; after the commit everything is there. So each
event is applied exactly once. (The library's own `ProjectionRunner` commits one event per
transaction; batching is what makes catch-up and rebuilds fast.)

`Runner` runs steps on a thread. It wakes up on the writer's in-process commit callbacks,
on PostgreSQL `NOTIFY` from the events table (a wake-up only), and on a periodic poll,
which is the only mechanism on SQLite. After a step that committed outbox messages it calls
its `on_commit` callbacks (the in-process relay's `wake`); a relay in another process hears
the outbox's own NOTIFY, sent by the same transaction (`adapters.outbox`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from adapters import metrics, outbox
from adapters.channels import ChannelPolicies
from adapters.persistence.db import Database
from adapters.persistence.migrate import ddl_lock
from adapters.persistence.urls import is_postgres, pg_conninfo
from projections import folds
from projections.models import Projection, all_views
from projections.store import (
    Store,
    lock_trackings,
    read_tracking,
    save_trackings,
    take_corrections,
)

log = logging.getLogger("ledger.projections")


class Projector:
    """Applies the ledger's events to the read models, a batch per transaction."""

    def __init__(
        self,
        db: Database,
        app: Any,
        channels: ChannelPolicies,
        views: dict[str, Projection] | None = None,
        batch_size: int = 500,
        before_commit: Callable[[int], None] | None = None,
        record: Callable[[Any], Any] | None = None,
        carry_rows: int = 5_000,
    ) -> None:
        self.db = db
        self.app = app
        self.channels = channels
        self.record = record  # executes a command through the ledger's writer (rebuild markers)
        self.views = views if views is not None else all_views()
        self.batch_size = batch_size
        self.before_commit = before_commit  # fault injection in tests: called with the batch's last position
        # Called after each commit, per view stepped: (name, position before, after, {table: {key: row or
        # None}} of the rows it changed, events). The in-process ATS cache follows the read model this way.
        self.listeners: list[Callable[[str, int, int, dict[str, dict[Any, Any]], list[Any]], None]] = []
        self.messages = 0  # outbox messages the last committed step enqueued
        # Rows a committed step leaves for the next, per view: (the tracking row's `updated_at`
        # it wrote, its position, the rows, the whole tables read). The next step starts from them
        # only if the tracking row still holds that stamp and position: nobody else (another
        # runner, a rebuild's swap) wrote the view since. Hot rows are then neither read nor
        # decoded again every batch.
        self.carry_rows = carry_rows
        self._carry: dict[str, tuple[str, int, dict[str, dict[Any, Any]], set[str]]] = {}
        self.create_tables()

    def create_tables(self) -> None:
        """The read models' tables, declared with their views (the ledger's other tables come from
        the migrations); under the start-up DDL lock, so workers starting together never race."""
        with ddl_lock(self.db):
            self.db.script([ddl for v in self.views.values() for t in v.tables for ddl in t.ddl()])
            for view in self.views.values():
                view.upgrade(self.db)

    def events(self, after: int, limit: int) -> list[tuple[int, Any]]:
        notes = self.app.recorder.select_notifications(after + 1, limit)
        return [(n.id, self.app.mapper.to_domain_event(n)) for n in notes]

    def step(self) -> int:
        """Applies the next batch; returns how many events it read."""
        stepped: list[tuple[str, int, int, dict[str, dict[Any, Any]], list[Any]]] = []
        carry, self._carry = self._carry, {}  # dropped unless this step commits
        stores: dict[str, Store] = {}
        with self.db.transaction() as tx:
            stamps: dict[str, str] = {}
            tracked = lock_trackings(tx, list(self.views), self.db.dialect, stamps)
            moved: dict[str, tuple[int, int]] = {}
            start = min(pos for pos, _ in tracked.values())
            events = self.events(start, self.batch_size)
            last = events[-1][0] if events else start
            for name in sorted(self.views):
                view = self.views[name]
                pos, pver = tracked[name]
                mine = [(p, e) for p, e in events if p > pos]
                if not mine:
                    continue
                store = Store(view.tables, complete=False).bind(tx)
                kept = carry.get(name)
                if kept is not None and kept[0] == stamps.get(name) and kept[1] == pos:
                    store.carried(kept[2], kept[3])
                stores[name] = store
                view.begin(store)
                view.prefetch(store, mine)
                for p, e in mine:
                    view.apply(store, p, e)
                    if folds.is_rebuild_of(e, name):
                        view.republish(store, take_corrections(tx, name), p)
                view.finish(store)
                if self.listeners:
                    changed = {t: {k: store.rows[t][k] for k in keys} for t, keys in store.dirty.items() if keys}
                    stepped.append((name, pos, max(pos, last), changed, [e for _, e in mine]))
                store.flush()
                moved[name] = (max(pos, last), pver)
            stamp = save_trackings(tx, moved) if moved else None
            if self.before_commit is not None and events:
                self.before_commit(last)
            messages = outbox.enqueued(tx)
        self.messages = messages
        if self.carry_rows:
            for name, kept in carry.items():  # views this step did not move keep theirs
                if name not in moved:
                    self._carry[name] = kept
            for name, store in stores.items():
                if stamp is not None and name in moved and store.cached() <= self.carry_rows:
                    self._carry[name] = (stamp, moved[name][0], store.kept(), store.scanned)
        for args in stepped:
            for listener in self.listeners:
                listener(*args)
        return len(events)

    def catch_up(self, max_batches: int | None = None) -> int:
        """Steps until nothing is left; returns the events read."""
        total, n = 0, 0
        while max_batches is None or n < max_batches:
            read = self.step()
            total += read
            n += 1
            if read < self.batch_size:
                break
        return total

    def head(self) -> int:
        return int(self.app.recorder.max_notification_id() or 0)

    def status(self) -> list[dict[str, Any]]:
        """Each read model's position and lag (positions, seconds)."""
        head = self.head()
        tracking = read_tracking(self.db)
        out = []
        for name in sorted(self.views):
            pos = int(tracking[name]["position"]) if name in tracking else 0
            lag = max(0, head - pos)
            seconds = 0.0
            if lag:
                nxt = self.events(pos, 1)
                if nxt:
                    seconds = max(0.0, (datetime.now(UTC) - nxt[0][1].timestamp).total_seconds())
            out.append(
                {
                    "name": name,
                    "position": pos,
                    "head": head,
                    "lag_positions": lag,
                    "lag_seconds": round(seconds, 3),
                    "updated_at": tracking[name]["updated_at"] if name in tracking else None,
                }
            )
        return out

    def report(self) -> list[dict[str, Any]]:
        """`status()`, also fed to the Prometheus gauges."""
        rows = self.status()
        for r in rows:
            metrics.PROJECTION_POSITION.labels(r["name"]).set(r["position"])
            metrics.PROJECTION_LAG_POSITIONS.labels(r["name"]).set(r["lag_positions"])
            metrics.PROJECTION_LAG_SECONDS.labels(r["name"]).set(r["lag_seconds"])
        metrics.OUTBOX_DEPTH.set(outbox.depth(self.db))
        return rows


class Runner:
    """A worker (start/stop) that keeps the read models current."""

    def __init__(self, projector: Projector, poll_seconds: float = 1.0, report_seconds: float = 2.0) -> None:
        self.projector = projector
        self.poll_seconds = poll_seconds
        self.report_seconds = report_seconds
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.last_error: str | None = None
        self.on_commit: list[Callable[[], None]] = []  # called after a step that committed outbox messages

    def wake(self, *_: Any) -> None:
        self._wake.set()

    def start(self) -> None:
        self._stop.clear()
        self._threads = [threading.Thread(target=self._run, name="projection-runner", daemon=True)]
        if is_postgres(self.projector.db.url):
            self._threads.append(threading.Thread(target=self._listen, name="projection-listen", daemon=True))
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        for t in self._threads:
            t.join(timeout=10)
        self._threads = []

    @property
    def healthy(self) -> bool:
        return self.last_error is None

    def _run(self) -> None:
        reported = 0.0
        backoff = 0.1
        while not self._stop.is_set():
            self._wake.clear()
            try:
                read = self.projector.step()
                self.last_error = None
                backoff = 0.1
                if self.projector.messages:
                    for callback in self.on_commit:
                        callback()
            except Exception as e:
                self.last_error = type(e).__name__
                log.exception("projection step failed; retrying")
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            if time.monotonic() - reported > self.report_seconds:
                reported = time.monotonic()
                try:
                    self.projector.report()
                except Exception:
                    log.exception("projection report failed")
            if read >= self.projector.batch_size:
                continue
            self._wake.wait(self.poll_seconds)

    def _listen(self) -> None:
        """PostgreSQL LISTEN on the events table's channel: a wake-up, never the source of truth."""
        import psycopg
        from psycopg import sql

        channel = getattr(self.projector.app.recorder, "channel_name", None)
        if not channel:
            return
        while not self._stop.is_set():
            try:
                with psycopg.connect(
                    pg_conninfo(self.projector.db.url), autocommit=True, connect_timeout=5
                ) as conn:
                    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                    while not self._stop.is_set():
                        for _ in conn.notifies(timeout=1.0, stop_after=1):
                            self._wake.set()
            except Exception:
                log.warning("LISTEN connection lost; polling meanwhile")
                self._stop.wait(2.0)
