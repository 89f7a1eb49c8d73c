"""POS batches over HTTP: offline stores syncing late, out of order and twice; gaps; voids; parking."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from adapters_api import AdaptersApi, make

from adapters.exceptions import list_exceptions

STORE = "STORE1"


@pytest.fixture
def pos(database_url: str) -> Iterator[AdaptersApi]:
    for api in make(database_url):
        api.map("pos", "location", "S001", STORE)
        api.map("pos", "sku", "ITEM-1", "SKU-A")
        api.map("pos", "sku", "ITEM-2", "SKU-B")
        api.channel("store", STORE)
        api.container.ledger.receive("SKU-A", STORE, 20, "seed-a")
        api.container.ledger.receive("SKU-B", STORE, 10, "seed-b")
        yield api


def txn(txn_id: str, kind: str, *lines: tuple[str, int], void_of: str | None = None) -> dict[str, Any]:
    t: dict[str, Any] = {
        "txn_id": txn_id,
        "type": kind,
        "occurred_at": "2026-11-20T10:00:00Z",
        "lines": [{"item": i, "quantity": q} for i, q in lines],
    }
    if void_of is not None:
        t["void_of"] = void_of
    return t


def batch(
    seq: int, *txns: dict[str, Any], store: str = "S001", batch_id: str | None = None
) -> dict[str, Any]:
    return {"store": store, "batch_id": batch_id or f"B{seq}", "sequence": seq, "transactions": list(txns)}


def gaps(api: AdaptersApi) -> list[str]:
    return sorted(e["key"] for e in list_exceptions(api.container.db, "pos-sequence-gap"))


def test_a_store_offline_for_a_day_syncs_its_batches_twice_and_stock_moves_once(pos: AdaptersApi) -> None:
    day = [
        batch(1, txn("T1", "sale", ("ITEM-1", 2), ("ITEM-2", 1)), txn("T2", "sale", ("ITEM-1", 1))),
        batch(2, txn("T3", "return", ("ITEM-1", 1)), txn("T4", "sale", ("ITEM-2", 3))),
        batch(3, txn("T5", "void", void_of="T4"), txn("T6", "sale", ("ITEM-1", 4))),
        batch(4, txn("T7", "sale", ("ITEM-2", 2))),
    ]
    first = {}
    for b in (day[2], day[0], day[3], day[1]):  # late and out of order
        r = pos.post("/v1/pos/batches", b)
        assert r.status_code == 200, r.text
        assert r.json()["duplicate"] is False
        first[b["batch_id"]] = r.json()["inbox_id"]
    assert gaps(pos) == []
    assert (pos.ats("store", "SKU-A"), pos.ats("store", "SKU-B")) == (20, 10)  # stored, not applied yet
    pos.drain()
    events = pos.container.ledger.app.recorder.max_position()
    # The store syncs the same day again.
    for b in day:
        r = pos.post("/v1/pos/batches", b)
        assert r.status_code == 200, r.text
        assert r.json()["duplicate"] is True and r.json()["inbox_id"] == first[b["batch_id"]]
        assert r.json()["status"] == "applied"
    pos.drain()
    assert pos.container.ledger.app.recorder.max_position() == events
    # A: 20 - 2 - 1 + 1 - 4 = 14; B: 10 - 1 - 3 + 3 (void) - 2 = 7
    assert pos.on_hand("SKU-A", STORE) == 14
    assert pos.on_hand("SKU-B", STORE) == 7
    assert (pos.ats("store", "SKU-A"), pos.ats("store", "SKU-B")) == (14, 7)
    assert {m["status"] for m in pos.inbox()} == {"applied"}
    assert all(m["deliveries"] == 2 for m in pos.inbox())


def test_a_sequence_gap_is_an_exception_until_the_missing_batch_arrives(pos: AdaptersApi) -> None:
    pos.post("/v1/pos/batches", batch(1, txn("T1", "sale", ("ITEM-1", 1))))
    pos.post("/v1/pos/batches", batch(4, txn("T4", "sale", ("ITEM-1", 1))))
    assert gaps(pos) == ["S001:2", "S001:3"]
    pos.post("/v1/pos/batches", batch(3, txn("T3", "sale", ("ITEM-1", 1))))
    assert gaps(pos) == ["S001:2"]
    pos.post("/v1/pos/batches", batch(2, txn("T2", "sale", ("ITEM-1", 1))))
    assert gaps(pos) == []
    pos.drain()
    assert pos.on_hand("SKU-A", STORE) == 16


def test_a_void_that_arrives_before_its_sale_waits_and_a_repeated_void_reverses_once(
    pos: AdaptersApi,
) -> None:
    pos.post("/v1/pos/batches", batch(2, txn("V1", "void", void_of="T1")))
    pos.drain()
    assert [m["status"] for m in pos.inbox()] == ["waiting"]
    pos.post("/v1/pos/batches", batch(1, txn("T1", "sale", ("ITEM-1", 5))))
    pos.post("/v1/pos/batches", batch(3, txn("V2", "void", void_of="T1")))  # the till voided it twice
    pos.drain()
    assert pos.on_hand("SKU-A", STORE) == 20
    statuses = {m["external_id"]: m["status"] for m in pos.inbox()}
    assert statuses == {'["S001","B2"]': "applied", '["S001","B1"]': "applied", '["S001","B3"]': "duplicate"}


def test_a_till_sale_the_ledger_did_not_expect_is_still_recorded(pos: AdaptersApi) -> None:
    pos.post("/v1/pos/batches", batch(1, txn("T1", "sale", ("ITEM-2", 12))))
    pos.drain()
    assert pos.on_hand("SKU-B", STORE) == -2


def test_an_unknown_store_or_item_parks_the_batch_until_mapped(pos: AdaptersApi) -> None:
    pos.post("/v1/pos/batches", batch(1, txn("T1", "sale", ("ITEM-1", 1)), store="S999"))
    pos.post("/v1/pos/batches", batch(2, txn("T2", "sale", ("ITEM-9", 2))))
    pos.drain()
    parked = pos.inbox(status="parked")
    assert [m["reason"] for m in parked] == ["unknown store S999", "unknown item ITEM-9"]
    assert pos.on_hand("SKU-A", STORE) == 20
    assert pos.map("pos", "sku", "ITEM-9", "SKU-A")["requeued"] == 1
    assert pos.map("pos", "location", "S999", STORE)["requeued"] == 1
    pos.drain()
    assert pos.inbox(status="parked") == []
    assert pos.on_hand("SKU-A", STORE) == 17


def test_hostile_batches_are_refused_and_nothing_is_stored(pos: AdaptersApi) -> None:
    bad = [
        batch(1, txn("T1", "sale", ("ITEM-1", 0))),
        batch(1, txn("T1", "sale", ("ITEM-1", 1_000_000_001))),
        batch(1, txn("T1", "sale", ("ITEM-1", True))),  # type: ignore[arg-type]  # a wrong type, on purpose
        batch(1, txn("T1", "void")),
        batch(1, txn("T1", "sale")),
        batch(1, txn("T1", "sale", ("ITEM-1", 1)), txn("T1", "sale", ("ITEM-1", 1))),
        batch(0, txn("T1", "sale", ("ITEM-1", 1))),
        batch(1, txn("T1", "refund", ("ITEM-1", 1))),
        {**batch(1, txn("T1", "sale", ("ITEM-1", 1))), "extra": 1},
        batch(1, txn("T1", "sale", ("ITEM-1", 1)), store="S\x00"),
        batch(1, txn("T1", "sale", ("ITEM-1", 1)), store="S" * 129),
        {"store": "S001"},
    ]
    for body in bad:
        r = pos.post("/v1/pos/batches", body)
        assert r.status_code == 422, (body, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
    r = pos.client.post(
        "/v1/pos/batches",
        content=b"[1,",
        headers={**pos.h("ingest:write"), "Content-Type": "application/json"},
    )
    assert r.status_code == 400
    assert (
        pos.post("/v1/pos/batches", batch(1, txn("T1", "sale", ("ITEM-1", 1))), scope="ats:read").status_code
        == 403
    )
    assert pos.inbox() == []
    # A batch id reused with other content, or a sequence number reused by another batch: 409.
    assert pos.post("/v1/pos/batches", batch(1, txn("T1", "sale", ("ITEM-1", 1)))).status_code == 200
    r = pos.post("/v1/pos/batches", batch(1, txn("T1", "sale", ("ITEM-1", 2))))
    assert r.status_code == 409 and r.json()["type"].endswith("delivery-id-reused")
    r = pos.post("/v1/pos/batches", batch(1, txn("T9", "sale", ("ITEM-1", 1)), batch_id="OTHER"))
    assert r.status_code == 409 and r.json()["type"].endswith("pos-sequence-conflict")
    assert len(pos.inbox()) == 1
