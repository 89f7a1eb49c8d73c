"""Mappings from Shopify, POS and ERP codes to canonical names: versioned, audited, remappable."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from adapters.keys import Principal
from adapters.mappings import mapping_key
from api.deps import Admin, Auditor, ContainerDep, valid_id
from api.models import problems
from api.problems import Problem
from api.schemas import MappingChange, MappingHistory, MappingList, RemapResult

router = APIRouter(tags=["mappings"])

Source = Literal["shopify", "pos", "erp"]
Kind = Literal["sku", "location", "channel", "inventory_item"]  # inventory_item: Shopify only


class MappingBody(BaseModel):
    """The ledger's name for an outside code."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"canonical": "SKU-RED-M"}]})
    canonical: str = Field(
        description="The canonical SKU, location or channel (1 to 128 printable characters)."
    )


def _actor(p: Principal) -> str:
    return f"{p.name} ({p.key_id})"


@router.put("/v1/mappings/{source}/{kind}/{external_id}", response_model=MappingChange)
async def put_mapping(
    source: Source, kind: Kind, external_id: str, body: MappingBody, container: ContainerDep, principal: Admin
) -> dict[str, Any]:
    """Sets a mapping (a new version, kept with who and when); parked messages that needed it are retried."""
    valid_id(external_id, "external_id")
    if kind == "inventory_item" and source != "shopify":
        raise Problem(422, "validation-error", "kind inventory_item exists for source shopify only")
    valid_id(body.canonical, "canonical")
    store = container.mappings
    change = await run_in_threadpool(store.set, source, kind, external_id, body.canonical, _actor(principal))
    requeued: list[int] = []
    if change["changed"]:
        await run_in_threadpool(
            container.keys.audit,
            _actor(principal),
            "mapping.set",
            mapping_key(source, kind, external_id),
            {"old": change["old"], "new": change["canonical"], "version": change["version"]},
        )
        requeued = await run_in_threadpool(
            container.inbox.requeue_using, mapping_key(source, kind, external_id)
        )
        if requeued:
            container.inbox_worker.wake()
    return {**change, "requeued": len(requeued)}


@router.get("/v1/mappings", response_model=MappingList)
async def list_mappings(
    container: ContainerDep, _: Auditor, source: Source | None = None, kind: Kind | None = None
) -> dict[str, Any]:
    """Current mappings."""
    return {"items": await run_in_threadpool(container.mappings.list, source, kind)}


@router.get(
    "/v1/mappings/{source}/{kind}/{external_id}",
    response_model=MappingHistory,
    responses=problems((404, "not-found")),
)
async def get_mapping(
    source: Source, kind: Kind, external_id: str, container: ContainerDep, _: Auditor
) -> dict[str, Any]:
    """A mapping's current value and every version (who, when, old value, new value)."""
    valid_id(external_id, "external_id")
    store = container.mappings
    current = await run_in_threadpool(store.get, source, kind, external_id)
    history = await run_in_threadpool(store.history, source, kind, external_id)
    if current is None and not history:
        raise Problem(404, "not-found", f"no mapping {mapping_key(source, kind, external_id)}")
    return {
        "source": source,
        "kind": kind,
        "external_id": external_id,
        "canonical": None if current is None else current[0],
        "version": None if current is None else current[1],
        "history": history,
    }


@router.post(
    "/v1/mappings/{source}/{kind}/{external_id}/remap",
    response_model=RemapResult,
    responses=problems("correction-conflict"),
)
async def remap(
    source: Source, kind: Kind, external_id: str, container: ContainerDep, principal: Admin
) -> dict[str, Any]:
    """Re-translates the messages that used this mapping; mis-posted movements get correction events."""
    valid_id(external_id, "external_id")
    return await run_in_threadpool(container.remapper.remap, source, kind, external_id, _actor(principal))
