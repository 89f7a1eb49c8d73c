"""Versioned migrations of the ledger's own tables (yoyo-migrations, plain SQL per dialect).

`migrate(db)` applies what `migrations/postgres/` (or `migrations/sqlite/`) holds and the database
has not recorded yet, in file order, each file in its own transaction. `bootstrap()` calls it once
at start, before anything reads or writes, so every table exists before the first request.

Two processes starting together on an empty database never race: on PostgreSQL the whole step
runs under a session-level advisory lock (`pg_advisory_lock`, keyed by the schema, the key the
event store's own DDL takes too), released when the step ends or its connection dies; on SQLite
under an exclusive `flock` on a file beside the database. The one that waits finds the work done.

The eventsourcing library keeps creating its own tables (events, snapshots, the command log);
the read-model tables are declared with their views and created by `Projector.create_tables`,
under the same lock (`ddl_lock`).

To change a table: add the next numbered file to both directories (`NNNN.what-it-does.sql`,
with `-- depends:` on the one before), never edit an applied one.
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from yoyo import read_migrations
from yoyo.backends.core.postgresql import PostgresqlPsycopgBackend
from yoyo.backends.core.sqlite3 import SQLiteBackend
from yoyo.connections import parse_uri

from adapters.persistence.db import Database
from adapters.persistence.urls import lock_key, pg_conninfo, pg_parts, sqlite_path

log = logging.getLogger("ledger.migrate")

HERE = Path(__file__).parent / "migrations"
MIGRATION_TABLE = "_yoyo_migration"


class _PgBackend(PostgresqlPsycopgBackend):  # yoyo is untyped: its classes are Any
    """yoyo's psycopg 3 backend on the whole libpq conninfo (yoyo's own URI parser knows one host)."""

    def __init__(self, conninfo: str, schema: str) -> None:
        self._conninfo = conninfo
        self._schema = schema
        super().__init__(parse_uri("postgresql+psycopg:///"), MIGRATION_TABLE)

    def connect(self, dburi: Any) -> psycopg.Connection[Any]:
        self.schema = self._schema or None
        return psycopg.connect(self._conninfo, autocommit=True)

    def copy(self) -> _PgBackend:
        return _PgBackend(self._conninfo, self._schema)


@contextmanager
def ddl_lock(db: Database) -> Iterator[None]:
    """Holds the database's start-up DDL lock (PostgreSQL advisory lock, or a file lock for SQLite)."""
    if db.dialect == "postgres":
        with psycopg.connect(pg_conninfo(db.url), autocommit=True) as conn:
            conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (lock_key(pg_parts(db.url)["schema"]),))
            yield  # the lock ends with the session
        return
    path = sqlite_path(db.url)
    if path == ":memory:":
        yield
        return
    path = os.path.abspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".ddl-lock", "a+b") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def migrate(db: Database) -> list[str]:
    """Applies the migrations the database lacks; returns their ids (none when up to date)."""
    migrations = read_migrations(str(HERE / db.dialect))
    with ddl_lock(db):
        if db.dialect == "postgres":
            backend: Any = _PgBackend(pg_conninfo(db.url), pg_parts(db.url)["schema"])
        else:
            backend = SQLiteBackend(parse_uri("sqlite:///" + sqlite_path(db.url)), MIGRATION_TABLE)
        try:
            backend.init_database()
            todo = backend.to_apply(migrations)
            if todo:
                backend.apply_migrations(todo)
                log.info("database migrated: %s", ", ".join(m.id for m in todo))
            return [m.id for m in todo]
        finally:
            backend.connection.close()
