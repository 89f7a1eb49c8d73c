"""A location's policy: whether it may reserve beyond what is available (backorders), for every
SKU at it, SKUs first seen later included (`PUT /v1/locations/{location}`).

The SKU-location consults it when it reserves (`SkuLocation.backorders_allowed`: its own
`ConfigureBackorders` setting, or its location's). The unit of work hands the policy to each
SKU-location it loads, so a change applies to the next command deciding there.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from eventsourcing.domain import Aggregate

from ledger.bounds import NAMESPACE, check_id

Cause = dict[str, Any]


@lru_cache(maxsize=1 << 14)
def location_id(location: str) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, f"location\x1f{location}")


class LocationPolicies:
    """Each location's backorder policy as the writer reads it: read from its stream and kept for
    `ttl` seconds, so deciding a command costs no read (most locations have no policy stream). A
    policy set in this process is seen by the next command (`forget`); one set by another process
    within `ttl`, like a channel policy (`adapters.channels`). The policy is read, never written,
    by the commands it governs, so a save conflict could not tell a stale copy: the time bound does."""

    TTL = 1.0

    def __init__(
        self, read: Callable[[str], bool], ttl: float = TTL, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.read = read
        self.ttl = ttl
        self.clock = clock
        self._kept: dict[str, tuple[bool, float]] = {}

    def allows(self, location: str) -> bool:
        now = self.clock()
        kept = self._kept.get(location)
        if kept is not None and kept[1] > now:
            return kept[0]
        if len(self._kept) > 100_000:  # bounded: lapsed entries go first
            self._kept = {k: v for k, v in self._kept.items() if v[1] > now}
        allowed = self.read(location)
        self._kept[location] = (allowed, now + self.ttl)
        return allowed

    def forget(self, location: str) -> None:
        self._kept.pop(location, None)


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
