"""The inbox: every outside message, stored as received, once per delivery id.

A message is stored in the request that brings it (raw body, the headers that matter, source,
external id, received_at) and applied later by the inbox worker (`adapters/intake.py`).
Its status:

- `received`: stored, not applied yet;
- `applied`: translated and its commands recorded (`reason` lists any command the ledger refused);
- `parked`: it names a code no mapping knows; retried when that mapping is set;
- `waiting`: it needs something that has not arrived yet (a Shopify order, a voided POS sale);
- `duplicate`: a new delivery whose every command the ledger had already recorded;
- `rejected`: it can never apply (unsupported topic, refused by the ledger), with the reason.

A second delivery of the same delivery id stores nothing new: it counts the delivery and is
answered with the first message's status.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import orjson

from adapters.metrics import INBOX_MESSAGES, PARKED_MESSAGES
from adapters.persistence.db import Database, Tx
from adapters.translate import WaitKey


class Status(StrEnum):
    """A message's status (the module docstring says what each means); stored as its text."""

    RECEIVED = "received"
    APPLIED = "applied"
    PARKED = "parked"
    WAITING = "waiting"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"


COLUMNS = (
    "id, source, external_id, kind, headers, received_at, status, reason, fingerprint, deliveries, "
    "wait_for, outcome, mapping_version, attempts, updated_at"
)


def utcnow() -> str:
    return datetime.now(UTC).isoformat()


def fingerprint(payload: Any) -> str:
    """A hash of a parsed payload that ignores key order and whitespace."""
    return hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass(frozen=True)
class Stored:
    """The answer to storing a message: its row and whether this delivery was new."""

    row: dict[str, Any]
    created: bool


def _decode(row: dict[str, Any]) -> dict[str, Any]:
    for k in ("headers", "outcome"):
        if isinstance(row.get(k), str):
            row[k] = orjson.loads(row[k])
    return row


class Inbox:
    def __init__(self, db: Database) -> None:
        self.db = db

    def create_tables(self) -> None:
        self.db.script(
            [
                f"CREATE TABLE IF NOT EXISTS inbox (id {self.db.serial}, source TEXT NOT NULL, "
                f"external_id TEXT NOT NULL, kind TEXT NOT NULL, body {self.db.blob} NOT NULL, "
                "headers TEXT NOT NULL, received_at TEXT NOT NULL, status TEXT NOT NULL, reason TEXT, "
                "fingerprint TEXT NOT NULL, deliveries INTEGER NOT NULL DEFAULT 1, wait_for TEXT, "
                "outcome TEXT, mapping_version BIGINT NOT NULL DEFAULT 0, attempts INTEGER NOT NULL "
                "DEFAULT 0, "
                "updated_at TEXT NOT NULL, UNIQUE (source, external_id))",
                "CREATE INDEX IF NOT EXISTS inbox_status ON inbox (status, id)",
                "CREATE INDEX IF NOT EXISTS inbox_wait ON inbox (wait_for)",
                "CREATE TABLE IF NOT EXISTS inbox_uses (inbox_id BIGINT NOT NULL, mapping TEXT NOT NULL, "
                "version BIGINT NOT NULL, PRIMARY KEY (inbox_id, mapping))",
                "CREATE INDEX IF NOT EXISTS inbox_uses_mapping ON inbox_uses (mapping)",
            ]
        )

    # ------------------------------------------------------------- storing

    def store(
        self,
        source: str,
        external_id: str,
        kind: str,
        body: bytes,
        headers: dict[str, str],
        print_: str,
        status: Status = Status.RECEIVED,
        reason: str | None = None,
        on_new: Callable[[Tx, int], None] | None = None,
    ) -> Stored:
        """Stores a delivery once per (source, external_id). `on_new` runs in the same transaction."""
        now = utcnow()
        with self.db.transaction() as tx:
            row = tx.execute(
                "INSERT INTO inbox (source, external_id, kind, body, headers, received_at, status, reason, "
                "fingerprint, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (source, external_id) DO NOTHING RETURNING id",
                (
                    source,
                    external_id,
                    kind,
                    body,
                    orjson.dumps(headers).decode(),
                    now,
                    str(status),
                    reason,
                    print_,
                    now,
                ),
            ).fetchone()
            if row is not None:
                if on_new is not None:
                    on_new(tx, int(row["id"]))
                created = True
            else:
                tx.execute(
                    "UPDATE inbox SET deliveries = deliveries + 1 WHERE source = %s AND external_id = %s",
                    (source, external_id),
                )
                created = False
            stored = tx.execute(
                f"SELECT {COLUMNS} FROM inbox WHERE source = %s AND external_id = %s", (source, external_id)
            ).fetchone()
        INBOX_MESSAGES.labels(source, str(status) if created else "duplicate").inc()
        return Stored(_decode(stored), created)  # type: ignore[arg-type]

    # ------------------------------------------------------------- reading

    def get(self, inbox_id: int) -> dict[str, Any] | None:
        row = self.db.query_one(f"SELECT {COLUMNS} FROM inbox WHERE id = %s", (inbox_id,))
        return None if row is None else _decode(row)

    def body(self, inbox_id: int) -> bytes:
        row = self.db.query_one("SELECT body FROM inbox WHERE id = %s", (inbox_id,))
        return b"" if row is None else bytes(row["body"])

    def list(
        self, status: Status | None = None, source: str | None = None, after: int = 0, limit: int = 100
    ) -> list[dict[str, Any]]:
        sql = f"SELECT {COLUMNS} FROM inbox WHERE id > %s"
        params: list[Any] = [after]
        if status:
            sql += " AND status = %s"
            params.append(str(status))
        if source:
            sql += " AND source = %s"
            params.append(source)
        sql += " ORDER BY id LIMIT %s"
        params.append(limit)
        return [_decode(r) for r in self.db.query(sql, params)]

    def due(self, limit: int = 200) -> list[dict[str, Any]]:
        """Messages to apply, oldest first, with their bodies."""
        rows = self.db.query(
            f"SELECT {COLUMNS}, body FROM inbox WHERE status = 'received' ORDER BY id LIMIT %s", (limit,)
        )
        for r in rows:
            r["body"] = bytes(r["body"])
        return [_decode(r) for r in rows]

    def missing(self, inbox_id: int) -> list[str]:
        """The mapping keys the message's translation asked for and did not find (version 0)."""
        rows = self.db.query(
            "SELECT mapping FROM inbox_uses WHERE inbox_id = %s AND version = 0 ORDER BY mapping", (inbox_id,)
        )
        return [r["mapping"] for r in rows]

    def using(self, mapping: str) -> list[dict[str, Any]]:
        """Messages whose translation asked for this mapping key."""
        return [
            _decode(r)
            for r in self.db.query(
                f"SELECT {', '.join('i.' + c.strip() for c in COLUMNS.split(','))}, u.version AS "
                "used_version "
                "FROM inbox i JOIN inbox_uses u ON u.inbox_id = i.id WHERE u.mapping = %s ORDER BY i.id",
                (mapping,),
            )
        ]

    def counts(self) -> dict[tuple[str, str], int]:
        rows = self.db.query("SELECT source, status, count(*) AS n FROM inbox GROUP BY source, status")
        return {(r["source"], r["status"]): int(r["n"]) for r in rows}

    # ------------------------------------------------------------- outcomes

    def finish(
        self,
        tx: Tx,
        inbox_id: int,
        status: Status,
        reason: str | None = None,
        outcome: dict[str, Any] | None = None,
        uses: dict[str, int] | None = None,
        wait_for: WaitKey | None = None,
    ) -> None:
        """Records a message's outcome (inside the caller's transaction)."""
        tx.execute(
            "UPDATE inbox SET status = %s, reason = %s, outcome = %s, wait_for = %s, mapping_version = %s, "
            "attempts = attempts + 1, updated_at = %s WHERE id = %s",
            (
                str(status),
                reason,
                None if outcome is None else orjson.dumps(outcome).decode(),
                None if wait_for is None else str(wait_for),
                max((uses or {}).values(), default=0),
                utcnow(),
                inbox_id,
            ),
        )
        if uses:
            tx.execute("DELETE FROM inbox_uses WHERE inbox_id = %s", (inbox_id,))
            tx.executemany(
                "INSERT INTO inbox_uses (inbox_id, mapping, version) VALUES (%s, %s, %s)",
                [(inbox_id, k, v) for k, v in sorted(uses.items())],
            )

    def requeue(
        self, ids: Sequence[int], statuses: Sequence[Status] = (Status.PARKED, Status.WAITING)
    ) -> int:
        """Puts parked or waiting messages back in line; the number requeued."""
        if not ids:
            return 0
        n = 0
        with self.db.transaction() as tx:
            for i in ids:
                n += tx.execute(
                    f"UPDATE inbox SET status = 'received', updated_at = %s WHERE id = %s "
                    f"AND status IN ({', '.join(['%s'] * len(statuses))})",
                    (utcnow(), i, *map(str, statuses)),
                ).rowcount
        return n

    def requeue_using(self, mapping: str) -> list[int]:
        """Requeues the parked messages that asked for a mapping key."""
        ids = [int(r["id"]) for r in self.using(mapping) if r["status"] == Status.PARKED]
        self.requeue(ids, (Status.PARKED,))
        return ids

    def wake(self, tx: Tx, keys: Sequence[WaitKey]) -> int:
        """Requeues the messages waiting for any of `keys` (inside the caller's transaction)."""
        n = 0
        for key in keys:
            n += tx.execute(
                "UPDATE inbox SET status = 'received', updated_at = %s WHERE status = 'waiting' AND "
                "wait_for = %s",
                (utcnow(), str(key)),
            ).rowcount
        return n

    def refresh_metrics(self) -> None:
        parked: dict[str, int] = {}
        for (source, status), n in self.counts().items():
            if status == "parked":
                parked[source] = n
        for source in ("shopify", "pos", "erp"):
            PARKED_MESSAGES.labels(source).set(parked.get(source, 0))
