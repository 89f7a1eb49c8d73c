"""POST /v1/reconciliations over HTTP: report, CSV export, scopes, hostile input."""

from __future__ import annotations

import csv
import io
import time
from datetime import UTC, datetime

from e2e_api import uid

from adapters.exceptions import list_exceptions


def now() -> str:
    time.sleep(0.002)
    return datetime.now(UTC).isoformat()


def seed(api, sku: str, quantity: int) -> None:
    r = api.post(
        "/v1/stock/receipts", {"sku": sku, "location": "WH", "quantity": quantity, "reference": uid("po-")}
    )
    assert r.status_code in (200, 201), r.text


def test_a_reconciliation_reports_mismatches_with_explanations_and_raises_drift(api):
    a, b = uid("SKU-"), uid("SKU-")
    seed(api, a, 10)
    seed(api, b, 5)
    body = {
        "source": "erp",
        "observed_at": now(),
        "levels": [{"sku": a, "location": "WH", "quantity": 10}, {"sku": b, "location": "WH", "quantity": 2}],
    }
    r = api.post("/v1/reconciliations", body, scope="audit:read")
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["compared"] == 2 and report["matched"] == 1
    (m,) = report["mismatches"]
    assert {k: m[k] for k in ("sku", "location", "external", "ledger", "delta")} == {
        "sku": b,
        "location": "WH",
        "external": 2,
        "ledger": 5,
        "delta": -3,
    }
    assert m["causes"][-1]["kind"] == "unexplained" and "unexplained" in m["explanation"]
    assert [e["key"] for e in list_exceptions(api.container.db, "drift")] == [f"erp/{b}/WH"]
    got = api.get(f"/v1/reconciliations/{report['id']}")
    assert got.status_code == 200 and got.json()["mismatches"] == report["mismatches"]


def test_the_finance_export_is_csv(api):
    a = uid("SKU-")
    seed(api, a, 4)
    body = {"source": "pos", "observed_at": now(), "levels": [{"sku": a, "location": "WH", "quantity": 1}]}
    r = api.client.post("/v1/reconciliations?format=csv", json=body, headers=api.auth("audit:read"))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    (row,) = list(csv.DictReader(io.StringIO(r.text)))
    assert (row["sku"], row["external"], row["ledger"], row["delta"], row["status"]) == (
        a,
        "1",
        "4",
        "-3",
        "drift",
    )


def test_reconciliation_needs_the_audit_scope(api):
    body = {"source": "erp", "observed_at": now(), "levels": []}
    assert api.client.post("/v1/reconciliations", json=body).status_code == 401
    assert api.post("/v1/reconciliations", body, scope="ingest:write").status_code == 403


def test_hostile_input_is_refused_with_a_problem_and_nothing_is_kept(api):
    level = {"sku": "A", "location": "WH", "quantity": 1}
    bad = [
        {"source": "erp", "levels": [level]},
        {"source": "sap", "observed_at": now(), "levels": [level]},
        {"source": "erp", "observed_at": "2026-01-01T00:00:00", "levels": [level]},
        {"source": "erp", "observed_at": now(), "levels": [{**level, "quantity": "1"}]},
        {"source": "erp", "observed_at": now(), "levels": [{**level, "quantity": 10**12}]},
        {"source": "erp", "observed_at": now(), "levels": [{**level, "sku": "a\x00b"}]},
        {"source": "erp", "observed_at": now(), "levels": [{**level, "sku": "x" * 129}]},
        {"source": "erp", "observed_at": now(), "levels": [level, {**level, "quantity": 2}]},
        {"source": "erp", "observed_at": now(), "levels": [{**level, "extra": 1}]},
        {"source": "erp", "observed_at": now(), "levels": "nope"},
    ]
    for body in bad:
        r = api.post("/v1/reconciliations", body, scope="audit:read")
        assert r.status_code == 422, (body, r.status_code, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
    r = api.client.post(
        "/v1/reconciliations",
        content=b"{not json",
        headers=api.auth("audit:read", **{"Content-Type": "application/json"}),
    )
    assert 400 <= r.status_code < 500
    assert api.get("/v1/reconciliations").json()["items"] == []
    assert api.get("/v1/reconciliations/nope").status_code == 404
