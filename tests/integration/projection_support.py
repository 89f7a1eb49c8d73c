"""Helpers for the projection tests: a ledger with its read models, table snapshots, random histories."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from adapters.channels import ChannelPolicies, ChannelPolicy
from adapters.persistence.db import Database
from adapters.persistence.migrate import migrate
from adapters.persistence.urls import ledger_env
from ledger.errors import LedgerError
from ledger.service import Ledger
from projections.runner import Projector

SKUS = ("sku.a", "sku b", "SKU>*")
LOCATIONS = ("W1", "W2", "S.1")


class Rig:
    """A ledger, its database gateway, channel policies and a projector, on one database URL."""

    def __init__(self, url: str) -> None:
        env = ledger_env(url)  # creates the PostgreSQL schema when the URL names one
        self.db = Database(url)
        migrate(self.db)
        self.channels = ChannelPolicies(self.db)
        self.ledger = Ledger(env, locations=self.channels)
        self.channels.record = self.ledger.execute  # policy versions are facts in the log
        self.projector = Projector(
            self.db, self.ledger.app, self.channels, batch_size=7, record=self.ledger.execute
        )

    def close(self) -> None:
        self.ledger.close()
        self.db.close()


def snapshot(db: Database) -> dict[str, list[dict[str, Any]]]:
    """The read models' rows, in a stable order (policy-independent columns only)."""
    return {
        "ats": db.query("SELECT channel, sku, available FROM ats ORDER BY channel, sku"),
        "ats_levels": db.query(
            "SELECT stream_id, sku, location, available FROM ats_levels ORDER BY stream_id"
        ),
        "stock": db.query(
            "SELECT stream_id, sku, location, on_hand, reserved, unavailable, incoming, available, "
            "version, position FROM stock_levels ORDER BY stream_id"
        ),
        "reservations": db.query(
            "SELECT stream_id, reservation_id, quantity, expires_at, since FROM stock_reservations "
            "ORDER BY stream_id, reservation_id"
        ),
        "orders": db.query(
            "SELECT order_key, order_id, channel, stage, state, erp_posted, version, position "
            "FROM order_views ORDER BY order_key"
        ),
    }


def random_policy(rnd: random.Random, channel: str) -> ChannelPolicy:
    locs = rnd.sample(LOCATIONS, rnd.randint(1, len(LOCATIONS)))
    percent = rnd.choice([0, 0, 10, 50])
    return ChannelPolicy(
        channel=channel,
        locations=tuple(locs),
        safety_stock=rnd.randint(0, 3),
        safety_stock_overrides={s: rnd.randint(0, 5) for s in rnd.sample(SKUS, rnd.randint(0, 1))},
        buffer_units=0 if percent else rnd.randint(0, 2),
        buffer_percent=percent,
        excluded_skus=frozenset(rnd.sample(SKUS, rnd.randint(0, 1))),
    )


def random_command(rig: Rig, rnd: random.Random, prefix: str, orders: list[str]) -> None:
    """One random business action; refusals (no stock, nothing to cancel, ...) are part of the game."""
    led = rig.ledger
    sku, loc = rnd.choice(SKUS), rnd.choice(LOCATIONS)
    op = rnd.choice(
        ["receive", "receive", "adjust", "transfer", "order", "order", "ship", "cancel", "return", "expire"]
    )
    ref = f"{prefix}-{rnd.getrandbits(40):x}"
    try:
        if op == "receive":
            led.receive(sku, loc, rnd.randint(1, 9), ref)
        elif op == "adjust":
            led.adjust(sku, loc, rnd.choice([-3, -1, 2, 5]), "count", ref)
        elif op == "transfer":
            to = rnd.choice([x for x in LOCATIONS if x != loc])
            led.transfer(sku, loc, to, rnd.randint(1, 4), ref)
        elif op == "order":
            expires = (
                datetime.now(UTC) + timedelta(seconds=rnd.choice([-60, 3600])) if rnd.random() < 0.3 else None
            )
            lines = [
                {"line_id": str(i), "sku": rnd.choice(SKUS), "quantity": rnd.randint(1, 3)}
                for i in range(rnd.randint(1, 2))
            ]
            led.capture_order(
                ref, rnd.choice(["web", "pos"]), lines, expires_at=expires, allow_partial=rnd.random() < 0.5
            )
            orders.append(ref)
        elif op == "ship" and orders:
            o = rnd.choice(orders)
            led.ship(o, ref, [{"line_id": "0", "quantity": 1}])
        elif op == "cancel" and orders:
            led.cancel(rnd.choice(orders), "customer")
        elif op == "return" and orders:
            led.return_items(
                rnd.choice(orders),
                ref,
                [{"line_id": "0", "quantity": 1, "disposition": rnd.choice(["restock", "damaged"])}],
            )
        elif op == "expire":
            led.release_expired(sku, loc, datetime.now(UTC))
    except LedgerError:
        pass
