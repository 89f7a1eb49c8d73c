"""What a batch is: its queued items, the decision taken on them, and how its callers are answered.

Owns `StorageError` (the one error a command gets when the store did not take it), `Item` (a
queued command, its future and its deadline), `Decision` (outcomes, refusals, events and keyed
rows of one decided batch) and answering a decision's callers. No I/O here.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from ledger.commands import Command
from ledger.errors import LedgerError

Outcome = dict[str, Any]
Recorded = tuple[str, Outcome]  # (fingerprint, first outcome) of an idempotency key
Row = tuple[str, str, Outcome]  # (key, fingerprint, outcome) stored with the batch's events


class StorageError(LedgerError):
    """The store refused or could not take a batch; the command was not recorded."""

    code = "storage-unavailable"


@dataclass
class Item:
    command: Command
    future: Future[Outcome] = field(default_factory=Future)
    enqueued: float = field(default_factory=time.monotonic)


class Pending:
    """A batch's events, collected from its aggregates at decision time (what `app.save` takes)."""

    __slots__ = ("id", "events")

    def __init__(self, agg_id: UUID | None, events: Sequence[Any]) -> None:
        self.id = agg_id
        self.events = events

    def collect_events(self) -> Sequence[Any]:
        return self.events


@dataclass
class Decision:
    batch: list[Item]
    outcomes: dict[int, Outcome]
    failed: dict[int, BaseException]
    rows: list[Row]
    touched: list[UUID]
    pending: list[Pending]
    snapshots: list[Any]
    keys: dict[str, Recorded]


def resolve(decision: Decision) -> None:
    """Answers every caller of a stored (or storeless) decision: its outcome or its refusal."""
    for i, item in enumerate(decision.batch):
        if item.future.done():
            continue
        if i in decision.failed:
            item.future.set_exception(decision.failed[i])
        else:
            item.future.set_result(decision.outcomes[i])


def fail(batch: Sequence[Item], e: BaseException, failed: dict[int, BaseException] | None = None) -> None:
    """Answers the unanswered callers of a batch that was not stored (their own refusal if any)."""
    err = StorageError(f"the ledger could not store the command: {type(e).__name__}")
    for i, item in enumerate(batch):
        if not item.future.done():
            item.future.set_exception((failed or {}).get(i, err))
