"""Exception messages on NATS carry a `position`, never null: each change takes the next number of the
exceptions' clock, never below the ledger position of the fact behind it, so a consumer that drops
messages not newer than the last it applied never drops a close, even one at an unchanged ledger
position or with no ledger fact behind it at all."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import jsonschema
import orjson
from test_nats_relay import free_port, start_nats, stream_messages, wait_for

from adapters import pos
from adapters.config import Settings
from adapters.inbox import fingerprint
from adapters.nats import NatsPublisher
from adapters.outbox import OutboxQueue, depth
from adapters.reconciliation.ports import Level, Snapshot
from api.asyncapi import schema_for
from bootstrap import bootstrap


def store_batch(container, store: str, sequence: int) -> None:
    """A POS batch stored as the route stores it: its sequence tracked in the same transaction."""
    payload = {
        "store": store,
        "batch_id": f"B{sequence}",
        "sequence": sequence,
        "transactions": [
            {
                "txn_id": f"T{sequence}",
                "type": "sale",
                "occurred_at": "2026-11-20T10:00:00Z",
                "lines": [{"item": "ITEM-1", "quantity": 1}],
            }
        ],
    }
    batch = pos.PosBatch.model_validate(payload)
    container.inbox.store(
        "pos",
        pos.external_id(store, batch.batch_id),
        "batch",
        orjson.dumps(payload),
        {},
        fingerprint(payload),
        on_new=pos.on_stored(batch),
    )


def reconcile(container, sku: str, quantity: int) -> dict:
    snap = Snapshot("erp", datetime.now(UTC), [Level(sku, "WH", quantity, None)], origin="api")
    return container.reconciler.reconcile(snap)


def test_every_exception_message_carries_a_position_that_grows_with_each_change(pg_url, tmp_path):
    port = free_port()
    url = f"nats://127.0.0.1:{port}"
    server = start_nats(port, str(tmp_path / "js"))
    container = bootstrap(Settings(database_url=pg_url))
    relay = NatsPublisher(url, OutboxQueue(container.db), poll_seconds=0.05)
    try:
        sku, store = f"SKU-{uuid.uuid4().hex[:6]}", f"S{uuid.uuid4().hex[:6]}"
        container.ledger.receive(sku, "WH", 10, "po-1")
        head = container.ledger.app.recorder.max_position()  # type: ignore[attr-defined]  # the ledger's recorders add it
        first = reconcile(container, sku, 7)  # drift: the ERP counts 7 of 10
        assert first["exceptions"]["opened"] == 1
        second = reconcile(container, sku, 10)  # the ERP fixed its count; the ledger has not moved
        assert second["exceptions"]["closed"] == 1 and second["position"] == first["position"]
        store_batch(container, store, 1)
        store_batch(container, store, 3)  # 2 is missing: a gap, with no ledger fact behind it
        store_batch(container, store, 2)  # it arrives: the gap closes
        relay.start()
        wait_for(lambda: depth(container.db) == 0 and relay.connected)
        messages = [m for m in stream_messages(url) if m.subject.startswith("ledger.exceptions.")]
        payloads = [orjson.loads(m.data) for m in messages]
        for m, p in zip(messages, payloads, strict=True):
            jsonschema.validate(p, schema_for(m.subject))
        mine = [p for p in payloads if sku in p["key"] or p["key"].startswith(f"{store}:")]
        assert [(p["kind"], p["status"]) for p in mine] == [
            ("drift", "open"),
            ("drift", "closed"),
            ("pos-sequence-gap", "open"),
            ("pos-sequence-gap", "closed"),
        ]
        positions = [p["position"] for p in mine]
        assert all(isinstance(x, int) for x in positions) and positions == sorted(set(positions))
        drift_open, drift_closed, gap_open, gap_closed = mine
        assert drift_open["ledger_position"] == first["position"] >= head
        assert drift_open["position"] >= drift_open["ledger_position"]
        assert gap_open["ledger_position"] is None and gap_closed["ledger_position"] is None
        # A consumer keeping the last position per exception applies all four, drops a re-delivery.
        last: dict[tuple[str, str], int] = {}
        applied = []
        for p in [*mine, drift_open]:
            k = (p["kind"], p["key"])
            if p["position"] > last.get(k, 0):
                last[k] = p["position"]
                applied.append(p["status"])
        assert applied == ["open", "closed", "open", "closed"]
    finally:
        relay.stop()
        container.close()
        server.terminate()
        server.wait(10)
