"""Read models (admin): their position and lag, and rebuilds.

`POST /v1/projections/{name}/rebuild` answers 202 with a job at once; the rebuild runs in
the background (shadow tables, then an atomic swap) while queries keep answering, and
`GET /v1/projections` shows the job's state and its result. A second rebuild of the same
read model while one runs answers 409.
"""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from adapters.bootstrap import Container
from api.deps import Admin, ContainerDep
from api.problems import Problem
from projections.rebuild import NAMES, rebuild

router = APIRouter(tags=["projections"])

_lock = threading.Lock()


def _jobs(container: Container) -> dict[str, dict[str, Any]]:
    return container.extras.setdefault("rebuild_jobs", {})


def _run(container: Container, job: dict[str, Any]) -> None:
    try:
        job["result"] = rebuild(container.extras["projector"], job["name"], by=job["started_by"])
        job["state"] = "done"
    except Exception as e:  # the job reports it; nothing half-built is visible (the swap is atomic)
        job["state"], job["error"] = "failed", type(e).__name__
    job["finished_at"] = datetime.now(UTC).isoformat()


@router.get("/v1/projections")
async def list_projections(container: ContainerDep, _: Admin) -> dict[str, Any]:
    """Each read model with its position and lag (positions, seconds), and recent rebuild jobs."""
    items = await run_in_threadpool(container.extras["projector"].status)
    return {"items": items, "jobs": list(_jobs(container).values())[-20:]}


@router.post("/v1/projections/{name}/rebuild", status_code=202)
async def start_rebuild(name: str, container: ContainerDep, principal: Admin) -> JSONResponse:
    """Starts a rebuild (202 with a job; poll `GET /v1/projections`)."""
    if name not in NAMES:
        raise Problem(
            404, "unknown-projection", f"no read model named {name[:64]!r}; known: {', '.join(NAMES)}"
        )
    with _lock:
        jobs = _jobs(container)
        if any(j["name"] == name and j["state"] == "running" for j in jobs.values()):
            raise Problem(409, "rebuild-running", f"a rebuild of {name} is running")
        job = {
            "id": uuid.uuid4().hex[:12],
            "name": name,
            "state": "running",
            "started_at": datetime.now(UTC).isoformat(),
            "started_by": principal.name,
        }
        jobs[job["id"]] = job
    await run_in_threadpool(
        container.keys.audit,
        f"{principal.name} ({principal.key_id})",
        "projection.rebuild",
        name,
        {"job": job["id"]},
    )
    threading.Thread(target=_run, args=(container, job), name=f"rebuild-{name}", daemon=True).start()
    return JSONResponse(dict(job), status_code=202)
