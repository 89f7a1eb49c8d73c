"""Stock in transit over HTTP: ERP transfers dispatched then received, advance shipping notices
consumed by receipts that name them (on SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from e2e_api import Api, uid


def apply_inbox(api: Api) -> None:
    for _ in range(50):
        if not api.container.intake.step():
            return


def level(api: Api, sku: str, location: str) -> tuple[int, int, int]:
    s = api.get(f"/v1/stock/{sku}/{location}").json()
    return s["on_hand"], s["incoming"], s["available"]


def notice_of(asn: str, sku: str, quantity: int, days: float, location: str = "W1") -> dict[str, object]:
    """An advance shipping notice of one line, due in `days`."""
    return {
        "message_id": uid("m-"),
        "asn_id": asn,
        "location": location,
        "expected_at": (datetime.now(UTC) + timedelta(days=days)).isoformat(),
        "lines": [{"sku": sku, "quantity": quantity}],
    }


def test_a_dispatched_transfer_is_incoming_at_its_destination_until_received(any_api: Api) -> None:
    sku, tid = uid("sku-"), uid("TR-")
    r = any_api.post("/v1/stock/receipts", {"sku": sku, "location": "W1", "quantity": 10, "reference": uid()})
    assert r.status_code == 201
    leg = {
        "transfer_id": tid,
        "from_location": "W1",
        "to_location": "S1",
        "lines": [{"sku": sku, "quantity": 4}],
    }
    r = any_api.post("/v1/erp/transfers", {**leg, "message_id": uid("m-"), "status": "dispatched"})
    assert r.status_code == 200, r.text
    apply_inbox(any_api)
    assert level(any_api, sku, "W1") == (6, 0, 6)
    assert level(any_api, sku, "S1") == (0, 4, 0)
    any_api.post("/v1/erp/transfers", {**leg, "message_id": uid("m-"), "status": "received"})
    apply_inbox(any_api)
    assert level(any_api, sku, "S1") == (4, 0, 4)
    assert level(any_api, sku, "W1") == (6, 0, 6)
    bad = any_api.post("/v1/erp/transfers", {**leg, "message_id": uid("m-"), "status": "lost"})
    assert bad.status_code == 422 and bad.headers["content-type"].startswith("application/problem+json")


def test_an_advance_shipping_notice_is_incoming_and_a_receipt_naming_it_consumes_it(any_api: Api) -> None:
    sku, asn = uid("sku-"), uid("ASN-")
    notice = notice_of(asn, sku, 5, days=3)
    r = any_api.post("/v1/erp/advance-shipping-notices", notice)
    assert r.status_code == 200, r.text
    apply_inbox(any_api)
    assert level(any_api, sku, "W1") == (0, 5, 0)
    receipt = {"sku": sku, "location": "W1", "quantity": 3, "reference": uid("PO-"), "asn_id": asn}
    assert any_api.post("/v1/stock/receipts", receipt).status_code == 201
    assert level(any_api, sku, "W1") == (3, 2, 3)
    goods = {
        "message_id": uid("m-"),
        "receipt_id": uid("GR-"),
        "location": "W1",
        "asn_id": asn,
        "lines": [{"sku": sku, "quantity": 2}],
    }
    assert any_api.post("/v1/erp/goods-receipts", goods).status_code == 200
    apply_inbox(any_api)
    assert level(any_api, sku, "W1") == (5, 0, 5)
    naive = {**notice, "message_id": uid("m-"), "expected_at": "2026-12-01T00:00:00"}
    assert any_api.post("/v1/erp/advance-shipping-notices", naive).status_code == 422


def test_a_channel_counts_incoming_units_due_within_its_window(any_api: Api) -> None:
    from projections.rebuild import rebuild

    sku, near, far = uid("sku-"), uid("ASN-"), uid("ASN-")
    admin = any_api.auth("admin")
    for channel, days in (("ato", 7), ("plain", 0)):
        body = {"locations": ["W1"], "safety_stock": 1, "include_incoming_days": days}
        r = any_api.client.put(f"/v1/channels/{channel}", json=body, headers=admin)
        assert r.status_code == 200 and r.json()["include_incoming_days"] == days, r.text
    bad = any_api.client.put("/v1/channels/x", json={"locations": ["W1"], "safety_stock": 0,
                                                    "include_incoming_days": -1}, headers=admin)
    assert bad.status_code == 422 and bad.headers["content-type"].startswith("application/problem+json")
    any_api.post("/v1/stock/receipts", {"sku": sku, "location": "W1", "quantity": 4, "reference": uid()})
    for asn, days, quantity in ((near, 3, 5), (far, 30, 20)):
        notice = notice_of(asn, sku, quantity, days)
        assert any_api.post("/v1/erp/advance-shipping-notices", notice).status_code == 200
    apply_inbox(any_api)
    any_api.container.projector.catch_up()

    def ats(channel: str) -> int:
        r = any_api.get(f"/v1/ats/{channel}/{sku}", scope="ats:read")
        assert r.status_code == 200, r.text
        return int(r.json()["available"])

    assert (ats("ato"), ats("plain")) == (4 + 5 - 1, 4 - 1)  # the far notice is beyond 7 days
    e = any_api.get(f"/v1/ats/ato/{sku}/explain", scope="ats:read").json()
    assert e["available"] == 8 and e["incoming"] == {"days": 7, "counted": 5}
    lots = e["locations"][0]["incoming"]["lots"]
    assert [(x["quantity"], x["counted"]) for x in lots] == [(5, True), (20, False)]
    assert "+ 5 incoming" in e["formula"]
    # A receipt naming a notice lands the earliest-due incoming units first.
    receipt = {"sku": sku, "location": "W1", "quantity": 2, "reference": uid("PO-"), "asn_id": near}
    assert any_api.post("/v1/stock/receipts", receipt).status_code == 201
    any_api.container.projector.catch_up()
    assert (ats("ato"), ats("plain")) == (6 + 3 - 1, 6 - 1)
    rebuild(any_api.container.projector, "ats")  # a rebuild equals the live projection
    assert (ats("ato"), ats("plain")) == (8, 5)


def test_the_ats_promise_holds_with_incoming_units_and_only_units_nothing_covers_are_short(
    any_api: Api,
) -> None:
    """A channel that counts incoming units shows them in its ATS, and an order for that ATS is
    reserved (available goes below zero, covered by the notice). A channel that counts none
    cannot reserve them. A till sale then leaves one unit covered by nothing: only that unit is
    a `shortfall`; the reservations the notice covers are not."""
    from ledger.commands import SellDirect

    sku, asn = uid("sku-"), uid("ASN-")
    admin = any_api.auth("admin")
    for channel, days in (("ato", 7), ("plain", 0)):
        body = {"locations": ["W1"], "safety_stock": 1, "include_incoming_days": days}
        assert any_api.client.put(f"/v1/channels/{channel}", json=body, headers=admin).status_code == 200
    any_api.post("/v1/stock/receipts", {"sku": sku, "location": "W1", "quantity": 4, "reference": uid()})
    notice = notice_of(asn, sku, 5, days=3)
    assert any_api.post("/v1/erp/advance-shipping-notices", notice).status_code == 200
    apply_inbox(any_api)
    any_api.container.projector.catch_up()

    def ats(channel: str) -> int:
        return int(any_api.get(f"/v1/ats/{channel}/{sku}", scope="ats:read").json()["available"])

    shown = ats("ato")
    assert shown == 4 + 5 - 1
    oid = uid("o-")
    order = {"order_id": oid, "channel": "ato", "lines": [{"line_id": "1", "sku": sku, "quantity": shown}]}
    r = any_api.post("/v1/orders", order)
    assert r.status_code == 201, r.text
    assert r.json()["lines"][0]["allocations"] == [{"location": "W1", "quantity": 8}]
    assert level(any_api, sku, "W1") == (4, 5, -4)
    any_api.container.projector.catch_up()
    assert (ats("ato"), ats("plain")) == (0, 0)
    late = {"order_id": uid("o-"), "channel": "plain", "lines": [{"line_id": "1", "sku": sku, "quantity": 1}]}
    assert any_api.post("/v1/orders", late).status_code == 409  # it never counted the notice

    def shortfall() -> list[dict[str, object]]:
        any_api.container.projector.catch_up()
        any_api.container.sweeper.sweep()
        items = any_api.get("/v1/exceptions", kind="shortfall").json()["items"]
        return [i["detail"] for i in items if i["key"] == f"{sku}@W1"]

    assert shortfall() == []  # 4 on hand and 5 incoming cover the 8 reserved
    for _ in range(2):  # an offline till sells 2 units: one of them was promised
        any_api.container.ledger.execute(
            SellDirect(sku=sku, location="W1", quantity=1, reference=uid("till-"), record_shortfall=True)
        )
    [detail] = shortfall()
    assert detail["short"] == 1
    assert [(x["order_id"], x["quantity"]) for x in detail["uncovered"]] == [(oid, 1)]  # type: ignore[attr-defined]  # a JSON list
    receipt = {"sku": sku, "location": "W1", "quantity": 1, "reference": uid("PO-")}  # a unit found
    assert any_api.post("/v1/stock/receipts", receipt).status_code == 201
    assert shortfall() == []
