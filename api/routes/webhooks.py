"""Shopify webhooks: verified, stored, answered at once; applied by the inbox worker."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from fastapi import APIRouter, Request
from pydantic import ValidationError

from adapters import shopify
from adapters.inbox import Status
from api.deps import ContainerDep, body_json, store_message
from api.fastpath import Answer, Call, Lean
from api.problems import Problem, validation_problem
from bootstrap import Container

router = APIRouter(tags=["webhooks"])


def _header_id(value: str | None, name: str) -> str:
    if value is None or not 1 <= len(value) <= 128 or not value.isprintable():
        raise Problem(400, "missing-header", f"{name} must be 1 to 128 printable characters")
    return value


@router.post("/v1/webhooks/shopify")
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
    return Answer(200, orjson.dumps(await _take(call.container, call.headers, body)))


LEAN = [Lean("POST", "/v1/webhooks/shopify", router, shopify_webhook, lean_webhook)]
