"""An `Idempotency-Key` answer is committed before it is sent, so a retry right after a 2xx gets
that answer (never 409 in progress); an outage answers 503 and leaves the key usable."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import orjson
from e2e_api import Api, uid

from api.idempotency import PROCESS, IdempotencyStore


def call(api: Api, path: str, body: dict[str, Any], key: str, on_start: Any) -> tuple[int, bytes]:
    """One request straight into the ASGI app; `on_start(status)` runs as its answer starts to go out."""
    raw = orjson.dumps(body)
    headers = {**api.auth("ingest:write"), "Idempotency-Key": key, "Content-Type": "application/json"}
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        + [(b"content-length", str(len(raw)).encode())],
        "client": ("127.0.0.1", 1), "server": ("testserver", 80), "state": {},
    }
    status, chunks = 0, []
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if delivered:
            await asyncio.Event().wait()
        delivered = True
        return {"type": "http.request", "body": raw, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
            await asyncio.to_thread(on_start, status)
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    asyncio.run(api.client.app(scope, receive, send))
    return status, b"".join(chunks)


def test_the_answer_is_stored_before_it_is_sent_and_a_retry_at_once_gets_it(api: Api) -> None:
    key, body = uid("k-"), {"sku": uid(), "location": "W1", "quantity": 3, "reference": uid()}
    caller = hashlib.sha256(api.auth("ingest:write")["Authorization"].encode()).hexdigest()
    seen: list[dict[str, Any] | None] = []

    def stored_row(status: int) -> None:  # what a retry arriving now would find
        seen.append(api.container.db.query_one(
            "SELECT status, body FROM idempotency_keys WHERE scope = %s AND key = %s", (caller, key)
        ))

    status, first = call(api, "/v1/stock/receipts", body, key, stored_row)
    assert status == 201
    assert seen and seen[0] is not None and seen[0]["status"] == 201 and bytes(seen[0]["body"]) == first
    appended = api.event_count()
    again = api.post("/v1/stock/receipts", body, **{"Idempotency-Key": key})
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    assert again.content == first
    assert api.event_count() == appended  # nothing ran again


def test_a_claim_of_this_process_that_nothing_runs_is_taken_over_at_once(api: Api) -> None:
    """A claim whose commit succeeded but whose reply was lost (so its request answered 503)
    does not hold the key: the retry runs."""
    key, body = uid("k-"), {"sku": uid(), "location": "W1", "quantity": 1, "reference": uid()}
    caller = hashlib.sha256(api.auth("ingest:write")["Authorization"].encode()).hexdigest()
    from api.idempotency import fingerprint

    raw = orjson.dumps(body)
    scope = {"method": "POST", "path": "/v1/stock/receipts", "query_string": b"", "headers": []}
    # The claim's INSERT committed, but its caller never learned it (the reply was lost): no
    # request of this process runs under that token.
    assert IdempotencyStore(api.container.db)._claim(caller, key, fingerprint(scope, raw), f"{PROCESS}:lost") is None
    r = api.client.post(
        "/v1/stock/receipts", content=raw,
        headers={**api.auth("ingest:write"), "Idempotency-Key": key, "Content-Type": "application/json"},
    )
    assert r.status_code == 201, r.text
