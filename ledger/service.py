"""The `Ledger`: business verbs over the write path (group commit) and the read path (history)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import Future
from datetime import datetime
from typing import Any

from eventsourcing.utils import EnvType

from ledger import commands as c
from ledger.application import Decider, History, LedgerApplication
from ledger.ports import LocationDirectory
from ledger.validation import OrderCheck
from ledger.writer import CACHE_SIZE, Writer


class Ledger:
    """One ledger over one event store. Thread-safe: every write goes through the writer."""

    def __init__(
        self,
        env: EnvType | None = None,
        locations: LocationDirectory | None = None,
        checks: Sequence[OrderCheck] = (),
        cache_size: int = CACHE_SIZE,
    ) -> None:
        self.app = LedgerApplication(env=env)
        self.decider = Decider(self.app, locations, checks)
        self.writer = Writer(self.app, self.decider, cache_size=cache_size)
        self.history = History(self.app)

    def close(self) -> None:
        self.writer.stop()
        self.app.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def submit(self, command: c.Command) -> Future[dict[str, Any]]:
        return self.writer.submit(command)

    def submit_async(self, command: c.Command) -> asyncio.Future[dict[str, Any]]:
        """`submit` for coroutines (call it on the event loop's thread)."""
        return self.writer.submit_async(command)

    def execute(self, command: c.Command) -> dict[str, Any]:
        return self.writer.execute(command)

    # Business verbs: thin names over the commands, for scripts and tests.

    def receive(self, sku: str, location: str, quantity: int, reference: str, **kw: Any) -> dict[str, Any]:
        return self.execute(
            c.ReceiveStock(sku=sku, location=location, quantity=quantity, reference=reference, **kw)
        )

    def adjust(
        self, sku: str, location: str, delta: int, reason: str, reference: str, **kw: Any
    ) -> dict[str, Any]:
        return self.execute(
            c.AdjustStock(sku=sku, location=location, delta=delta, reason=reason, reference=reference, **kw)
        )

    def transfer(
        self, sku: str, from_location: str, to_location: str, quantity: int, reference: str, **kw: Any
    ) -> dict[str, Any]:
        return self.execute(
            c.TransferStock(
                sku=sku,
                from_location=from_location,
                to_location=to_location,
                quantity=quantity,
                reference=reference,
                **kw,
            )
        )

    def reserve(
        self, sku: str, location: str, order_id: str, line_id: str, quantity: int, **kw: Any
    ) -> dict[str, Any]:
        return self.execute(
            c.Reserve(sku=sku, location=location, order_id=order_id, line_id=line_id, quantity=quantity, **kw)
        )

    def release_expired(self, sku: str, location: str, now: datetime) -> dict[str, Any]:
        return self.execute(c.ReleaseExpired(sku=sku, location=location, now=now))

    def capture_order(
        self, order_id: str, channel: str, lines: Sequence[dict[str, Any]], **kw: Any
    ) -> dict[str, Any]:
        return self.execute(c.CaptureOrder(order_id=order_id, channel=channel, lines=tuple(lines), **kw))

    def ship(
        self, order_id: str, shipment_id: str, lines: Sequence[dict[str, Any]], **kw: Any
    ) -> dict[str, Any]:
        return self.execute(c.ShipOrder(order_id=order_id, shipment_id=shipment_id, lines=tuple(lines), **kw))

    def cancel(
        self, order_id: str, reason: str, lines: Sequence[dict[str, Any]] | None = None, **kw: Any
    ) -> dict[str, Any]:
        return self.execute(
            c.CancelOrder(
                order_id=order_id, reason=reason, lines=None if lines is None else tuple(lines), **kw
            )
        )

    def return_items(
        self, order_id: str, return_id: str, lines: Sequence[dict[str, Any]], **kw: Any
    ) -> dict[str, Any]:
        return self.execute(c.ReturnItems(order_id=order_id, return_id=return_id, lines=tuple(lines), **kw))
