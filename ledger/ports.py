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
    """The locations that fulfil a sales channel, in the order they are tried."""

    def locations_for(self, channel: str) -> Sequence[str]: ...


class StaticLocations:
    """A fixed channel -> locations map (tests, and a ledger with no channel policies yet)."""

    def __init__(self, groups: dict[str, Sequence[str]] | None = None) -> None:
        self.groups = dict(groups or {})

    def locations_for(self, channel: str) -> Sequence[str]:
        return self.groups.get(channel, ())
