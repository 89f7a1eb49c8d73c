"""On hand below zero is a fact the ledger keeps (units left that it never saw arrive) and an
exception an operator sees: `negative-stock`, with what is incoming there, until a receipt or a
count brings on hand back (on SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from e2e_api import Api, uid
from test_api_transit import apply_inbox, level, notice_of
from test_console import HTML, sign_in

from ledger.commands import SellDirect


def negative(api: Api, sku: str, location: str = "W1") -> list[dict[str, Any]]:
    """The open `negative-stock` detail of the SKU-location, after the read models and a sweep."""
    api.container.projector.catch_up()
    api.container.sweeper.sweep()
    items = api.get("/v1/exceptions", kind="negative-stock").json()["items"]
    return [i["detail"] for i in items if i["key"] == f"{sku}@{location}"]


def console_sku(api: Api, sku: str) -> Any:
    """The console's page of the SKU, as an auditor signed in sees it."""
    sign_in(api, "audit:read")
    try:
        return api.client.get(f"/console/skus/{sku}", headers=HTML)
    finally:
        api.client.cookies.clear()


def test_an_order_shipped_before_its_incoming_units_were_received_is_negative_stock_until_they_are(
    any_api: Api,
) -> None:
    """A channel counting incoming units sells what a notice announces; the warehouse ships it
    before the receipt is recorded. The shipment is a fact, so on hand goes to -3, and the
    operator sees it with the 3 incoming; the receipt naming the notice brings it to 0 and the
    exception closes. No `shortfall` meanwhile: the notice covered the reservation."""
    sku, asn = uid("sku-"), uid("ASN-")
    body = {"locations": ["W1"], "safety_stock": 0, "include_incoming_days": 7}
    assert any_api.client.put("/v1/channels/ato", json=body, headers=any_api.auth("admin")).status_code == 200
    assert any_api.post("/v1/erp/advance-shipping-notices", notice_of(asn, sku, 3, days=2)).status_code == 200
    apply_inbox(any_api)
    oid = uid("o-")
    order = {"order_id": oid, "channel": "ato", "lines": [{"line_id": "1", "sku": sku, "quantity": 3}]}
    assert any_api.post("/v1/orders", order).status_code == 201
    assert negative(any_api, sku) == []

    shipped = any_api.post(
        f"/v1/orders/{oid}/shipments", {"shipment_id": uid("s-"), "lines": [{"line_id": "1", "quantity": 3}]}
    )
    assert shipped.status_code == 201, shipped.text
    assert level(any_api, sku, "W1") == (-3, 3, -3)
    assert negative(any_api, sku) == [{"sku": sku, "location": "W1", "on_hand": -3, "incoming": 3}]
    any_api.container.sweeper.sweep()
    assert len(negative(any_api, sku)) == 1  # open once, however many sweeps
    shortfalls = any_api.get("/v1/exceptions", kind="shortfall").json()["items"]
    assert all(i["key"] != f"{sku}@W1" for i in shortfalls)
    page = console_sku(any_api, sku)
    assert page.status_code == 200 and "shows -3 on hand" in page.text and "3 incoming there" in page.text

    receipt = {"sku": sku, "location": "W1", "quantity": 3, "reference": uid("PO-"), "asn_id": asn}
    assert any_api.post("/v1/stock/receipts", receipt).status_code == 201, receipt
    assert level(any_api, sku, "W1") == (0, 0, 0)
    assert negative(any_api, sku) == []
    every = any_api.get("/v1/exceptions", kind="negative-stock", status="all").json()["items"]
    assert [i["status"] for i in every if i["key"] == f"{sku}@W1"] == ["closed"]


def test_an_offline_till_selling_more_than_the_ledger_holds_is_negative_stock_until_counted(
    any_api: Api,
) -> None:
    """An offline till sold 5 where the ledger held 2: on hand -3 with nothing incoming (a count is
    due), refreshed when another unit goes (-4), closed by the count that finds 1."""
    sku = uid("sku-")
    assert (
        any_api.post(
            "/v1/stock/receipts", {"sku": sku, "location": "S1", "quantity": 2, "reference": uid()}
        ).status_code
        == 201
    )
    till = SellDirect(sku=sku, location="S1", quantity=5, reference=uid("till-"), record_shortfall=True)
    any_api.container.ledger.execute(till)
    assert negative(any_api, sku, "S1") == [{"sku": sku, "location": "S1", "on_hand": -3, "incoming": 0}]
    any_api.container.ledger.execute(
        SellDirect(sku=sku, location="S1", quantity=1, reference=uid("till-"), record_shortfall=True)
    )
    assert negative(any_api, sku, "S1") == [{"sku": sku, "location": "S1", "on_hand": -4, "incoming": 0}]
    page = console_sku(any_api, sku)
    assert "shows -4 on hand" in page.text and "a count is due" in page.text
    count = {
        "message_id": uid("m-"),
        "count_id": uid("count-"),
        "location": "S1",
        "counted_at": datetime.now(UTC).isoformat(),
        "lines": [{"sku": sku, "counted": 1}],
    }
    assert any_api.post("/v1/erp/cycle-counts", count).status_code == 200
    apply_inbox(any_api)
    assert level(any_api, sku, "S1")[0] == 1
    assert negative(any_api, sku, "S1") == []
