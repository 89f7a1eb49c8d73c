"""Exceptions: situations an operator must look at (drift, POS gaps, parked messages, stuck orders).

One row per `(kind, key)`, in `ledger_exceptions` (made by the migrations). Opening is idempotent:
an exception already open stays as it is.
Opening (and closing) also enqueues `ledger.exceptions.{kind}` on the outbox, in the
caller's transaction. Kinds in use: `drift`, `pos-sequence-gap`, `parked-message`,
`stuck-order` (captured but not posted to the ERP in time), `reservation-expired`, `shortfall`,
`negative-stock` (a SKU-location whose on hand went below zero), `held-order` (an order its
checks held, until released or cancelled), `late-order` (an order that named a hold after it
expired), `refund-failed`, `shopify-write`, `shopify-unresolved-sku`
(`KINDS`).

Each message carries a `position`, as every ledger message does, so that a consumer can drop one
not newer than the last it applied. Many exceptions have no ledger fact behind them (a parked
message, a POS gap, a count the outside system got wrong at an unchanged ledger position), so the
position is the exceptions' own clock (`ledger_exception_clock`): each change takes the next
number, and never one below the ledger position of the fact that raised it (`ledger_position`,
when there is one). The clock's row is locked until the change commits, so numbers grow in commit
order: a close always carries a greater position than the open it ends.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import orjson

from adapters import outbox
from adapters.persistence.db import Database, Tx, like_prefix

# Every kind the ledger opens (`GET /v1/exceptions?kind=` refuses any other with 422).
KINDS = frozenset(
    {
        "drift",
        "pos-sequence-gap",
        "parked-message",
        "stuck-order",
        "reservation-expired",
        "shortfall",
        "negative-stock",
        "held-order",
        "late-order",
        "refund-failed",
        "shopify-write",
        "shopify-unresolved-sku",
    }
)

# Kinds no later fact closes: an operator resolves them (`POST /v1/exceptions/{kind}/resolve`).
# Every other kind closes by itself once what raised it is resolved.
RESOLVED_BY_OPERATORS = frozenset({"late-order", "refund-failed"})

TABLE = "ledger_exceptions"
CLOCK = "ledger_exception_clock"


def _now() -> str:
    return datetime.now(UTC).isoformat()


def tick(tx: Tx, ledger_position: int | None = None) -> int:
    """The next position of the exceptions' clock: greater than every earlier one, and at least
    `ledger_position`. Holds the clock's row until `tx` ends."""
    bigger = "GREATEST" if tx.dialect == "postgres" else "MAX"
    row = tx.execute(
        f"UPDATE {CLOCK} SET position = {bigger}(position + 1, %s) WHERE id = 1 RETURNING position",
        (ledger_position or 0,),
    ).fetchone()
    return int(row["position"])  # type: ignore[index]  # the migration made the row


def _publish(
    tx: Tx,
    kind: str,
    key: str,
    status: str,
    detail: dict[str, Any],
    ledger_position: int | None,
    n: int,
    revision: str | None = None,
) -> None:
    outbox.enqueue(
        tx,
        f"ledger.exceptions.{outbox.subject_token(kind)}",
        {
            "kind": kind,
            "key": key,
            "status": status,
            "detail": detail,
            "position": tick(tx, ledger_position),
            "ledger_position": ledger_position,
        },
        f"exception:{kind}:{key}:{n}:{status}" + (f":{revision}" if revision else ""),
    )


def open_exception(
    tx: Tx,
    kind: str,
    key: str,
    detail: dict[str, Any],
    position: int | None = None,
    refresh: bool = False,
) -> bool:
    """Opens `(kind, key)`; True when it was not open before (and a message was enqueued).

    One statement (`INSERT ... ON CONFLICT DO UPDATE ... WHERE` not open): two transactions opening
    the same exception together never collide; the second finds it open, or reopens it once closed.
    An open exception is left as it is, unless `refresh`: then a detail that changed (a shortfall
    partly reallocated names fewer lines) replaces the old one, and the message is sent again
    with the new detail (still `open`, a newer `position`).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown exception kind {kind!r}: add it to adapters.exceptions.KINDS")
    body = orjson.dumps(detail).decode()
    row = tx.execute(
        f"INSERT INTO {TABLE} AS e (kind, key, status, detail, position, opened_at, closed_at, times_opened) "
        "VALUES (%s, %s, 'open', %s, %s, %s, NULL, 1) "
        "ON CONFLICT (kind, key) DO UPDATE SET status = 'open', detail = excluded.detail, "
        "position = excluded.position, opened_at = excluded.opened_at, closed_at = NULL, "
        "times_opened = e.times_opened + 1 WHERE e.status <> 'open' RETURNING times_opened",
        (kind, key, body, position, _now()),
    ).fetchone()
    if row is None:  # already open: left as it is, or its detail refreshed
        if refresh:
            changed = tx.execute(
                f"UPDATE {TABLE} SET detail = %s WHERE kind = %s AND key = %s AND status = 'open' "
                "AND detail <> %s RETURNING times_opened",
                (body, kind, key, body),
            ).fetchone()
            if changed is not None:
                digest = hashlib.sha256(body.encode()).hexdigest()[:16]
                _publish(tx, kind, key, "open", detail, position, int(changed["times_opened"]), digest)
        return False
    _publish(tx, kind, key, "open", detail, position, int(row["times_opened"]))
    return True


def close_exception(
    tx: Tx, kind: str, key: str, detail: dict[str, Any] | None = None, position: int | None = None
) -> bool:
    """Closes `(kind, key)`; True when it was open (and a message was enqueued). The row is
    closed by one conditional UPDATE, so of two transactions closing it together one does.
    `position`: the ledger position of the fact that resolved it, when there is one."""
    row = tx.execute(
        f"UPDATE {TABLE} SET status = 'closed', closed_at = %s WHERE kind = %s AND key = %s "
        "AND status = 'open' RETURNING times_opened, detail, position",
        (_now(), kind, key),
    ).fetchone()
    if row is None:
        return False
    merged = orjson.loads(row["detail"])
    if detail:
        merged.update(detail)
        tx.execute(
            f"UPDATE {TABLE} SET detail = %s WHERE kind = %s AND key = %s",
            (orjson.dumps(merged).decode(), kind, key),
        )
    _publish(tx, kind, key, "closed", merged, position, int(row["times_opened"]))
    return True


def list_exceptions(
    db: Database, kind: str | None = None, open_only: bool = True, limit: int = 1000
) -> list[dict[str, Any]]:
    """Exceptions, newest first, each as {kind, key, status, detail, position, opened_at, closed_at}."""
    where, params = [], []
    if kind is not None:
        where.append("kind = %s")
        params.append(kind)
    if open_only:
        where.append("status = 'open'")
    sql = (
        f"SELECT kind, key, status, detail, position, opened_at, closed_at FROM {TABLE}"
        + (" WHERE " + " AND ".join(where) if where else "")
        + " ORDER BY opened_at DESC, kind, key LIMIT %s"
    )
    rows = db.query(sql, (*params, limit))
    for r in rows:
        r["detail"] = orjson.loads(r["detail"])
    return rows


def open_about(
    db: Database, order_id: str | None = None, sku: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """The open exceptions about one order or one SKU, newest first.

    Keys name their subject (`stuck-order` the order id, `shortfall`, `negative-stock` and
    `reservation-expired` `sku@location`, `drift` `source/sku/location`); the key narrows the read and the detail
    (`order_id`, `sku`) confirms it, so a SKU holding `@` or `/` finds no stranger's rows."""
    if order_id is not None:
        rows = db.query(
            f"SELECT kind, key, status, detail, position, opened_at, closed_at FROM {TABLE} "
            "WHERE status = 'open' AND key = %s ORDER BY opened_at DESC LIMIT %s",
            (order_id, limit),
        )
        field, value = "order_id", order_id
    elif sku is not None:
        rows = db.query(
            f"SELECT kind, key, status, detail, position, opened_at, closed_at FROM {TABLE} "
            "WHERE status = 'open' AND (key LIKE %s ESCAPE '\\' OR key LIKE %s ESCAPE '\\') "
            "ORDER BY opened_at DESC LIMIT %s",
            (like_prefix(f"{sku}@"), "%/" + like_prefix(f"{sku}/"), limit),
        )
        field, value = "sku", sku
    else:
        return []
    out = []
    for r in rows:
        r["detail"] = orjson.loads(r["detail"])
        if r["detail"].get(field, value) == value:
            out.append(r)
    return out


def open_counts(db: Database) -> dict[str, int]:
    rows = db.query(f"SELECT kind, COUNT(*) AS n FROM {TABLE} WHERE status = 'open' GROUP BY kind")
    return {r["kind"]: int(r["n"]) for r in rows}


def resolve(db: Database, kind: str, key: str, by: str) -> dict[str, Any] | None:
    """An operator closes an open exception of a kind no fact closes (`RESOLVED_BY_OPERATORS`),
    naming who did (`resolved_by`); the closed row, or None when none was open."""
    if kind not in RESOLVED_BY_OPERATORS:
        raise ValueError(f"{kind} exceptions close by themselves")
    with db.transaction() as tx:
        if not close_exception(tx, kind, key, {"resolved_by": by}):
            return None
        row: dict[str, Any] | None = tx.execute(
            f"SELECT kind, key, status, detail, position, opened_at, closed_at FROM {TABLE} "
            "WHERE kind = %s AND key = %s",
            (kind, key),
        ).fetchone()
    assert row is not None  # just closed, in this transaction
    row["detail"] = orjson.loads(row["detail"])
    return row


def list_exceptions_tx(tx: Tx, kind: str) -> list[dict[str, Any]]:
    """The open exceptions of one kind, read inside a transaction."""
    return tx.execute(
        f"SELECT kind, key FROM {TABLE} WHERE kind = %s AND status = 'open'", (kind,)
    ).fetchall()
