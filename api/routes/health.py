"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from api.deps import ContainerDep
from api.schemas import Health, Readiness

router = APIRouter(tags=["health"])

STATES = ("ok", "degraded", "not-configured")


@router.get("/healthz", response_model=Health)
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "The database does not answer."}},
)
async def readyz(container: ContainerDep) -> JSONResponse:
    """The database answers (else 503); every other dependency is named `ok`, `degraded` or
    `not-configured` (a check answers one of those, or a bool for ok/degraded)."""
    db_ok = await run_in_threadpool(container.db.ping)
    checks = {"database": "ok" if db_ok else "down"}
    for name, check in container.readiness.items():
        state = check()
        checks[name] = state if state in STATES else "ok" if state is True else "degraded"
    status = 200 if db_ok else 503
    return JSONResponse({"status": "ok" if db_ok else "unavailable", "checks": checks}, status_code=status)
