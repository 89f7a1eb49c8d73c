"""SQLite event store for the embedded default: the library's recorder plus the command log."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any
from uuid import UUID

import orjson
from eventsourcing.persistence import StoredEvent
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteCursor, SQLiteDatastore


class LedgerSQLiteRecorder(SQLiteApplicationRecorder):
    def __init__(self, datastore: SQLiteDatastore, events_table_name: str = "stored_events") -> None:
        self.commands_table = events_table_name.replace("_events", "") + "_commands"
        super().__init__(datastore, events_table_name)

    def construct_create_table_statements(self) -> list[str]:
        statements = super().construct_create_table_statements()
        statements.append(
            f"CREATE TABLE IF NOT EXISTS {self.commands_table} ("
            "key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, outcome BLOB NOT NULL, "
            "recorded_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')))"
        )
        return statements

    def _insert_events(
        self, c: SQLiteCursor, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        rows = kwargs.get("commands") or ()
        if rows:
            c.executemany(
                f"INSERT INTO {self.commands_table} (key, fingerprint, outcome) VALUES (?, ?, ?)",
                [(k, fp, orjson.dumps(outcome)) for k, fp, outcome in rows],
            )
        return super()._insert_events(c, stored_events, **kwargs)

    def lookup(
        self, keys: Sequence[str], ids: Sequence[UUID]
    ) -> tuple[dict[str, tuple[str, Any]], set[UUID]]:
        """`select_commands(keys)` and `existing_ids(ids)` together."""
        return (self.select_commands(keys) if keys else {}), (self.existing_ids(ids) if ids else set())

    def existing_ids(self, ids: Iterable[UUID]) -> set[UUID]:
        """Which of these streams exist."""
        ids = list(ids)
        out: set[UUID] = set()
        with self.datastore.transaction(commit=False) as c:
            for i in range(0, len(ids), 500):
                chunk = [x.hex for x in ids[i : i + 500]]
                c.execute(
                    f"SELECT originator_id FROM {self.events_table_name} "
                    f"WHERE originator_version = 1 AND originator_id IN ({','.join('?' * len(chunk))})",
                    chunk,
                )
                out.update(UUID(str(r["originator_id"])) for r in c.fetchall())
        return out

    def has_keys_starting(self, prefixes: Sequence[str]) -> bool:
        with self.datastore.transaction(commit=False) as c:
            for prefix in prefixes:
                c.execute(
                    f"SELECT 1 FROM {self.commands_table} WHERE substr(key, 1, ?) = ? LIMIT 1",
                    (len(prefix), prefix),
                )
                if c.fetchone() is not None:
                    return True
        return False

    def select_commands(self, keys: Iterable[str]) -> dict[str, tuple[str, Any]]:
        keys = list(keys)
        out: dict[str, tuple[str, Any]] = {}
        with self.datastore.transaction(commit=False) as c:
            for i in range(0, len(keys), 500):
                chunk = keys[i : i + 500]
                c.execute(
                    f"SELECT key, fingerprint, outcome FROM {self.commands_table} "
                    f"WHERE key IN ({','.join('?' * len(chunk))})",
                    chunk,
                )
                for r in c.fetchall():
                    out[r["key"]] = (r["fingerprint"], orjson.loads(r["outcome"]))
        return out

    def select_stream(
        self, originator_id: UUID, after_position: int | None, limit: int
    ) -> list[tuple[int, StoredEvent]]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                f"SELECT rowid, * FROM {self.events_table_name} WHERE originator_id = ? AND rowid > ? "
                "ORDER BY originator_version LIMIT ?",
                (originator_id.hex, after_position or 0, limit),
            )
            return [
                (
                    r["rowid"],
                    StoredEvent(
                        self.convert_originator_id(r["originator_id"]),
                        r["originator_version"],
                        r["topic"],
                        r["state"],
                    ),
                )
                for r in c.fetchall()
            ]

    def version_at_position(self, originator_id: UUID, position: int) -> int | None:
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                f"SELECT max(originator_version) AS v FROM {self.events_table_name} "
                "WHERE originator_id = ? AND rowid <= ?",
                (originator_id.hex, position),
            )
            row = c.fetchone()
            return None if row is None else row["v"]

    def max_position(self) -> int:
        return self.max_notification_id() or 0
