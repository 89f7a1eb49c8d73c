"""The transactional outbox: messages for NATS, written in the same transaction as the change.

A row is written by whoever changes a read model (or opens an exception) inside that
change's transaction; the relay (`adapters/nats.py`) publishes rows in `id` order with
their `msg_id` as `Nats-Msg-Id` and deletes a row only after JetStream acknowledged it.
Nothing is lost while NATS is down or not configured: rows simply wait.

Wake-ups: the first `enqueue` of a transaction also issues `pg_notify('ledger_outbox',
<schema>)` in it, so PostgreSQL tells every listening relay, in any process, when (and only
if) that transaction commits. `OutboxQueue.watch` is the relay's side (LISTEN). A wake-up
is only a hint: the relay still reads the table, and polls it as a fallback (SQLite has no
NOTIFY; there the projection runner wakes an in-process relay directly).
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from adapters.persistence.db import Database, Tx
from adapters.persistence.urls import pg_conninfo

TABLE = "ledger_outbox"
CHANNEL = "ledger_outbox"  # PostgreSQL NOTIFY channel; the payload is the schema, channels are database-wide

log = logging.getLogger("ledger.outbox")

# Messages enqueued per open transaction: the first one announces the transaction.
_counts: weakref.WeakKeyDictionary[Tx, int] = weakref.WeakKeyDictionary()
_counts_lock = threading.Lock()

_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def enqueue(tx: Tx, subject: str, payload: dict[str, Any], msg_id: str) -> None:
    """Adds one message in the caller's transaction. The payload must carry `position`.

    A second row with the same `msg_id` is ignored, so re-enqueueing is harmless.
    """
    enqueue_many(tx, [(subject, payload, msg_id)])


def enqueue_many(tx: Tx, messages: Sequence[tuple[str, dict[str, Any], str]]) -> None:
    """Adds `(subject, payload, msg_id)` messages in the caller's transaction, in this order, in one
    round trip (ids follow the order, so does publishing)."""
    if not messages:
        return
    rows = []
    for subject, payload, msg_id in messages:
        if "position" not in payload:
            raise ValueError("an outbox payload must carry its ledger position")
        if not subject.startswith("ledger.") or any(not t for t in subject.split(".")):
            raise ValueError(f"not a ledger subject: {subject!r}")
        rows.append((subject, orjson.dumps(payload).decode(), msg_id))
    if tx.dialect == "postgres":  # one statement; ids follow the array order. Binary arrays (`%b`):
        # psycopg dumps a text array with a regular expression per element.
        tx.execute(
            f"INSERT INTO {TABLE} (subject, payload, msg_id) SELECT s, p, m FROM "
            "unnest(%b::text[], %b::text[], %b::text[]) WITH ORDINALITY AS u(s, p, m, n) ORDER BY n "
            "ON CONFLICT (msg_id) DO NOTHING",
            [list(col) for col in zip(*rows, strict=True)],
        )
    else:
        tx.executemany(
            f"INSERT INTO {TABLE} (subject, payload, msg_id) VALUES (%s, %s, %s) ON CONFLICT (msg_id) DO NOTHING",
            rows,
        )
    with _counts_lock:
        n = _counts.get(tx, 0)
        _counts[tx] = n + len(rows)
    if n == 0:
        announce(tx)


def announce(tx: Tx) -> None:
    """Notifies listening relays when `tx` commits (PostgreSQL; nothing on SQLite, nothing on rollback)."""
    if tx.dialect == "postgres":
        tx.execute("SELECT pg_notify(%s, current_schema())", (CHANNEL,))


def enqueued(tx: Tx) -> int:
    """How many messages `tx` has enqueued so far."""
    with _counts_lock:
        return _counts.get(tx, 0)


def pending(db: Database, limit: int) -> list[dict[str, Any]]:
    """The oldest rows waiting, in publishing order."""
    return db.query(f"SELECT id, subject, payload, msg_id FROM {TABLE} ORDER BY id LIMIT %s", (limit,))


def remove(db: Database, ids: list[int]) -> None:
    """Deletes rows that NATS acknowledged, in one statement (chunks of 500 ids on SQLite)."""
    if not ids:
        return
    with db.transaction() as tx:
        if tx.dialect == "postgres":
            tx.execute(f"DELETE FROM {TABLE} WHERE id = ANY(%b::bigint[])", (list(ids),))
            return
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            tx.execute(f"DELETE FROM {TABLE} WHERE id IN ({', '.join(['%s'] * len(chunk))})", chunk)


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
        self.listening = False  # True while a `watch` has its LISTEN in place

    def pending(self, limit: int) -> list[dict[str, Any]]:
        return pending(self.db, limit)

    def remove(self, ids: list[int]) -> None:
        remove(self.db, ids)

    def depth(self) -> int:
        return depth(self.db)

    def watch(self, wake: Callable[[], None]) -> Callable[[], None]:
        """Calls `wake()` whenever a transaction that enqueued rows commits, in any process.

        PostgreSQL: a thread LISTENs on `CHANNEL` (its own connection, reconnecting after a
        loss, and waking once after each (re)connect, since rows may have come meanwhile).
        SQLite: nothing to listen to. Returns the function that stops watching.
        """
        if self.db.dialect != "postgres":
            return lambda: None
        stop = threading.Event()
        thread = threading.Thread(target=self._listen, args=(wake, stop), name="outbox-listen", daemon=True)
        thread.start()

        def unwatch() -> None:
            stop.set()
            thread.join(timeout=5)

        return unwatch

    def _listen(self, wake: Callable[[], None], stop: threading.Event) -> None:
        import psycopg
        from psycopg import sql

        schema = self.db.schema
        while not stop.is_set():
            try:
                with psycopg.connect(pg_conninfo(self.db.url), autocommit=True, connect_timeout=5) as conn:
                    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(CHANNEL)))
                    self.listening = True
                    wake()
                    while not stop.is_set():
                        if any(n.payload == schema for n in conn.notifies(timeout=0.5, stop_after=1)):
                            wake()
            except Exception:
                log.warning("outbox LISTEN connection lost; the relay polls meanwhile")
                stop.wait(2.0)
            finally:
                self.listening = False
