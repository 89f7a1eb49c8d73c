"""Read-model tables, the row cache a batch folds into, and the tracking positions.

A `Store` holds the rows one batch reads and writes. In memory (`Store()`), it is the whole
read model: the pure tests and the rebuild's reference use that. Bound to a database
transaction (`store.bind(tx)`), it loads missing rows on demand and `flush()` writes the
changed rows and the outbox messages in that transaction, beside the tracking position.
So rows, position and messages commit together, and each event is applied exactly once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from adapters import outbox
from adapters.persistence.db import Database, Tx

TRACKING = "projection_tracking"
CORRECTIONS = "projection_corrections"
SHADOW = "__shadow"

Key = tuple[Any, ...]
_FLOATS = frozenset({"DOUBLE PRECISION", "REAL", "FLOAT8", "FLOAT4"})


@dataclass(frozen=True)
class Table:
    name: str
    key: tuple[str, ...]
    columns: tuple[str, ...]  # value columns, in order
    types: dict[str, str] = field(default_factory=dict)  # column -> SQL type (default TEXT)
    json: frozenset[str] = frozenset()  # columns kept as JSON text
    indexes: tuple[tuple[str, ...], ...] = ()
    # Whether a batch's rows of it are left to the next batch (`Projector.step`): not for rows
    # seldom touched twice in a row, which would only crowd the hot ones out of `carry_rows`.
    carried: bool = True

    def physical(self, suffix: str = "") -> str:
        return self.name + suffix

    def index_name(self, cols: tuple[str, ...], suffix: str = "") -> str:
        return f"{self.name}{suffix}__{'_'.join(cols)}"

    def ddl(self, suffix: str = "") -> list[str]:
        cols = [f"{c} {self.types.get(c, 'TEXT')}" for c in (*self.key, *self.columns)]
        name = self.physical(suffix)
        pk = f"CONSTRAINT {name}__pk PRIMARY KEY ({', '.join(self.key)})"
        out = [f"CREATE TABLE IF NOT EXISTS {name} ({', '.join(cols)}, {pk})"]
        out += [
            f"CREATE INDEX IF NOT EXISTS {self.index_name(ix, suffix)} ON {name} ({', '.join(ix)})"
            for ix in self.indexes
        ]
        return out

    def encode(self, key: Key, row: dict[str, Any]) -> tuple[Any, ...]:
        vals = [orjson.dumps(row[c]).decode() if c in self.json else row[c] for c in self.columns]
        return (*key, *vals)

    def array(self, column: str, values: Sequence[Any]) -> list[Any]:
        """One column's values as a list psycopg dumps in binary: of one Python type each (a
        binary array cannot mix ints and floats, which a DOUBLE PRECISION column may be given)."""
        if self.types.get(column) in _FLOATS:
            return [v if v is None else float(v) for v in values]
        return list(values)

    def lookup(self, columns: str, suffix: str = "") -> str:
        """PostgreSQL: a query of `columns` of the rows whose keys `key_arrays` gives (one binary
        array per key column), one index probe per key. Not a join: the planner hashes a join
        with the whole table (a seq scan, which grows with the table), where a `LIMIT` in a
        `LATERAL` subquery keeps one probe of the primary key per key."""
        arrays = ", ".join(f"%b::{self.types.get(c, 'TEXT')}[]" for c in self.key)
        probe = " AND ".join(f"t.{c} = k.{c}" for c in self.key)
        return (
            f"SELECT r.* FROM unnest({arrays}) AS k({', '.join(self.key)}) CROSS JOIN LATERAL "
            f"(SELECT {columns} FROM {self.physical(suffix)} t WHERE {probe} LIMIT 1) r"
        )

    def key_arrays(self, keys: Sequence[Key]) -> list[list[Any]]:
        return [self.array(c, v) for c, v in zip(self.key, zip(*keys, strict=True), strict=True)]

    def decode(self, r: dict[str, Any]) -> tuple[Key, dict[str, Any]]:
        key = tuple(r[k] for k in self.key)
        row = {c: orjson.loads(r[c]) if c in self.json and r[c] is not None else r[c] for c in self.columns}
        return key, row


_MISSING = object()


class Store:
    """Rows of some tables, cached; writes are remembered until `flush`."""

    def __init__(self, tables: Sequence[Table], suffix: str = "", complete: bool = True) -> None:
        self.tables = {t.name: t for t in tables}
        self.suffix = suffix
        self.complete = complete  # True: a row not in the cache does not exist
        self.rows: dict[str, dict[Key, dict[str, Any] | None]] = {t.name: {} for t in tables}
        self.dirty: dict[str, set[Key]] = {t.name: set() for t in tables}
        self.messages: list[tuple[str, dict[str, Any], str]] = []
        self._tx: Tx | None = None
        self._scanned: set[str] = set()

    def bind(self, tx: Tx | None) -> Store:
        self._tx = tx
        return self

    def get(self, table: str, key: Key) -> dict[str, Any] | None:
        cached = self.rows[table].get(key, _MISSING)
        if cached is not _MISSING:
            return cached  # type: ignore[return-value]  # not the _MISSING sentinel here
        if self.complete or self._tx is None:
            return None
        self.load(table, [key])
        return self.rows[table].get(key)

    def put(self, table: str, key: Key, row: dict[str, Any]) -> None:
        self.rows[table][key] = row
        self.dirty[table].add(key)

    def delete(self, table: str, key: Key) -> None:
        self.rows[table][key] = None
        self.dirty[table].add(key)

    def items(self, table: str) -> Iterable[tuple[Key, dict[str, Any]]]:
        """Every cached row of a table (the whole table for a complete store)."""
        return ((k, r) for k, r in self.rows[table].items() if r is not None)

    def select(self, table: str, column: str, values: Sequence[Any]) -> list[tuple[Key, dict[str, Any]]]:
        """Rows whose `column` is one of `values` (loaded from the database first when bound)."""
        t = self.tables[table]
        if values:
            self._read(table, f" WHERE {column} IN ({', '.join(['%s'] * len(values))})", values)
        wanted = set(values)
        at = t.key.index(column) if column in t.key else None
        return [
            (k, r)
            for k, r in self.rows[table].items()
            if r is not None and (k[at] if at is not None else r[column]) in wanted
        ]

    def scan(self, table: str) -> list[tuple[Key, dict[str, Any]]]:
        """Every row of a (small) table: loaded whole from the database once when bound."""
        if table not in self._scanned and self._read(table):
            self._scanned.add(table)
        return list(self.items(table))

    def _read(self, table: str, where: str = "", params: Sequence[Any] = ()) -> bool:
        """Caches the rows `where` selects, keeping cached ones (they may be newer); False: not bound."""
        if self._tx is None or self.complete:
            return False
        t = self.tables[table]
        cache = self.rows[table]
        cols = ", ".join((*t.key, *t.columns))
        sql = f"SELECT {cols} FROM {t.physical(self.suffix)}{where}"
        for r in self._tx.execute(sql, list(params)).fetchall():
            key, row = t.decode(r)
            if key not in cache:
                cache[key] = row
        return True

    def emit(self, subject: str, payload: dict[str, Any], msg_id: str) -> None:
        self.messages.append((subject, payload, msg_id))

    def load(self, table: str, keys: Iterable[Key]) -> None:
        """Reads rows not cached yet from the database (absent rows are remembered as absent)."""
        if self._tx is None or self.complete:
            return
        t = self.tables[table]
        cache = self.rows[table]
        todo = list(dict.fromkeys(k for k in keys if k not in cache))
        cols = ", ".join((*t.key, *t.columns))
        reads: list[tuple[str, list[Any], list[Key]]] = []
        if todo and len(t.key) > 1 and self._tx.dialect == "postgres":
            # one statement, one binary array per key column (`Table.lookup`): no chunks of OR-ed terms
            reads.append((t.lookup(cols, self.suffix), t.key_arrays(todo), todo))
        else:
            for i in range(0, len(todo), 200):
                chunk = todo[i : i + 200]
                if len(t.key) == 1:
                    where = f"{t.key[0]} IN ({', '.join(['%s'] * len(chunk))})"
                    params: list[Any] = [k[0] for k in chunk]
                else:
                    one = "(" + " AND ".join(f"{k} = %s" for k in t.key) + ")"
                    where = " OR ".join([one] * len(chunk))
                    params = [v for k in chunk for v in k]
                reads.append((f"SELECT {cols} FROM {t.physical(self.suffix)} WHERE {where}", params, chunk))
        for sql, params, chunk in reads:
            for r in self._tx.execute(sql, params).fetchall():
                key, row = t.decode(r)
                cache[key] = row
            for k in chunk:
                cache.setdefault(k, None)

    def flush(self) -> int:
        """Writes changed rows and queued messages in the bound transaction; returns rows written."""
        tx = self._tx
        assert tx is not None, "flush needs a transaction"
        written = 0
        for name, keys in self.dirty.items():
            if not keys:
                continue
            t = self.tables[name]
            table = t.physical(self.suffix)
            ups = [t.encode(k, r) for k in keys if (r := self.rows[name][k]) is not None]
            dels = [k for k in keys if self.rows[name][k] is None]
            if ups:
                cols = (*t.key, *t.columns)
                sets = ", ".join(f"{c} = excluded.{c}" for c in t.columns)
                upsert = f" ON CONFLICT ({', '.join(t.key)}) DO UPDATE SET {sets}"
                if tx.dialect == "postgres":  # one statement, one array per column: one round trip
                    # The arrays travel in binary (`%b`): psycopg dumps text arrays with a regular
                    # expression per element (8.4% of the API process's GIL in the runner).
                    arrays = ", ".join(f"%b::{t.types.get(c, 'TEXT')}[]" for c in cols)
                    tx.execute(
                        f"INSERT INTO {table} ({', '.join(cols)}) SELECT * FROM unnest({arrays}){upsert}",
                        [t.array(c, v) for c, v in zip(cols, zip(*ups, strict=True), strict=True)],
                    )
                else:
                    tx.executemany(
                        f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))}){upsert}",
                        ups,
                    )
            if dels and tx.dialect == "postgres":  # one statement: the rows by their ctid
                tx.execute(
                    f"DELETE FROM {table} WHERE ctid = ANY(ARRAY({t.lookup('ctid', self.suffix)}))",
                    t.key_arrays(dels),
                )
            elif dels:
                tx.executemany(f"DELETE FROM {table} WHERE " + " AND ".join(f"{k} = %s" for k in t.key), dels)
            written += len(ups) + len(dels)
            keys.clear()
        outbox.enqueue_many(tx, self.messages)
        self.messages.clear()
        return written

    def carried(self, rows: dict[str, dict[Key, dict[str, Any] | None]], scanned: set[str]) -> Store:
        """Starts with the rows (and whole tables) a previous batch left, known to be current."""
        for name, cached in rows.items():
            self.rows[name].update(cached)
        self._scanned |= scanned
        return self

    @property
    def scanned(self) -> set[str]:
        return self._scanned

    def kept(self) -> dict[str, dict[Key, dict[str, Any] | None]]:
        """The rows a next batch may start from: those of the tables that are `carried`."""
        return {name: rows for name, rows in self.rows.items() if self.tables[name].carried}

    def cached(self) -> int:
        """How many rows `kept` holds."""
        return sum(len(r) for r in self.kept().values())

    def forget(self) -> None:
        """Drops the cache (a live batch must not trust rows another writer may have changed)."""
        for name in self.rows:
            self.rows[name].clear()
            self.dirty[name].clear()
        self.messages.clear()
        self._scanned.clear()


# ------------------------------------------------------------------ tracking


def lock_tracking(tx: Tx, name: str, dialect: str) -> tuple[int, int]:
    """The (position, policy version) of a projection, locked until the transaction ends."""
    return lock_trackings(tx, [name], dialect)[name]


def lock_trackings(
    tx: Tx, names: Sequence[str], dialect: str, stamps: dict[str, str] | None = None
) -> dict[str, tuple[int, int]]:
    """`lock_tracking` of several projections in one round trip (locked in name order); with
    `stamps`, also fills it with each one's `updated_at` (which `save_trackings` returns)."""
    names = sorted(names)
    lock = " FOR UPDATE" if dialect == "postgres" else ""
    marks = ", ".join(["%s"] * len(names))
    select = (
        f"SELECT name, position, policy_version, updated_at FROM {TRACKING} WHERE name IN ({marks}) "
        "ORDER BY name"
    )
    select += lock
    rows = tx.execute(select, names).fetchall()
    if len(rows) < len(names):  # first run: create the missing rows, then lock them all
        have = {r["name"] for r in rows}
        tx.executemany(
            f"INSERT INTO {TRACKING} (name, position, policy_version, updated_at) VALUES (%s, 0, 0, %s) "
            "ON CONFLICT (name) DO NOTHING",
            [(n, _now()) for n in names if n not in have],
        )
        rows = tx.execute(select, names).fetchall()
    if stamps is not None:
        stamps.update({r["name"]: str(r["updated_at"]) for r in rows})
    return {r["name"]: (int(r["position"]), int(r["policy_version"])) for r in rows}


def save_trackings(tx: Tx, positions: dict[str, tuple[int, int]]) -> str:
    """`save_tracking` of several projections: {name: (position, policy version)}; returns the
    `updated_at` written, which tells whether anyone else moved them since (`Projector.step`)."""
    now = _now()
    tx.executemany(
        f"UPDATE {TRACKING} SET position = %s, policy_version = %s, updated_at = %s WHERE name = %s",
        [(pos, pver, now, name) for name, (pos, pver) in sorted(positions.items())],
    )
    return now


def save_tracking(tx: Tx, name: str, position: int, policy_version: int) -> None:
    save_trackings(tx, {name: (position, policy_version)})


def read_tracking(db: Database) -> dict[str, dict[str, Any]]:
    return {
        r["name"]: r for r in db.query(f"SELECT name, position, policy_version, updated_at FROM {TRACKING}")
    }


# ------------------------------------------------------------ corrections
#
# A rebuild that finds published values the live tables got wrong writes their keys here, in
# its swap transaction, then appends a `ReadModel.Rebuilt` marker to the ledger. The runner,
# reaching the marker, publishes those keys' current values at the marker's position (strictly
# newer than anything published before the swap) and deletes the rows, in its own batch.


def add_corrections(tx: Tx, name: str, keys: Iterable[Key]) -> None:
    rows = [(name, orjson.dumps(list(k)).decode()) for k in keys]
    if rows:
        tx.executemany(
            f"INSERT INTO {CORRECTIONS} (name, row_key) VALUES (%s, %s) "
            "ON CONFLICT (name, row_key) DO NOTHING",
            rows,
        )


def take_corrections(tx: Tx, name: str) -> list[Key]:
    """The keys waiting for `name`'s marker, removed in the caller's transaction."""
    rows = tx.execute(
        f"SELECT row_key FROM {CORRECTIONS} WHERE name = %s ORDER BY row_key", (name,)
    ).fetchall()
    tx.execute(f"DELETE FROM {CORRECTIONS} WHERE name = %s", (name,))
    return [tuple(orjson.loads(r["row_key"])) for r in rows]


def _now() -> str:
    return datetime.now(UTC).isoformat()
