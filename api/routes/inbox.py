"""The inbox: inbound messages with their status."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from adapters.inbox import Status as InboxStatus
from api.deps import Auditor, InboxDep
from api.models import problems
from api.problems import Problem
from api.schemas import InboxMessageDetail, InboxPage

router = APIRouter(tags=["inbox"])

Status = Literal["received", "applied", "parked", "waiting", "duplicate", "rejected"]


def _public(row: dict[str, Any]) -> dict[str, Any]:
    """A message as the API shows it: never the raw body (it may hold personal data)."""
    return {
        "id": row["id"],
        "source": row["source"],
        "external_id": row["external_id"],
        "kind": row["kind"],
        "status": row["status"],
        "reason": row["reason"],
        "received_at": row["received_at"],
        "updated_at": row["updated_at"],
        "deliveries": row["deliveries"],
        "attempts": row["attempts"],
        "wait_for": row["wait_for"],
        "mapping_version": row["mapping_version"],
        "outcome": row["outcome"],
    }


@router.get("/v1/inbox", response_model=InboxPage)
async def list_inbox(
    inbox: InboxDep,
    _: Auditor,
    status: Status | None = None,
    source: Literal["shopify", "pos", "erp"] | None = None,
    after: int = Query(0, ge=0),
    limit: int = Query(100, ge=1, le=1000),
) -> dict[str, Any]:
    """Inbound messages with their source, external id, status and reason, oldest first."""
    wanted = None if status is None else InboxStatus(status)
    rows = await run_in_threadpool(inbox.list, wanted, source, after, limit)
    items = [_public(r) for r in rows]
    return {"items": items, "next": items[-1]["id"] if len(items) == limit else None}


@router.get("/v1/inbox/{inbox_id}", response_model=InboxMessageDetail, responses=problems((404, "not-found")))
async def get_message(inbox_id: int, inbox: InboxDep, _: Auditor) -> dict[str, Any]:
    """One inbound message (its headers and outcome; not its raw body)."""
    row = await run_in_threadpool(inbox.get, inbox_id)
    if row is None:
        raise Problem(404, "not-found", f"no inbound message {inbox_id}")
    return {**_public(row), "headers": row["headers"]}
