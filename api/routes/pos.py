"""POS batches: validated and stored in the request, applied by the inbox worker."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import ValidationError

from adapters import pos
from api.deps import ContainerDep, Ingester, read_json, store_message
from api.models import problems
from api.openapi import json_body
from api.problems import Problem, validation_problem
from api.schemas import StoredMessage

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
