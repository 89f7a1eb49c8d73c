"""Ports the domain's application service needs from the outside, named by role."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol
from uuid import UUID


class CommandLog(Protocol):
    """Durable record of each idempotent command's first outcome.

    Rows handed to the application's `save(..., commands=rows)` are written in the same
    transaction as the command's events (each persistence adapter's recorder does it).
    """

    def select_commands(self, keys: Iterable[str]) -> dict[str, tuple[str, Any]]:
        """key -> (fingerprint, outcome) for the keys already recorded."""
        ...

    def lookup(
        self, keys: Sequence[str], ids: Sequence[UUID]
    ) -> tuple[dict[str, tuple[str, Any]], set[UUID]]:
        """`select_commands(keys)`, and which of the streams `ids` exist, in one round trip."""
        ...

    def has_keys_starting(self, prefixes: Sequence[str]) -> bool:
        """Whether any recorded key starts with one of `prefixes` (legacy keys, asked at start)."""
        ...


class StreamIndex(Protocol):
    """Where each stored event sits in the ledger's total order (its position)."""

    def select_stream(
        self, originator_id: UUID, after_position: int | None, limit: int
    ) -> Sequence[tuple[int, Any]]:
        """(position, StoredEvent) of one stream in order, after a position."""
        ...

    def version_at_position(self, originator_id: UUID, position: int) -> int | None: ...

    def max_position(self) -> int: ...


class LocationDirectory(Protocol):
    """The locations that fulfil a sales channel, in the order they are tried, and the incoming
    units it may promise (`include_incoming_days`, `ledger.policy`)."""

    def locations_for(self, channel: str) -> Sequence[str]: ...

    def incoming_days(self, channel: str) -> int:
        """The channel's `include_incoming_days`: its orders may reserve the incoming units its
        ATS counts."""
        ...

    def incoming_days_at(self, location: str) -> int:
        """The widest `include_incoming_days` of the channels the location fulfils."""
        ...


class StaticLocations:
    """A fixed channel -> locations map (tests, and a ledger with no channel policies yet), with
    each channel's `include_incoming_days` (none by default)."""

    def __init__(
        self, groups: dict[str, Sequence[str]] | None = None, incoming: dict[str, int] | None = None
    ) -> None:
        self.groups = dict(groups or {})
        self.incoming = dict(incoming or {})

    def locations_for(self, channel: str) -> Sequence[str]:
        return self.groups.get(channel, ())

    def incoming_days(self, channel: str) -> int:
        return self.incoming.get(channel, 0)

    def incoming_days_at(self, location: str) -> int:
        return max((self.incoming.get(ch, 0) for ch, g in self.groups.items() if location in g), default=0)
