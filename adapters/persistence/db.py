"""One small SQL gateway for the ledger's own tables (read models, outbox, keys, inbox, ...).

Both dialects take `%s` placeholders (rewritten to `?` for SQLite) and return rows as dicts.
Portable DDL: use `db.serial` for an auto-increment primary key and `db.blob` for bytes;
keep times as ISO-8601 UTC text or epoch numbers. `INSERT ... ON CONFLICT ... DO UPDATE`
and `RETURNING` work on both.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import psycopg
from eventsourcing.persistence import InterfaceError as EsInterfaceError
from eventsourcing.persistence import OperationalError as EsOperationalError

from adapters.persistence.urls import is_postgres, pg_conninfo, pg_parts, sqlite_path

# The database cannot be reached or cannot take the statement now (connection lost, pool timeout
# — psycopg_pool.PoolTimeout is a psycopg.OperationalError —, lock timeout, SQLite busy or locked):
# the API answers these 503 `storage-unavailable` with Retry-After, never 500.
OUTAGE_ERRORS: tuple[type[Exception], ...] = (
    psycopg.OperationalError,
    psycopg.InterfaceError,
    EsOperationalError,
    EsInterfaceError,
    sqlite3.OperationalError,
)


def is_outage(e: BaseException) -> bool:
    """True for an error that says the database is out of reach, not that the statement is wrong."""
    return isinstance(e, OUTAGE_ERRORS)


def like_prefix(text: str) -> str:
    """A LIKE pattern, for `LIKE %s ESCAPE '\\'` on both databases, matching what starts with `text`."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


class Tx:
    """A cursor inside one transaction."""

    def __init__(self, cursor: Any, dialect: str) -> None:
        self._cur = cursor
        self.dialect = dialect
        self._sqlite = dialect == "sqlite"

    def _sql(self, sql: str) -> str:
        return sql.replace("%s", "?") if self._sqlite else sql

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Tx:
        self._cur.execute(self._sql(sql), tuple(params))
        return self

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> Tx:
        if rows:
            self._cur.executemany(self._sql(sql), [tuple(r) for r in rows])
        return self

    def fetchall(self) -> list[dict[str, Any]]:
        rows = self._cur.fetchall()
        return [dict(r) for r in rows]

    def fetchone(self) -> dict[str, Any] | None:
        row = self._cur.fetchone()
        return None if row is None else dict(row)

    @property
    def rowcount(self) -> int:
        return int(self._cur.rowcount)


class Database:
    dialect: Literal["postgres", "sqlite"]

    def __init__(self, url: str, pool_size: int = 8) -> None:
        self.url = url
        if is_postgres(url):
            from psycopg.rows import dict_row
            from psycopg_pool import ConnectionPool

            from adapters.persistence import reconnect

            reconnect.install()

            self.dialect = "postgres"
            schema = pg_parts(url)["schema"]
            kwargs: dict[str, Any] = {"row_factory": dict_row, "autocommit": False}
            if schema:
                kwargs["options"] = f"-c search_path={schema}"
            self._pool = ConnectionPool(
                pg_conninfo(url),
                min_size=1,
                max_size=pool_size,
                kwargs=kwargs,
                open=False,
                timeout=10,
                check=ConnectionPool.check_connection,
            )
            self._pool.open(wait=False)
            self.schema = schema or "public"
        else:
            self.dialect = "sqlite"
            self.path = sqlite_path(url)
            self._local = threading.local()
            self._all: list[sqlite3.Connection] = []
            self._all_lock = threading.Lock()

    # ------------------------------------------------------------ DDL words

    @property
    def serial(self) -> str:
        return "BIGSERIAL PRIMARY KEY" if self.dialect == "postgres" else "INTEGER PRIMARY KEY AUTOINCREMENT"

    @property
    def blob(self) -> str:
        return "BYTEA" if self.dialect == "postgres" else "BLOB"

    # --------------------------------------------------------- connections

    def _sqlite_conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA busy_timeout=30000")
            conn.execute("PRAGMA synchronous=FULL")
            self._local.conn = conn
            with self._all_lock:
                self._all.append(conn)
        return conn

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        """One transaction: committed when the block ends, rolled back on an exception."""
        if self.dialect == "postgres":
            with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
                yield Tx(cur, "postgres")
        else:
            lite = self._sqlite_conn()
            lite_cur = lite.cursor()
            lite_cur.execute("BEGIN IMMEDIATE")
            try:
                yield Tx(lite_cur, "sqlite")
            except BaseException:
                lite.execute("ROLLBACK")
                raise
            else:
                lite.execute("COMMIT")
            finally:
                lite_cur.close()

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        if self.dialect == "postgres":
            with self._pool.connection() as conn, conn.cursor() as cur:
                cur.execute(sql, tuple(params))
                rows = cur.fetchall()
                conn.rollback()
                return [dict(r) for r in rows]
        lite_cur = self._sqlite_conn().cursor()
        try:
            lite_cur.execute(sql.replace("%s", "?"), tuple(params))
            return [dict(r) for r in lite_cur.fetchall()]
        finally:
            lite_cur.close()

    def query_one(self, sql: str, params: Sequence[Any] = ()) -> dict[str, Any] | None:
        rows = self.query(sql, params)
        return rows[0] if rows else None

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        with self.transaction() as tx:
            return tx.execute(sql, params).rowcount

    def script(self, statements: Sequence[str]) -> None:
        """Runs DDL statements (CREATE ... IF NOT EXISTS) in one transaction."""
        with self.transaction() as tx:
            for s in statements:
                tx.execute(s)

    def columns(self, table: str) -> set[str]:
        """The columns `table` has (none: no such table), in the current schema."""
        if self.dialect == "postgres":
            rows = self.query(
                "SELECT column_name AS name FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND table_name = %s",
                (table,),
            )
        else:
            rows = self.query("SELECT name FROM pragma_table_info(%s)", (table,))
        return {r["name"] for r in rows}

    def ping(self) -> bool:
        try:
            self.query("SELECT 1 AS ok")
            return True
        except Exception:
            return False

    def close(self) -> None:
        if self.dialect == "postgres":
            self._pool.close()
        else:
            with self._all_lock:
                for conn in self._all:
                    try:
                        conn.close()
                    except sqlite3.Error:
                        pass
                self._all.clear()
