"""Group commit for asyncio callers: many concurrent requests, one transaction.

`GroupCommit(write)` gathers the items that callers `await submit(item)` while a batch is being
written, and hands them to `write(items) -> results` (one result per item, in order) on a
worker thread as the next batch, so N concurrent requests cost one transaction and one commit,
not N. At most `parallel` batches are written at once, each of at most `max_batch` items; an idle
caller's item is written at once (no linger).

A batch that fails fails each of its callers with the error, unless it held more than one item
and the error is not an outage: then each item is written alone, so one bad item never fails
the others (an outage fails them all at once: each answers 503 and its caller may retry).

State is kept per event loop (a test client runs its own loop; a server has one).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from adapters.persistence.db import is_outage

T = TypeVar("T")
R = TypeVar("R")


class _Lane(Generic[T, R]):
    """One event loop's queue and its batches in flight."""

    def __init__(self) -> None:
        self.waiting: list[tuple[T, asyncio.Future[R]]] = []
        self.in_flight = 0


class GroupCommit(Generic[T, R]):
    def __init__(
        self, write: Callable[[Sequence[T]], Sequence[R]], max_batch: int = 256, parallel: int = 2
    ) -> None:
        self.write = write
        self.max_batch = max_batch
        self.parallel = parallel
        self._lanes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Lane[T, R]] = (
            weakref.WeakKeyDictionary()
        )
        self.batches = 0  # batches written (tests, diagnosis)

    async def submit(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        lane = self._lanes.get(loop)
        if lane is None:
            lane = self._lanes[loop] = _Lane()
        future: asyncio.Future[R] = loop.create_future()
        lane.waiting.append((item, future))
        if lane.in_flight < self.parallel:
            lane.in_flight += 1
            loop.create_task(self._drain(loop, lane))
        return await future

    async def _drain(self, loop: asyncio.AbstractEventLoop, lane: _Lane[T, R]) -> None:
        try:
            while lane.waiting:
                batch, lane.waiting = lane.waiting[: self.max_batch], lane.waiting[self.max_batch :]
                items = [item for item, _ in batch]
                try:
                    results = await loop.run_in_executor(None, self._written, items)
                except BaseException as e:  # handed to every caller of the batch
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(e)
                    if not isinstance(e, Exception):
                        raise
                    continue
                for (_, future), result in zip(batch, results, strict=True):
                    if future.done():  # its caller went away (a cancelled request)
                        continue
                    if isinstance(result, _Failed):
                        future.set_exception(result.error)
                    else:
                        future.set_result(result)
        finally:
            lane.in_flight -= 1

    def _written(self, items: list[T]) -> list[R | _Failed]:
        """The batch written whole; if that fails (not an outage), each item alone."""
        self.batches += 1
        try:
            return list(self.write(items))
        except Exception as e:
            if len(items) == 1 or is_outage(e):
                raise
        out: list[R | _Failed] = []
        for item in items:
            try:
                out.extend(self.write([item]))
            except Exception as e:
                if is_outage(e):
                    raise
                out.append(_Failed(e))
        return out


class _Failed:
    """An item that failed alone: its caller gets the error, the batch's others their results."""

    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error
