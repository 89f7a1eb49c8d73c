"""The background workers as `ledger serve` runs them: the inbox worker applies, the ERP loops post."""

from __future__ import annotations

import time
from collections.abc import Callable

import orjson
from erpstandin import ErpStandIn

from adapters import pos
from adapters.config import Settings
from adapters.inbox import fingerprint
from bootstrap import bootstrap
from ledger.ports import StaticLocations


def eventually(check: Callable[[], bool], seconds: float = 20.0) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.02)
    raise AssertionError("the workers did not get there in time")


def test_stored_messages_are_applied_and_captured_orders_posted_in_the_background(pg_url: str) -> None:
    erp = ErpStandIn(["down"])
    container = bootstrap(
        Settings(database_url=pg_url, erp_url=erp.url), locations=StaticLocations({"online": ["STORE1"]})
    )
    try:
        container.mappings.set("pos", "location", "S1", "STORE1", "test")
        container.mappings.set("pos", "sku", "I1", "SKU-A", "test")
        container.erp_poster.backoff_base = 0.01
        container.ledger.receive("SKU-A", "STORE1", 10, "seed")
        container.start_workers()
        batch = {
            "store": "S1",
            "batch_id": "B1",
            "sequence": 1,
            "transactions": [
                {
                    "txn_id": "T1",
                    "type": "sale",
                    "occurred_at": "2026-11-20T10:00:00Z",
                    "lines": [{"item": "I1", "quantity": 3}],
                }
            ],
        }
        parsed = pos.PosBatch.model_validate(batch)
        container.inbox.store(
            "pos",
            pos.external_id("S1", "B1"),
            "batch",
            orjson.dumps(batch),
            {},
            fingerprint(batch),
            on_new=pos.on_stored(parsed),
        )
        container.inbox_worker.wake()
        eventually(lambda: container.ledger.history.stock("SKU-A", "STORE1").on_hand == 7)  # type: ignore[union-attr]  # it exists
        container.ledger.capture_order("o-1", "online", [{"line_id": "1", "sku": "SKU-A", "quantity": 2}])
        eventually(lambda: (o := container.ledger.history.order("o-1")) is not None and o.stage == "posted")
        order = container.ledger.history.order("o-1")
        assert order is not None and order.erp["attempts"] == 2
        assert [d["order_id"] for d in erp.documents.values()] == ["o-1"]
        assert container.inbox.list()[0]["status"] == "applied"
    finally:
        container.close()
        erp.close()
