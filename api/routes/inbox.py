"""The inbox: inbound messages with their status; and the helpers the intake routes share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import orjson
from fastapi import APIRouter, Query, Request
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from adapters.inbox import Stored, fingerprint
from adapters.persistence.db import Tx
from api.deps import Auditor, ContainerDep
from api.problems import Problem
from bootstrap import Container

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


@router.get("/v1/inbox")
async def list_inbox(
    container: ContainerDep,
    _: Auditor,
    status: Status | None = None,
    source: Literal["shopify", "pos", "erp"] | None = None,
    after: int = Query(0, ge=0),
    limit: int = Query(100, ge=1, le=1000),
) -> dict[str, Any]:
    """Inbound messages with their source, external id, status and reason, oldest first."""
    rows = await run_in_threadpool(container.inbox.list, status, source, after, limit)
    items = [_public(r) for r in rows]
    return {"items": items, "next": items[-1]["id"] if len(items) == limit else None}


@router.get("/v1/inbox/{inbox_id}")
async def get_message(inbox_id: int, container: ContainerDep, _: Auditor) -> dict[str, Any]:
    """One inbound message (its headers and outcome; not its raw body)."""
    row = await run_in_threadpool(container.inbox.get, inbox_id)
    if row is None:
        raise Problem(404, "not-found", f"no inbound message {inbox_id}")
    return {**_public(row), "headers": row["headers"]}


# ----------------------------------------------------------- intake helpers


async def read_json(request: Request, container: Container) -> tuple[bytes, Any]:
    """The raw body (bounded) and its parsed JSON; 413 or 400 problems otherwise."""
    limit = container.settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Problem(413, "body-too-large", f"the body exceeds {limit} bytes")
    body = await request.body()
    if len(body) > limit:
        raise Problem(413, "body-too-large", f"the body exceeds {limit} bytes")
    try:
        return body, orjson.loads(body)
    except orjson.JSONDecodeError:
        raise Problem(400, "malformed-json", "the body is not valid JSON") from None


def validation_problem(e: ValidationError) -> Problem:
    errors = [
        {
            "loc": [str(x) for x in err.get("loc", ())],
            "msg": str(err.get("msg", "")),
            "type": str(err.get("type", "")),
        }
        for err in e.errors()
    ]
    return Problem(422, "validation-error", "the message does not satisfy the schema", errors=errors)


async def store(
    container: Container,
    source: str,
    external_id: str,
    kind: str,
    body: bytes,
    payload: Any,
    headers: dict[str, str] | None = None,
    status: str = "received",
    reason: str | None = None,
    on_new: Callable[[Tx, int], None] | None = None,
) -> dict[str, Any]:
    """Stores a message once per delivery id and answers with its (first) status."""
    print_ = fingerprint(payload)
    stored: Stored = await run_in_threadpool(
        container.inbox.store,
        source,
        external_id,
        kind,
        body,
        headers or {},
        print_,
        status,
        reason,
        on_new,
    )
    if not stored.created and stored.row["fingerprint"] != print_ and source != "shopify":
        raise Problem(
            409,
            "delivery-id-reused",
            f"{external_id} was already received with other content",
            inbox_id=stored.row["id"],
        )
    if stored.created:
        container.inbox_worker.wake()
    row = stored.row
    return {
        "inbox_id": row["id"],
        "status": row["status"],
        "reason": row["reason"],
        "duplicate": not stored.created,
        "outcome": row["outcome"],
    }
