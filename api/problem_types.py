"""The problem-type registry: what each problem `type` means and what to do about it.

Every `type` the API answers is `https://ledger.example/problems/{name}`; `GET /problems/{name}`
describes it (HTML for a browser, JSON for `Accept: application/json`). A test checks that every
name the code can answer is registered here.
"""

from __future__ import annotations

import html
from typing import NamedTuple

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from api.problems import Problem

router = APIRouter(tags=["health"])


class ProblemType(NamedTuple):
    status: int
    title: str
    meaning: str
    action: str


PROBLEM_TYPES: dict[str, ProblemType] = {
    "malformed-request": ProblemType(
        400,
        "Malformed request",
        "The request could not be read as HTTP the API understands.",
        "Fix the request; resending it unchanged will fail again.",
    ),
    "malformed-json": ProblemType(
        400, "Malformed JSON", "The body is not valid JSON.", "Send a JSON document encoded as UTF-8."
    ),
    "missing-header": ProblemType(
        400,
        "Missing header",
        "A header the route needs is missing (for Shopify webhooks: "
        "X-Shopify-Topic, X-Shopify-Hmac-Sha256, X-Shopify-Shop-Domain, X-Shopify-Webhook-Id).",
        "Send the header named in `detail`.",
    ),
    "unauthenticated": ProblemType(
        401,
        "Unauthenticated",
        "No bearer token, or the token is unknown, expired or revoked.",
        "Send `Authorization: Bearer <token>` with a live key (`ledger keys create`).",
    ),
    "invalid-signature": ProblemType(
        401,
        "Invalid signature",
        "The Shopify webhook's HMAC does not match any configured secret.",
        "Check LEDGER_SHOPIFY_WEBHOOK_SECRETS holds the app's client secret "
        "(both during a rotation). Nothing was stored.",
    ),
    "forbidden": ProblemType(
        403,
        "Forbidden",
        "The key lacks the scope the route needs.",
        "Use a key with the scope named in `detail` (admin holds every scope).",
    ),
    "not-found": ProblemType(
        404, "Not found", "No such route or resource.", "Check the path; ids are percent-encoded."
    ),
    "order-not-found": ProblemType(
        404,
        "Order not found",
        "The ledger has no order with that id.",
        "Capture the order first (POST /v1/orders), or check the id.",
    ),
    "reservation-not-found": ProblemType(
        404,
        "Reservation not found",
        "The ledger has no hold with that reservation id.",
        "Place the hold first (POST /v1/reservations), or check the id.",
    ),
    "stock-not-found": ProblemType(
        404,
        "Stock not found",
        "The SKU-location has no events yet.",
        "Receive stock there first; a SKU-location exists from its first movement.",
    ),
    "reconciliation-not-found": ProblemType(
        404,
        "Reconciliation not found",
        "No reconciliation run has that id.",
        "List runs with GET /v1/reconciliations.",
    ),
    "method-not-allowed": ProblemType(
        405,
        "Method not allowed",
        "The route does not take that method.",
        "See /docs for the methods of the route.",
    ),
    "insufficient-stock": ProblemType(
        409,
        "Insufficient stock",
        "The channel's locations cannot hold or take the units asked for; nothing was reserved or moved.",
        "Ask for no more than `available`, allow a partial capture (`allow_partial`), "
        "or receive stock first.",
    ),
    "reservation-conflict": ProblemType(
        409,
        "Reservation conflict",
        "The reservation does not hold what the command needs (already released, shipped or expired).",
        "Read the order and act on what it still holds.",
    ),
    "order-conflict": ProblemType(
        409,
        "Order conflict",
        "The order's facts do not allow this (a different capture "
        "under the same id, or more shipped, cancelled or returned than the line holds).",
        "Read the order (GET /v1/orders/{id}) and send what fits it.",
    ),
    "correction-conflict": ProblemType(
        409,
        "Correction conflict",
        "The movement was already corrected, or its correction would oversell.",
        "Read the SKU-location's events.",
    ),
    "version-conflict": ProblemType(
        409,
        "Version conflict",
        "If-Match named a version that is no longer current.",
        "Read the resource again and retry with its current version.",
    ),
    "idempotency-key-in-progress": ProblemType(
        409,
        "Request in progress",
        "The first request with this Idempotency-Key is still running.",
        "Retry after `Retry-After` seconds: you will get its answer.",
    ),
    "delivery-id-reused": ProblemType(
        409,
        "Delivery id reused",
        "A message id (POS batch or ERP message_id) arrived again with other content; the first one stands.",
        "Send a new id for a new document; a true repeat must send the same body.",
    ),
    "unknown-projection": ProblemType(
        404,
        "Unknown read model",
        "No read model has that name.",
        "Use ats, stock or orders (GET /v1/projections).",
    ),
    "pos-sequence-conflict": ProblemType(
        409,
        "POS sequence conflict",
        "Another batch of the store already has this sequence number.",
        "Send each batch of a store with its own sequence number.",
    ),
    "rebuild-running": ProblemType(
        409,
        "Rebuild running",
        "A rebuild of that read model is already running.",
        "Follow it in GET /v1/projections; start another when it is done.",
    ),
    "body-too-large": ProblemType(
        413,
        "Body too large",
        "The body exceeds LEDGER_MAX_BODY_BYTES.",
        "Split the document (one POS batch or ERP message per request).",
    ),
    "unsupported-media-type": ProblemType(
        415, "Unsupported media type", "The body is not JSON.", "Send `Content-Type: application/json`."
    ),
    "validation-error": ProblemType(
        422,
        "Validation error",
        "The body or a parameter breaks the contract's bounds "
        "(ids 1–128 printable characters, quantities 1–1,000,000,000, known enums). "
        "`errors` lists each field; nothing was written.",
        "Fix the fields named in `errors`.",
    ),
    "idempotency-key-reused": ProblemType(
        422,
        "Idempotency key reused",
        "The same key (a natural key such as an "
        "order id or a document line, or an Idempotency-Key header) came with "
        "another body.",
        "Use a new key for a new request; a true repeat must send the same body.",
    ),
    "unknown-channel": ProblemType(
        404,
        "Unknown channel",
        "No channel policy has that name.",
        "Create it with PUT /v1/channels/{channel} (admin).",
    ),
    "ledger-error": ProblemType(409, "Ledger refusal", "The ledger refused the command.", "Read `detail`."),
    "internal-error": ProblemType(
        500,
        "Internal error",
        "An unexpected error; nothing acknowledged is lost.",
        "Retry; report the request id (X-Request-Id) if it persists.",
    ),
    "unavailable": ProblemType(
        503, "Unavailable", "A dependency is down.", "Retry after `Retry-After` seconds."
    ),
    "storage-unavailable": ProblemType(
        503,
        "Storage unavailable",
        "The database could not be reached; nothing was stored.",
        "Retry after `Retry-After` seconds with the same Idempotency-Key "
        "or natural key: a repeat never applies twice.",
    ),
}


@router.get("/problems/{name}", include_in_schema=False, response_model=None)
async def problem_type(name: str, request: Request) -> HTMLResponse | Response:
    """What a problem type means and what to do."""
    entry = PROBLEM_TYPES.get(name)
    if entry is None:
        raise Problem(404, "not-found", f"no problem type is named {name!r}")
    if "application/json" in request.headers.get("accept", ""):
        return Response(orjson.dumps({"type": name, **entry._asdict()}), media_type="application/json")
    e = {k: html.escape(str(v)) for k, v in entry._asdict().items()}
    return HTMLResponse(
        f"<!doctype html><html lang=en><meta charset=utf-8><title>{e['title']}</title>"
        f"<body style='font-family:sans-serif;max-width:40em;margin:2em auto'>"
        f"<h1>{e['title']} <small>({e['status']})</small></h1><p><code>{html.escape(name)}</code></p>"
        f"<h2>What it means</h2><p>{e['meaning']}</p><h2>What to do</h2><p>{e['action']}</p>"
        f"<p><a href='/problems'>All problem types</a></p></body></html>"
    )


@router.get("/problems", include_in_schema=False)
async def problem_types() -> HTMLResponse:
    """Every problem type."""
    rows = "".join(
        f"<tr><td><a href='/problems/{n}'>{n}</a></td><td>{t.status}</td><td>{html.escape(t.meaning)}</td></tr>"
        for n, t in sorted(PROBLEM_TYPES.items())
    )
    return HTMLResponse(
        "<!doctype html><html lang=en><meta charset=utf-8><title>Problem types</title>"
        "<body style='font-family:sans-serif;max-width:60em;margin:2em auto'><h1>Problem types</h1>"
        f"<table><tr><th>type</th><th>status</th><th>meaning</th></tr>{rows}</table></body></html>"
    )
