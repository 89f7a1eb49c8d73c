"""Read models (admin): their position and lag, and rebuilds.

`POST /v1/projections/{name}/rebuild` answers 202 with a job at once; the rebuild runs in
the background (shadow tables, then an atomic swap) while queries keep answering, and
`GET /v1/projections` shows the job's state and its result. A second rebuild of the same
read model while one runs answers 409.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from api.deps import Admin, ContainerDep
from api.models import problems
from api.problems import Problem
from api.schemas import ProjectionList, RebuildJob
from projections.jobs import RebuildRunningError, UnknownProjectionError
from projections.rebuild import NAMES

router = APIRouter(tags=["projections"])


@router.get("/v1/projections", response_model=ProjectionList)
async def list_projections(container: ContainerDep, _: Admin) -> dict[str, Any]:
    """Each read model with its position and lag (positions, seconds), and recent rebuild jobs."""
    items = await run_in_threadpool(container.projector.status)
    return {"items": items, "jobs": container.rebuilds.recent(20)}


@router.post(
    "/v1/projections/{name}/rebuild",
    status_code=202,
    response_model=RebuildJob,
    responses=problems("unknown-projection", "rebuild-running"),
)
async def start_rebuild(name: str, container: ContainerDep, principal: Admin) -> JSONResponse:
    """Starts a rebuild (202 with a job; poll `GET /v1/projections`)."""
    try:
        job = container.rebuilds.start(name, by=principal.name)
    except UnknownProjectionError:
        raise Problem(
            404, "unknown-projection", f"no read model named {name[:64]!r}; known: {', '.join(NAMES)}"
        ) from None
    except RebuildRunningError:
        raise Problem(409, "rebuild-running", f"a rebuild of {name} is running") from None
    await run_in_threadpool(
        container.keys.audit,
        f"{principal.name} ({principal.key_id})",
        "projection.rebuild",
        name,
        {"job": job["id"]},
    )
    return JSONResponse(dict(job), status_code=202)
