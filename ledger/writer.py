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

import asyncio
import gc
import logging
import queue
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
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
from ledger.ports import CommandLog

log = logging.getLogger("ledger.writer")

MAX_BATCH = 1000
CONFLICT_RETRIES = 4
CAUTIOUS_BATCHES = 100  # batches decided with their keys looked up after a conflicting save


class StorageError(LedgerError):
    """The store refused or could not take a batch; the command was not recorded."""

    code = "storage-unavailable"


@dataclass
class _Item:
    command: Command
    future: Future[dict[str, Any]] = field(default_factory=Future)
    enqueued: float = field(default_factory=time.monotonic)


class _LoopAnswers:
    """Hands outcomes to the asyncio callers of one event loop, one wake-up for many.

    `call_soon_threadsafe` per answer costs a write to the loop's self-pipe and a wake-up each;
    answers that arrive while one wake-up is pending ride along with it.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        # Weakly: the writer keeps one of these per loop in a WeakKeyDictionary, whose entry
        # would otherwise keep every loop that ever submitted alive.
        self.loop = weakref.ref(loop)
        self.pending: list[tuple[asyncio.Future[Any], Future[dict[str, Any]]]] = []
        self.lock = threading.Lock()

    def add(self, answer: asyncio.Future[Any], outcome: Future[dict[str, Any]]) -> None:
        with self.lock:
            self.pending.append((answer, outcome))
            first = len(self.pending) == 1
        if first:
            loop = self.loop()
            try:
                if loop is None:
                    raise RuntimeError("the loop is gone")
                loop.call_soon_threadsafe(self._deliver)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                with self.lock:
                    self.pending.clear()

    def _deliver(self) -> None:
        with self.lock:
            pending, self.pending = self.pending, []
        for answer, outcome in pending:
            if answer.done():  # the caller was cancelled; the command still stands
                continue
            error = outcome.exception()
            if error is not None:
                answer.set_exception(error)
            else:
                answer.set_result(outcome.result())


def tune_gc(threshold: int = 100_000) -> None:
    """Raises CPython's collection thresholds once, unless someone already changed them.

    The writer keeps a large live heap (its aggregate cache). With the default thresholds
    (700, 10, 10) full collections come every few thousand commands and walk that whole heap,
    pausing every caller for 50-150 ms: the p99 of order captures fell from ~120 ms to ~30 ms
    with (100_000, 50, 100). Nothing is leaked: cycles are still collected, less often.
    """
    if gc.get_threshold() == (700, 10, 10):
        gc.set_threshold(threshold, 50, 100)


class _Pending:
    """A batch's events, collected from its aggregates at decision time (what `app.save` takes)."""

    __slots__ = ("id", "events")

    def __init__(self, agg_id: UUID | None, events: Sequence[Any]) -> None:
        self.id = agg_id
        self.events = events

    def collect_events(self) -> Sequence[Any]:
        return self.events


@dataclass
class _Decision:
    batch: list[_Item]
    outcomes: dict[int, dict[str, Any]]
    failed: dict[int, BaseException]
    rows: list[tuple[str, str, dict[str, Any]]]
    touched: list[UUID]
    pending: list[_Pending]
    snapshots: list[Any]
    keys: dict[str, tuple[str, dict[str, Any]]]


class _Redo(Exception):
    def __init__(self, touched: list[UUID]) -> None:
        self.touched = touched


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
        sku, location = (line.get("sku"), line.get("location")) if isinstance(line, dict) else (None, None)
        if isinstance(sku, str) and isinstance(location, str):
            ids.append(stock_id(sku, location))
    return ids


class Writer:
    """The single writer of one process. Several processes may write: conflicts are retried."""

    def __init__(
        self,
        app: LedgerApplication,
        decider: Decider,
        cache_size: int = 200_000,
        max_batch: int = MAX_BATCH,
        linger: float = 0.001,
        on_commit: Sequence[Callable[[int], None]] = (),
    ) -> None:
        self.app = app
        self.decider = decider
        self.cache: OrderedDict[UUID, Aggregate] = OrderedDict()
        self.cache_size = cache_size
        self.max_batch = max_batch
        self.linger = linger  # seconds a batch smaller than `linger_batch` waits for more
        self.linger_batch = 32
        self._last_size = 0
        self._current: list[_Item] = []  # the batch being decided (answered if the loop fails)
        self._stop_seen = False
        self.on_commit = list(on_commit)  # (last position) after each commit that stored events
        # Observers (metrics): (commands committed, recordings) per batch; (command, future) per submit.
        self.on_batch: list[Callable[[int, list[Any]], None]] = []
        self.on_submit: list[Callable[[Command, Future[dict[str, Any]]], None]] = []
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stopped = False
        self.stats = {
            "batches": 0,
            "commands": 0,
            "conflicts": 0,
            "replays": 0,
            "failures": 0,
            "refreshes": 0,
        }
        self._fresh: set[UUID] = set()
        self._absent: set[UUID] = set()
        self._snapped: dict[UUID, int] = {}  # version of each aggregate's last snapshot here
        self._cautious = 0  # batches left to decide with keys looked up first
        self._committer = ThreadPoolExecutor(1, thread_name_prefix="ledger-commit")
        self._answers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopAnswers] = (
            weakref.WeakKeyDictionary()
        )
        # Test hook: called with the batch's aggregates after the decision, before the save
        # (the crash tests block here and kill the process).
        self.before_save: Callable[[list[Aggregate]], None] | None = None

    # ------------------------------------------------------------------ API

    def start(self) -> None:
        tune_gc()
        with self._lock:
            if self._thread is None:
                self._committer = ThreadPoolExecutor(1, thread_name_prefix="ledger-commit")
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
            self._committer.shutdown(wait=True)

    def submit(self, command: Command) -> Future[dict[str, Any]]:
        """Queues a command; the future holds its outcome once its batch has committed."""
        item = _Item(command)
        for observer in self.on_submit:
            observer(command, item.future)
        try:
            command.validate()
        except LedgerError as e:
            item.future.set_exception(e)
            return item.future
        if self._thread is None:
            self.start()
        self._queue.put(item)
        return item.future

    def submit_async(self, command: Command) -> asyncio.Future[dict[str, Any]]:
        """`submit` for a coroutine: an asyncio future of the running loop, answered with the
        rest of its batch in one wake-up of the loop. Cancelling it does not withdraw the command."""
        loop = asyncio.get_running_loop()
        answers = self._answers.get(loop)
        if answers is None:
            answers = self._answers.setdefault(loop, _LoopAnswers(loop))
        answer: asyncio.Future[dict[str, Any]] = loop.create_future()
        outcome = self.submit(command)
        outcome.add_done_callback(lambda f: answers.add(answer, f))
        return answer

    def execute(self, command: Command, timeout: float | None = 60.0) -> dict[str, Any]:
        return self.submit(command).result(timeout=timeout)

    def evict(self, ids: Sequence[UUID] | None = None) -> None:
        """Forgets cached state (all of it with no ids), e.g. after another process wrote."""
        if ids is None:
            self.cache.clear()
        for agg_id in ids or ():
            self.cache.pop(agg_id, None)

    # ------------------------------------------------------------- the loop

    def _take(self, block: bool) -> tuple[list[_Item], bool]:
        """Up to `max_batch` queued items (waiting for one when `block`); True once stop was asked."""
        batch: list[_Item] = []
        try:
            first = self._queue.get() if block else self._queue.get_nowait()
        except queue.Empty:
            return batch, False
        if first is None:
            return batch, True
        batch.append(first)
        # Linger only under load (the last batch had company): a lone caller is never delayed.
        linger_until = time.monotonic() + self.linger if self.linger and self._last_size > 1 else 0.0
        while len(batch) < self.max_batch:
            try:
                nxt = self._queue.get_nowait()
            except queue.Empty:
                # A small batch waits a moment for the callers just answered to come back:
                # each save has a fixed cost, so fuller batches carry more commands per second.
                wait = linger_until - time.monotonic()
                if len(batch) >= self.linger_batch or wait <= 0:
                    break
                try:
                    nxt = self._queue.get(timeout=wait)
                except queue.Empty:
                    break
            if nxt is None:
                return batch, True
            batch.append(nxt)
        self._last_size = len(batch)
        return batch, False

    def _run(self) -> None:
        """Decides batch N+1 while batch N commits on the committer thread (a one-deep pipeline).

        Batch N+1 is decided on state that includes N's uncommitted events, so it is handed to
        the committer, and its callers answered, only after N committed. If N fails, N+1 is
        thrown away and decided again from the store.
        """
        inflight: tuple[_Decision, Future[Any]] | None = None
        stopping = False
        while True:
            try:
                inflight, stopping = self._step(inflight, stopping)
            except BaseException:  # the writer thread must survive anything
                log.exception("writer loop failed")
                self.evict()
                err = StorageError("the writer failed")
                for item in [*(inflight[0].batch if inflight else ()), *self._current]:
                    if not item.future.done():
                        item.future.set_exception(err)
                inflight = None
                stopping = stopping or self._stop_seen
            if stopping and inflight is None and self._queue.empty():
                return

    def _step(
        self, inflight: tuple[_Decision, Future[Any]] | None, stopping: bool
    ) -> tuple[tuple[_Decision, Future[Any]] | None, bool]:
        """One turn of the pipeline: take and decide a batch, finish the one in flight, hand over."""
        batch, stop = self._take(block=inflight is None and not stopping)
        self._current, self._stop_seen = batch, stop
        stopping = stopping or stop
        decision: _Decision | None = None
        if batch:
            decision = self._decide_guarded(batch, inflight)
        if inflight is not None:
            committed = self._finish(*inflight, also_decided=decision)
            inflight = None
            if not committed and decision is not None:
                self.evict(decision.touched)
                self._process(decision.batch)
                decision = None
        if decision is not None:
            if decision.pending or decision.rows:
                inflight = (decision, self._committer.submit(self._save, decision))
            else:
                self._resolve(decision)
        return inflight, stopping

    def _decide_guarded(
        self, batch: list[_Item], inflight: tuple[_Decision, Future[Any]] | None
    ) -> _Decision | None:
        """Decides a batch for the pipeline; falls back to the one-batch-at-a-time path if it must."""
        failed: dict[int, BaseException] = {}
        try:
            keys = inflight[0].keys if inflight else {}
            # Keys are checked optimistically unless a save conflicted lately: clients retrying in
            # a burst would otherwise make nearly every batch fail once and be decided twice.
            optimistic = self._cautious == 0
            self._cautious = max(0, self._cautious - 1)
            return self._decide(batch, failed, keys, pipelined=inflight is not None, optimistic=optimistic)
        except _Redo as redo:
            # A command failed half-way while another batch was in flight: forget this attempt's
            # state first, let the in-flight batch finish, then decide this one on its own (from
            # the store, which by then holds the in-flight batch or not).
            self.evict(redo.touched)
            if inflight is not None:
                self._finish(*inflight)
            self._process(batch)
        except BaseException as e:
            log.exception("writer batch could not be decided")
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(StorageError(f"batch failed: {type(e).__name__}"))
        return None

    def _finish(
        self, decision: _Decision, commit: Future[Any], also_decided: _Decision | None = None
    ) -> bool:
        """Waits for an in-flight batch; answers its callers. False when it was not stored.

        `also_decided` is the batch decided on top of it: if this one failed, that one's cached
        state is forgotten too before this one is decided again (it holds uncommitted events).
        """
        if not decision.batch:
            return True  # already finished
        try:
            recordings = commit.result()
        except IntegrityError:
            self.stats["conflicts"] += 1
            self._cautious = CAUTIOUS_BATCHES
            self.evict(decision.touched)
            if also_decided is not None:
                self.evict(also_decided.touched)
            self._process(decision.batch)  # decide it again from the store, with retries
            decision.batch = []
            return False
        except Exception as e:
            self.stats["failures"] += 1
            self.evict(decision.touched)
            if also_decided is not None:
                self.evict(also_decided.touched)
            log.warning("batch of %d not stored: %s", len(decision.batch), type(e).__name__)
            self._fail(decision, e)
            decision.batch = []
            return False
        self._committed(decision, recordings)
        self._resolve(decision)
        decision.batch = []
        return True

    def _process(self, batch: list[_Item]) -> None:
        """One batch at a time, with conflict retries (the pipeline's fallback)."""
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

    def _lookup(
        self, batch: list[_Item], keys: list[str], optimistic: bool = False
    ) -> tuple[dict[str, tuple[str, Any]], set[UUID]]:
        """The batch's recorded keys, and the streams it names that are neither cached nor stored.

        One round trip. New orders and new SKU-locations are then known to be new without a read
        each; if another process creates one meanwhile, the save conflicts and the batch is
        decided again.
        """
        recorder: CommandLog = self.app.recorder  # type: ignore[assignment]
        cache = self.cache
        wanted = {i for item in batch for i in stream_ids(item.command) if i not in cache}
        # Optimistic, the keys ride along only when the streams need the round trip anyway.
        known, existing = recorder.lookup(keys if wanted or not optimistic else [], list(wanted))
        return known, wanted - existing

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
        """Caches the aggregates of a decided batch, created ones included."""
        for agg in aggregates:
            self.cache[agg.id] = agg
            self.cache.move_to_end(agg.id)
        while len(self.cache) > self.cache_size:
            self.cache.popitem(last=False)

    def _commit_batch(self, batch: list[_Item]) -> None:
        failed: dict[int, BaseException] = {}
        for attempt in range(CONFLICT_RETRIES + 1):
            decision = None
            try:
                decision = self._decide(batch, failed, {}, pipelined=False)
                recordings = self._save(decision) if decision.pending or decision.rows else []
            except IntegrityError:
                self.stats["conflicts"] += 1
                self._cautious = CAUTIOUS_BATCHES
                if decision is not None:
                    self.evict(decision.touched)
                if attempt == CONFLICT_RETRIES:
                    break
                time.sleep(0.001 * (2**attempt))
                continue
            except Exception as e:
                self.stats["failures"] += 1
                if decision is not None:
                    self.evict(decision.touched)
                log.warning("batch of %d not stored: %s", len(batch), type(e).__name__)
                err = StorageError(f"the ledger could not store the command: {type(e).__name__}")
                for i, item in enumerate(batch):
                    if not item.future.done():
                        item.future.set_exception(failed.get(i, err))
                return
            self._committed(decision, recordings)
            self._resolve(decision)
            return
        # Persistent conflicts: decide and save each command alone.
        if len(batch) > 1:
            for item in batch:
                self._commit_batch([item])
        else:
            batch[0].future.set_exception(StorageError("conflicting writes kept refusing this command"))

    def _save(self, decision: _Decision) -> list[Any]:
        """The batch's one transaction (runs on the committer thread in the pipeline)."""
        return self.app.save(*decision.pending, commands=decision.rows)

    def _committed(self, decision: _Decision, recordings: list[Any]) -> None:
        self.stats["batches"] += 1
        self.stats["commands"] += len(decision.outcomes)
        for observer in self.on_batch:
            try:
                observer(len(decision.outcomes), recordings)
            except Exception:  # an observer never breaks the write path
                log.exception("on_batch observer failed")
        if recordings:
            last = max(r.notification.id for r in recordings)
            for callback in self.on_commit:
                try:
                    callback(last)
                except Exception:  # a listener never breaks the write path
                    log.exception("on_commit listener failed")
        if decision.snapshots:
            try:
                self.app.snapshots.recorder.insert_events(decision.snapshots)  # type: ignore[union-attr]
            except IntegrityError:
                pass  # another process took the same snapshot
            except Exception:
                log.warning("snapshot not stored", exc_info=True)

    @staticmethod
    def _resolve(decision: _Decision) -> None:
        for i, item in enumerate(decision.batch):
            if item.future.done():
                continue
            if i in decision.failed:
                item.future.set_exception(decision.failed[i])
            else:
                item.future.set_result(decision.outcomes[i])

    @staticmethod
    def _fail(decision: _Decision, e: BaseException) -> None:
        err = StorageError(f"the ledger could not store the command: {type(e).__name__}")
        for i, item in enumerate(decision.batch):
            if not item.future.done():
                item.future.set_exception(decision.failed.get(i, err))

    def _decide(
        self,
        batch: list[_Item],
        failed: dict[int, BaseException],
        inflight_keys: dict[str, tuple[str, dict[str, Any]]],
        pipelined: bool,
        optimistic: bool = False,
    ) -> _Decision:
        """Decides every command not known to fail; collects the events to save in one go."""
        while True:
            uow = UnitOfWork(self._load)
            try:
                decision = self._decide_once(batch, failed, inflight_keys, uow, optimistic=optimistic)
            except BaseException:
                self.evict(list(uow.touched))  # this attempt's state is half-made: forget it
                raise
            if decision is not None:
                return decision
            # Throw away this attempt's state and decide again without the failed command.
            self.stats["replays"] += 1
            if pipelined:
                raise _Redo(list(uow.touched))
            self.evict(list(uow.touched))

    def _decide_once(
        self,
        batch: list[_Item],
        failed: dict[int, BaseException],
        inflight_keys: dict[str, tuple[str, dict[str, Any]]],
        uow: UnitOfWork,
        optimistic: bool,
    ) -> _Decision | None:
        """One attempt; None when a command failed half-way (the batch must be decided again)."""
        outcomes: dict[int, dict[str, Any]] = {}
        rows: list[tuple[str, str, dict[str, Any]]] = []
        keys = [item.command.key for item in batch if item.command.key]
        # Optimistic: the keys are not looked up first. A repeat that is decided again anyway
        # makes the save fail on the key (nothing stored) and the batch is decided again, keys
        # looked up; a repeat that is refused now is checked below before it is answered.
        known, self._absent = self._lookup(batch, keys, optimistic)
        if inflight_keys:
            known.update({k: inflight_keys[k] for k in keys if k in inflight_keys})
        first_by_key: dict[str, int] = {}
        written: dict[str, tuple[str, dict[str, Any]]] = {}
        duplicates: dict[int, int] = {}
        replay = False
        fresh: set[UUID] = set()  # aggregates read from the store during this attempt
        self._fresh = fresh
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
                written[key] = (fingerprint, outcome)
        if replay:
            return None
        if optimistic:
            self._recorded_refusals(batch, failed, outcomes, known)
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
        pending = [_Pending(None, events)] if events else []
        snapshots = self._snapshots(aggregates, new_events)
        self._remember(aggregates)
        return _Decision(batch, outcomes, failed, rows, list(uow.touched), pending, snapshots, written)

    def _recorded_refusals(
        self,
        batch: list[_Item],
        failed: dict[int, BaseException],
        outcomes: dict[int, dict[str, Any]],
        known: dict[str, tuple[str, dict[str, Any]]],
    ) -> None:
        """Refused commands whose key was recorded before get the recorded answer, not the refusal
        (a till retrying a sale that went through is told so, even once the stock ran out)."""
        unsure = {k for i in failed if (k := batch[i].command.key) and k not in known}
        if not unsure:
            return
        recorder: CommandLog = self.app.recorder  # type: ignore[assignment]
        recorded = recorder.select_commands(sorted(unsure))
        for i in [i for i in failed if batch[i].command.key in recorded]:
            cmd = batch[i].command
            stored_fp, outcome = recorded[cmd.key]  # type: ignore[index]
            if stored_fp == cmd.fingerprint():
                del failed[i]
                outcomes[i] = {**outcome, "duplicate": True}
            else:
                failed[i] = IdempotencyConflictError(
                    f"{cmd.key} was already recorded with other content", key=cmd.key
                )

    def _snapshots(self, aggregates: list[Aggregate], new_events: dict[UUID, int]) -> list[Any]:
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
            last = self._snapped.get(agg.id, before - before % SNAPSHOT_INTERVAL)
            since = agg.version - last
            if since >= SNAPSHOT_INTERVAL and since >= state_size(agg):  # state_size is O(state)
                snaps.append(self.app.mapper.to_stored_event(type(agg).Snapshot.take(agg)))  # type: ignore[attr-defined]
                self._snapped[agg.id] = agg.version
        if len(self._snapped) > self.cache_size:
            self._snapped.clear()
        return snaps


def state_size(agg: Aggregate) -> int:
    """Entries in an aggregate's collections (reservations, lines, ...): what a snapshot copies."""
    return sum(len(v) for v in vars(agg).values() if isinstance(v, dict | list))
