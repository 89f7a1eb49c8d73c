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
from api.models import problems
from api.problems import Problem
from api.schemas import Reconciliation, ReconciliationList
from ledger.bounds import MAX_QUANTITY

router = APIRouter(tags=["reconciliations"])


class LevelIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    sku: Id = Field(description="The SKU.")
    location: Id = Field(description="The location.")
    quantity: Annotated[int, Field(ge=-MAX_QUANTITY, le=MAX_QUANTITY)] = Field(
        description="The units the outside system holds there."
    )
    observed_at: AwareDatetime | None = Field(
        None, description="When this level was true, if not `observed_at`."
    )


class ReconciliationIn(BaseModel):
    """Outside inventory levels, to compare with the ledger as of `observed_at`."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "source": "erp",
                    "observed_at": "2026-11-20T06:00:00Z",
                    "levels": [{"sku": "SKU-RED-M", "location": "WH1", "quantity": 21}],
                }
            ]
        },
    )
    source: Literal["shopify", "erp", "pos"] = Field(description="Whose levels these are.")
    observed_at: AwareDatetime = Field(description="When the levels were true (RFC 3339).")
    levels: list[LevelIn] = Field(max_length=MAX_LEVELS, description="One per SKU-location.")


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


@router.post("/v1/reconciliations", response_model=Reconciliation, responses=CSV_RESPONSE)
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


@router.get("/v1/reconciliations", response_model=ReconciliationList)
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


@router.get(
    "/v1/reconciliations/{run_id}",
    response_model=Reconciliation,
    responses={**CSV_RESPONSE, **problems("reconciliation-not-found")},
)
async def one(
    run_id: Annotated[str, Path(max_length=64)],
    reconciler: ReconcilerDep,
    _: Auditor,
    format: Format = "json",
) -> Any:
    """One run's full report (JSON, or CSV for finance)."""
    assert reconciler.runs is not None
    found = await run_in_threadpool(reconciler.runs.get, run_id)
    if found is None:
        raise Problem(404, "reconciliation-not-found", f"no reconciliation {run_id[:64]}")
    return _answer(found, format)
