"""What reconciliation needs from the rest of the service, named by role.

Each port has a plain in-memory implementation here (for tests, and for a service where the
piece is not configured); the real adapters are wired in `adapters/reconciliation/wiring.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

SOURCES = ("shopify", "erp", "pos")

# The quantity each source reports for a SKU at a location.
MEASURE = {
    "shopify": "available",  # Shopify's `available` (on hand minus committed, reserved, damaged, ...)
    "erp": "on_hand",  # the ERP's stock on hand
    "pos": "on_hand",  # a store system counts what is on its shelves
}


@dataclass(frozen=True)
class Level:
    """One outside level, in the source's own ids or in canonical ones."""

    sku: str
    location: str
    quantity: int
    observed_at: datetime | None = None  # when this level was seen, if not the snapshot's moment


@dataclass(frozen=True)
class Snapshot:
    source: str
    observed_at: datetime
    levels: Sequence[Level]
    origin: str = ""  # where it came from (a file, a URL, stored observations)


class InventorySnapshotSource(Protocol):
    """Pulls an outside system's inventory levels, for a scheduled reconciliation."""

    source: str

    def snapshot(self) -> Snapshot | None:
        """The latest levels, or None when there is nothing to compare yet."""
        ...


class IdentityMap(Protocol):
    """The current canonical id of each outside id (the versioned mappings)."""

    def canonical_ids(self, source: str, kind: str) -> dict[str, str]:
        """external id -> canonical id, for one source and kind (`sku` or `location`)."""
        ...


@dataclass(frozen=True)
class MessageEffect:
    """What an inbound message would have done to one SKU-location (ids as the message names
    them: canonical when mapped, else the source's own; `location` None when it names none)."""

    sku: str
    location: str | None
    on_hand: int
    available: int
    resolved: bool = True  # False: the SKU or location is a code no mapping knows

    def effect(self, measure: str) -> int:
        return self.on_hand if measure == "on_hand" else self.available


@dataclass(frozen=True)
class InboundMessage:
    id: str
    source: str
    status: str  # parked | duplicate (refused as a repeat, or delivered more than once)
    reason: str
    received_at: str | None
    effects: Sequence[MessageEffect] = ()


class InboundEvidence(Protocol):
    """Inbound messages the ledger did not apply: parked for a mapping, or refused as duplicates."""

    def unapplied(self, source: str | None = None) -> Sequence[InboundMessage]: ...


@dataclass(frozen=True)
class SequenceGap:
    store: str  # the POS store code
    location: str  # its canonical location (the store code when unmapped)
    missing: Sequence[int]


class SequenceGaps(Protocol):
    """Missing batch sequence numbers per POS store."""

    def gaps(self) -> Sequence[SequenceGap]: ...


Opening = tuple[str, dict[str, Any], "int | None"]  # key, detail, ledger position
Closing = tuple[str, dict[str, Any]]  # key, detail


class ExceptionBook(Protocol):
    """The exceptions store: which are open, and opening and closing many at once."""

    def open_keys(self, kind: str, prefix: str = "") -> set[str]: ...

    def apply(self, kind: str, opened: Sequence[Opening], closed: Sequence[Closing]) -> tuple[int, int]:
        """Opens and closes exceptions in one transaction; (newly opened, closed)."""
        ...


# ------------------------------------------------------------ plain implementations


class NoMappings:
    def canonical_ids(self, source: str, kind: str) -> dict[str, str]:
        return {}


@dataclass
class StaticEvidence:
    messages: list[InboundMessage] = field(default_factory=list)

    def unapplied(self, source: str | None = None) -> Sequence[InboundMessage]:
        return [m for m in self.messages if source is None or m.source == source]


@dataclass
class StaticGaps:
    items: list[SequenceGap] = field(default_factory=list)

    def gaps(self) -> Sequence[SequenceGap]:
        return list(self.items)


@dataclass
class MemoryExceptions:
    """An exception book in memory: for tests and for a service without the exceptions store."""

    rows: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    closed: list[tuple[str, str]] = field(default_factory=list)

    def open_keys(self, kind: str, prefix: str = "") -> set[str]:
        return {k for (kd, k) in self.rows if kd == kind and k.startswith(prefix)}

    def apply(self, kind: str, opened: Sequence[Opening], closed: Sequence[Closing]) -> tuple[int, int]:
        n_open = n_closed = 0
        for key, detail, position in opened:
            if (kind, key) not in self.rows:
                n_open += 1
                self.rows[(kind, key)] = {"detail": detail, "position": position}
        for key, _ in closed:
            if self.rows.pop((kind, key), None) is not None:
                self.closed.append((kind, key))
                n_closed += 1
        return n_open, n_closed
