"""Mappings from Shopify, POS and ERP codes to canonical names: versioned, audited, remappable."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict
from starlette.concurrency import run_in_threadpool

from adapters.keys import Principal
from adapters.mappings import mapping_key
from api.deps import Admin, Auditor, ContainerDep
from api.problems import Problem
from ledger.bounds import check_id
from ledger.errors import InvalidCommandError

router = APIRouter(tags=["mappings"])

Source = Literal["shopify", "pos", "erp"]
Kind = Literal["sku", "location", "channel", "inventory_item"]  # inventory_item: Shopify only


class MappingBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    canonical: str


def _actor(p: Principal) -> str:
    return f"{p.name} ({p.key_id})"


def _check(external_id: str) -> None:
    try:
        check_id(external_id, "external_id")
    except InvalidCommandError as e:
        raise Problem(422, "validation-error", e.message) from None


@router.put("/v1/mappings/{source}/{kind}/{external_id}")
async def put_mapping(
    source: Source, kind: Kind, external_id: str, body: MappingBody, container: ContainerDep, principal: Admin
) -> dict[str, Any]:
    """Sets a mapping (a new version, kept with who and when); parked messages that needed it are retried."""
    _check(external_id)
    if kind == "inventory_item" and source != "shopify":
        raise Problem(422, "validation-error", "kind inventory_item exists for source shopify only")
    try:
        check_id(body.canonical, "canonical")
    except InvalidCommandError as e:
        raise Problem(422, "validation-error", e.message) from None
    store = container.extras["mappings"]
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
            container.extras["inbox"].requeue_using, mapping_key(source, kind, external_id)
        )
        worker = container.extras.get("inbox_worker")
        if worker is not None and requeued:
            worker.wake()
    return {**change, "requeued": len(requeued)}


@router.get("/v1/mappings")
async def list_mappings(
    container: ContainerDep, _: Auditor, source: Source | None = None, kind: Kind | None = None
) -> dict[str, Any]:
    """Current mappings."""
    return {"items": await run_in_threadpool(container.extras["mappings"].list, source, kind)}


@router.get("/v1/mappings/{source}/{kind}/{external_id}")
async def get_mapping(
    source: Source, kind: Kind, external_id: str, container: ContainerDep, _: Auditor
) -> dict[str, Any]:
    """A mapping's current value and every version (who, when, old value, new value)."""
    _check(external_id)
    store = container.extras["mappings"]
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


@router.post("/v1/mappings/{source}/{kind}/{external_id}/remap")
async def remap(
    source: Source, kind: Kind, external_id: str, container: ContainerDep, principal: Admin
) -> dict[str, Any]:
    """Re-translates the messages that used this mapping; mis-posted movements get correction events."""
    _check(external_id)
    return await run_in_threadpool(
        container.extras["remapper"].remap, source, kind, external_id, _actor(principal)
    )
