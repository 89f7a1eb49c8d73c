"""Exceptions: situations an operator must look at (drift, POS gaps, parked messages, stuck orders).

One row per `(kind, key)`. Opening is idempotent: an exception already open stays as it is.
Opening (and closing) also enqueues `ledger.exceptions.{kind}` on the outbox, in the
caller's transaction. Kinds in use: `drift`, `pos-sequence-gap`, `parked-message`,
`stuck-order` (captured but not posted to the ERP in time), `reservation-expired`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from adapters import outbox
from adapters.persistence.db import Database, Tx

TABLE = "ledger_exceptions"


def _now() -> str:
    return datetime.now(UTC).isoformat()


def create_tables(db: Database) -> None:
    outbox.create_tables(db)
    db.script(
        [
            f"CREATE TABLE IF NOT EXISTS {TABLE} (kind TEXT NOT NULL, key TEXT NOT NULL, "
            "status TEXT NOT NULL, detail TEXT NOT NULL, position BIGINT, opened_at TEXT NOT NULL, "
            "closed_at TEXT, times_opened INTEGER NOT NULL, PRIMARY KEY (kind, key))",
            f"CREATE INDEX IF NOT EXISTS {TABLE}_status ON {TABLE} (status, kind)",
        ]
    )


def _publish(
    tx: Tx, kind: str, key: str, status: str, detail: dict[str, Any], position: int | None, n: int
) -> None:
    outbox.enqueue(
        tx,
        f"ledger.exceptions.{outbox.subject_token(kind)}",
        {"kind": kind, "key": key, "status": status, "detail": detail, "position": position},
        f"exception:{kind}:{key}:{n}:{status}",
    )


def open_exception(tx: Tx, kind: str, key: str, detail: dict[str, Any], position: int | None = None) -> bool:
    """Opens `(kind, key)`; True when it was not open before (and a message was enqueued)."""
    row = tx.execute(
        f"SELECT status, times_opened FROM {TABLE} WHERE kind = %s AND key = %s", (kind, key)
    ).fetchone()
    if row is not None and row["status"] == "open":
        return False
    n = 1 if row is None else int(row["times_opened"]) + 1
    text = orjson.dumps(detail).decode()
    if row is None:
        tx.execute(
            f"INSERT INTO {TABLE} (kind, key, status, detail, position, opened_at, closed_at, times_opened) "
            "VALUES (%s, %s, 'open', %s, %s, %s, NULL, %s)",
            (kind, key, text, position, _now(), n),
        )
    else:
        tx.execute(
            f"UPDATE {TABLE} SET status = 'open', detail = %s, position = %s, opened_at = %s, "
            "closed_at = NULL, "
            "times_opened = %s WHERE kind = %s AND key = %s",
            (text, position, _now(), n, kind, key),
        )
    _publish(tx, kind, key, "open", detail, position, n)
    return True


def close_exception(tx: Tx, kind: str, key: str, detail: dict[str, Any] | None = None) -> bool:
    """Closes `(kind, key)`; True when it was open (and a message was enqueued)."""
    row = tx.execute(
        f"SELECT status, times_opened, detail, position FROM {TABLE} WHERE kind = %s AND key = %s",
        (kind, key),
    ).fetchone()
    if row is None or row["status"] != "open":
        return False
    merged = orjson.loads(row["detail"])
    if detail:
        merged.update(detail)
    tx.execute(
        f"UPDATE {TABLE} SET status = 'closed', closed_at = %s, detail = %s WHERE kind = %s AND key = %s",
        (_now(), orjson.dumps(merged).decode(), kind, key),
    )
    _publish(tx, kind, key, "closed", merged, row["position"], int(row["times_opened"]))
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


def open_counts(db: Database) -> dict[str, int]:
    rows = db.query(f"SELECT kind, COUNT(*) AS n FROM {TABLE} WHERE status = 'open' GROUP BY kind")
    return {r["kind"]: int(r["n"]) for r in rows}


def list_exceptions_tx(tx: Tx, kind: str) -> list[dict[str, Any]]:
    """The open exceptions of one kind, read inside a transaction."""
    return tx.execute(
        f"SELECT kind, key FROM {TABLE} WHERE kind = %s AND status = 'open'", (kind,)
    ).fetchall()
