"""The backordered order lines of one SKU, oldest capture first.

A line that its channel's group (or its named location) could not fill when the order was
captured with `allow_partial` waits here. When units become available at a location, the
ledger reserves them for the waiting lines whose group includes that location, in capture
order (first come, first served), and drops a line from the queue once nothing of it is
backordered any more (filled, cancelled or shipped).
"""

from __future__ import annotations

import uuid
from functools import lru_cache
from typing import Any

from eventsourcing.domain import Aggregate

from ledger.bounds import NAMESPACE, check_id

Cause = dict[str, Any]


@lru_cache(maxsize=1 << 16)  # looked up by every movement of the SKU (`ledger.bounds.stock_id`)
def backorders_id(sku: str) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, f"backorders\x1f{sku}")


class Backorders(Aggregate):
    @staticmethod
    def create_id(sku: str, **_: Any) -> uuid.UUID:
        return backorders_id(sku)

    class Event(Aggregate.Event):
        cause: Cause

    class Opened(Aggregate.Created):
        sku: str
        cause: Cause

    def __init__(self, sku: str, cause: Cause) -> None:
        self.sku = sku
        # {order_id, line_id, channel, location}: `location` set when the line named its location
        self.waiting: list[dict[str, Any]] = []

    @classmethod
    def open(cls, sku: str, cause: Cause) -> Backorders:
        check_id(sku, "sku")
        return cls._create(cls.Opened, id=cls.create_id(sku), sku=sku, cause=cause)

    class LineQueued(Event):
        order_id: str
        line_id: str
        channel: str
        location: str | None

        def apply(self, b: Backorders) -> None:
            b.waiting.append(
                {
                    "order_id": self.order_id,
                    "line_id": self.line_id,
                    "channel": self.channel,
                    "location": self.location,
                }
            )

    class LineDequeued(Event):
        order_id: str
        line_id: str

        def apply(self, b: Backorders) -> None:
            b.waiting = [
                w for w in b.waiting if (w["order_id"], w["line_id"]) != (self.order_id, self.line_id)
            ]

    def queue(self, order_id: str, line_id: str, channel: str, location: str | None, cause: Cause) -> None:
        if not any((w["order_id"], w["line_id"]) == (order_id, line_id) for w in self.waiting):
            self.trigger_event(
                self.LineQueued,
                order_id=order_id,
                line_id=line_id,
                channel=channel,
                location=location,
                cause=cause,
            )

    def dequeue(self, order_id: str, line_id: str, cause: Cause) -> None:
        if any((w["order_id"], w["line_id"]) == (order_id, line_id) for w in self.waiting):
            self.trigger_event(self.LineDequeued, order_id=order_id, line_id=line_id, cause=cause)
