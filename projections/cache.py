"""The ATS cache: `(channel, sku) -> available` in process, exact at the `ats` read model's position.

The cache holds values of the `ats` table as they are at one version of the read model:
`(position, stamp)`, the `projection_tracking` row's position and `updated_at`. Every value
it holds is the table's value at that version, so an answer `(available, position)` taken
from it is truthful: it reflects every event up to `position`.

It is kept current two ways:

- **In the runner's process**, the projector calls `committed()` after each batch it
  commits, with the rows it changed. The tracking row was locked from the batch's start to
  its commit, so when the cache was at the batch's start position the changed rows carry it
  exactly to the batch's end position, with no query. A cache at any other position (another
  process's runner stepped in between) is emptied instead. A `ReadModel.Rebuilt` marker of
  `ats` empties it as well (a rebuild swapped the table under it).
- **In every process**, a value is only served while the cache's version was checked
  against the database less than `fresh_seconds` ago (one query of the tracking row, made by
  a poller thread every `fresh_seconds / 4` while the cache is being read). A newer version
  in the database, from another process's runner, is followed on PostgreSQL: the same query
  reads the `ats` rows whose `position` is newer than the cache's (at most `DELTA_MAX`), in one
  snapshot with the version, and the cache takes them and the version. It starts again
  (empties) instead when a channel policy changed since (only a policy change deletes an `ats`
  row), when the table's oid changed (a rebuild swapped it: its rows keep their old positions),
  when the same position was written again, or on SQLite. Misses are read from the database
  (value and version in one statement) and kept; on PostgreSQL a miss read at a newer version
  than the cache's is answered and kept aside until the cache reaches that version (the rows
  changed meanwhile then go over it), instead of emptying the cache.

So an answer is never older than the database was `fresh_seconds` before the request
(0.1 s by default), and in the runner's process a batch's changes are served as soon as it
commits. `ledger serve --no-workers` relies on the check alone, and on PostgreSQL keeps its
values across the runner's batches instead of reading them again after each.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from adapters.persistence.db import Database
from adapters.persistence.urls import pg_conninfo, pg_parts
from projections.folds import is_rebuild_of
from projections.store import TRACKING

log = logging.getLogger("ledger.projections")

NAME = "ats"
TABLE = "ats"
FRESH_SECONDS = 0.1
MAX_ENTRIES = 250_000

DELTA_MAX = 10_000  # changed rows a check carries the cache over; more: it starts again
POLICIES = "ats_policies"  # each channel's policy, with the position of its last change

Key = tuple[str, str]


def _oid(value: Any) -> int | None:
    return None if value is None else int(value)


class AtsCache:
    """Available-to-sell values of the `ats` read model, validated against the database."""

    def __init__(
        self,
        db: Database,
        fresh_seconds: float = FRESH_SECONDS,
        max_entries: int = MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self.clock = clock  # monotonic seconds: when a check against the database lapses
        self.fresh_seconds = fresh_seconds
        self.max_entries = max_entries
        self._values: dict[Key, int] = {}
        # PostgreSQL: values a miss read at a newer version than the cache's, kept aside with that
        # position until the cache reaches it (`_advance`, `committed`), instead of emptying it.
        self._pending: dict[Key, tuple[int, int]] = {}
        self._position = -1  # no version yet
        self._stamp: str | None = None
        self._rel: int | None = None  # PostgreSQL: the `ats` table's oid at that version (a swap changes it)
        self._fresh_until = 0.0  # monotonic deadline of the last check against the database
        self._lock = threading.Lock()
        self._used = threading.Event()
        self._closed = threading.Event()
        self._poller: threading.Thread | None = None
        self._conn: Any = None  # the poller's own PostgreSQL connection

    # ------------------------------------------------------------ reading

    def get(self, channel: str, sku: str) -> tuple[int, int] | None:
        """`(available, position)` when cached and checked recently enough; else None (read it)."""
        found = self.get_many(channel, (sku,))
        return None if found is None else found[0]

    def get_many(self, channel: str, skus: Sequence[str]) -> list[tuple[int, int]] | None:
        """Every SKU's `(available, position)` at one position, or None when any is missing."""
        if not self._used.is_set():
            self._wake()
        with self._lock:
            if self.clock() >= self._fresh_until:
                return None
            out = []
            for sku in skus:
                value = self._values.get((channel, sku))
                if value is None:
                    return None
                out.append((value, self._position))
            return out

    def read(self, channel: str, skus: Sequence[str]) -> list[tuple[int, int]]:
        """Reads the SKUs from the database (blocking), keeps them, returns `(available, position)`.

        Values and version come from one statement, so they belong together.
        """
        started = self.clock()
        marks = ", ".join(["%s"] * len(skus))
        rows = self.db.query(
            f"SELECT t.position, t.updated_at, {self._rel_sql()} AS rel, a.sku, a.available FROM {TRACKING} t "
            f"LEFT JOIN {TABLE} a ON a.channel = %s AND a.sku IN ({marks}) WHERE t.name = %s",
            (channel, *skus, NAME),
        )
        if not rows:  # the read model has never run: nothing applied yet
            return [(0, 0) for _ in skus]
        position = int(rows[0]["position"])
        found = {r["sku"]: int(r["available"]) for r in rows if r["sku"] is not None}
        values = {(channel, s): found.get(s, 0) for s in skus}
        self._fill((position, rows[0]["updated_at"], _oid(rows[0]["rel"])), started, values)
        return [(values[(channel, s)], position) for s in skus]

    # ------------------------------------------------------------ keeping current

    def validate(self) -> None:
        """Checks the cache's version against the database (blocking). A newer version empties
        the cache, except on PostgreSQL, where the rows changed since are read instead (`_changes`)."""
        started = self.clock()
        with self._lock:
            since, rel = self._position, self._rel
        if self.db.dialect == "postgres" and since >= 0 and rel is not None and self._values:
            changes = self._changes(since)
            if changes is None:
                return  # the read model has never run
            if not self._advance(since, rel, changes, started):
                self._fill(changes[0], started, {})  # the version it read, as a plain check takes it
            return
        version = self._version()
        if version is not None:
            self._fill(version, started, {})

    def committed(
        self,
        name: str,
        before: int,
        after: int,
        tables: Mapping[str, Mapping[tuple[Any, ...], Mapping[str, Any] | None]],
        events: Iterable[Any],
    ) -> None:
        """The projector's listener: a committed batch moved read model `name` from `before` to `after`.

        `tables[TABLE]` maps each changed `(channel, sku)` to its new row (None: deleted, ATS 0).
        """
        if name != NAME:
            return
        rows = tables.get(TABLE, {})
        rebuilt = any(is_rebuild_of(e, NAME) for e in events)
        with self._lock:
            if self._position > after:
                return  # the cache already saw a newer version (read from the database)
            if self._position not in (before, after) or rebuilt:
                self._empty()  # changes we did not see, or a swapped table
                if rebuilt:
                    self._rel = None  # the next check takes the new table's identity
            self._take_pending(after)
            for key, row in rows.items():
                self._values[(key[0], key[1])] = 0 if row is None else int(row["available"])
            if self._position != after:
                self._position, self._stamp = after, None
            self._bound()

    def clear(self) -> None:
        with self._lock:
            self._empty()
            self._position, self._stamp, self._fresh_until, self._rel = -1, None, 0.0, None

    def close(self) -> None:
        self._closed.set()
        self._used.set()
        poller = self._poller
        if poller is not None and poller is not threading.current_thread():
            poller.join(timeout=5)
        if self._conn is not None:
            self._conn.close()

    # ------------------------------------------------------------ internals

    def _fill(self, version: tuple[int, str, int | None], started: float, values: Mapping[Key, int]) -> None:
        """Takes what the database said at `started` (monotonic) at `version`."""
        position, stamp, rel = version
        with self._lock:
            if position < self._position:
                return  # the cache is newer than this read
            if position > self._position and values and self._values and rel is not None and rel == self._rel:
                # A miss read at a newer version (PostgreSQL, the same table): kept aside until the
                # cache reaches that version by the rows changed since, which stay newer than it.
                for key, value in values.items():
                    self._pending[key] = (value, position)
                if len(self._pending) > self.max_entries // 10:
                    self._pending.clear()
                return
            if position == self._position and self._stamp is not None and stamp != self._stamp:
                if stamp < self._stamp:
                    return  # an older read of a same-position change (ISO stamps order in time)
                self._empty()  # a rebuild, or another runner's empty step: start again
            elif position > self._position:
                self._empty()
            elif rel is not None and self._rel is not None and rel != self._rel:
                self._empty()  # a rebuild swapped the table
            self._position, self._stamp, self._rel = position, stamp, rel
            self._values.update(values)
            self._fresh_until = max(self._fresh_until, started + self.fresh_seconds)
            self._bound()

    def _version(self) -> tuple[int, str, int | None] | None:
        """The tracking row's `(position, updated_at)` and (PostgreSQL) the table's oid. On
        PostgreSQL through a connection of its own in autocommit: one round trip, so the check
        keeps its pace under load."""
        sql = f"SELECT position, updated_at, {self._rel_sql()} AS rel FROM {TRACKING} WHERE name = %s"
        if self.db.dialect != "postgres":
            row = self.db.query_one(sql, (NAME,))
            return None if row is None else (int(row["position"]), row["updated_at"], None)
        found = self._poll_query(sql, (NAME,))
        return None if not found else (int(found[0][0]), found[0][1], _oid(found[0][2]))

    def _changes(self, since: int) -> tuple[tuple[int, str, int | None], bool, dict[Key, int] | None] | None:
        """PostgreSQL, one statement (one snapshot): the version, whether a channel policy changed
        after `since`, and every `ats` row changed after `since` (a row's `position` is that of
        the event that last changed it). A row is only deleted by a policy change (a channel that
        no longer has a location knowing the SKU), and a rebuild's swap changes the table's oid,
        so a version with neither is exactly the cache's values plus these rows."""
        sql = (
            f"SELECT t.position, t.updated_at, {self._rel_sql()} AS rel, "
            f"EXISTS (SELECT 1 FROM {POLICIES} p WHERE p.position > %s) AS policy, a.channel, a.sku, a.available "
            f"FROM {TRACKING} t LEFT JOIN {TABLE} a ON a.position > %s WHERE t.name = %s LIMIT %s"
        )
        rows = self._poll_query(sql, (since, since, NAME, DELTA_MAX + 1))
        if not rows:
            return None
        version = (int(rows[0][0]), rows[0][1], _oid(rows[0][2]))
        if len(rows) > DELTA_MAX:
            return version, bool(rows[0][3]), None  # far behind (the cache sat unread): start again
        return version, bool(rows[0][3]), {(r[4], r[5]): int(r[6]) for r in rows if r[4] is not None}

    def _advance(
        self,
        since: int,
        rel: int,
        changes: tuple[tuple[int, str, int | None], bool, dict[Key, int] | None],
        started: float,
    ) -> bool:
        """Carries the cache from `since` to the version `_changes` read; False when it cannot
        (the cache moved meanwhile, a policy changed, the table was swapped, too many changes)."""
        (position, stamp, new_rel), policy, values = changes
        with self._lock:
            if values is None or policy or new_rel != rel or position < since:
                return False
            if self._position != since or self._rel != rel:
                return False
            if position == since and self._stamp is not None and stamp != self._stamp:
                return False  # the same position written again (another runner's empty step)
            self._take_pending(position)
            self._values.update(values)
            self._position, self._stamp = position, stamp
            self._fresh_until = max(self._fresh_until, started + self.fresh_seconds)
            self._bound()
            return True

    def _empty(self) -> None:
        """Drops every value, those read aside too (under the lock)."""
        self._values.clear()
        self._pending.clear()

    def _take_pending(self, position: int) -> None:
        """Moves the values read aside at versions up to `position` into the cache (under the
        lock, before the rows changed up to `position` are applied over them: a value read at
        an earlier version is the table's at `position` unless such a row changed it)."""
        for key, (value, at) in list(self._pending.items()):
            if at <= position:
                self._values[key] = value
                del self._pending[key]

    def _rel_sql(self) -> str:
        return f"'{TABLE}'::regclass::oid" if self.db.dialect == "postgres" else "NULL"

    def _poll_query(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """A statement on the poller's own autocommit connection (PostgreSQL)."""
        import psycopg

        if self._conn is None or self._conn.closed:
            schema = pg_parts(self.db.url)["schema"]
            self._conn = psycopg.connect(
                pg_conninfo(self.db.url),
                autocommit=True,
                connect_timeout=5,
                options=f"-c search_path={schema}" if schema else None,
            )
        try:
            return list(self._conn.execute(sql, params, prepare=True).fetchall())
        except psycopg.Error:
            self._conn.close()
            raise

    def _bound(self) -> None:
        if len(self._values) > self.max_entries:
            self._values.clear()

    def _wake(self) -> None:
        self._used.set()
        if self._poller is None and not self._closed.is_set():
            with self._lock:
                if self._poller is None:
                    self._poller = threading.Thread(target=self._poll, name="ats-cache", daemon=True)
                    self._poller.start()

    def _poll(self) -> None:
        """Checks the version every `fresh_seconds / 4` while the cache is read; sleeps otherwise."""
        while not self._closed.is_set():
            self._used.wait()
            if self._closed.is_set():
                return
            self._used.clear()
            try:
                self.validate()
            except Exception:  # the values lapse; reads go to the database until a check succeeds
                log.warning("ATS cache check failed", exc_info=True)
            self._closed.wait(self.fresh_seconds / 4)
