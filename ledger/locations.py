"""A location's policy: whether it may reserve beyond what is available (backorders), for every
SKU at it, SKUs first seen later included (`PUT /v1/locations/{location}`).

The SKU-location consults it when it reserves (`SkuLocation.backorders_allowed`: its own
`ConfigureBackorders` setting, or its location's). The unit of work hands the policy to each
SKU-location it loads, so a change applies to the next command deciding there.
"""

from __future__ import annotations

import uuid
from functools import lru_cache
from typing import Any

from eventsourcing.domain import Aggregate

from ledger.bounds import NAMESPACE, check_id

Cause = dict[str, Any]


@lru_cache(maxsize=1 << 14)
def location_id(location: str) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, f"location\x1f{location}")


class Location(Aggregate):
    @staticmethod
    def create_id(location: str, **_: Any) -> uuid.UUID:
        return location_id(location)

    class Event(Aggregate.Event):
        cause: Cause

    class Opened(Aggregate.Created):
        location: str
        cause: Cause

    def __init__(self, location: str, cause: Cause) -> None:
        self.location = location
        self.backorders = False

    @classmethod
    def open(cls, location: str, cause: Cause) -> Location:
        check_id(location, "location")
        return cls._create(cls.Opened, location=location, cause=cause)

    class BackordersSet(Event):
        allowed: bool

        def apply(self, loc: Location) -> None:
            loc.backorders = self.allowed

    def set_backorders(self, allowed: bool, cause: Cause) -> bool:
        """Records the setting; False when it already was so (nothing appended)."""
        if allowed == self.backorders:
            return False
        self.trigger_event(self.BackordersSet, allowed=allowed, cause=cause)
        return True

    def view(self) -> dict[str, Any]:
        return {"location": self.location, "backorders": self.backorders}
