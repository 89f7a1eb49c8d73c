"""The transactional outbox: messages for NATS, written in the same transaction as the change.

A row is written by whoever changes a read model (or opens an exception) inside that
change's transaction; the relay (`adapters/nats.py`) publishes rows in `id` order with
their `msg_id` as `Nats-Msg-Id` and deletes a row only after JetStream acknowledged it.
Nothing is lost while NATS is down or not configured: rows simply wait.
"""

from __future__ import annotations

from typing import Any

import orjson

from adapters.persistence.db import Database, Tx

TABLE = "ledger_outbox"

_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def create_tables(db: Database) -> None:
    db.script(
        [
            f"CREATE TABLE IF NOT EXISTS {TABLE} (id {db.serial}, subject TEXT NOT NULL, "
            "payload TEXT NOT NULL, msg_id TEXT NOT NULL UNIQUE)",
        ]
    )


def enqueue(tx: Tx, subject: str, payload: dict[str, Any], msg_id: str) -> None:
    """Adds one message in the caller's transaction. The payload must carry `position`.

    A second row with the same `msg_id` is ignored, so re-enqueueing is harmless.
    """
    if "position" not in payload:
        raise ValueError("an outbox payload must carry its ledger position")
    if not subject.startswith("ledger.") or any(not t for t in subject.split(".")):
        raise ValueError(f"not a ledger subject: {subject!r}")
    tx.execute(
        f"INSERT INTO {TABLE} (subject, payload, msg_id) VALUES (%s, %s, %s) ON CONFLICT (msg_id) DO NOTHING",
        (subject, orjson.dumps(payload).decode(), msg_id),
    )


def pending(db: Database, limit: int) -> list[dict[str, Any]]:
    """The oldest rows waiting, in publishing order."""
    return db.query(f"SELECT id, subject, payload, msg_id FROM {TABLE} ORDER BY id LIMIT %s", (limit,))


def remove(db: Database, ids: list[int]) -> None:
    """Deletes rows that NATS acknowledged."""
    if not ids:
        return
    with db.transaction() as tx:
        tx.executemany(f"DELETE FROM {TABLE} WHERE id = %s", [(i,) for i in ids])


def depth(db: Database) -> int:
    row = db.query_one(f"SELECT COUNT(*) AS n FROM {TABLE}")
    return int(row["n"]) if row else 0


def subject_token(s: str) -> str:
    """Encodes any SKU, order id or channel as one valid NATS subject token.

    ASCII letters, digits, `-` and `_` pass through unchanged. Every other character is
    written as its UTF-8 bytes, each as `~` followed by two upper-case hex digits
    (`.` -> `~2E`, `*` -> `~2A`, `>` -> `~3E`, space -> `~20`, `~` -> `~7E`, `é` -> `~C3~A9`).
    The mapping is deterministic and reversible (`token_value`), and the result never holds
    `.`, `*`, `>` or whitespace, so it is always exactly one token. The empty string is
    refused: identifiers are 1 to 128 characters.
    """
    if not s:
        raise ValueError("an identifier is never empty")
    out: list[str] = []
    for ch in s:
        if ch in _SAFE:
            out.append(ch)
        else:
            out.extend(f"~{b:02X}" for b in ch.encode("utf-8", "surrogatepass"))
    return "".join(out)


def token_value(token: str) -> str:
    """Inverse of `subject_token`."""
    raw = bytearray()
    i = 0
    while i < len(token):
        ch = token[i]
        if ch == "~":
            raw.append(int(token[i + 1 : i + 3], 16))
            i += 3
        else:
            raw.extend(ch.encode())
            i += 1
    return raw.decode("utf-8", "surrogatepass")


class OutboxQueue:
    """The outbox table as the relay sees it (`adapters.nats.Outbox`)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def pending(self, limit: int) -> list[dict[str, Any]]:
        return pending(self.db, limit)

    def remove(self, ids: list[int]) -> None:
        remove(self.db, ids)

    def depth(self) -> int:
        return depth(self.db)
