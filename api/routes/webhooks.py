"""Shopify webhooks: verified, stored, answered at once; applied by the inbox worker."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import ValidationError

from adapters import shopify
from adapters.inbox import Status
from api.deps import ContainerDep, read_json, store_message
from api.problems import Problem, validation_problem

router = APIRouter(tags=["webhooks"])


def _header_id(value: str | None, name: str) -> str:
    if value is None or not 1 <= len(value) <= 128 or not value.isprintable():
        raise Problem(400, "missing-header", f"{name} must be 1 to 128 printable characters")
    return value


@router.post("/v1/webhooks/shopify")
async def shopify_webhook(request: Request, container: ContainerDep) -> dict[str, Any]:
    """A Shopify webhook delivery (Shopify's own headers and HMAC; no bearer token)."""
    limit = container.settings.max_body_bytes
    body = await request.body()
    if len(body) > limit:
        raise Problem(413, "body-too-large", f"the body exceeds {limit} bytes")
    signature = request.headers.get("x-shopify-hmac-sha256")
    if not shopify.verify_hmac(body, signature, container.settings.webhook_secrets):
        raise Problem(401, "invalid-signature", "the X-Shopify-Hmac-Sha256 signature is missing or wrong")
    webhook_id = _header_id(request.headers.get("x-shopify-webhook-id"), "X-Shopify-Webhook-Id")
    topic = _header_id(request.headers.get("x-shopify-topic"), "X-Shopify-Topic")
    _, payload = await read_json(request, container)
    headers = {k: request.headers[k] for k in shopify.HEADERS_KEPT if k in request.headers}
    status: Status = Status.RECEIVED
    reason: str | None = None
    if topic in shopify.SHAPES:
        try:
            shopify.parse(topic, payload)
        except ValidationError as e:
            raise validation_problem(e) from None
    else:
        status, reason = Status.REJECTED, f"unsupported topic {topic}"
    return await store_message(container, "shopify", webhook_id, topic, body, payload, headers, status, reason)
