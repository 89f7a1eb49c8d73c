"""An order's story over HTTP on PostgreSQL, against the ERP stand-in: what is open, the ERP
documents it calls for, and the ERP's invoice closing it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from e2e_api import Api, make_api, uid
from erpstandin import ErpStandIn

from adapters.erp import ErpPoster


@pytest.fixture
def erp() -> Iterator[ErpStandIn]:
    e = ErpStandIn()
    yield e
    e.close()


@pytest.fixture
def api(pg_url: str, erp: ErpStandIn) -> Iterator[Api]:
    yield from make_api(pg_url, erp_url=erp.url)


def post_to_erp(api: Api) -> None:
    """What the feeder and poster loops do in the background, until nothing is left to post."""
    container = api.container
    poster: ErpPoster = container.erp_poster
    for _ in range(200):
        while container.erp_feeder.step():
            pass
        if not poster.step() and container.erp_queue.depth() == 0 and not poster.in_flight:
            return
    raise AssertionError("documents still waiting")


def apply_inbox(api: Api) -> None:
    for _ in range(10):
        if not api.container.intake.step():
            return


def view(api: Api, order_id: str) -> dict:
    r = api.get(f"/v1/orders/{order_id}", scope="ats:read")
    assert r.status_code == 200, r.text
    return r.json()


def test_an_order_reads_what_is_still_open_until_the_erp_invoices_it(api: Api, erp: ErpStandIn) -> None:
    sku, oid = uid("sku-"), uid("o-")
    assert (
        api.post(
            "/v1/stock/receipts", {"sku": sku, "location": "W1", "quantity": 5, "reference": uid()}
        ).status_code
        == 201
    )
    lines = [{"line_id": "L1", "sku": sku, "quantity": 2, "location": "W1"}]
    r = api.post("/v1/orders", {"order_id": oid, "channel": "web", "lines": lines})
    assert r.status_code == 201 and r.json()["open"] == ["ship", "post", "invoice"]
    r = api.post(
        f"/v1/orders/{oid}/shipments", {"shipment_id": "s1", "lines": [{"line_id": "L1", "quantity": 1}]}
    )
    assert r.status_code == 201
    v = view(api, oid)
    assert (v["stage"], v["open"]) == ("partially_shipped", ["ship", "post", "invoice"])
    post_to_erp(api)
    assert [p for p, _ in erp.story(oid)] == ["/sales-orders", "/deliveries"]
    api.post(
        f"/v1/orders/{oid}/shipments", {"shipment_id": "s2", "lines": [{"line_id": "L1", "quantity": 1}]}
    )
    post_to_erp(api)
    v = view(api, oid)
    assert (v["stage"], v["open"]) == ("shipped", ["invoice"])
    invoice = {
        "message_id": uid("m-"),
        "invoice_id": "INV-1",
        "order_id": oid,
        "amount": "398.00",
        "currency": "EUR",
    }
    assert api.post("/v1/erp/invoices", invoice).status_code == 200
    apply_inbox(api)
    v = view(api, oid)
    assert (v["stage"], v["open"], v["refunds"]) == ("invoiced", [], [])


@pytest.mark.parametrize(
    "change",
    [
        {"amount": 398.0},
        {"amount": "NaN"},
        {"amount": "-1"},
        {"currency": "euro"},
        {"order_id": ""},
        {"invoice_id": None},
    ],
)
def test_a_malformed_invoice_is_refused_and_nothing_is_stored(api: Api, change: dict) -> None:
    invoice = {
        "message_id": uid("m-"),
        "invoice_id": "INV-1",
        "order_id": "o-1",
        "amount": "1.00",
        "currency": "EUR",
    }
    before = len(api.get("/v1/inbox", limit=1000).json()["items"])
    r = api.post("/v1/erp/invoices", {**invoice, **change})
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
    assert len(api.get("/v1/inbox", limit=1000).json()["items"]) == before


def test_orders_are_listed_by_stage_with_what_is_still_open(api: Api, erp: ErpStandIn) -> None:
    sku, channel = uid("sku-"), uid("ch-")
    assert (
        api.post(
            "/v1/stock/receipts", {"sku": sku, "location": "W1", "quantity": 9, "reference": uid()}
        ).status_code
        == 201
    )
    ids = sorted(uid("o-") for _ in range(3))
    for oid in ids:
        lines = [{"line_id": "L1", "sku": sku, "quantity": 1, "location": "W1"}]
        assert (
            api.post("/v1/orders", {"order_id": oid, "channel": channel, "lines": lines}).status_code == 201
        )
    post_to_erp(api)
    api.post(
        f"/v1/orders/{ids[0]}/shipments", {"shipment_id": "s1", "lines": [{"line_id": "L1", "quantity": 1}]}
    )
    api.container.projector.catch_up()
    r = api.get("/v1/orders", stage="posted", channel=channel, limit=1)
    assert r.status_code == 200, r.text
    page = r.json()
    assert [x["order_id"] for x in page["items"]] == [ids[1]] and page["next"] == ids[1]
    assert page["items"][0]["open"] == ["ship", "invoice"]
    rest = api.get("/v1/orders", stage="posted", channel=channel, after=page["next"]).json()
    assert [x["order_id"] for x in rest["items"]] == [ids[2]] and rest["next"] is None
    shipped = api.get("/v1/orders", stage="shipped", channel=channel).json()["items"]
    assert [(x["order_id"], x["open"]) for x in shipped] == [(ids[0], ["post", "invoice"])]
    assert api.get("/v1/orders", stage="nonsense").status_code == 422
    assert api.get("/v1/orders", scope="ats:read").status_code == 403
