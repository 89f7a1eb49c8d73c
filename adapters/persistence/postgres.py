"""PostgreSQL event store for the ledger: the library's recorder plus the command log.

The command log (each idempotent command's first outcome) is written by the `_insert_events`
hook, so it commits in the same transaction as the command's events.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any
from uuid import UUID

import orjson
from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier


class LedgerPostgresRecorder(PostgresApplicationRecorder):
    def __init__(self, datastore: PostgresDatastore, *, events_table_name: str = "stored_events") -> None:
        super().__init__(datastore, events_table_name=events_table_name)
        self.commands_table = events_table_name.replace("_events", "") + "_commands"
        schema = Identifier(self.datastore.schema)
        table = Identifier(self.commands_table)
        events = Identifier(self.events_table_name)
        self.sql_create_statements.append(
            SQL(
                "CREATE TABLE IF NOT EXISTS {schema}.{table} ("
                "key text PRIMARY KEY, fingerprint text NOT NULL, outcome bytea NOT NULL, "
                "recorded_at timestamptz NOT NULL DEFAULT now())"
            ).format(schema=schema, table=table)
        )
        self._insert_commands = SQL(
            "INSERT INTO {schema}.{table} (key, fingerprint, outcome) "
            "SELECT * FROM unnest(%s::text[], %s::text[], %s::bytea[])"
        ).format(schema=schema, table=table)
        self._select_commands = SQL(
            "SELECT key, fingerprint, outcome FROM {schema}.{table} WHERE key = ANY(%s)"
        ).format(schema=schema, table=table)
        self._select_stream = SQL(
            "SELECT notification_id, originator_id, originator_version, topic, state FROM {schema}.{events} "
            "WHERE originator_id = %s AND notification_id > %s ORDER BY originator_version LIMIT %s"
        ).format(schema=schema, events=events)
        # Four plain arrays instead of one array of the library's composite type: psycopg dumps
        # arrays of uuid/bigint/text/bytea in C, the composite in Python (the hottest write cost).
        self._insert_arrays = SQL(
            "INSERT INTO {schema}.{events} (originator_id, originator_version, topic, state) "
            "SELECT * FROM unnest(%s::uuid[], %s::bigint[], %s::text[], %s::bytea[]) "
            "RETURNING notification_id"
        ).format(schema=schema, events=events)
        # Command rows and events in one statement, after the table lock (so command-key
        # conflicts between processes are met under the lock too, one writer at a time).
        self._insert_both = SQL(
            "WITH c AS (INSERT INTO {schema}.{table} (key, fingerprint, outcome) "
            "SELECT * FROM unnest(%s::text[], %s::text[], %s::bytea[])) "
            "INSERT INTO {schema}.{events} (originator_id, originator_version, topic, state) "
            "SELECT * FROM unnest(%s::uuid[], %s::bigint[], %s::text[], %s::bytea[]) "
            "RETURNING notification_id"
        ).format(schema=schema, table=table, events=events)
        # One round trip before deciding a batch: which keys are recorded, which streams exist.
        self._lookup = SQL(
            "SELECT key, fingerprint, outcome, NULL::uuid AS id FROM {schema}.{table} WHERE key = ANY(%s) "
            "UNION ALL SELECT NULL, NULL, NULL, originator_id FROM {schema}.{events} "
            "WHERE originator_id = ANY(%s) AND originator_version = 1"
        ).format(schema=schema, table=table, events=events)
        if not self.datastore.lock_timeout:
            # `SET LOCAL lock_timeout = '0s'` is the default already: one statement less per save.
            self.lock_table_statements = [
                q for q in self.lock_table_statements if "lock_timeout" not in q.as_string(None)
            ]
        self._existing = SQL(
            "SELECT DISTINCT originator_id FROM {schema}.{events} "
            "WHERE originator_id = ANY(%s) AND originator_version = 1"
        ).format(schema=schema, events=events)
        self._version_at = SQL(
            "SELECT max(originator_version) AS v FROM {schema}.{events} "
            "WHERE originator_id = %s AND notification_id <= %s"
        ).format(schema=schema, events=events)

    def _create_table(self, curs: Cursor[DictRow]) -> None:
        """The library's DDL, one process at a time: two workers starting together would both run
        `CREATE OR REPLACE FUNCTION ...` and one would fail with "tuple concurrently updated"."""
        curs.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"ledger-ddl:{self.datastore.schema}",))
        super()._create_table(curs)

    def _insert_events(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> None:
        rows = kwargs.get("commands") or ()
        if rows and not stored_events:  # with events, they go in with the events' statement
            curs.execute(
                self._insert_commands,
                ([r[0] for r in rows], [r[1] for r in rows], [orjson.dumps(r[2]) for r in rows]),
                prepare=True,
            )

    def _insert_stored_events(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> None:
        """The library's insert (table lock, NOTIFY, one INSERT returning ids), with plain arrays."""
        self._lock_table(curs)
        self._notify_channel(curs)
        events = (
            [e.originator_id for e in stored_events],
            [e.originator_version for e in stored_events],
            [e.topic for e in stored_events],
            [e.state for e in stored_events],
        )
        rows = kwargs.get("commands") or ()
        if rows:
            commands = ([r[0] for r in rows], [r[1] for r in rows], [orjson.dumps(r[2]) for r in rows])
            curs.execute(self._insert_both, (*commands, *events), prepare=True)
        else:
            curs.execute(self._insert_arrays, events, prepare=True)

    def lookup(
        self, keys: Sequence[str], ids: Sequence[UUID]
    ) -> tuple[dict[str, tuple[str, Any]], set[UUID]]:
        """`select_commands(keys)` and `existing_ids(ids)` in one round trip."""
        if not keys and not ids:
            return {}, set()
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._lookup, (list(keys), list(ids)), prepare=True)
            known: dict[str, tuple[str, Any]] = {}
            existing: set[UUID] = set()
            for r in curs.fetchall():
                if r["id"] is None:
                    known[r["key"]] = (r["fingerprint"], orjson.loads(r["outcome"]))
                else:
                    existing.add(r["id"])
            return known, existing

    def existing_ids(self, ids: Iterable[UUID]) -> set[UUID]:
        """Which of these streams exist (one indexed query for a whole batch)."""
        ids = list(ids)
        if not ids:
            return set()
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._existing, (ids,), prepare=True)
            return {r["originator_id"] for r in curs.fetchall()}

    def select_commands(self, keys: Iterable[str]) -> dict[str, tuple[str, Any]]:
        keys = list(keys)
        if not keys:
            return {}
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._select_commands, (keys,), prepare=True)
            return {r["key"]: (r["fingerprint"], orjson.loads(r["outcome"])) for r in curs.fetchall()}

    def select_stream(
        self, originator_id: UUID, after_position: int | None, limit: int
    ) -> list[tuple[int, StoredEvent]]:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._select_stream, (originator_id, after_position or 0, limit), prepare=True)
            return [
                (
                    r["notification_id"],
                    StoredEvent(r["originator_id"], r["originator_version"], r["topic"], bytes(r["state"])),
                )
                for r in curs.fetchall()
            ]

    def version_at_position(self, originator_id: UUID, position: int) -> int | None:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._version_at, (originator_id, position), prepare=True)
            row = curs.fetchone()
            return None if row is None else row["v"]

    def max_position(self) -> int:
        return self.max_notification_id() or 0
