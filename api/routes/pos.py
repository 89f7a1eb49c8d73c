"""POS batches: validated and stored in the request, applied by the inbox worker."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import TypeAdapter, ValidationError

from adapters import pos
from api.deps import ContainerDep, Ingester, body_json, read_json, store_message
from api.fastpath import Answer, Call, Lean, dumped
from api.models import problems
from api.openapi import json_body
from api.problems import Problem, validation_problem
from api.schemas import StoredMessage
from bootstrap import Container

router = APIRouter(tags=["pos"])


@router.post(
    "/v1/pos/batches",
    response_model=StoredMessage,
    responses=problems("delivery-id-reused", "pos-sequence-conflict"),
    openapi_extra=json_body(pos.PosBatch, "PosBatch"),
)
async def post_batch(request: Request, container: ContainerDep, _: Ingester) -> dict[str, Any]:
    """A POS batch `{store, batch_id, sequence, transactions}`; a repeat changes nothing."""
    body, payload = await read_json(request, container)
    return await _store(container, body, payload)


async def _store(container: Container, body: bytes, payload: Any) -> dict[str, Any]:
    try:
        batch = pos.PosBatch.model_validate(payload)
    except ValidationError as e:
        raise validation_problem(e) from None
    try:
        return await store_message(
            container,
            "pos",
            pos.external_id(batch.store, batch.batch_id),
            "batch",
            body,
            payload,
            on_new=pos.on_stored(batch),
        )
    except pos.SequenceConflict as e:
        raise Problem(409, "pos-sequence-conflict", str(e)) from None


async def lean_batch(call: Call) -> Answer | None:
    """`post_batch` on the lean path (`api.fastpath`): a kept key, no query, a body read."""
    body = call.body
    if body is None or call.query or call.principal("ingest:write") is None:
        return None
    payload = body_json(body, call.container.settings.max_body_bytes, call.header(b"content-length"))
    return Answer(200, dumped(STORED, await _store(call.container, body, payload)))


STORED = TypeAdapter(StoredMessage)
LEAN = [Lean("POST", "/v1/pos/batches", router, post_batch, lean_batch)]
