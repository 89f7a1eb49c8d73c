"""Personal data in the inbox: erasure on request (Shopify's compliance topics), after a retention
period, and the report of what is held for a customer.

Raw bodies are kept for audit; the ledger's events never hold personal data. Erasing a body
replaces the values of personal keys (`adapters.logs.PERSONAL_KEYS`: names, e-mail, phone,
addresses, notes, line properties) with `[erased]` and masks personal data by its shape in every
other string. Ids, quantities, SKUs and amounts stay, so the audit trail of what moved stays whole.
`inbox_erasures` records which message was erased, when and why (tables: migration 0005).

- `customers/redact` `{shop_domain, customer: {id, email, phone}, orders_to_redact: [ids]}`:
  the shop's messages about that customer or those orders;
- `shop/redact` `{shop_domain}`: every message of that shop;
- `customers/data_request` `{shop_domain, customer, orders_requested, data_request: {id}}`: a
  report of the messages and personal values held (`data_requests`, read by an admin);
- `LEDGER_INBOX_RETENTION_DAYS`: finished messages older than that are erased.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from adapters.logs import PERSONAL_KEYS, mask_text
from adapters.persistence.db import Database, Tx

ERASED = "[erased]"
FINAL = ("applied", "duplicate", "rejected")  # statuses after which a body is only kept for audit
BATCH = 500


def scrub(value: Any, key: str = "") -> Any:
    """The value with its personal data erased (keys by name, other strings by shape)."""
    if key.lower() in PERSONAL_KEYS:
        return None if value in (None, "", [], {}) else ERASED
    if isinstance(value, dict):
        return {k: scrub(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    if isinstance(value, str):
        return mask_text(value)
    return value


def personal(value: Any, key: str = "") -> Iterator[tuple[str, Any]]:
    """(key, value) of each personal value held in a body."""
    if key.lower() in PERSONAL_KEYS and value not in (None, "", [], {}, ERASED):
        yield key, value
        return
    if isinstance(value, dict):
        for k, v in value.items():
            yield from personal(v, str(k))
    elif isinstance(value, list):
        for v in value:
            yield from personal(v, key)


def _order_ids(body: dict[str, Any], kind: str) -> set[str]:
    ids = set()
    if kind.startswith("orders/") and "id" in body:
        ids.add(str(body["id"]))
    for k in ("order_id",):
        if body.get(k) is not None:
            ids.add(str(body[k]))
    edit = body.get("order_edit")
    if isinstance(edit, dict) and edit.get("order_id") is not None:
        ids.add(str(edit["order_id"]))
    return ids


def _about(body: Any, kind: str, customer: dict[str, Any], orders: set[str]) -> bool:
    """Whether a message's body is about the customer (id, e-mail, phone) or one of the orders."""
    if not isinstance(body, dict):
        return False
    if orders & _order_ids(body, kind):
        return True
    raw = body.get("customer")
    theirs: dict[str, Any] = raw if isinstance(raw, dict) else {}
    cid = customer.get("id")
    if cid is not None and str(theirs.get("id")) == str(cid):
        return True
    for field in ("email", "phone"):
        mine = customer.get(field)
        if mine and mine in (body.get(field), theirs.get(field)):
            return True
    return False


def _shop_rows(tx: Tx, shop: str) -> Iterator[dict[str, Any]]:
    after = 0
    while True:
        rows = tx.execute(
            "SELECT id, kind, headers, body FROM inbox WHERE source = 'shopify' AND id > %s ORDER BY id LIMIT %s",
            (after, BATCH),
        ).fetchall()
        if not rows:
            return
        for r in rows:
            headers = orjson.loads(r["headers"] or "{}")
            if (headers or {}).get("x-shopify-shop-domain") == shop:
                yield r
        after = int(rows[-1]["id"])


def _body(row: dict[str, Any]) -> Any:
    try:
        return orjson.loads(bytes(row["body"]))
    except orjson.JSONDecodeError:
        return None


def erase(tx: Tx, rows: Iterable[dict[str, Any]], reason: str) -> int:
    """Erases the personal data of each row's body; answers how many rows were rewritten."""
    now = datetime.now(UTC).isoformat()
    done = 0
    for r in rows:
        body = _body(r)
        if body is None:
            continue
        tx.execute("UPDATE inbox SET body = %s WHERE id = %s", (orjson.dumps(scrub(body)), r["id"]))
        tx.execute(
            "INSERT INTO inbox_erasures (inbox_id, reason, erased_at) VALUES (%s, %s, %s) "
            "ON CONFLICT (inbox_id) DO UPDATE SET reason = excluded.reason, erased_at = excluded.erased_at",
            (r["id"], reason[:200], now),
        )
        done += 1
    return done


def redact_customer(tx: Tx, shop: str, customer: dict[str, Any], orders: Iterable[object]) -> int:
    wanted = {str(o) for o in orders}
    rows = [r for r in _shop_rows(tx, shop) if _about(_body(r), r["kind"], customer, wanted)]
    return erase(tx, rows, f"customers/redact {customer.get('id')}")


def redact_shop(tx: Tx, shop: str) -> int:
    return erase(tx, list(_shop_rows(tx, shop)), f"shop/redact {shop}")


def data_request(
    tx: Tx, request_id: str, shop: str, customer: dict[str, Any], orders: Iterable[object]
) -> dict[str, Any]:
    """What is held for the customer: the messages about them and the personal values in them."""
    wanted = {str(o) for o in orders}
    messages = []
    for r in _shop_rows(tx, shop):
        body = _body(r)
        if r["kind"].startswith(("customers/", "shop/")) or not _about(body, r["kind"], customer, wanted):
            continue
        held: dict[str, list[Any]] = {}
        for k, v in personal(body):
            held.setdefault(k, []) if v in held.get(k, []) else held.setdefault(k, []).append(v)
        messages.append(
            {
                "inbox_id": r["id"],
                "kind": r["kind"],
                "orders": sorted(_order_ids(body, r["kind"])),
                "personal_data": held,
            }
        )
    report = {
        "request_id": request_id,
        "shop": shop,
        "customer_id": None if customer.get("id") is None else str(customer["id"]),
        "messages": messages,
        "ledger_events": "order events hold order ids, SKUs, quantities and amounts; no personal data",
    }
    tx.execute(
        "INSERT INTO data_requests (request_id, shop, customer_id, report, created_at) VALUES (%s, %s, %s, %s, %s) "
        "ON CONFLICT (request_id) DO UPDATE SET report = excluded.report",
        (
            request_id,
            shop,
            report["customer_id"],
            orjson.dumps(report).decode(),
            datetime.now(UTC).isoformat(),
        ),
    )
    return report


def report(db: Database, request_id: str) -> dict[str, Any] | None:
    row = db.query_one("SELECT report FROM data_requests WHERE request_id = %s", (request_id,))
    return None if row is None else dict(orjson.loads(row["report"]))


class Retention:
    """Erases the personal data of finished messages received more than `days` ago."""

    def __init__(self, db: Database, days: int) -> None:
        self.db = db
        self.days = days

    def step(self) -> int:
        cutoff = (datetime.now(UTC) - timedelta(days=self.days)).isoformat()
        with self.db.transaction() as tx:
            rows = tx.execute(
                "SELECT id, body FROM inbox WHERE received_at < %s AND status IN ('applied', 'duplicate', "
                "'rejected') AND id NOT IN (SELECT inbox_id FROM inbox_erasures) ORDER BY id LIMIT %s",
                (cutoff, BATCH),
            ).fetchall()
            return erase(tx, rows, f"retention {self.days} days")
