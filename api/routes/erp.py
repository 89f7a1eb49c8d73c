"""Inbound ERP messages: goods receipts, transfers, cycle counts, advance shipping notices and
invoices (ingest:write)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import ValidationError

from adapters import erp
from api.deps import ContainerDep, Ingester, read_json, store_message
from api.models import problems
from api.openapi import json_body
from api.problems import validation_problem
from api.schemas import StoredMessage
from bootstrap import Container

router = APIRouter(tags=["erp"])

# Stored once per `message_id`: the same id with other content is refused.
STORED = problems("delivery-id-reused")


async def _receive(request: Request, container: Container, kind: str) -> dict[str, Any]:
    body, payload = await read_json(request, container)
    try:
        message = erp.SHAPES[kind].model_validate(payload)
    except ValidationError as e:
        raise validation_problem(e) from None
    return await store_message(container, "erp", message.message_id, kind, body, payload)


@router.post(
    "/v1/erp/goods-receipts",
    response_model=StoredMessage,
    responses=STORED,
    openapi_extra=json_body(erp.GoodsReceipt, "ErpGoodsReceipt"),
)
async def goods_receipt(request: Request, container: ContainerDep, _: Ingester) -> dict[str, Any]:
    """`{message_id, receipt_id, location, lines: [{sku, quantity}]}`: units received at a location."""
    return await _receive(request, container, "goods-receipt")


@router.post(
    "/v1/erp/transfers",
    response_model=StoredMessage,
    responses=STORED,
    openapi_extra=json_body(erp.Transfer, "ErpTransfer"),
)
async def transfer(request: Request, container: ContainerDep, _: Ingester) -> dict[str, Any]:
    """`{message_id, transfer_id, from_location, to_location, status?, lines: [{sku, quantity}]}`:
    `dispatched` takes the units off on hand at the source and makes them incoming at the
    destination, `received` lands them; without a status the transfer is immediate."""
    return await _receive(request, container, "transfer")


@router.post(
    "/v1/erp/advance-shipping-notices",
    response_model=StoredMessage,
    responses=STORED,
    openapi_extra=json_body(erp.AdvanceShippingNotice, "ErpAdvanceShippingNotice"),
)
async def advance_shipping_notice(request: Request, container: ContainerDep, _: Ingester) -> dict[str, Any]:
    """`{message_id, asn_id, location, expected_at, lines: [{sku, quantity}]}`: units `incoming` at
    the location until a goods receipt naming `asn_id` lands them."""
    return await _receive(request, container, "advance-shipping-notice")


@router.post(
    "/v1/erp/cycle-counts",
    response_model=StoredMessage,
    responses=STORED,
    openapi_extra=json_body(erp.CycleCount, "ErpCycleCount"),
)
async def cycle_count(request: Request, container: ContainerDep, _: Ingester) -> dict[str, Any]:
    """`{message_id, count_id, location, counted_at, lines: [{sku, counted}]}`: absolute counts."""
    return await _receive(request, container, "cycle-count")


@router.post(
    "/v1/erp/invoices",
    response_model=StoredMessage,
    responses=STORED,
    openapi_extra=json_body(erp.Invoice, "ErpInvoice"),
)
async def invoice(request: Request, container: ContainerDep, _: Ingester) -> dict[str, Any]:
    """`{message_id, invoice_id, order_id, amount, currency}`: the ERP invoiced the order."""
    return await _receive(request, container, "invoice")
