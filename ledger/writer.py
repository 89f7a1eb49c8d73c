"""Group commit: one writer thread decides queued commands against cached aggregates and saves
each batch in one transaction.

- A caller's future resolves only after its batch has committed (or with its own error).
- A command that breaks an invariant fails alone: it is checked before it changes anything, and
  if a multi-step command fails half-way the batch is decided again without it.
- A batch whose save conflicts (another process wrote first, or recorded the same idempotency
  key) is decided again from freshly loaded state; after a few tries the batch is split.
- A batch whose save fails for any other reason fails only its own callers; nothing that was
  not stored is acknowledged.
- Each idempotent command's first outcome is written with its events, in the same transaction.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError

from ledger.application import SNAPSHOT_INTERVAL, Decider, LedgerApplication, UnitOfWork
from ledger.bounds import order_id as order_uuid
from ledger.bounds import stock_id
from ledger.commands import Command
from ledger.errors import IdempotencyConflictError, LedgerError

log = logging.getLogger("ledger.writer")

MAX_BATCH = 1000
CONFLICT_RETRIES = 4


class StorageError(LedgerError):
    """The store refused or could not take a batch; the command was not recorded."""

    code = "storage-unavailable"


@dataclass
class _Item:
    command: Command
    future: Future[dict[str, Any]] = field(default_factory=Future)
    enqueued: float = field(default_factory=time.monotonic)


def stream_ids(command: Command) -> list[UUID]:
    """The streams a command names directly (its order, its SKU-locations), for prefetching."""
    ids = []
    get = command.__dict__.get
    if isinstance(get("order_id"), str):
        ids.append(order_uuid(get("order_id")))
    sku = get("sku")
    if isinstance(sku, str):
        for field in ("location", "from_location", "to_location"):
            if isinstance(get(field), str):
                ids.append(stock_id(sku, get(field)))
    for line in get("lines") or ():
        if isinstance(line, dict) and isinstance(line.get("sku"), str) and isinstance(line.get("location"), str):
            ids.append(stock_id(line["sku"], line["location"]))
    return ids


class Writer:
    """The single writer of one process. Several processes may write: conflicts are retried."""

    def __init__(
        self,
        app: LedgerApplication,
        decider: Decider,
        cache_size: int = 200_000,
        max_batch: int = MAX_BATCH,
        on_commit: Sequence[Callable[[int], None]] = (),
    ) -> None:
        self.app = app
        self.decider = decider
        self.cache: OrderedDict[UUID, Aggregate] = OrderedDict()
        self.cache_size = cache_size
        self.max_batch = max_batch
        self.on_commit = list(on_commit)
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stopped = False
        self.stats = {"batches": 0, "commands": 0, "conflicts": 0, "replays": 0, "failures": 0,
                      "refreshes": 0}
        self._fresh: set[UUID] = set()
        self._absent: set[UUID] = set()
        self._snapped: dict[UUID, int] = {}  # version of each aggregate's last snapshot here
        # Test hook: called with the batch's aggregates after the decision, before the save
        # (the crash tests block here and kill the process).
        self.before_save: Callable[[list[Aggregate]], None] | None = None

    # ------------------------------------------------------------------ API

    def start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._stopped = False
                self._thread = threading.Thread(target=self._run, name="ledger-writer", daemon=True)
                self._thread.start()

    def stop(self) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
            self._stopped = True
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout=30)

    def submit(self, command: Command) -> Future[dict[str, Any]]:
        """Queues a command; the future holds its outcome once its batch has committed."""
        item = _Item(command)
        try:
            command.validate()
        except LedgerError as e:
            item.future.set_exception(e)
            return item.future
        if self._thread is None:
            self.start()
        self._queue.put(item)
        return item.future

    def execute(self, command: Command, timeout: float | None = 60.0) -> dict[str, Any]:
        return self.submit(command).result(timeout=timeout)

    def evict(self, ids: Sequence[UUID] | None = None) -> None:
        """Forgets cached state (all of it with no ids), e.g. after another process wrote."""
        if ids is None:
            self.cache.clear()
        for agg_id in ids or ():
            self.cache.pop(agg_id, None)

    # ------------------------------------------------------------- the loop

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._process(batch)
                    return
                batch.append(nxt)
            self._process(batch)

    def _process(self, batch: list[_Item]) -> None:
        try:
            self._commit_batch(batch)
        except BaseException as e:  # the writer thread must survive anything
            log.exception("writer batch failed")
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(StorageError(f"batch failed: {type(e).__name__}"))

    def _load(self, agg_id: UUID) -> Aggregate | None:
        agg = self.cache.get(agg_id)
        if agg is not None:
            self.cache.move_to_end(agg_id)
            return agg
        if agg_id in self._absent:
            return None
        self._fresh.add(agg_id)
        try:
            agg = self.app.repository.get(agg_id)
        except AggregateNotFoundError:
            return None
        self.cache[agg_id] = agg
        if len(self.cache) > self.cache_size:
            self.cache.popitem(last=False)
        return agg

    def _absent_streams(self, batch: list[_Item]) -> set[UUID]:
        """Streams the batch names that are neither cached nor stored, found in one query.

        New orders and new SKU-locations are then known to be new without a read each. If
        another process creates one meanwhile, the save conflicts and the batch is decided again.
        """
        existing_ids = getattr(self.app.recorder, "existing_ids", None)
        if existing_ids is None:
            return set()
        wanted = {i for item in batch for i in stream_ids(item.command)}
        wanted.difference_update(self.cache)
        if len(wanted) < 2:
            return set()
        return wanted - existing_ids(wanted)

    def _refresh(self, uow: UnitOfWork, fresh: set[UUID]) -> bool:
        """Reloads the cached aggregates the current command read; True when any had changed.

        Only aggregates with no pending events in this batch are refreshed (their cached state is
        exactly what this process last committed), and each at most once per attempt.
        """
        changed = False
        for agg_id in uow.accessed():
            agg = uow.touched[agg_id]
            if agg_id in fresh or agg.pending_events:
                continue
            fresh.add(agg_id)
            # Only the events after the cached version are read (usually none), never the stream.
            newer = list(self.app.events.get(agg_id, gt=agg.version))
            if newer:
                self.stats["refreshes"] += 1
                for event in newer:
                    event.mutate(agg)  # type: ignore[attr-defined]
                uow.replace(agg)
                changed = True
        return changed

    def _remember(self, aggregates: list[Aggregate]) -> None:
        """Caches the aggregates of a committed batch, created ones included."""
        for agg in aggregates:
            self.cache[agg.id] = agg
            self.cache.move_to_end(agg.id)
        while len(self.cache) > self.cache_size:
            self.cache.popitem(last=False)

    def _commit_batch(self, batch: list[_Item]) -> None:
        failed: dict[int, BaseException] = {}
        for attempt in range(CONFLICT_RETRIES + 1):
            try:
                outcomes = self._decide_and_save(batch, failed)
            except IntegrityError:
                self.stats["conflicts"] += 1
                if attempt == CONFLICT_RETRIES:
                    break
                time.sleep(0.001 * (2**attempt))
                continue
            except Exception as e:
                self.stats["failures"] += 1
                log.warning("batch of %d not stored: %s", len(batch), type(e).__name__)
                err = StorageError(f"the ledger could not store the command: {type(e).__name__}")
                for i, item in enumerate(batch):
                    if not item.future.done():
                        item.future.set_exception(failed.get(i, err))
                return
            for i, item in enumerate(batch):
                if i in failed:
                    item.future.set_exception(failed[i])
                else:
                    item.future.set_result(outcomes[i])
            return
        # Persistent conflicts: decide and save each command alone.
        if len(batch) > 1:
            for item in batch:
                self._commit_batch([item])
        else:
            batch[0].future.set_exception(StorageError("conflicting writes kept refusing this command"))

    def _decide_and_save(self, batch: list[_Item], failed: dict[int, BaseException]) -> dict[int, dict[str, Any]]:
        """Decides every command not known to fail, saves once, returns outcomes by index."""
        while True:
            uow = UnitOfWork(self._load)
            outcomes: dict[int, dict[str, Any]] = {}
            rows: list[tuple[str, str, dict[str, Any]]] = []
            keys = [item.command.key for item in batch if item.command.key]
            known = self.app.recorder.select_commands(keys) if keys else {}  # type: ignore[attr-defined]
            first_by_key: dict[str, int] = {}
            duplicates: dict[int, int] = {}
            replay = False
            fresh: set[UUID] = set()  # aggregates read from the store during this attempt
            self._fresh = fresh
            self._absent = self._absent_streams(batch)
            for i, item in enumerate(batch):
                if i in failed:
                    continue
                cmd = item.command
                key = cmd.key
                fingerprint = cmd.fingerprint() if key else ""
                if key and key in known:
                    stored_fp, outcome = known[key]
                    if stored_fp != fingerprint:
                        failed[i] = IdempotencyConflictError(
                            f"{key} was already recorded with other content", key=key
                        )
                    else:
                        outcomes[i] = {**outcome, "duplicate": True}
                    continue
                if key and key in first_by_key:
                    duplicates[i] = first_by_key[key]
                    continue
                uow.begin()
                try:
                    try:
                        outcome = self.decider.decide(cmd, uow)
                    except LedgerError:
                        # Refused against cached state? Another process may have written since:
                        # refresh what the command read and decide it once more.
                        if uow.partially_mutated() or not self._refresh(uow, fresh):
                            raise
                        uow.discard_created()
                        uow.begin()
                        outcome = self.decider.decide(cmd, uow)
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
            if replay:
                # Throw away this attempt's state and decide again without the failed command.
                self.stats["replays"] += 1
                self.evict(list(uow.touched))
                continue
            for i, j in duplicates.items():
                if j in failed:
                    failed[i] = failed[j]
                else:
                    outcomes[i] = {**outcomes[j], "duplicate": True}
            aggregates = uow.aggregates()
            if not aggregates and not rows:
                return outcomes
            new_events = {a.id: len(a.pending_events) for a in aggregates}
            if self.before_save is not None:
                self.before_save(aggregates)
            try:
                recordings = self.app.save(*aggregates, commands=rows)
            except BaseException:
                self.evict(list(uow.touched))
                raise
            self._remember(aggregates)
            self.stats["batches"] += 1
            self.stats["commands"] += len(outcomes)
            if recordings:
                last = max(r.notification.id for r in recordings)
                for callback in self.on_commit:
                    try:
                        callback(last)
                    except Exception:  # a listener never breaks the write path
                        log.exception("on_commit listener failed")
            self._snapshot([a for a in aggregates], new_events)
            return outcomes

    def _snapshot(self, aggregates: list[Aggregate], new_events: dict[UUID, int]) -> None:
        """Snapshots every aggregate that has gone `interval` events without one, after the commit.

        The interval is SNAPSHOT_INTERVAL, or the aggregate's state size when that is larger (a
        hot SKU with 50,000 open reservations): a snapshot costs O(state), so this keeps its cost
        per event bounded, and a cold load never reads more events than it decodes entries.
        """
        if self.app.snapshots is None:
            return
        snaps = []
        for agg in aggregates:
            n = new_events.get(agg.id, 0)
            before = agg.version - n
            last = self._snapped.get(agg.id, before - before % SNAPSHOT_INTERVAL)
            if agg.version - last >= max(SNAPSHOT_INTERVAL, state_size(agg)):
                snaps.append(type(agg).Snapshot.take(agg))
                self._snapped[agg.id] = agg.version
        if len(self._snapped) > self.cache_size:
            self._snapped.clear()
        if snaps:
            try:
                self.app.snapshots.put(snaps)
            except IntegrityError:
                pass  # another process took the same snapshot
            except Exception:
                log.warning("snapshot not stored", exc_info=True)


def state_size(agg: Aggregate) -> int:
    """Entries in an aggregate's collections (reservations, lines, ...): what a snapshot copies."""
    return sum(len(v) for v in vars(agg).values() if isinstance(v, dict | list))
