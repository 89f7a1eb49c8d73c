"""The writer's aggregate cache and its snapshot policy.

Owns `AggregateCache` (the decided state of recently used aggregates, least recently used
evicted first; which streams were read from the store or are known not to exist during one
decision) and `SnapshotPolicy` (when an aggregate's snapshot is taken: every SNAPSHOT_INTERVAL
events, or every `state_size` events when its state is larger).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import Aggregate

from ledger.application import SNAPSHOT_INTERVAL, LedgerApplication


class AggregateCache:
    """Aggregates by id as this process last decided them; bounded by `size` (LRU).

    `absent` holds the streams the current batch's lookup found neither cached nor stored (they
    are created without a read); `fresh` the ones read from the store during the current attempt
    (a refresh need not read them again).
    """

    def __init__(self, app: LedgerApplication, size: int) -> None:
        self.app = app
        self.entries: OrderedDict[UUID, Aggregate] = OrderedDict()
        self.size = size
        self.absent: set[UUID] = set()
        self.fresh: set[UUID] = set()

    def __contains__(self, agg_id: object) -> bool:
        return agg_id in self.entries

    def __getitem__(self, agg_id: UUID) -> Aggregate:
        return self.entries[agg_id]

    def __len__(self) -> int:
        return len(self.entries)

    def load(self, agg_id: UUID) -> Aggregate | None:
        """The cached aggregate, else the stored one (cached then); None when it does not exist."""
        agg = self.entries.get(agg_id)
        if agg is not None:
            self.entries.move_to_end(agg_id)
            return agg
        if agg_id in self.absent:
            return None
        self.fresh.add(agg_id)
        try:
            agg = self.app.repository.get(agg_id)
        except AggregateNotFoundError:
            return None
        self.entries[agg_id] = agg
        if len(self.entries) > self.size:
            self.entries.popitem(last=False)
        return agg

    def remember(self, aggregates: Iterable[Aggregate]) -> None:
        """Caches the aggregates of a decided batch, created ones included."""
        entries = self.entries
        for agg in aggregates:
            entries[agg.id] = agg
            entries.move_to_end(agg.id)
        while len(entries) > self.size:
            entries.popitem(last=False)

    def evict(self, ids: Sequence[UUID] | None = None) -> None:
        """Forgets cached state (all of it with no ids), e.g. after another process wrote."""
        if ids is None:
            self.entries.clear()
        for agg_id in ids or ():
            self.entries.pop(agg_id, None)


class SnapshotPolicy:
    """Which aggregates of a decided batch get a snapshot, encoded at decision time."""

    def __init__(self, app: LedgerApplication, limit: int) -> None:
        self.app = app
        self.limit = limit  # aggregates whose last snapshot version is remembered
        self.snapped: dict[UUID, int] = {}  # version of each aggregate's last snapshot here

    def take(self, aggregates: list[Aggregate], new_events: dict[UUID, int]) -> list[Any]:
        """Encoded snapshots of the aggregates that went `interval` events without one.

        The interval is SNAPSHOT_INTERVAL, or the aggregate's state size when that is larger (a
        hot SKU with 50,000 open reservations): a snapshot costs O(state), so this keeps its cost
        per event bounded, and a cold load never reads more events than it decodes entries.
        They are stored after the batch commits, never before.
        """
        if self.app.snapshots is None:
            return []
        snaps = []
        for agg in aggregates:
            n = new_events.get(agg.id, 0)
            before = agg.version - n
            last = self.snapped.get(agg.id, before - before % SNAPSHOT_INTERVAL)
            since = agg.version - last
            if since >= SNAPSHOT_INTERVAL and since >= state_size(agg):  # state_size is O(state)
                snapshot = type(agg).Snapshot.take(agg)
                snaps.append(self.app.mapper.to_stored_event(snapshot))
                self.snapped[agg.id] = agg.version
        if len(self.snapped) > self.limit:
            self.snapped.clear()
        return snaps


def state_size(agg: Aggregate) -> int:
    """Entries in an aggregate's collections (reservations, lines, ...): what a snapshot copies."""
    return sum(len(v) for v in vars(agg).values() if isinstance(v, dict | list))
