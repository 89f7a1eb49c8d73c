"""Mappings: versions with who and when, and a fix followed by remap (HTTP and CLI)."""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import pytest
from adapters_api import AdaptersApi, make
from typer.testing import CliRunner

from cli.main import app as cli
from ledger.stock import SkuLocation


@pytest.fixture
def api(database_url: str) -> Iterator[AdaptersApi]:
    yield from make(database_url)


def sale_batch(seq: int) -> dict:
    return {
        "store": "S001",
        "batch_id": f"B{seq}",
        "sequence": seq,
        "transactions": [
            {
                "txn_id": f"T{seq}a",
                "type": "sale",
                "occurred_at": "2026-11-20T10:00:00Z",
                "lines": [{"item": "ITEM-1", "quantity": 2}],
            },
            {
                "txn_id": f"T{seq}b",
                "type": "return",
                "occurred_at": "2026-11-20T10:05:00Z",
                "lines": [{"item": "ITEM-1", "quantity": 1}],
            },
        ],
    }


def test_a_store_mapped_to_the_wrong_location_is_fixed_and_remapped(api: AdaptersApi) -> None:
    ledger = api.container.ledger
    ledger.receive("SKU-A", "STORE1", 20, "seed-1")
    ledger.receive("SKU-A", "STORE2", 5, "seed-2")
    api.channel("store1", "STORE1")
    api.channel("store2", "STORE2")
    api.channel("all", "STORE1", "STORE2")
    api.map("pos", "sku", "ITEM-1", "SKU-A")
    wrong = api.map("pos", "location", "S001", "STORE2")
    api.post("/v1/pos/batches", sale_batch(1))
    api.drain()
    assert (api.on_hand("SKU-A", "STORE1"), api.on_hand("SKU-A", "STORE2")) == (20, 4)
    assert [api.ats(ch, "SKU-A") for ch in ("store1", "store2", "all")] == [20, 4, 24]

    fixed = api.map("pos", "location", "S001", "STORE1")
    assert fixed["old"] == "STORE2" and fixed["version"] > wrong["version"]
    r = api.client.post("/v1/mappings/pos/location/S001/remap", headers=api.h("admin"))
    assert r.status_code == 200, r.text
    assert r.json()["messages"] == 1 and r.json()["movements"] == 2 and r.json()["failures"] == []
    assert (api.on_hand("SKU-A", "STORE1"), api.on_hand("SKU-A", "STORE2")) == (19, 5)
    assert [api.ats(ch, "SKU-A") for ch in ("store1", "store2", "all")] == [19, 5, 24]

    # Nothing deleted: the wrong stream keeps the sale and the return, and their reversals name them.
    wrong_stream = ledger.history.stock("SKU-A", "STORE2")
    assert wrong_stream is not None
    events = [e for _, e in ledger.history.events(wrong_stream.id)]
    kinds = [type(e).__name__ for e in events]
    assert kinds.count("StockSold") == 1 and kinds.count("StockReturned") == 1
    reversals = [e for e in events if isinstance(e, SkuLocation.MovementCorrected)]
    originals = {e.originator_version for e in events if type(e).__name__ in ("StockSold", "StockReturned")}
    assert {e.corrects["version"] for e in reversals} == originals
    assert all(e.corrects["location"] == "STORE2" for e in reversals)
    right = ledger.history.stock("SKU-A", "STORE1")
    assert right is not None
    reposts = [e for _, e in ledger.history.events(right.id) if isinstance(e, SkuLocation.MovementCorrected)]
    assert sorted(e.on_hand_delta for e in reposts) == [-2, 1]
    assert {e.corrects["version"] for e in reposts} == originals

    # Remapping again corrects nothing more; new batches go to the right store.
    again = api.client.post("/v1/mappings/pos/location/S001/remap", headers=api.h("admin")).json()
    assert again["movements"] == 0
    api.post("/v1/pos/batches", sale_batch(2))
    api.drain()
    assert (api.on_hand("SKU-A", "STORE1"), api.on_hand("SKU-A", "STORE2")) == (18, 5)
    assert [api.ats(ch, "SKU-A") for ch in ("store1", "store2", "all")] == [18, 5, 23]

    history = api.get("/v1/mappings/pos/location/S001").json()
    assert [(h["old"], h["new"]) for h in history["history"]] == [(None, "STORE2"), ("STORE2", "STORE1")]
    assert all(h["actor"].startswith("test-admin") for h in history["history"])
    actions = [a["action"] for a in api.container.keys.audit_trail()]
    assert "mapping.remap" in actions and actions.count("mapping.set") >= 3


def test_mapping_changes_are_versioned_and_a_repeat_is_no_new_version(api: AdaptersApi) -> None:
    first = api.map("shopify", "sku", "39072856", "SKU-A")
    same = api.map("shopify", "sku", "39072856", "SKU-A")
    assert same["changed"] is False and same["version"] == first["version"]
    assert len(api.get("/v1/mappings/shopify/sku/39072856").json()["history"]) == 1
    items = api.get("/v1/mappings", source="shopify").json()["items"]
    assert [(m["external_id"], m["canonical"]) for m in items] == [("39072856", "SKU-A")]


def test_hostile_mapping_requests_are_refused(api: AdaptersApi) -> None:
    h = api.h("admin")
    assert api.client.put("/v1/mappings/amazon/sku/1", json={"canonical": "A"}, headers=h).status_code == 422
    assert api.client.put("/v1/mappings/pos/colour/1", json={"canonical": "A"}, headers=h).status_code == 422
    assert (
        api.client.put("/v1/mappings/pos/sku/1", json={"canonical": "A" * 129}, headers=h).status_code == 422
    )
    assert api.client.put("/v1/mappings/pos/sku/1", json={"canonical": "a\tb"}, headers=h).status_code == 422
    assert api.client.put("/v1/mappings/pos/sku/1", json={}, headers=h).status_code == 422
    r = api.client.put("/v1/mappings/pos/sku/1", json={"canonical": "A"}, headers=api.h("ingest:write"))
    assert r.status_code == 403 and r.headers["content-type"].startswith("application/problem+json")
    assert api.client.post("/v1/mappings/pos/sku/1/remap", headers=api.h("audit:read")).status_code == 403
    assert api.get("/v1/mappings/pos/sku/nothing").status_code == 404
    assert api.get("/v1/mappings").json()["items"] == []


def test_an_erp_code_mapped_later_is_remapped_from_the_command_line(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for api in make(sqlite_url):
        receipt = {
            "message_id": "m-1",
            "receipt_id": "GR-1",
            "location": "WH1",
            "lines": [{"sku": "OLD-CODE", "quantity": 7}],
        }
        assert api.post("/v1/erp/goods-receipts", receipt).status_code == 200
        same_place = {
            "message_id": "m-2",
            "transfer_id": "TR",
            "from_location": "WH1",
            "to_location": "WH1",
            "lines": [{"sku": "OLD-CODE", "quantity": 1}],
        }
        r = api.post("/v1/erp/transfers", same_place)
        assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
        assert api.post("/v1/erp/goods-receipts", {**receipt, "lines": []}).status_code == 422
        assert api.post("/v1/erp/cycle-counts", receipt).status_code == 422
        assert api.post("/v1/erp/goods-receipts", receipt, scope="ats:read").status_code == 403
        assert len(api.inbox()) == 1
        api.drain()
        assert api.on_hand("OLD-CODE", "WH1") == 7
        monkeypatch.setenv("LEDGER_DATABASE_URL", sqlite_url)
        runner = CliRunner()
        r = runner.invoke(cli, ["mappings", "set", "erp", "sku", "OLD-CODE", "SKU-A", "--actor", "ops"])
        assert r.exit_code == 0, r.output
        r = runner.invoke(cli, ["remap", "erp", "sku", "OLD-CODE"])
        assert r.exit_code == 0, r.output
        answer = orjson.loads(r.output[r.output.index("{") :])
        assert answer["messages"] == 1 and answer["movements"] == 1
        api.container.ledger.writer.evict()
        assert (api.on_hand("OLD-CODE", "WH1"), api.on_hand("SKU-A", "WH1")) == (0, 7)
        r = runner.invoke(cli, ["mappings", "list"])
        assert r.exit_code == 0 and "OLD-CODE" in r.output
        r = runner.invoke(cli, ["remap", "nowhere", "sku", "X"])
        assert r.exit_code == 2
