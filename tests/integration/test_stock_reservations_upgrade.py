"""Open reservations have rows of their own (`stock_reservations`); a database an earlier version
wrote (each stock row's reservations as JSON, with `next_expiry`) is brought into that shape when
the projector starts, without a rebuild, and the sweeper and later events carry on from it."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from projection_support import Rig, random_command, snapshot

from adapters.channels import ChannelPolicy
from adapters.persistence.db import Database
from ledger import commands as c
from projections.rebuild import rebuild
from projections.runner import Projector
from projections.sweeper import Sweeper


def opened(db: Database) -> dict[str, list[tuple[str, int, float | None]]]:
    """Each SKU-location's open reservations in the order they were opened."""
    out: dict[str, list[tuple[str, int, float | None]]] = {}
    for r in db.query("SELECT * FROM stock_reservations ORDER BY stream_id, since"):
        out.setdefault(r["stream_id"], []).append((r["reservation_id"], int(r["quantity"]), r["expires_at"]))
    return out


def make_legacy(db: Database) -> None:
    """The layout before this version: the reservations as JSON in their stock row, in the order
    they were opened, `{id: [units, expiry epoch]}`, and the earliest expiry in `next_expiry`."""
    rows = opened(db)
    with db.transaction() as tx:
        tx.execute("ALTER TABLE stock_levels ADD COLUMN reservations TEXT")
        tx.execute("ALTER TABLE stock_levels ADD COLUMN next_expiry DOUBLE PRECISION")
        tx.execute("CREATE INDEX stock_levels__next_expiry ON stock_levels (next_expiry)")
        tx.execute("UPDATE stock_levels SET reservations = '{}'")
        for stream, held in rows.items():
            expiries = [e for _, _, e in held if e is not None]
            tx.execute(
                "UPDATE stock_levels SET reservations = %s, next_expiry = %s WHERE stream_id = %s",
                (
                    orjson.dumps({rid: [q, e] for rid, q, e in held}).decode(),
                    min(expiries) if expiries else None,
                    stream,
                ),
            )
        tx.execute("DROP TABLE stock_reservations")


def test_an_earlier_versions_stock_rows_are_upgraded_in_place(database_url: str) -> None:
    rig = Rig(database_url)
    try:
        run = uuid.uuid4().hex[:6]
        past = datetime.now(UTC) - timedelta(minutes=5)
        led = rig.ledger
        rig.channels.put(ChannelPolicy(channel="web", locations=("W1",)), "test")
        led.execute(c.ReceiveStock(sku="HOT", location="W1", quantity=10, reference=f"{run}-po"))
        for i, (qty, expires) in enumerate(
            [(2, None), (3, past), (1, None), (2, past + timedelta(minutes=1))]
        ):
            led.capture_order(
                f"{run}-o{i}", "web", [{"line_id": "1", "sku": "HOT", "quantity": qty}], expires_at=expires
            )
        led.cancel(f"{run}-o2", "customer")
        rnd = random.Random(7)
        orders: list[str] = []
        for _ in range(40):
            random_command(rig, rnd, run, orders)
        rig.projector.catch_up()
        before, held = snapshot(rig.db), opened(rig.db)
        assert sum(len(v) for v in held.values()) >= 3

        make_legacy(rig.db)
        assert {"reservations", "next_expiry"} <= rig.db.columns("stock_levels")
        Projector(rig.db, rig.ledger.app, rig.channels, record=rig.ledger.execute)  # a process starts

        assert not {"reservations", "next_expiry"} & rig.db.columns("stock_levels")
        after = snapshot(rig.db)
        assert {k: v for k, v in after.items() if k != "reservations"} == {
            k: v for k, v in before.items() if k != "reservations"
        }
        assert opened(rig.db) == held  # the same reservations, in the same order

        # The sweeper finds those past their expiry, and a second start changes nothing.
        sweeper = Sweeper(rig.db, rig.ledger.execute, deadline_seconds=3600)
        found = sweeper.sweep()
        assert found["submitted"] >= 1
        Projector(rig.db, rig.ledger.app, rig.channels, record=rig.ledger.execute)
        rig.projector.catch_up()
        left: dict[str, Any] = opened(rig.db)
        assert all(e is None or e > datetime.now(UTC).timestamp() - 1 for v in left.values() for _, _, e in v)

        for _ in range(40):  # later events fold onto the moved rows
            random_command(rig, rnd, run, orders)
        rig.projector.catch_up()
        live = opened(rig.db)
        rebuild(rig.projector, "stock", batch_size=11)
        assert opened(rig.db) == live  # what a replay of the log gives (`since` aside: the order)
    finally:
        rig.close()
