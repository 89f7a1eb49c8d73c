"""An expired reservation of an order shows on the order: the aggregate, its stage and the read model."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import orjson
from projection_support import Rig

from adapters.channels import ChannelPolicy
from ledger import commands as c
from ledger.orders import Order
from projections import folds


def test_an_expired_order_reservation_is_released_on_the_order_line_too(database_url):
    rig = Rig(database_url)
    try:
        rig.channels.put(ChannelPolicy("web", ("W/1",)), "test")
        rig.ledger.receive("S", "W/1", 10, "r")
        past = datetime.now(UTC) - timedelta(minutes=1)
        order = "shop/" + uuid.uuid4().hex[:6]  # a `/` in the order id: the reservation id is `order/line`
        rig.ledger.capture_order(
            order,
            "web",
            [{"line_id": "a/b", "sku": "S", "quantity": 3}, {"line_id": "2", "sku": "S", "quantity": 1}],
            expires_at=past,
        )
        rig.ledger.capture_order("kept", "web", [{"line_id": "1", "sku": "S", "quantity": 2}])  # no expiry
        rig.ledger.execute(
            c.Reserve(sku="S", location="W/1", order_id="cart-9", line_id="1", quantity=1, expires_at=past)
        )  # a cart hold: no order in the ledger
        rig.projector.catch_up()
        assert (
            rig.db.query_one("SELECT stage FROM order_views WHERE order_id = %s", (order,))["stage"]
            == "reserved"
        )

        out = rig.ledger.execute(c.ReleaseExpired(sku="S", location="W/1", now=datetime.now(UTC)))
        assert out["released"] == 5 and out["available"] == 8

        agg = rig.ledger.history.order(order)
        assert [Order.held_quantity(x) for x in agg.lines.values()] == [0, 0]
        assert agg.stage == "captured"
        assert rig.ledger.history.order("kept").stage == "reserved"
        rig.projector.catch_up()
        row = rig.db.query("SELECT order_id, stage, state FROM order_views WHERE order_id = %s", (order,))[0]
        assert row["stage"] == "captured"
        lines = folds.order_lines({"state": orjson.loads(row["state"])})
        assert [(x["reserved"], x["released"]) for x in lines] == [(0, 3), (0, 1)]
        # the expiry runs again (the sweeper's next pass): nothing more happens
        again = rig.ledger.execute(c.ReleaseExpired(sku="S", location="W/1", now=datetime.now(UTC)))
        assert again["released"] == 0
        assert rig.ledger.history.order(order).version == agg.version
    finally:
        rig.close()
