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

import builtins
import hashlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import orjson

from adapters.batching import GroupCommit
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
class Claim:
    """Messages one worker applies; see `Inbox.claim`."""

    rows: list[dict[str, Any]]
    tx: Tx | None = None
    held: list[dict[str, Any]] = field(default_factory=list)  # id, source, kind, body


@dataclass(frozen=True)
class Finished:
    """A message's outcome, as `Inbox.finish` records it."""

    inbox_id: int
    status: Status
    reason: str | None = None
    outcome: dict[str, Any] | None = None
    uses: dict[str, int] = field(default_factory=dict)  # mapping key -> version (0: unmapped)
    wait_for: WaitKey | None = None


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


_INSERT = (
    "INSERT INTO inbox (source, external_id, kind, body, headers, received_at, status, reason, "
    "fingerprint, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (source, external_id) DO NOTHING"
)


@dataclass(frozen=True)
class Delivery:
    """One delivery to store (`Inbox.store_many`): what `Inbox.store` takes."""

    source: str
    external_id: str
    kind: str
    body: bytes
    headers: dict[str, str]
    print_: str
    status: Status = Status.RECEIVED
    reason: str | None = None
    on_new: Callable[[Tx, int], None] | None = None  # runs in the transaction that stores it

    @property
    def key(self) -> tuple[str, str]:
        return (self.source, self.external_id)


class Inbox:
    def __init__(self, db: Database) -> None:
        self.db = db
        # Concurrent requests' deliveries, stored a batch per transaction (`store_many`).
        self.stores: GroupCommit[Delivery, Stored] = GroupCommit(self.store_many)

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
        delivery = Delivery(source, external_id, kind, body, headers, print_, status, reason, on_new)
        return self.store_many([delivery])[0]

    def store_many(self, deliveries: Sequence[Delivery]) -> list[Stored]:
        """`store` of several deliveries in one transaction, one commit (`Inbox.stores` gathers
        concurrent requests' deliveries into such batches). Each answer is what `store` answers
        it; a delivery id twice in one batch is stored once, the second counted as a repeat.
        The ids follow the batch's order, so messages are applied in the order they arrived, and
        each new delivery's `on_new` runs in that order, in the transaction."""
        now = utcnow()
        first: dict[tuple[str, str], Delivery] = {}
        for d in deliveries:
            first.setdefault(d.key, d)
        rows = [
            (
                d.source,
                d.external_id,
                d.kind,
                d.body,
                orjson.dumps(d.headers).decode(),
                now,
                str(d.status),
                d.reason,
                d.print_,
                now,
            )
            for d in first.values()
        ]
        with self.db.transaction() as tx:
            if tx.dialect == "postgres":  # one statement, binary arrays, ids in the batch's order
                inserted = tx.execute(
                    "INSERT INTO inbox (source, external_id, kind, body, headers, received_at, status, "
                    "reason, fingerprint, updated_at) SELECT a, b, c, d, e, f, g, h, i, j FROM unnest("
                    "%b::text[], %b::text[], %b::text[], %b::bytea[], %b::text[], %b::text[], %b::text[], "
                    "%b::text[], %b::text[], %b::text[]) WITH ORDINALITY AS u(a, b, c, d, e, f, g, h, i, j, n) "
                    "ORDER BY n ON CONFLICT (source, external_id) DO NOTHING RETURNING id, source, external_id",
                    [list(col) for col in zip(*rows, strict=True)],
                ).fetchall()
                created = {(r["source"], r["external_id"]): int(r["id"]) for r in inserted}
            else:
                created = {}
                for row in rows:
                    found = tx.execute(_INSERT + " RETURNING id", row).fetchone()
                    if found is not None:
                        created[(row[0], row[1])] = int(found["id"])
            for key, d in first.items():
                if key in created and d.on_new is not None:
                    d.on_new(tx, created[key])
            new = [d.key in created and first[d.key] is d for d in deliveries]
            repeats: dict[tuple[str, str], int] = {}
            for d, is_new in zip(deliveries, new, strict=True):
                if not is_new:
                    repeats[d.key] = repeats.get(d.key, 0) + 1
            if repeats:
                tx.executemany(
                    "UPDATE inbox SET deliveries = deliveries + %s WHERE source = %s AND external_id = %s",
                    [(n, src, ext) for (src, ext), n in sorted(repeats.items())],
                )
            stored: dict[tuple[str, str], dict[str, Any]] = {}
            keys = list(first)
            for i in range(0, len(keys), 200):
                chunk = keys[i : i + 200]
                where = " OR ".join(["(source = %s AND external_id = %s)"] * len(chunk))
                for r in tx.execute(
                    f"SELECT {COLUMNS} FROM inbox WHERE {where}", [v for k in chunk for v in k]
                ).fetchall():
                    stored[(r["source"], r["external_id"])] = _decode(r)
        out = []
        for d, is_new in zip(deliveries, new, strict=True):
            INBOX_MESSAGES.labels(d.source, str(d.status) if is_new else "duplicate").inc()
            out.append(Stored(stored[d.key], is_new))
        return out

    # ------------------------------------------------------------- reading

    def get(self, inbox_id: int) -> dict[str, Any] | None:
        row = self.db.query_one(f"SELECT {COLUMNS} FROM inbox WHERE id = %s", (inbox_id,))
        return None if row is None else _decode(row)

    def body(self, inbox_id: int) -> bytes:
        row = self.db.query_one("SELECT body FROM inbox WHERE id = %s", (inbox_id,))
        return b"" if row is None else bytes(row["body"])

    def list(
        self, status: Status | None = None, source: str | None = None, after: int = 0, limit: int = 100
    ) -> builtins.list[dict[str, Any]]:
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

    def newest(self, limit: int = 20, status: Status | None = None) -> builtins.list[dict[str, Any]]:
        """The newest messages (of one status), newest first: an indexed read at any volume."""
        where, params = ("WHERE status = %s ", [str(status)]) if status else ("", [])
        rows = self.db.query(
            f"SELECT {COLUMNS} FROM inbox {where}ORDER BY id DESC LIMIT %s", (*params, limit)
        )
        return [_decode(r) for r in rows]

    @contextmanager
    def claim(self, limit: int = 200, ids: Sequence[int] | None = None) -> Iterator[Claim]:
        """Received messages (oldest first, with bodies) that no other worker is applying.

        PostgreSQL: one transaction holds the rows (`FOR UPDATE SKIP LOCKED`) until the block
        ends, so two workers never apply the same row; the outcomes are recorded in `claim.tx`.
        `claim.held` lists the older received messages another worker holds, so that this one
        can keep back the later messages of their orders. SQLite has a single writer: the rows
        are read, and the outcomes recorded in transactions of their own (`claim.tx` is None).
        `ids` restricts the claim to those messages.
        """
        only = "" if ids is None else f" AND id IN ({', '.join(['%s'] * len(ids))})"
        params: list[Any] = [] if ids is None else [int(i) for i in ids]
        if ids is not None and not ids:
            yield Claim([], None, [])
            return
        if self.db.dialect != "postgres":
            yield Claim(self._rows(f"WHERE status = 'received'{only} ORDER BY id LIMIT %s", [*params, limit]))
            return
        with self.db.transaction() as tx:
            rows = tx.execute(
                f"SELECT {COLUMNS}, body FROM inbox WHERE status = 'received'{only} ORDER BY id LIMIT %s "
                "FOR UPDATE SKIP LOCKED",
                (*params, limit),
            ).fetchall()
            held: list[dict[str, Any]] = []
            if rows:
                held = tx.execute(
                    "SELECT id, source, kind, body FROM inbox WHERE status = 'received' AND id < %s "
                    "AND NOT (id = ANY(%s)) ORDER BY id LIMIT 2000",
                    (max(int(r["id"]) for r in rows), [int(r["id"]) for r in rows]),
                ).fetchall()
            for r in (*rows, *held):
                r["body"] = bytes(r["body"])
            yield Claim([_decode(r) for r in rows], tx, held)

    def _rows(self, where: str, params: Sequence[Any]) -> builtins.list[dict[str, Any]]:
        rows = self.db.query(f"SELECT {COLUMNS}, body FROM inbox {where}", params)
        for r in rows:
            r["body"] = bytes(r["body"])
        return [_decode(r) for r in rows]

    def due(self, limit: int = 200) -> builtins.list[dict[str, Any]]:
        """Messages to apply, oldest first, with their bodies."""
        return self._rows("WHERE status = 'received' ORDER BY id LIMIT %s", (limit,))

    def missing(self, inbox_id: int) -> Sequence[str]:
        """The mapping keys the message's translation asked for and did not find (version 0)."""
        rows = self.db.query(
            "SELECT mapping FROM inbox_uses WHERE inbox_id = %s AND version = 0 ORDER BY mapping", (inbox_id,)
        )
        return [r["mapping"] for r in rows]

    def using(self, mapping: str) -> builtins.list[dict[str, Any]]:
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

    def finish(self, tx: Tx, done: Sequence[Finished]) -> None:
        """Records messages' outcomes (inside the caller's transaction), a few statements for all."""
        if not done:
            return
        now = utcnow()
        tx.executemany(
            "UPDATE inbox SET status = %s, reason = %s, outcome = %s, wait_for = %s, mapping_version = %s, "
            "attempts = attempts + 1, updated_at = %s WHERE id = %s",
            [
                (
                    str(d.status),
                    d.reason,
                    None if d.outcome is None else orjson.dumps(d.outcome).decode(),
                    None if d.wait_for is None else str(d.wait_for),
                    max(d.uses.values(), default=0),
                    now,
                    d.inbox_id,
                )
                for d in done
            ],
        )
        used = [d for d in done if d.uses]
        for i in range(0, len(used), 500):
            chunk = [d.inbox_id for d in used[i : i + 500]]
            tx.execute(f"DELETE FROM inbox_uses WHERE inbox_id IN ({', '.join(['%s'] * len(chunk))})", chunk)
        tx.executemany(
            "INSERT INTO inbox_uses (inbox_id, mapping, version) VALUES (%s, %s, %s)",
            [(d.inbox_id, k, v) for d in used for k, v in sorted(d.uses.items())],
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

    def requeue_using(self, mapping: str) -> builtins.list[int]:
        """Requeues the parked messages that asked for a mapping key."""
        ids = [int(r["id"]) for r in self.using(mapping) if r["status"] == Status.PARKED]
        self.requeue(ids, (Status.PARKED,))
        return ids

    def wake(self, tx: Tx, keys: Sequence[WaitKey]) -> int:
        """Requeues the messages waiting for any of `keys` (inside the caller's transaction)."""
        texts = sorted({str(k) for k in keys})
        n = 0
        for i in range(0, len(texts), 500):
            chunk = texts[i : i + 500]
            n += tx.execute(
                "UPDATE inbox SET status = 'received', updated_at = %s WHERE status = 'waiting' AND "
                f"wait_for IN ({', '.join(['%s'] * len(chunk))})",
                (utcnow(), *chunk),
            ).rowcount
        return n

    def refresh_metrics(self) -> None:
        rows = self.db.query(
            "SELECT source, count(*) AS n FROM inbox WHERE status = 'parked' GROUP BY source"
        )
        parked = {r["source"]: int(r["n"]) for r in rows}
        for source in ("shopify", "pos", "erp"):
            PARKED_MESSAGES.labels(source).set(parked.get(source, 0))
