"""The writer: one thread takes queued commands in batches and pipelines them into the store.

Owns `Writer`: the queue and the batching (`submit`, linger under load), the writer thread and
its one-deep pipeline (batch N+1 is decided while batch N commits on the committer thread), the
one-batch-at-a-time fallback with conflict retries, and what happens after a commit (observers,
`on_commit` listeners, snapshots stored). Deciding a batch is `replay.BatchDecider`'s job; the
cache is `cache.AggregateCache`; retries follow `retry.Conflicts`.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError

from ledger.application import Decider, LedgerApplication
from ledger.commands import Command
from ledger.errors import LedgerError
from ledger.writer.answers import LoopAnswers, tune_gc
from ledger.writer.batch import Decision, Item, Outcome, StorageError, fail, resolve
from ledger.writer.cache import AggregateCache, SnapshotPolicy
from ledger.writer.keys import KeyResolver
from ledger.writer.replay import BatchDecider, Redo
from ledger.writer.retry import DEADLINE, Conflicts

log = logging.getLogger("ledger.writer")

MAX_BATCH = 1000
CACHE_SIZE = 200_000  # aggregates the writer's cache holds by default (`LEDGER_WRITER_CACHE_SIZE`)

Inflight = tuple[Decision, Future[list[Any]]]


class Writer:
    """The single writer of one process. Several processes may write: conflicts are retried."""

    def __init__(
        self,
        app: LedgerApplication,
        decider: Decider,
        cache_size: int = CACHE_SIZE,
        max_batch: int = MAX_BATCH,
        linger: float = 0.001,
        on_commit: Sequence[Callable[[int], None]] = (),
        deadline: float = DEADLINE,
    ) -> None:
        self.app = app
        self.cache = AggregateCache(app, cache_size)
        self.max_batch = max_batch
        self.linger = linger  # seconds a batch smaller than `linger_batch` waits for more
        self.linger_batch = 32
        self._last_size = 0
        self._current: list[Item] = []  # the batch being decided (answered if the loop fails)
        self._stop_seen = False
        self.on_commit = list(on_commit)  # (last position) after each commit that stored events
        # Observers (metrics): (commands committed, recordings) per batch; (command, future) per submit.
        self.on_batch: list[Callable[[int, list[Any]], None]] = []
        self.on_submit: list[Callable[[Command, Future[Outcome]], None]] = []
        self._queue: queue.SimpleQueue[Item | None] = queue.SimpleQueue()
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
        self.conflicts = Conflicts(deadline)
        self.decisions = BatchDecider(
            decider,
            self.cache,
            KeyResolver(app, self.cache),
            SnapshotPolicy(app, cache_size),
            app.events,
            self.stats,
        )
        self._committer = ThreadPoolExecutor(1, thread_name_prefix="ledger-commit")
        self._answers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopAnswers] = (
            weakref.WeakKeyDictionary()
        )

    @property
    def cache_size(self) -> int:
        """Aggregates the cache holds at most (least recently used evicted first)."""
        return self.cache.size

    @cache_size.setter
    def cache_size(self, size: int) -> None:
        self.cache.size = size
        self.decisions.snapshots.limit = size

    @property
    def before_save(self) -> Callable[[list[Aggregate]], None] | None:
        """Test hook: called with a batch's aggregates after its decision, before its save."""
        return self.decisions.before_save

    @before_save.setter
    def before_save(self, hook: Callable[[list[Aggregate]], None] | None) -> None:
        self.decisions.before_save = hook

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

    def submit(self, command: Command) -> Future[Outcome]:
        """Queues a command; the future holds its outcome once its batch has committed."""
        item = Item(command)
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

    def submit_async(self, command: Command) -> asyncio.Future[Outcome]:
        """`submit` for a coroutine: an asyncio future of the running loop, answered with the
        rest of its batch in one wake-up of the loop. Cancelling it does not withdraw the command."""
        loop = asyncio.get_running_loop()
        answers = self._answers.get(loop)
        if answers is None:
            answers = self._answers.setdefault(loop, LoopAnswers(loop))
        answer: asyncio.Future[Outcome] = loop.create_future()
        outcome = self.submit(command)
        outcome.add_done_callback(lambda f: answers.add(answer, f))
        return answer

    def execute(self, command: Command, timeout: float | None = 60.0) -> Outcome:
        return self.submit(command).result(timeout=timeout)

    def evict(self, ids: Sequence[UUID] | None = None) -> None:
        """Forgets cached state (all of it with no ids), e.g. after another process wrote."""
        self.cache.evict(ids)

    # ------------------------------------------------------------- the loop

    def _take(self, block: bool) -> tuple[list[Item], bool]:
        """Up to `max_batch` queued items (waiting for one when `block`); True once stop was asked."""
        batch: list[Item] = []
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
        inflight: Inflight | None = None
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

    def _step(self, inflight: Inflight | None, stopping: bool) -> tuple[Inflight | None, bool]:
        """One turn of the pipeline: take and decide a batch, finish the one in flight, hand over."""
        batch, stop = self._take(block=inflight is None and not stopping)
        self._current, self._stop_seen = batch, stop
        stopping = stopping or stop
        decision: Decision | None = None
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
                resolve(decision)
        return inflight, stopping

    def _decide_guarded(self, batch: list[Item], inflight: Inflight | None) -> Decision | None:
        """Decides a batch for the pipeline; falls back to the one-batch-at-a-time path if it must."""
        failed: dict[int, BaseException] = {}
        try:
            keys = inflight[0].keys if inflight else {}
            # Keys are checked optimistically unless a save conflicted lately: clients retrying in
            # a burst would otherwise make nearly every batch fail once and be decided twice.
            optimistic = self.conflicts.optimistic()
            return self.decisions.decide(
                batch, failed, keys, pipelined=inflight is not None, optimistic=optimistic
            )
        except Redo as redo:
            # A command failed half-way while another batch was in flight: forget this attempt's
            # state first, let the in-flight batch finish, then decide this one on its own (from
            # the store, which by then holds the in-flight batch or not).
            self.evict(redo.touched)
            if inflight is not None:
                self._finish(*inflight)
            self._process(batch)
        except BaseException as e:
            log.exception("writer batch could not be decided")
            self._fail_all(batch, e)
        return None

    def _finish(
        self, decision: Decision, commit: Future[list[Any]], also_decided: Decision | None = None
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
            self.conflicts.seen()
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
            fail(decision.batch, e, decision.failed)
            decision.batch = []
            return False
        self._committed(decision, recordings)
        resolve(decision)
        decision.batch = []
        return True

    def _process(self, batch: list[Item]) -> None:
        """One batch at a time, with conflict retries (the pipeline's fallback)."""
        try:
            self._commit_batch(batch)
        except BaseException as e:  # the writer thread must survive anything
            log.exception("writer batch failed")
            self._fail_all(batch, e)

    @staticmethod
    def _fail_all(batch: list[Item], e: BaseException) -> None:
        for item in batch:
            if not item.future.done():
                item.future.set_exception(StorageError(f"batch failed: {type(e).__name__}"))

    def _commit_batch(self, batch: list[Item]) -> None:
        failed: dict[int, BaseException] = {}
        attempt = 0
        while True:
            decision = None
            try:
                decision = self.decisions.decide(batch, failed, {}, pipelined=False)
                recordings = self._save(decision) if decision.pending or decision.rows else []
            except IntegrityError:
                self.stats["conflicts"] += 1
                self.conflicts.seen()
                if decision is not None:
                    self.evict(decision.touched)
                if not self.conflicts.again(batch, attempt):
                    break
                attempt += 1
                continue
            except Exception as e:
                self.stats["failures"] += 1
                if decision is not None:
                    self.evict(decision.touched)
                log.warning("batch of %d not stored: %s", len(batch), type(e).__name__)
                fail(batch, e, failed)
                return
            self._committed(decision, recordings)
            resolve(decision)
            return
        # Persistent conflicts: decide and save each command alone (tried until its deadline).
        if len(batch) > 1:
            for item in batch:
                self._commit_batch([item])
        else:
            batch[0].future.set_exception(StorageError("conflicting writes kept refusing this command"))

    def _save(self, decision: Decision) -> list[Any]:
        """The batch's one transaction (runs on the committer thread in the pipeline)."""
        pending: list[Any] = decision.pending  # `save` takes anything with `collect_events()`
        return self.app.save(*pending, commands=decision.rows)

    def _committed(self, decision: Decision, recordings: list[Any]) -> None:
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
                snapshots = self.app.snapshots
                assert snapshots is not None  # there are snapshots to store only when it is set
                snapshots.recorder.insert_events(decision.snapshots)
            except IntegrityError:
                pass  # another process took the same snapshot
            except Exception:
                log.warning("snapshot not stored", exc_info=True)
