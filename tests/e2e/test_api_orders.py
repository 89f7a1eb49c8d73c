"""Orders over HTTP: capture with reservation, once per id; shipments, cancellation, returns, the view."""

from __future__ import annotations

import time

from e2e_api import Api, project, put_channel, read_ats, uid

from ledger.commands import SellDirect


def stock(api: Api, sku: str, location: str, quantity: int) -> None:
    r = api.post(
        "/v1/stock/receipts", {"sku": sku, "location": location, "quantity": quantity, "reference": uid()}
    )
    assert r.status_code == 201, r.text


def on_hand(api: Api, sku: str, location: str) -> dict:
    return api.get(f"/v1/stock/{sku}/{location}").json()


def order(sku: str, quantity: int = 2, location: str | None = "W1", **extra: object) -> dict:
    line: dict = {"line_id": "L1", "sku": sku, "quantity": quantity}
    if location:
        line["location"] = location
    return {"order_id": uid("o-"), "channel": "web", "lines": [line], **extra}


def test_capture_reserves_each_line_and_answers_its_location(any_api: Api) -> None:
    sku = uid("sku-")
    stock(any_api, sku, "W1", 5)
    body = order(sku, 3)
    r = any_api.post("/v1/orders", body)
    assert r.status_code == 201, r.text
    answer = r.json()
    assert answer["order_id"] == body["order_id"] and answer["stage"] == "reserved"
    assert answer["lines"][0]["location"] == "W1" and answer["lines"][0]["reserved"] == 3
    s = on_hand(any_api, sku, "W1")
    assert (s["on_hand"], s["reserved"], s["available"]) == (5, 3, 2)
    view = any_api.get(f"/v1/orders/{body['order_id']}", scope="ats:read")
    assert view.status_code == 200
    assert view.json()["channel"] == "web" and view.json()["stage"] == "reserved"


def test_the_same_order_again_answers_the_first_answer_and_other_lines_are_refused(any_api: Api) -> None:
    sku = uid("sku-")
    stock(any_api, sku, "W1", 10)
    body = order(sku, 2)
    first = any_api.post("/v1/orders", body)
    count = any_api.event_count()
    again = any_api.post("/v1/orders", body)
    assert (again.status_code, again.json()) == (201, first.json())
    assert any_api.event_count() == count
    other = any_api.post("/v1/orders", {**body, "lines": [{**body["lines"][0], "quantity": 3}]})
    assert other.status_code == 409 and other.json()["type"].endswith("/order-conflict")
    assert on_hand(any_api, sku, "W1")["reserved"] == 2


def test_an_order_that_cannot_be_reserved_changes_nothing_unless_partial_is_asked(api: Api) -> None:
    a, b = uid("sku-"), uid("sku-")
    stock(api, a, "W1", 5)
    stock(api, b, "W1", 1)
    lines = [
        {"line_id": "1", "sku": a, "quantity": 2, "location": "W1"},
        {"line_id": "2", "sku": b, "quantity": 2, "location": "W1"},
    ]
    oid = uid("o-")
    count = api.event_count()
    r = api.post("/v1/orders", {"order_id": oid, "channel": "web", "lines": lines})
    assert r.status_code == 409 and r.json()["type"].endswith("/insufficient-stock")
    assert r.headers["content-type"].startswith("application/problem+json")
    assert api.event_count() == count
    assert on_hand(api, a, "W1")["reserved"] == 0
    assert api.get(f"/v1/orders/{oid}").status_code == 404
    partial = api.post(
        "/v1/orders", {"order_id": oid, "channel": "web", "lines": lines, "allow_partial": True}
    )
    assert partial.status_code == 201
    reserved = {x["line_id"]: (x["reserved"], x["backordered"]) for x in partial.json()["lines"]}
    assert reserved == {"1": (2, 0), "2": (1, 1)} and partial.json()["stage"] == "captured"


def test_ship_cancel_and_return_move_stock_and_stage(any_api: Api) -> None:
    sku = uid("sku-")
    stock(any_api, sku, "W1", 10)
    body = order(sku, 4)
    oid = body["order_id"]
    any_api.post("/v1/orders", body)
    shipped = any_api.post(
        f"/v1/orders/{oid}/shipments", {"shipment_id": "S1", "lines": [{"line_id": "L1", "quantity": 3}]}
    )
    assert shipped.status_code == 201, shipped.text
    assert shipped.json()["stage"] == "partially_shipped"
    s = on_hand(any_api, sku, "W1")
    assert (s["on_hand"], s["reserved"]) == (7, 1)
    count = any_api.event_count()
    again = any_api.post(
        f"/v1/orders/{oid}/shipments", {"shipment_id": "S1", "lines": [{"line_id": "L1", "quantity": 3}]}
    )
    assert again.status_code == 201 and any_api.event_count() == count
    too_many = any_api.post(
        f"/v1/orders/{oid}/shipments", {"shipment_id": "S2", "lines": [{"line_id": "L1", "quantity": 2}]}
    )
    assert too_many.status_code == 409
    unknown_line = any_api.post(
        f"/v1/orders/{oid}/shipments", {"shipment_id": "S3", "lines": [{"line_id": "nope", "quantity": 1}]}
    )
    assert unknown_line.status_code == 409
    cancelled = any_api.post(f"/v1/orders/{oid}/cancellation", {"reason": "customer"})
    assert cancelled.status_code == 200, cancelled.text
    assert on_hand(any_api, sku, "W1")["reserved"] == 0
    returned = any_api.post(
        f"/v1/orders/{oid}/returns",
        {"return_id": "R1", "lines": [{"line_id": "L1", "quantity": 2, "disposition": "restock"}]},
    )
    assert returned.status_code == 201, returned.text
    assert returned.json()["stage"] in ("partially_returned", "returned")
    assert on_hand(any_api, sku, "W1")["on_hand"] == 9
    damaged = any_api.post(
        f"/v1/orders/{oid}/returns",
        {"return_id": "R2", "lines": [{"line_id": "L1", "quantity": 1, "disposition": "damaged"}]},
    )
    assert damaged.status_code == 201
    s = on_hand(any_api, sku, "W1")
    assert (s["on_hand"], s["unavailable"], s["available"]) == (10, 1, 9)
    over = any_api.post(
        f"/v1/orders/{oid}/returns",
        {"return_id": "R3", "lines": [{"line_id": "L1", "quantity": 1, "disposition": "restock"}]},
    )
    assert over.status_code == 409


def test_a_cancellation_of_some_lines_needs_a_reference_and_releases_them(api: Api) -> None:
    sku = uid("sku-")
    stock(api, sku, "W1", 10)
    body = order(sku, 5)
    oid = body["order_id"]
    api.post("/v1/orders", body)
    no_ref = api.post(
        f"/v1/orders/{oid}/cancellation", {"reason": "oos", "lines": [{"line_id": "L1", "quantity": 2}]}
    )
    assert no_ref.status_code == 422
    r = api.post(
        f"/v1/orders/{oid}/cancellation",
        {"reason": "oos", "reference": "C1", "lines": [{"line_id": "L1", "quantity": 2}]},
    )
    assert r.status_code == 200 and r.json()["stage"] == "partially_cancelled"
    assert on_hand(api, sku, "W1")["reserved"] == 3
    too_many = api.post(
        f"/v1/orders/{oid}/cancellation",
        {"reason": "oos", "reference": "C2", "lines": [{"line_id": "L1", "quantity": 4}]},
    )
    assert too_many.status_code == 409


def test_unknown_orders_are_404_for_reads_and_writes(api: Api) -> None:
    oid = uid("o-")
    r = api.get(f"/v1/orders/{oid}")
    assert r.status_code == 404 and r.json()["type"].endswith("/order-not-found")
    for path, body in (
        ("shipments", {"shipment_id": "S", "lines": [{"line_id": "L1", "quantity": 1}]}),
        ("cancellation", {"reason": "x"}),
        (
            "returns",
            {"return_id": "R", "lines": [{"line_id": "L1", "quantity": 1, "disposition": "restock"}]},
        ),
    ):
        w = api.post(f"/v1/orders/{oid}/{path}", body)
        assert w.status_code == 404, (path, w.text)


def test_a_line_without_location_uses_the_channels_locations_or_is_refused(api: Api) -> None:
    sku = uid("sku-")
    r = api.post("/v1/orders", order(sku, 1, location=None))
    assert r.status_code in (409, 422)
    assert r.headers["content-type"].startswith("application/problem+json")


def test_order_capture_with_an_idempotency_key_replays(api: Api) -> None:
    sku = uid("sku-")
    stock(api, sku, "W1", 5)
    body = order(sku, 1)
    key = uid("k-")
    first = api.post("/v1/orders", body, **{"Idempotency-Key": key})
    again = api.post("/v1/orders", body, **{"Idempotency-Key": key})
    assert first.status_code == again.status_code == 201 and first.json() == again.json()
    assert again.headers["idempotent-replayed"] == "true"
    other = api.post("/v1/orders", order(sku, 1), **{"Idempotency-Key": key})
    assert other.status_code == 422 and other.json()["type"].endswith("/idempotency-key-reused")


def test_an_order_no_single_location_can_fill_is_split_and_a_receipt_fills_a_backorder(any_api: Api) -> None:
    """The ATS promise over HTTP: two locations of 3 show ATS 6, and an order of 5 is reserved."""
    sku = uid("sku-")
    channel = uid("ch-")
    put_channel(any_api.client, any_api.auth("admin"), channel, "W1", "W2")
    stock(any_api, sku, "W1", 3)
    stock(any_api, sku, "W2", 3)
    assert read_ats(any_api.client, any_api.container, any_api.auth("ats:read"), channel, sku) == 6
    line = {"line_id": "L1", "sku": sku, "quantity": 5}
    first = any_api.post("/v1/orders", {"order_id": uid("o-"), "channel": channel, "lines": [line]})
    assert first.status_code == 201, first.text
    assert first.json()["lines"][0]["allocations"] == [
        {"location": "W1", "quantity": 3},
        {"location": "W2", "quantity": 2},
    ]
    assert read_ats(any_api.client, any_api.container, any_api.auth("ats:read"), channel, sku) == 1
    refused = any_api.post(
        "/v1/orders", {"order_id": uid("o-"), "channel": channel, "lines": [{**line, "quantity": 3}]}
    )
    assert refused.status_code == 409 and refused.json()["type"].endswith("/insufficient-stock")
    oid = uid("o-")
    partial = any_api.post(
        "/v1/orders",
        {"order_id": oid, "channel": channel, "lines": [{**line, "quantity": 3}], "allow_partial": True},
    )
    assert partial.status_code == 201, partial.text
    assert (partial.json()["lines"][0]["reserved"], partial.json()["lines"][0]["backordered"]) == (1, 2)
    stock(any_api, sku, "W1", 4)  # the receipt reserves for the backorder first
    view = any_api.get(f"/v1/orders/{oid}").json()
    assert view["lines"][0]["backordered"] == 0
    assert view["lines"][0]["allocations"] == [
        {"location": "W2", "quantity": 1},
        {"location": "W1", "quantity": 2},
    ]
    assert (on_hand(any_api, sku, "W1")["reserved"], on_hand(any_api, sku, "W1")["available"]) == (5, 2)


def test_a_till_sale_under_reservations_opens_a_shortfall_that_reallocation_closes(api: Api) -> None:
    """An offline till sells 3 of W1's 5 while an order holds 4 there: the sale is recorded, a
    `shortfall` names the order line no longer covered, and the ledger moves it to W2."""
    sku, channel = uid("sku-"), uid("ch-")
    put_channel(api.client, api.auth("admin"), channel, "W1", "W2")
    stock(api, sku, "W1", 5)
    stock(api, sku, "W2", 3)
    oid = uid("o-")
    r = api.post(
        "/v1/orders",
        {"order_id": oid, "channel": channel, "lines": [{"line_id": "L1", "sku": sku, "quantity": 4}]},
    )
    assert r.json()["lines"][0]["allocations"] == [{"location": "W1", "quantity": 4}]
    api.container.ledger.execute(
        SellDirect(sku=sku, location="W1", quantity=3, reference=uid("till-"), record_shortfall=True)
    )
    assert on_hand(api, sku, "W1")["available"] == -2
    sweeper = api.container.sweeper
    project(api)
    assert sweeper.sweep()["opened"] >= 1
    [item] = [
        i for i in api.get("/v1/exceptions", kind="shortfall").json()["items"] if i["key"] == f"{sku}@W1"
    ]
    assert item["detail"]["short"] == 2
    assert [(x["order_id"], x["line_id"], x["quantity"]) for x in item["detail"]["uncovered"]] == [
        (oid, "L1", 2)
    ]
    deadline = time.monotonic() + 30  # the sweeper submitted CoverShortfall to the writer
    while on_hand(api, sku, "W1")["available"] < 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    view = api.get(f"/v1/orders/{oid}").json()
    assert view["lines"][0]["allocations"] == [
        {"location": "W1", "quantity": 2},
        {"location": "W2", "quantity": 2},
    ]
    assert (on_hand(api, sku, "W1")["available"], on_hand(api, sku, "W2")["reserved"]) == (0, 2)
    project(api)
    assert sweeper.sweep()["closed"] >= 1
    assert all(i["key"] != f"{sku}@W1" for i in api.get("/v1/exceptions", kind="shortfall").json()["items"])


def test_an_order_id_with_a_slash_is_addressable_again_percent_encoded(any_api: Api) -> None:
    sku = uid("sku-")
    stock(any_api, sku, "W1", 5)
    oid = f"SO/2026/{uid()}"
    body = {
        "order_id": oid,
        "channel": "web",
        "lines": [{"line_id": "L1", "sku": sku, "quantity": 2, "location": "W1"}],
    }
    assert any_api.post("/v1/orders", body).status_code == 201
    path = "/v1/orders/" + oid.replace("/", "%2F")
    view = any_api.get(path)
    assert view.status_code == 200 and view.json()["order_id"] == oid
    shipped = any_api.post(
        f"{path}/shipments", {"shipment_id": "S/1", "lines": [{"line_id": "L1", "quantity": 1}]}
    )
    assert shipped.status_code == 201, shipped.text
    cancelled = any_api.post(f"{path}/cancellation", {"reason": "customer"})
    assert cancelled.status_code == 200, cancelled.text
    assert on_hand(any_api, sku, "W1")["reserved"] == 0
    returned = any_api.post(
        f"{path}/returns",
        {"return_id": "R/1", "lines": [{"line_id": "L1", "quantity": 1, "disposition": "restock"}]},
    )
    assert returned.status_code == 201, returned.text
    assert any_api.get("/v1/orders/" + "SO%2F2026%2Fnope").status_code == 404
