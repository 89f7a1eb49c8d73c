"""Stock over HTTP: receipts, adjustments, transfers, compare-and-set, state, history, idempotency."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from e2e_api import Api, uid


def receipt(sku: str, location: str = "W1", quantity: int = 10, reference: str | None = None) -> dict:
    return {"sku": sku, "location": location, "quantity": quantity, "reference": reference or uid("r-")}


def test_a_receipt_answers_201_with_the_stock_and_its_version_as_etag(any_api: Api) -> None:
    sku = uid("sku-")
    r = any_api.post("/v1/stock/receipts", receipt(sku, quantity=7))
    assert r.status_code == 201, r.text
    body = r.json()
    assert (body["sku"], body["location"], body["on_hand"], body["available"], body["reserved"]) == (
        sku,
        "W1",
        7,
        7,
        0,
    )
    assert r.headers["etag"] == f'"{body["version"]}"'
    got = any_api.get(f"/v1/stock/{sku}/W1")
    assert got.status_code == 200
    assert got.json()["on_hand"] == 7 and got.json()["version"] == body["version"]


def test_a_repeated_reference_appends_nothing_and_answers_the_first_outcome(api: Api) -> None:
    sku, ref = uid("sku-"), uid("ref-")
    first = api.post("/v1/stock/receipts", receipt(sku, quantity=3, reference=ref))
    count = api.event_count()
    again = api.post("/v1/stock/receipts", receipt(sku, quantity=3, reference=ref))
    assert again.status_code == 201 and again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert api.event_count() == count
    other = api.post("/v1/stock/receipts", receipt(sku, quantity=4, reference=ref))
    assert other.status_code == 422
    assert other.json()["type"].endswith("/idempotency-key-reused")


def test_one_purchase_order_is_received_line_by_line_and_each_line_is_recognised(any_api: Api) -> None:
    a, b, po = uid("sku-"), uid("sku/"), uid("PO/")  # ids holding the key's separators
    lines = [receipt(a, "W1", 3, po), receipt(b, "W1", 4, po), receipt(a, "W:2", 5, po)]
    first = [any_api.post("/v1/stock/receipts", line) for line in lines]
    assert [r.status_code for r in first] == [201, 201, 201], [r.text for r in first]
    count = any_api.event_count()
    again = any_api.post("/v1/stock/receipts", lines[1])
    assert (again.status_code, again.json()) == (201, first[1].json())
    assert again.headers["idempotent-replayed"] == "true" and any_api.event_count() == count
    other = any_api.post("/v1/stock/receipts", {**lines[1], "quantity": 9})
    assert other.status_code == 422 and other.json()["type"].endswith("/idempotency-key-reused")
    # Adjustments and transfers of one document span SKUs the same way.
    adj = [{"sku": s, "location": "W1", "delta": -1, "reason": "damaged", "reference": "DMG-1"} for s in (a, b)]
    assert [any_api.post("/v1/stock/adjustments", x).status_code for x in adj] == [201, 201]
    tr = [{"sku": s, "from_location": "W1", "to_location": "W3", "quantity": 1, "reference": "TR-1"} for s in (a, b)]
    assert [any_api.post("/v1/stock/transfers", x).status_code for x in tr] == [201, 201]
    count = any_api.event_count()
    assert any_api.post("/v1/stock/transfers", tr[1]).headers["idempotent-replayed"] == "true"
    assert any_api.event_count() == count
    assert any_api.get(f"/v1/stock/{a}/W1").json()["on_hand"] == 1


def test_idempotency_key_replays_the_first_answer_and_refuses_another_body(any_api: Api) -> None:
    sku, key = uid("sku-"), uid("key-")
    body = receipt(sku, quantity=5)
    first = any_api.post("/v1/stock/receipts", body, **{"Idempotency-Key": key})
    assert first.status_code == 201
    count = any_api.event_count()
    again = any_api.post("/v1/stock/receipts", body, **{"Idempotency-Key": key})
    assert (again.status_code, again.json(), again.headers["etag"]) == (
        201,
        first.json(),
        first.headers["etag"],
    )
    assert again.headers["idempotent-replayed"] == "true"
    assert any_api.event_count() == count
    changed = any_api.post("/v1/stock/receipts", {**body, "quantity": 6}, **{"Idempotency-Key": key})
    assert changed.status_code == 422
    assert changed.json()["type"].endswith("/idempotency-key-reused")
    assert changed.headers["content-type"].startswith("application/problem+json")
    assert any_api.event_count() == count
    assert any_api.get(f"/v1/stock/{sku}/W1").json()["on_hand"] == 5


def test_an_idempotency_key_belongs_to_its_caller(api: Api) -> None:
    sku, key = uid("sku-"), uid("key-")
    other = api.container.keys.create("other-writer", ["ingest:write"])[1]
    a = api.post("/v1/stock/receipts", receipt(sku, quantity=1), **{"Idempotency-Key": key})
    b = api.client.post(
        "/v1/stock/receipts",
        json=receipt(sku, quantity=2),
        headers={"Authorization": f"Bearer {other}", "Idempotency-Key": key},
    )
    assert (a.status_code, b.status_code) == (201, 201)
    assert api.get(f"/v1/stock/{sku}/W1").json()["on_hand"] == 3


def test_a_refused_request_is_kept_under_its_key_and_a_401_is_not(api: Api) -> None:
    sku, key = uid("sku-"), uid("key-")
    body = {"sku": sku, "location": "W1", "delta": -5, "reason": "count", "reference": uid()}
    first = api.post("/v1/stock/adjustments", body, **{"Idempotency-Key": key})
    assert first.status_code == 409
    api.post("/v1/stock/receipts", receipt(sku, quantity=10))
    again = api.post("/v1/stock/adjustments", body, **{"Idempotency-Key": key})
    assert again.status_code == 409 and again.headers["idempotent-replayed"] == "true"
    key2 = uid("key-")
    denied = api.client.post("/v1/stock/receipts", json=receipt(sku), headers={"Idempotency-Key": key2})
    assert denied.status_code == 401
    allowed = api.post("/v1/stock/receipts", receipt(sku), **{"Idempotency-Key": key2})
    assert allowed.status_code == 201


def test_an_adjustment_below_zero_or_below_reserved_is_refused(any_api: Api) -> None:
    sku = uid("sku-")
    any_api.post("/v1/stock/receipts", receipt(sku, quantity=10))
    order = {
        "order_id": uid("o-"),
        "channel": "web",
        "lines": [{"line_id": "1", "sku": sku, "quantity": 4, "location": "W1"}],
    }
    assert any_api.post("/v1/orders", order).status_code == 201
    count = any_api.event_count()
    below_reserved = {"sku": sku, "location": "W1", "delta": -7, "reason": "count", "reference": uid()}
    r = any_api.post("/v1/stock/adjustments", below_reserved)
    assert r.status_code == 409 and r.json()["type"].endswith("/insufficient-stock")
    assert any_api.event_count() == count
    ok = any_api.post("/v1/stock/adjustments", {**below_reserved, "delta": -6, "reference": uid()})
    assert ok.status_code == 201 and ok.json()["on_hand"] == 4 and ok.json()["available"] == 0
    nothing = {"sku": uid("sku-"), "location": "W1", "delta": -1, "reason": "count", "reference": uid()}
    assert any_api.post("/v1/stock/adjustments", nothing).status_code == 409


def test_if_match_is_a_compare_and_set_on_the_version(api: Api) -> None:
    sku = uid("sku-")
    first = api.post("/v1/stock/receipts", receipt(sku, quantity=10))
    version = first.headers["etag"]
    adj = {"sku": sku, "location": "W1", "delta": -2, "reason": "count", "reference": uid()}
    ok = api.post("/v1/stock/adjustments", adj, **{"If-Match": version})
    assert ok.status_code == 201 and ok.json()["on_hand"] == 8
    stale = api.post("/v1/stock/adjustments", {**adj, "reference": uid()}, **{"If-Match": version})
    assert stale.status_code == 409 and stale.json()["type"].endswith("/version-conflict")
    assert api.get(f"/v1/stock/{sku}/W1").json()["on_hand"] == 8
    fresh = api.post("/v1/stock/receipts", receipt(sku, quantity=1), **{"If-Match": ok.headers["etag"]})
    assert fresh.status_code == 201 and fresh.json()["on_hand"] == 9
    new = api.post("/v1/stock/receipts", receipt(uid("sku-")), **{"If-Match": "0"})
    assert new.status_code == 201
    assert api.post("/v1/stock/receipts", receipt(sku), **{"If-Match": "seven"}).status_code == 422


def test_a_transfer_moves_units_and_compares_the_source_version(any_api: Api) -> None:
    sku = uid("sku-")
    src = any_api.post("/v1/stock/receipts", receipt(sku, "A", 10))
    move = {"sku": sku, "from_location": "A", "to_location": "B", "quantity": 4, "reference": uid("t-")}
    stale = any_api.post("/v1/stock/transfers", move, **{"If-Match": '"1"'})
    assert stale.status_code == 409 and stale.json()["type"].endswith("/version-conflict")
    r = any_api.post("/v1/stock/transfers", move, **{"If-Match": src.headers["etag"]})
    assert r.status_code == 201, r.text
    assert r.json()["from"]["on_hand"] == 6 and r.json()["to"]["on_hand"] == 4
    too_many = any_api.post("/v1/stock/transfers", {**move, "quantity": 7, "reference": uid()})
    assert too_many.status_code == 409 and too_many.json()["type"].endswith("/insufficient-stock")
    same = any_api.post("/v1/stock/transfers", {**move, "to_location": "A", "reference": uid()})
    assert same.status_code == 422


def test_unknown_stock_is_404_and_as_of_gives_the_past(api: Api) -> None:
    sku = uid("sku-")
    missing = api.get(f"/v1/stock/{sku}/W1")
    assert missing.status_code == 404 and missing.json()["type"].endswith("/stock-not-found")
    before = datetime.now(UTC) - timedelta(seconds=1)
    api.post("/v1/stock/receipts", receipt(sku, quantity=5))
    time.sleep(0.01)  # two distinct timestamps, not a timing assertion
    middle = datetime.now(UTC)
    api.post("/v1/stock/receipts", receipt(sku, quantity=3))
    assert api.get(f"/v1/stock/{sku}/W1", as_of=middle.isoformat()).json()["on_hand"] == 5
    assert api.get(f"/v1/stock/{sku}/W1").json()["on_hand"] == 8
    assert api.get(f"/v1/stock/{sku}/W1", as_of=before.isoformat()).status_code == 404
    assert api.get(f"/v1/stock/{sku}/W1", as_of="2024-01-01T00:00:00").status_code == 422
    assert api.get(f"/v1/stock/{sku}/W1", as_of="yesterday").status_code == 422
    events = api.get(f"/v1/stock/{sku}/W1/events").json()["items"]
    second = events[1]["position"]
    assert api.get(f"/v1/stock/{sku}/W1", position=second).json()["on_hand"] == 5


def test_events_page_by_position_filter_by_type_and_link_to_their_cause(any_api: Api) -> None:
    sku = uid("sku-")
    refs = [uid("r-") for _ in range(5)]
    for ref in refs:
        any_api.client.post(
            "/v1/stock/receipts",
            json=receipt(sku, quantity=1, reference=ref),
            headers=any_api.auth("ingest:write", **{"X-Correlation-Id": "corr-" + ref}),
        )
    any_api.post(
        "/v1/stock/adjustments",
        {"sku": sku, "location": "W1", "delta": -1, "reason": "damaged-box", "reference": "adj-1"},
    )
    seen: list[dict] = []
    after = 0
    while True:
        page = any_api.get(f"/v1/stock/{sku}/W1/events", after=after, limit=2)
        assert page.status_code == 200
        seen += page.json()["items"]
        if page.json()["next"] is None:
            break
        after = page.json()["next"]
    assert [e["type"] for e in seen] == ["Opened"] + ["StockReceived"] * 5 + ["StockAdjusted"]
    assert [e["version"] for e in seen] == list(range(1, 8))
    positions = [e["position"] for e in seen]
    assert positions == sorted(positions) and len(set(positions)) == 7
    received = seen[1]
    assert received["reference"] == refs[0] and received["correlation_id"] == "corr-" + refs[0]
    assert received["causation_id"] and received["source"] == "api"
    assert received["data"] == {"quantity": 1, "reference": refs[0], "expected": False}
    only = any_api.get(f"/v1/stock/{sku}/W1/events", type="StockAdjusted").json()
    assert [e["type"] for e in only["items"]] == ["StockAdjusted"] and only["next"] is None
    assert only["items"][0]["data"]["reason"] == "damaged-box"
    later = any_api.get(f"/v1/stock/{sku}/W1/events", since=seen[3]["recorded_at"]).json()["items"]
    assert [e["version"] for e in later] == [4, 5, 6, 7]
    earlier = any_api.get(f"/v1/stock/{sku}/W1/events", until=seen[1]["recorded_at"]).json()["items"]
    assert [e["version"] for e in earlier] == [1, 2]
    assert any_api.get(f"/v1/stock/{uid()}/W1/events").json() == {"items": [], "next": None}


def test_writes_feed_the_metrics(api: Api) -> None:
    sku = uid("sku-")
    api.post("/v1/stock/receipts", receipt(sku))
    text = api.client.get("/metrics").text
    assert 'ledger_events_appended_total{type="StockReceived"}' in text
    assert 'ledger_commands_total{result="ok",type="ReceiveStock"}' in text
    assert "ledger_write_batch_size_count" in text
    assert 'route="/v1/stock/receipts"' in text
