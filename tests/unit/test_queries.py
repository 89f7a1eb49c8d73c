"""The query functions the console reads through: each answers from its owner's table."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import orjson
import pytest

from adapters.config import Settings
from bootstrap import Container, bootstrap
from ledger import commands as c
from ledger.ports import StaticLocations
from projections import queries


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def container(sqlite_url: str) -> Iterator[Container]:
    built = bootstrap(Settings(database_url=sqlite_url), locations=StaticLocations({"web": ["W1"]}))
    yield built
    built.close()


def test_the_stock_read_model_answers_which_skus_and_locations_it_holds(container: Container):
    sku, other = uid("SKU"), uid("SKU")
    container.ledger.receive(sku, "W1", 5, uid("po"))
    container.ledger.receive(sku, "W2", 2, uid("po"))
    container.ledger.receive(other, "W2", 1, uid("po"))
    container.projector.catch_up()
    db = container.db
    assert queries.has_sku(db, sku) and not queries.has_sku(db, uid("SKU"))
    assert queries.has_location(db, "W2") and not queries.has_location(db, uid("W"))
    assert queries.locations_of(db, sku) == ["W1", "W2"]
    at_w2 = {r["sku"]: (r["on_hand"], r["available"]) for r in queries.levels_at(db, "W2")}
    assert at_w2[sku] == (2, 2) and at_w2[other] == (1, 1)


def test_orders_are_found_by_each_outside_id_they_recorded(container: Container):
    sku, oid, name = uid("SKU"), uid("o"), "#" + uid("n")
    container.ledger.receive(sku, "W1", 5, uid("po"))
    container.ledger.execute(
        c.CaptureOrder(
            order_id=oid,
            channel="web",
            lines=({"line_id": "1", "sku": sku, "quantity": 1},),
            external_refs={"name": name},
            cause={},
        )
    )
    container.projector.catch_up()
    assert queries.orders_by_reference(container.db, name, limit=10) == [oid]
    assert queries.orders_by_reference(container.db, uid("n"), limit=10) == []


def test_mappings_are_listed_by_outside_code_and_their_changes_newest_first(container: Container):
    code = uid("item")
    container.mappings.set("pos", "sku", code, "SKU-A", "test")
    container.mappings.set("pos", "sku", code, "SKU-B", "test")
    container.mappings.set("erp", "location", code, "W1", "test")
    found = [(m["source"], m["kind"], m["canonical"]) for m in container.mappings.by_external_id(code)]
    assert found == [("erp", "location", "W1"), ("pos", "sku", "SKU-B")]
    newest = container.mappings.changes(limit=2)
    assert [(h["external_id"], h["old"], h["new"]) for h in newest] == [(code, None, "W1"), (code, "SKU-A", "SKU-B")]


def test_a_parked_message_names_the_mappings_it_missed(container: Container):
    store, item = uid("S"), uid("item")
    body = {
        "store": store,
        "batch_id": uid("b"),
        "sequence": 1,
        "transactions": [
            {"txn_id": uid("t"), "type": "sale", "occurred_at": "2024-05-01T10:00:00Z",
             "lines": [{"item": item, "quantity": 2}]}
        ],
    }
    stored = container.inbox.store("pos", uid("batch"), "batch", orjson.dumps(body), {}, "fp")
    while container.intake.step():
        pass
    inbox_id = int(stored.row["id"])
    assert container.inbox.get(inbox_id)["status"] == "parked"
    assert f"pos/location/{store}" in container.inbox.missing(inbox_id)
