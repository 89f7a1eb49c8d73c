"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from api.deps import ContainerDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(container: ContainerDep) -> JSONResponse:
    """The database answers and the writer runs."""
    db_ok = await run_in_threadpool(container.db.ping)
    checks = {"database": "ok" if db_ok else "down"}
    for name, check in container.readiness.items():
        checks[name] = "ok" if check() else "degraded"
    status = 200 if db_ok else 503
    return JSONResponse({"status": "ok" if db_ok else "unavailable", "checks": checks}, status_code=status)
