"""Hostile input: every refusal is a 4xx problem+json answer, nothing is written, never a 500."""

from __future__ import annotations

import pytest
from e2e_api import Api, make_api, uid

GOOD = {"sku": "S1", "location": "W1", "quantity": 1, "reference": "r"}


def assert_problem(r, status: int, slug: str | None = None) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["status"] == status and body["type"].startswith("https://") and body["title"]
    if slug:
        assert body["type"].endswith("/" + slug), body
    assert "Traceback" not in r.text
    return body


BAD_RECEIPTS = [
    {**GOOD, "quantity": 0},
    {**GOOD, "quantity": -1},
    {**GOOD, "quantity": 1_000_000_001},
    {**GOOD, "quantity": 10**40},
    {**GOOD, "quantity": 1.5},
    {**GOOD, "quantity": "1"},
    {**GOOD, "quantity": True},
    {**GOOD, "quantity": None},
    {**GOOD, "sku": ""},
    {**GOOD, "sku": "x" * 129},
    {**GOOD, "sku": "bad\x00sku"},
    {**GOOD, "sku": "tab\tsku"},
    {**GOOD, "location": "line\nbreak"},
    {**GOOD, "reference": "\u2028"},
    {**GOOD, "sku": 5},
    {**GOOD, "sku": ["S1"]},
    {**GOOD, "sku": {"a": 1}},
    {**GOOD, "extra": 1},
    {k: v for k, v in GOOD.items() if k != "reference"},
    {},
    [],
    "S1",
    None,
]


@pytest.mark.parametrize("body", BAD_RECEIPTS, ids=range(len(BAD_RECEIPTS)))
def test_a_receipt_outside_the_bounds_is_422_and_writes_nothing(api: Api, body: object) -> None:
    count = api.event_count()
    r = api.post("/v1/stock/receipts", body)
    assert_problem(r, 422)
    assert api.event_count() == count


def test_malformed_json_is_400(api: Api) -> None:
    for raw in (b"{", b'{"sku": }', b"\xff\xfe\x00", b'{"quantity": 1' + b"1" * 5000 + b"}", b"NaN"):
        r = api.client.post(
            "/v1/stock/receipts",
            content=raw,
            headers=api.auth("ingest:write", **{"Content-Type": "application/json"}),
        )
        assert r.status_code in (400, 422), (raw[:20], r.status_code)
        assert_problem(r, r.status_code)
    assert_problem(
        api.client.post(
            "/v1/stock/receipts",
            content=b"{",
            headers=api.auth("ingest:write", **{"Content-Type": "application/json"}),
        ),
        400,
        "malformed-json",
    )


def test_a_non_json_body_is_415(api: Api) -> None:
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "application/xml"):
        r = api.client.post(
            "/v1/stock/receipts",
            content=b"sku=S1",
            headers=api.auth("ingest:write", **{"Content-Type": ctype}),
        )
        assert_problem(r, 415, "unsupported-media-type")
    ok = api.client.post(
        "/v1/stock/receipts",
        content=b'{"sku":"S","location":"L","quantity":1,"reference":"r"}',
        headers=api.auth("ingest:write", **{"Content-Type": "application/json; charset=utf-8"}),
    )
    assert ok.status_code == 201


def test_a_body_over_the_limit_is_413_by_length_and_by_stream(sqlite_url: str) -> None:
    gen = make_api(sqlite_url, max_body_bytes=2048)
    api = next(gen)
    try:
        big = {**GOOD, "reference": "r", "pad": "x" * 5000}
        assert_problem(api.post("/v1/stock/receipts", big), 413, "body-too-large")

        def chunks():
            for _ in range(10):
                yield b" " * 1000  # no Content-Length: the guard counts the stream

        r = api.client.post(
            "/v1/stock/receipts",
            content=chunks(),
            headers=api.auth("ingest:write", **{"Content-Type": "application/json"}),
        )
        assert_problem(r, 413, "body-too-large")
        assert api.event_count() == 0
        assert api.post("/v1/stock/receipts", GOOD).status_code == 201
    finally:
        gen.close()


def test_bad_paths_and_queries_are_4xx_problems(api: Api) -> None:
    assert_problem(api.get("/v1/nothing-here"), 404)
    assert_problem(api.client.delete("/v1/stock/receipts", headers=api.auth()), 405)
    assert_problem(api.client.get("/v1/stock/receipts", headers=api.auth()), 405)
    assert_problem(api.get("/v1/stock/S%00/W1"), 422)
    assert_problem(api.get("/v1/stock/" + "x" * 200 + "/W1"), 422)
    assert_problem(api.get("/v1/stock/S/W/events", limit=0), 422)
    assert_problem(api.get("/v1/stock/S/W/events", limit=10**30), 422)
    assert_problem(api.get("/v1/stock/S/W/events", after=-1), 422)
    assert_problem(api.get("/v1/stock/S/W/events", since="not-a-time"), 422)
    assert_problem(api.get("/v1/stock/S/W", position="abc"), 422)
    assert_problem(api.get("/v1/orders/a%01b"), 422)
    assert_problem(
        api.client.post(
            "/v1/stock/receipts",
            json=GOOD,
            headers=api.auth("ingest:write", **{"Idempotency-Key": "k" * 300}),
        ),
        422,
    )
    assert_problem(
        api.client.post(
            "/v1/stock/receipts", json=GOOD, headers=api.auth("ingest:write", **{"Content-Length": "abc"})
        ),
        400,
    )


BAD_ORDERS = [
    {"order_id": "o", "channel": "web", "lines": []},
    {"order_id": "o", "channel": "web"},
    {"order_id": "o", "channel": "web", "lines": [{"line_id": "1", "sku": "S", "quantity": 0}]},
    {
        "order_id": "o",
        "channel": "web",
        "lines": [{"line_id": "1", "sku": "S", "quantity": 1, "colour": "red"}],
    },
    {"order_id": "o", "channel": "web", "lines": [{"line_id": "1", "sku": "S", "quantity": 1}] * 2},
    {"order_id": "o\x7f", "channel": "web", "lines": [{"line_id": "1", "sku": "S", "quantity": 1}]},
    {
        "order_id": "o",
        "channel": "web",
        "lines": [{"line_id": "1", "sku": "S", "quantity": 1}],
        "allow_partial": 1,
    },
    {"order_id": "o", "channel": "web", "lines": "S"},
]


@pytest.mark.parametrize("body", BAD_ORDERS, ids=range(len(BAD_ORDERS)))
def test_an_order_outside_the_bounds_is_422(api: Api, body: dict) -> None:
    assert_problem(api.post("/v1/orders", body), 422)
    assert api.event_count() == 0


def test_bad_order_steps_are_422(api: Api) -> None:
    oid = uid()
    assert_problem(
        api.post(
            f"/v1/orders/{oid}/returns",
            {"return_id": "R", "lines": [{"line_id": "L", "quantity": 1, "disposition": "lost"}]},
        ),
        422,
    )
    assert_problem(api.post(f"/v1/orders/{oid}/shipments", {"shipment_id": "S", "lines": []}), 422)
    assert_problem(api.post(f"/v1/orders/{oid}/cancellation", {"reason": ""}), 422)
    assert_problem(api.post("/v1/stock/adjustments", {**GOOD, "delta": 0, "reason": "x"}), 422)
    assert_problem(
        api.post(
            "/v1/stock/adjustments",
            {"sku": "S", "location": "L", "delta": 0, "reason": "x", "reference": "r"},
        ),
        422,
    )


def test_ids_and_errors_travel_in_headers(api: Api) -> None:
    r = api.client.post(
        "/v1/stock/receipts",
        json={**GOOD, "quantity": 0},
        headers=api.auth("ingest:write", **{"X-Request-Id": "req-1", "X-Correlation-Id": "c-9"}),
    )
    assert r.headers["x-request-id"] == "req-1" and r.headers["x-correlation-id"] == "c-9"
    odd = api.client.get("/healthz", headers={"X-Request-Id": "has spaces and\ttabs"})
    assert odd.headers["x-request-id"] != "has spaces and\ttabs" and len(odd.headers["x-request-id"]) == 32
    assert odd.headers["x-correlation-id"] == odd.headers["x-request-id"]


def test_an_unexpected_error_answers_a_bare_500_problem(sqlite_url: str) -> None:
    gen = make_api(sqlite_url)
    api = next(gen)
    try:

        @api.client.app.get("/v1/test-boom")
        async def boom() -> None:
            raise RuntimeError("secret detail ann@example.com")

        r = api.client.get("/v1/test-boom")
        body = assert_problem(r, 500, "internal-error")
        assert "secret" not in r.text and "RuntimeError" not in r.text
        assert body["detail"] == "an unexpected error occurred"
        assert r.headers["x-request-id"]
    finally:
        gen.close()


def test_a_key_whose_first_request_still_runs_answers_409_in_progress(api: Api) -> None:
    from api.idempotency import IdempotencyStore, fingerprint

    body = b'{"sku":"S","location":"L","quantity":1,"reference":"r"}'
    headers = api.auth("ingest:write", **{"Idempotency-Key": "k-running", "Content-Type": "application/json"})
    scope = {"method": "POST", "path": "/v1/stock/receipts", "query_string": b"", "headers": []}
    import hashlib

    caller = hashlib.sha256(headers["Authorization"].encode()).hexdigest()
    token, held = IdempotencyStore(api.container.db).claim(caller, "k-running", fingerprint(scope, body))
    assert token is not None and held is None  # claimed, and its request (never finished) still runs
    r = api.client.post("/v1/stock/receipts", content=body, headers=headers)
    assert_problem(r, 409, "idempotency-key-in-progress")
    assert r.headers["retry-after"] == "1"
    assert api.event_count() == 0


def test_idempotency_keys_are_forgotten_after_a_day(api: Api) -> None:
    from api.idempotency import IdempotencyStore

    body = {"sku": uid(), "location": "W1", "quantity": 1, "reference": uid()}
    assert api.post("/v1/stock/receipts", body, **{"Idempotency-Key": "k-old"}).status_code == 201
    store = IdempotencyStore(api.container.db)
    assert store.purge() == 0
    assert store.purge(older_than=-1) == 1
    again = api.post("/v1/stock/receipts", body, **{"Idempotency-Key": "k-old"})
    assert again.status_code == 201 and "idempotent-replayed" in again.headers  # the reference still holds
