"""Concurrent, out-of-order POS batches of one store over HTTP (a real server, requests in
parallel): no 5xx, and `pos-sequence-gap` exceptions are opened and closed exactly right."""

from __future__ import annotations

import random
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from adapters_api import AdaptersApi, make
from live_server import serving

from adapters.exceptions import list_exceptions

pytestmark = pytest.mark.postgres

STORE = "STORE-C"


@pytest.fixture
def pos(pg_url: str) -> Iterator[AdaptersApi]:
    for api in make(pg_url):
        api.map("pos", "location", "C001", STORE)
        api.map("pos", "sku", "ITEM-C", "SKU-C")
        api.container.ledger.receive("SKU-C", STORE, 1000, "seed-c")
        yield api


def batch(seq: int) -> dict[str, Any]:
    sale = {"txn_id": f"T{seq}", "type": "sale", "occurred_at": "2026-11-20T10:00:00Z",
            "lines": [{"item": "ITEM-C", "quantity": 1}]}
    return {"store": "C001", "batch_id": f"B{seq}", "sequence": seq, "transactions": [sale]}


def send_all(base: str, token: str, sequences: list[int]) -> list[int]:
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
        def one(seq: int) -> int:
            return client.post("/v1/pos/batches", json=batch(seq)).status_code

        with ThreadPoolExecutor(max_workers=8) as pool:
            return list(pool.map(one, sequences))


def gap_rows(api: AdaptersApi) -> dict[str, dict[str, Any]]:
    return {e["key"]: e for e in list_exceptions(api.container.db, "pos-sequence-gap", open_only=False)}


def test_concurrent_out_of_order_batches_answer_2xx_and_close_every_gap(pos: AdaptersApi) -> None:
    sequences = list(range(1, 41))
    random.Random(7).shuffle(sequences)
    with serving(pos.container) as base:
        statuses = send_all(base, pos.tokens["ingest:write"], sequences)
        assert statuses == [200] * len(sequences), statuses
        rows = gap_rows(pos)
        assert not [k for k, e in rows.items() if e["status"] == "open"]  # every number arrived
        assert all(e["status"] == "closed" and e["detail"]["filled"] for e in rows.values())
        # Two more, leaving 41 and 43 out, twice at once: exactly those two gaps are open.
        again = send_all(base, pos.tokens["ingest:write"], [42, 44, 42, 44])
        assert again == [200] * 4, again
    rows = gap_rows(pos)
    assert sorted(k for k, e in rows.items() if e["status"] == "open") == ["C001:41", "C001:43"]
    pos.drain()  # each batch's sale applied once
    assert pos.on_hand("SKU-C", STORE) == 1000 - 42
