"""Deciding one batch, and replay detection.

Owns `BatchDecider`: every command of a batch decided in turn against the aggregate cache, its
idempotency key answered from the store when it was recorded before, and replay detection: a
command that fails after it already changed an aggregate makes the whole batch be decided again
without it (`Redo` when another batch is in flight on top of the same state). A decided batch
leaves here as a `Decision` with its events collected and its snapshots encoded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from ledger.application import Decider, UnitOfWork
from ledger.errors import LedgerError
from ledger.writer.batch import Decision, Item, Outcome, Pending, Recorded, Row, StorageError
from ledger.writer.cache import AggregateCache, SnapshotPolicy
from ledger.writer.keys import KeyResolver, conflict
from ledger.writer.retry import refresh

log = logging.getLogger("ledger.writer")


class Redo(Exception):
    """A command failed half-way while another batch was in flight on the same cached state."""

    def __init__(self, touched: list[UUID]) -> None:
        self.touched = touched


class BatchDecider:
    """Turns a batch of queued commands into a `Decision` (nothing is saved here)."""

    def __init__(
        self,
        decider: Decider,
        cache: AggregateCache,
        keys: KeyResolver,
        snapshots: SnapshotPolicy,
        events: Any,
        stats: dict[str, int],
    ) -> None:
        self.decider = decider
        self.cache = cache
        self.keys = keys
        self.snapshots = snapshots
        self.events = events  # the application's event store (`refresh` reads newer events)
        self.stats = stats
        # Test hook: called with the batch's aggregates after the decision, before the save
        # (the crash tests block here and kill the process).
        self.before_save: Callable[[list[Aggregate]], None] | None = None

    def decide(
        self,
        batch: list[Item],
        failed: dict[int, BaseException],
        inflight_keys: dict[str, Recorded],
        pipelined: bool,
        optimistic: bool = False,
    ) -> Decision:
        """Decides every command not known to fail; collects the events to save in one go."""
        while True:
            uow = UnitOfWork(self.cache.load, self.decider.location_policies)
            try:
                decision = self._decide_once(batch, failed, inflight_keys, uow, optimistic=optimistic)
            except BaseException:
                self.cache.evict(list(uow.touched))  # this attempt's state is half-made: forget it
                raise
            if decision is not None:
                return decision
            # Throw away this attempt's state and decide again without the failed command.
            self.stats["replays"] += 1
            if pipelined:
                raise Redo(list(uow.touched))
            self.cache.evict(list(uow.touched))

    def _decide_once(
        self,
        batch: list[Item],
        failed: dict[int, BaseException],
        inflight_keys: dict[str, Recorded],
        uow: UnitOfWork,
        optimistic: bool,
    ) -> Decision | None:
        """One attempt; None when a command failed half-way (the batch must be decided again)."""
        outcomes: dict[int, Outcome] = {}
        rows: list[Row] = []
        keys = [key for item in batch if (key := item.command.key)]
        # Optimistic: the keys are not looked up first. A repeat that is decided again anyway
        # makes the save fail on the key (nothing stored) and the batch is decided again, keys
        # looked up; a repeat that is refused now is checked below before it is answered.
        known, self.cache.absent = self.keys.lookup(batch, keys, optimistic)
        if inflight_keys:
            known.update({k: inflight_keys[k] for k in keys if k in inflight_keys})
        first_by_key: dict[str, int] = {}
        written: dict[str, Recorded] = {}
        duplicates: dict[int, int] = {}
        replay = False
        fresh: set[UUID] = set()  # aggregates read from the store during this attempt
        self.cache.fresh = fresh
        decide = self.decider.decide
        for i, item in enumerate(batch):
            if i in failed:
                continue
            cmd = item.command
            key = cmd.key
            fingerprint = cmd.fingerprint() if key else ""
            if key and key in known:
                stored_fp, outcome = known[key]
                if stored_fp != fingerprint:
                    failed[i] = conflict(key)
                else:
                    outcomes[i] = {**outcome, "duplicate": True}
                continue
            if key and key in first_by_key:
                duplicates[i] = first_by_key[key]
                continue
            uow.begin()
            try:
                try:
                    outcome = decide(cmd, uow)
                except LedgerError:
                    # Refused against cached state? Another process may have written since:
                    # refresh what the command read and decide it once more.
                    if uow.partially_mutated():
                        raise
                    changed = refresh(self.events, uow, fresh)
                    if not changed:
                        raise
                    self.stats["refreshes"] += changed
                    uow.discard_created()
                    uow.begin()
                    outcome = decide(cmd, uow)
            except LedgerError as e:
                if uow.partially_mutated():
                    failed[i] = e
                    replay = True
                    break
                uow.discard_created()
                failed[i] = e
                continue
            except Exception as e:
                log.exception("command %s failed unexpectedly", type(cmd).__name__)
                failed[i] = StorageError(f"the command could not be decided: {type(e).__name__}")
                if uow.partially_mutated():
                    replay = True
                    break
                uow.discard_created()
                continue
            outcomes[i] = outcome
            if key:
                first_by_key[key] = i
                rows.append((key, fingerprint, outcome))
                written[key] = (fingerprint, outcome)
        if replay:
            return None
        if optimistic:
            self.keys.recorded_refusals(batch, failed, outcomes, known)
        for i, j in duplicates.items():
            if j in failed:
                failed[i] = failed[j]
            else:
                outcomes[i] = {**outcomes[j], "duplicate": True}
        aggregates = uow.aggregates()
        if aggregates and self.before_save is not None:
            self.before_save(aggregates)
        new_events = {a.id: len(a.pending_events) for a in aggregates}
        # The events leave the aggregates now, so the next batch can be decided on them
        # while this one commits; the snapshots are encoded now for the same reason.
        # One holder for the whole batch: `app.save` runs two runtime-protocol checks per object.
        events = [e for a in aggregates for e in a.collect_events()]
        pending = [Pending(None, events)] if events else []
        snapshots = self.snapshots.take(aggregates, new_events)
        self.cache.remember(aggregates)
        return Decision(batch, outcomes, failed, rows, list(uow.touched), pending, snapshots, written)
