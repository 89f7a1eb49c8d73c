"""Shopify webhooks: verified, stored, answered at once; applied by the inbox worker."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Request
from pydantic import TypeAdapter, ValidationError

from adapters import shopify
from adapters.inbox import Status
from api.deps import ContainerDep, body_json, store_message
from api.fastpath import Answer, Call, Lean, dumped
from api.models import problems
from api.problems import Problem, validation_problem
from api.schemas import StoredMessage
from bootstrap import Container

router = APIRouter(tags=["webhooks"])


def _shopify_header(name: str, description: str, example: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "header",
        "required": True,
        "description": description,
        "schema": {"type": "string", "minLength": 1, "maxLength": 128},
        "example": example,
    }


# Shopify's own delivery: its raw body (HMAC-signed) and headers, described for the record.
WEBHOOK_DOC: dict[str, Any] = {
    "parameters": [
        _shopify_header(
            "X-Shopify-Hmac-Sha256",
            "Base64 HMAC-SHA256 of the raw body with the app secret.",
            "XWmrwMey6OsLMeiZKwP4FppHH3cmAiiJJAweH5Jo4bM=",
        ),
        _shopify_header("X-Shopify-Topic", "The webhook topic.", "orders/create"),
        _shopify_header(
            "X-Shopify-Webhook-Id",
            "The delivery's id: a repeat is stored once.",
            "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
        ),
        _shopify_header("X-Shopify-Shop-Domain", "The shop that sent it.", "acme.myshopify.com"),
    ],
    "requestBody": {
        "required": True,
        "description": "Shopify's payload for the topic, as Shopify sends it.",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "additionalProperties": True,
                    "description": "The topic's resource (an order, a refund, a fulfillment, ...).",
                },
                "example": {"id": 820982911946154508, "name": "#1001", "line_items": []},
            }
        },
    },
}


def _header_id(value: str | None, name: str) -> str:
    if value is None or not 1 <= len(value) <= 128 or not value.isprintable():
        raise Problem(400, "missing-header", f"{name} must be 1 to 128 printable characters")
    return value


@router.post(
    "/v1/webhooks/shopify",
    response_model=StoredMessage,
    responses=problems("invalid-signature", "missing-header", "malformed-json"),
    openapi_extra=WEBHOOK_DOC,
)
async def shopify_webhook(request: Request, container: ContainerDep) -> dict[str, Any]:
    """A Shopify webhook delivery (Shopify's own headers and HMAC; no bearer token)."""
    return await _take(container, request.headers, await request.body())


async def _take(container: Container, headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
    limit = container.settings.max_body_bytes
    if len(body) > limit:
        raise Problem(413, "body-too-large", f"the body exceeds {limit} bytes")
    signature = headers.get("x-shopify-hmac-sha256")
    if not shopify.verify_hmac(body, signature, container.settings.webhook_secrets):
        raise Problem(401, "invalid-signature", "the X-Shopify-Hmac-Sha256 signature is missing or wrong")
    webhook_id = _header_id(headers.get("x-shopify-webhook-id"), "X-Shopify-Webhook-Id")
    topic = _header_id(headers.get("x-shopify-topic"), "X-Shopify-Topic")
    payload = body_json(body, limit, headers.get("content-length"))
    kept = {k: headers[k] for k in shopify.HEADERS_KEPT if k in headers}
    status: Status = Status.RECEIVED
    reason: str | None = None
    if topic in shopify.SHAPES:
        try:
            shopify.parse(topic, payload)
        except ValidationError as e:
            raise validation_problem(e) from None
    else:
        status, reason = Status.REJECTED, f"unsupported topic {topic}"
    return await store_message(container, "shopify", webhook_id, topic, body, payload, kept, status, reason)


async def lean_webhook(call: Call) -> Answer | None:
    """`shopify_webhook` on the lean path (`api.fastpath`): every answer, once the body is read."""
    body = call.body
    if body is None or call.query:
        return None
    return Answer(200, dumped(STORED, await _take(call.container, call.headers, body)))


STORED = TypeAdapter(StoredMessage)
LEAN = [Lean("POST", "/v1/webhooks/shopify", router, shopify_webhook, lean_webhook)]
