"""Scheduled reconciliation pulling from a real HTTP ERP export and from stored Shopify observations;
the `ledger reconcile` command on a file."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from erpstandin import ErpStandIn
from typer.testing import CliRunner

from adapters.config import Settings
from adapters.exceptions import list_exceptions
from adapters.reconciliation.schedule import ScheduledReconciliation, scheduled
from adapters.reconciliation.sources import HttpErpInventory, ShopifyObservedLevels, SnapshotError, read_file
from bootstrap import Container, bootstrap


@pytest.fixture
def erp() -> Iterator[ErpStandIn]:
    e = ErpStandIn()
    yield e
    e.close()


@pytest.fixture
def container(sqlite_url: str, erp: ErpStandIn) -> Iterator[Container]:
    c = bootstrap(
        Settings(
            database_url=sqlite_url,
            erp_url=erp.url,
            reconcile_sources="erp,shopify",
            reconcile_interval_seconds=3600,
        )
    )
    yield c
    c.close()


def later() -> str:
    time.sleep(0.002)
    return datetime.now(UTC).isoformat()


def test_the_scheduled_job_is_registered_and_pulls_the_erp_export(container, erp):
    jobs = [w for w in container.leader.jobs.values() if isinstance(w, ScheduledReconciliation)]
    assert len(jobs) == 1 and [s.source for s in jobs[0].sources] == ["erp", "shopify"]
    a = "SKU-" + uuid.uuid4().hex[:8]
    container.ledger.receive(a, "WH", 9, "po-" + a)
    erp.inventory = (
        200,
        json.dumps(
            {"observed_at": later(), "levels": [{"sku": a, "location": "WH", "quantity": 8}]}
        ).encode(),
    )
    last = jobs[0].run_once()
    assert last["erp"]["status"] == "ok" and last["erp"]["mismatches"] == 1
    assert last["shopify"] == {"status": "no snapshot"}
    assert [e["key"] for e in list_exceptions(container.db, "drift")] == [f"erp/{a}/WH"]
    erp.inventory = (
        200,
        json.dumps(
            {"observed_at": later(), "levels": [{"sku": a, "location": "WH", "quantity": 9}]}
        ).encode(),
    )
    jobs[0].run_once()
    assert list_exceptions(container.db, "drift") == []
    erp.inventory = (503, b"{}")
    assert jobs[0].run_once()["erp"]["status"] == "failed"
    erp.inventory = (200, b'{"levels": "nope"}')
    with pytest.raises(SnapshotError):
        HttpErpInventory(erp.url).snapshot()


def test_no_job_is_registered_without_configured_sources(sqlite_url):
    c = bootstrap(Settings(database_url=sqlite_url))
    try:
        assert scheduled(c.settings, c.db, c.reconciler) is None
        assert not any(isinstance(w, ScheduledReconciliation) for w in c.leader.jobs.values())
    finally:
        c.close()


def test_shopify_levels_come_from_stored_observations_each_as_of_its_own_moment(container):
    from adapters.mappings import SqlMappingStore

    a = "SKU-" + uuid.uuid4().hex[:8]
    SqlMappingStore(container.db).set("shopify", "location", "6884", "WH", "test")
    container.ledger.receive(a, "WH", 5, "po-" + a)
    seen = later()
    container.ledger.adjust(a, "WH", -1, "count", "cc-" + a)  # after Shopify's observation: timing
    with container.db.transaction() as tx:
        tx.execute(
            "INSERT INTO shopify_observations (kind, object_id, location_id, available, sku, updated_at, "
            "inbox_id) VALUES ('item', '4401', '', NULL, %s, %s, 1)",
            (a, seen),
        )
        tx.execute(
            "INSERT INTO shopify_observations (kind, object_id, location_id, available, sku, updated_at, "
            "inbox_id) VALUES ('level', '4401', '6884', 5, NULL, %s, 2)",
            (seen,),
        )
    snap = ShopifyObservedLevels(container.db).snapshot()
    assert snap is not None and [(x.sku, x.location, x.quantity) for x in snap.levels] == [(a, "6884", 5)]
    report = container.reconciler.reconcile(snap)
    assert report["matched"] == 1 and report["mismatches"] == []


def test_snapshot_files_in_json_and_csv():
    at = datetime(2026, 5, 1, tzinfo=UTC)
    j = read_file(
        "erp",
        orjson.dumps(
            {"observed_at": at.isoformat(), "levels": [{"sku": "A", "location": "W", "quantity": 3}]}
        ).decode(),
    )
    c = read_file("erp", "sku,location,quantity\nA,W,3\n", observed_at=at)
    assert j.levels == c.levels and j.observed_at == c.observed_at == at
    for bad in ("sku,quantity\nA,3\n", "[1, 2]", "sku,location,quantity\nA,W,three\n"):
        with pytest.raises(SnapshotError):
            read_file("erp", bad, observed_at=at)
    with pytest.raises(SnapshotError):
        read_file("erp", "sku,location,quantity\nA,W,3\n")


def test_the_reconcile_command_prints_a_table_json_and_csv(sqlite_url, tmp_path, monkeypatch):
    from cli.main import app

    monkeypatch.setenv("LEDGER_DATABASE_URL", sqlite_url)
    c = bootstrap(Settings(database_url=sqlite_url))
    a = "SKU-" + uuid.uuid4().hex[:8]
    c.ledger.receive(a, "WH", 6, "po-" + a)
    c.close()
    f = tmp_path / "levels.csv"
    f.write_text(f"sku,location,quantity\n{a},WH,6\n{a},STORE,2\n")
    at = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    runner = CliRunner()
    r = runner.invoke(app, ["reconcile", "pos", str(f), "--observed-at", at])
    assert r.exit_code == 1 and "unexplained" in r.output and "STORE" in r.output  # drift: exit 1
    r = runner.invoke(app, ["reconcile", "pos", str(f), "--observed-at", at, "--format", "json"])
    report = json.loads(r.output)
    assert report["matched"] == 1 and report["mismatches"][0]["location"] == "STORE"
    r = runner.invoke(app, ["reconcile", "pos", str(f), "--observed-at", at, "--format", "csv"])
    assert r.output.splitlines()[0].startswith("reconciliation,source,measure")
    r = runner.invoke(app, ["reconcile", "pos", str(tmp_path / "missing.csv"), "--observed-at", at])
    assert r.exit_code == 2
