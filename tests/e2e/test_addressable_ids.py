"""Every id the API accepts can be addressed again through its routes (CONTRACT, "Bounds").

A property test over HTTP (SQLite): arbitrary valid ids (1-128 printable characters: `/`, `%`,
`?`, `#`, spaces, dots, unicode) for SKUs, locations, channels, orders, order lines, shipments,
returns and reservations (holds) go through create → GET → every action route, percent-encoded in the path.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest
from e2e_api import Api, make_api, uid
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

SPECIAL = ["/", "%", "?", "#", " ", ".", "..", "a/b", "%2F", "a%2Fb", "x?y#z", "ü/ñ", "-", "~", "+", "&=;"]
ids = st.one_of(
    st.sampled_from(SPECIAL),
    st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=128).filter(str.isprintable),
    st.text("/%?# .", min_size=1, max_size=12),
)


def q(value: str) -> str:
    """One path segment: percent-encoded; `.` and `..` too (clients drop dot segments)."""
    return quote(value, safe="") if value.strip(".") else value.replace(".", "%2E")


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    yield from make_api(f"sqlite:///{tmp_path_factory.mktemp('ids')}/ledger.db")


def ok(r: object, *statuses: int) -> dict:
    status = getattr(r, "status_code")  # noqa: B009  # an httpx response
    assert status in statuses, getattr(r, "text")  # noqa: B009
    return r.json()  # type: ignore[attr-defined, no-any-return]  # an httpx response


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sku=ids, loc=ids, loc2=ids, channel=ids, order=ids, line=ids, shipment=ids, ret=ids, hold=ids)
def test_every_valid_id_is_addressable_through_its_routes(
    app: Api,
    sku: str,
    loc: str,
    loc2: str,
    channel: str,
    order: str,
    line: str,
    shipment: str,
    ret: str,
    hold: str,
) -> None:
    assume(loc != loc2)
    # Each example its own ids: a suffix keeps examples apart without leaving the bounds.
    sku, channel, order = sku[:120] + uid()[:8], channel[:120] + uid()[:8], order[:120] + uid()[:8]
    hold = hold[:120] + uid()[:8]
    admin = app.auth("admin")
    policy = {"locations": [loc, loc2], "safety_stock": 0}
    got = ok(app.client.put(f"/v1/channels/{q(channel)}", json=policy, headers=admin), 200)
    assert got["channel"] == channel
    assert ok(app.get(f"/v1/channels/{q(channel)}"), 200)["channel"] == channel

    # SKUs and locations: receipt, adjustment, transfer; the stock and its events.
    ok(app.post("/v1/stock/receipts", {"sku": sku, "location": loc, "quantity": 10, "reference": uid()}), 201)
    adjustment = {"sku": sku, "location": loc, "delta": -1, "reason": "damaged", "reference": uid()}
    ok(app.post("/v1/stock/adjustments", adjustment), 201)
    transfer = {"sku": sku, "from_location": loc, "to_location": loc2, "quantity": 2, "reference": uid()}
    ok(app.post("/v1/stock/transfers", transfer), 201)
    for where, on_hand in ((loc, 7), (loc2, 2)):
        s = ok(app.get(f"/v1/stock/{q(sku)}/{q(where)}"), 200)
        assert (s["sku"], s["location"], s["on_hand"]) == (sku, where, on_hand)
        events = ok(app.get(f"/v1/stock/{q(sku)}/{q(where)}/events"), 200)["items"]
        assert events and all(e["type"] for e in events)

    # The channel's ATS: point (twice: the second from the lean path), list, explain and its link.
    app.container.projector.catch_up()
    for _ in range(2):
        a = ok(app.get(f"/v1/ats/{q(channel)}/{q(sku)}", scope="ats:read"), 200)
        assert (a["channel"], a["sku"], a["available"]) == (channel, sku, 9)
    items = ok(app.get(f"/v1/ats/{q(channel)}", scope="ats:read", sku=sku), 200)["items"]
    assert [(i["sku"], i["available"]) for i in items] == [(sku, 9)]
    e = ok(app.get(f"/v1/ats/{q(channel)}/{q(sku)}/explain", scope="ats:read"), 200)
    assert (e["channel"], e["sku"], e["available"]) == (channel, sku, 9)
    for x in e["locations"]:
        assert ok(app.client.get(x["events"]["href"], headers=app.auth("audit:read")), 200)["items"]

    # Locations and holds: the location's policy; a hold placed, read and voided.
    got = ok(app.client.put(f"/v1/locations/{q(loc)}", json={"backorders": False}, headers=admin), 200)
    assert got["location"] == loc
    assert ok(app.get(f"/v1/locations/{q(loc)}"), 200)["location"] == loc
    expires = (datetime.now(UTC) + timedelta(minutes=10)).isoformat()
    placed = {"reservation_id": hold, "channel": channel, "lines": [{"line_id": line, "sku": sku, "quantity": 1}]}
    assert ok(app.post("/v1/reservations", {**placed, "expires_at": expires}), 201)["reservation_id"] == hold
    assert ok(app.get(f"/v1/reservations/{q(hold)}"), 200)["status"] == "held"
    r = app.client.delete(f"/v1/reservations/{q(hold)}", headers=app.auth("ingest:write"))
    assert ok(r, 200)["status"] == "released"
    assert ok(app.get(f"/v1/reservations/{q(hold)}"), 200)["reservation_id"] == hold

    # Orders, their lines, shipments and returns: capture, view, ship, return, cancel, release.
    capture = {"order_id": order, "channel": channel, "lines": [{"line_id": line, "sku": sku, "quantity": 3}]}
    assert ok(app.post("/v1/orders", capture), 201)["order_id"] == order
    view = ok(app.get(f"/v1/orders/{q(order)}"), 200)
    assert view["order_id"] == order and [x["line_id"] for x in view["lines"]] == [line]
    ship = {"shipment_id": shipment, "lines": [{"line_id": line, "quantity": 1}]}
    ok(app.post(f"/v1/orders/{q(order)}/shipments", ship), 201)
    back = {"return_id": ret, "lines": [{"line_id": line, "quantity": 1, "disposition": "restock"}]}
    ok(app.post(f"/v1/orders/{q(order)}/returns", back), 201)
    ok(app.post(f"/v1/orders/{q(order)}/cancellation", {"reason": "customer"}), 200)
    # Release is for held orders: this one is not held, so 409, but the route finds the order.
    r = app.client.post(f"/v1/orders/{q(order)}/release", headers=admin)
    assert r.status_code == 409 and not r.json()["type"].endswith("order-not-found"), r.text
    view = ok(app.get(f"/v1/orders/{q(order)}"), 200)
    assert [(x["shipped"], x["returned"]) for x in view["lines"]] == [(1, 1)]
