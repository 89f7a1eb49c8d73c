"""Refresh and retry: what the writer does when its cached state turns out to be stale.

Owns `refresh` (a command refused against cached state is decided once more on the events
another process appended since) and `Conflicts` (after a save that conflicted: how long to wait
before the next try, until when a command keeps being tried, and how many batches then look
their keys up before they are decided).
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from ledger.application import UnitOfWork
from ledger.writer.batch import Item

CONFLICT_RETRIES = 4  # tries of a whole batch after a conflict, before its commands go alone
CAUTIOUS_BATCHES = 100  # batches decided with their keys looked up after a conflicting save
DEADLINE = 10.0  # seconds after it was queued until which a conflicting command is tried again
BACKOFF_CAP = 0.05  # the longest pause between two tries, in seconds


def refresh(events: Any, uow: UnitOfWork, fresh: set[UUID]) -> int:
    """Brings the cached aggregates the current command read up to date; how many had changed.

    Only aggregates with no pending events in this batch are refreshed (their cached state is
    exactly what this process last committed), and each at most once per attempt. Only the
    events after the cached version are read (usually none), never the stream.
    """
    changed = 0
    for agg_id in uow.accessed():
        agg = uow.touched[agg_id]
        if agg_id in fresh or agg.pending_events:
            continue
        fresh.add(agg_id)
        newer = list(events.get(agg_id, gt=agg.version))
        if newer:
            for event in newer:
                event.mutate(agg)
            uow.replace(agg)
            changed += 1
    return changed


class Conflicts:
    """The writer's answer to saves that conflicted with another process (or a recorded key).

    A batch is tried `CONFLICT_RETRIES` more times, then each of its commands alone. A command
    alone is tried again until `deadline` seconds after it was queued: another process writing
    the same hot SKU makes a save conflict now and then, never for long, so the caller is
    answered by the store rather than with a 503. The pauses grow and are jittered, so that two
    writers that conflicted do not try again in step.
    """

    def __init__(self, deadline: float = DEADLINE) -> None:
        self.deadline = deadline
        self.cautious = 0  # batches left to decide with their keys looked up first

    def seen(self) -> None:
        """A save conflicted: the next batches look their keys up before they are decided."""
        self.cautious = CAUTIOUS_BATCHES

    def optimistic(self) -> bool:
        """Whether the next batch may be decided before its keys are looked up (and counts it)."""
        optimistic = self.cautious == 0
        self.cautious = max(0, self.cautious - 1)
        return optimistic

    def again(self, batch: Sequence[Item], attempt: int) -> bool:
        """After try `attempt` (from 0) conflicted: waits and says True when it is worth another."""
        pause = random.uniform(0.5, 1.0) * min(BACKOFF_CAP, 0.001 * 2**attempt)
        if attempt >= CONFLICT_RETRIES:
            if len(batch) > 1:
                return False  # split: its commands are tried alone
            if time.monotonic() + pause >= batch[0].enqueued + self.deadline:
                return False
        time.sleep(pause)
        return True
