"""Reconciliation: outside inventory levels compared with the ledger, with drift diagnosed."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from adapters.fields import Id
from adapters.reconciliation import report as reports
from adapters.reconciliation.engine import MAX_LEVELS
from adapters.reconciliation.ports import Level, Snapshot
from api.deps import Auditor, ReconcilerDep
from api.problems import Problem
from ledger.bounds import MAX_QUANTITY

router = APIRouter(tags=["reconciliations"])


class LevelIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    sku: Id
    location: Id
    quantity: Annotated[int, Field(ge=-MAX_QUANTITY, le=MAX_QUANTITY)]
    observed_at: AwareDatetime | None = None


class ReconciliationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source: Literal["shopify", "erp", "pos"]
    observed_at: AwareDatetime
    levels: list[LevelIn] = Field(max_length=MAX_LEVELS)


Format = Annotated[Literal["json", "csv"], Query(description="`csv` gives the finance export")]


CSV_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The report: JSON, or CSV with `?format=csv`",
        "content": {"text/csv": {"schema": {"type": "string"}}},
    }
}


def _answer(report: dict[str, Any], fmt: str) -> Any:
    if fmt == "csv":
        return Response(
            reports.to_csv(report),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="reconciliation-{report["id"]}.csv"'},
        )
    return report


@router.post("/v1/reconciliations", responses=CSV_RESPONSE)
async def reconcile(
    body: ReconciliationIn, reconciler: ReconcilerDep, _: Auditor, format: Format = "json"
) -> Any:
    """Compare outside levels with the ledger as of `observed_at`; each mismatch with its ranked causes."""
    snap = Snapshot(
        body.source,
        body.observed_at,
        [Level(x.sku, x.location, x.quantity, x.observed_at) for x in body.levels],
        origin="api",
    )
    report = await run_in_threadpool(reconciler.reconcile, snap)
    return _answer(report, format)


@router.get("/v1/reconciliations")
async def recent(
    reconciler: ReconcilerDep,
    _: Auditor,
    source: Literal["shopify", "erp", "pos"] | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    """Recent reconciliation runs, newest first (summaries)."""
    assert reconciler.runs is not None
    items = await run_in_threadpool(reconciler.runs.recent, source, limit)
    return {"items": items}


@router.get("/v1/reconciliations/{run_id}", responses=CSV_RESPONSE)
async def one(
    run_id: Annotated[str, Path(max_length=64)], reconciler: ReconcilerDep, _: Auditor, format: Format = "json"
) -> Any:
    """One run's full report (JSON, or CSV for finance)."""
    assert reconciler.runs is not None
    found = await run_in_threadpool(reconciler.runs.get, run_id)
    if found is None:
        raise Problem(404, "reconciliation-not-found", f"no reconciliation {run_id[:64]}")
    return _answer(found, format)
