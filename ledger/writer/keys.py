"""Key resolution: what a batch's idempotency keys and named streams already are in the store.

Owns `stream_ids` (the streams a command names, for prefetching), `KeyResolver.lookup` (the
batch's recorded keys and its streams that are neither cached nor stored, in one round trip) and
`KeyResolver.recorded_refusals` (a refused command whose key was recorded before gets the
recorded answer instead).

Legacy keys: a document line's key once named the document only (`receipt:{reference}`). While
the command log holds any row under such a key (checked once per process), a batch's legacy keys
are looked up too, and a row recorded under one answers for the line it moved (the outcome names
its SKU-location), so a repeat of a line stored before the upgrade still appends nothing.
"""

from __future__ import annotations

from typing import cast
from uuid import UUID

from ledger.application import LedgerApplication
from ledger.backorders import backorders_id
from ledger.bounds import order_id as order_uuid
from ledger.bounds import stock_id
from ledger.commands import LEGACY_KEY_PREFIXES, Command
from ledger.errors import IdempotencyConflictError
from ledger.ports import CommandLog
from ledger.writer.batch import Item, Outcome, Recorded
from ledger.writer.cache import AggregateCache


def stream_ids(command: Command) -> list[UUID]:
    """The streams a command names directly (its order, its SKU-locations, and each SKU's queue
    of backordered lines, which every movement that frees units looks at), for prefetching: the
    ones neither cached nor stored are known absent without a read each (a receipt for a SKU
    nobody waits for used to read its missing queue from the store every time)."""
    ids = []
    get = command.__dict__.get
    if isinstance(get("order_id"), str):
        ids.append(order_uuid(get("order_id")))
    sku = get("sku")
    skus = set()
    if isinstance(sku, str):
        skus.add(sku)
        for name in ("location", "from_location", "to_location"):
            if isinstance(get(name), str):
                ids.append(stock_id(sku, get(name)))
    for line in get("lines") or ():
        sku, location = (line.get("sku"), line.get("location")) if isinstance(line, dict) else (None, None)
        if isinstance(sku, str):
            skus.add(sku)
            if isinstance(location, str):
                ids.append(stock_id(sku, location))
    ids += [backorders_id(s) for s in sorted(skus)]
    return ids


def conflict(key: str) -> IdempotencyConflictError:
    return IdempotencyConflictError(f"{key} was already recorded with other content", key=key)


class KeyResolver:
    """Looks a batch's keys and streams up in the command log, next to the aggregate cache."""

    def __init__(self, app: LedgerApplication, cache: AggregateCache) -> None:
        self.app = app
        self.cache = cache
        self._legacy: bool | None = None  # whether the log holds legacy-keyed rows (asked once)

    def legacy_rows(self) -> bool:
        """Whether the command log holds rows under a legacy key. A ledger of this version never
        writes one, so once none is found, none is looked for again."""
        if self._legacy is None:
            self._legacy = self.recorder.has_keys_starting(LEGACY_KEY_PREFIXES)
        return self._legacy

    def legacy_keys(self, batch: list[Item]) -> list[str]:
        """The batch's legacy keys, when legacy rows exist at all."""
        if not self.legacy_rows():
            return []
        return [k for item in batch if (k := item.command.legacy_key)]

    @staticmethod
    def adopt_legacy(batch: list[Item], known: dict[str, Recorded]) -> None:
        """A row found under a command's legacy key that recorded this very line answers for its
        key (the same body: the first answer; another body: the idempotency conflict)."""
        for item in batch:
            cmd = item.command
            legacy = cmd.legacy_key
            if legacy is None or legacy not in known or cmd.key in known:
                continue
            if cmd.recorded_line(known[legacy][1]):
                assert cmd.key is not None  # a legacy key comes with a key
                known[cmd.key] = known[legacy]

    @property
    def recorder(self) -> CommandLog:
        return cast(CommandLog, self.app.recorder)  # each persistence adapter's recorder is one

    def lookup(
        self, batch: list[Item], keys: list[str], optimistic: bool = False
    ) -> tuple[dict[str, Recorded], set[UUID]]:
        """The batch's recorded keys, and the streams it names that are neither cached nor stored.

        One round trip. New orders and new SKU-locations are then known to be new without a read
        each; if another process creates one meanwhile, the save conflicts and the batch is
        decided again.
        """
        entries = self.cache.entries
        wanted = {i for item in batch for i in stream_ids(item.command) if i not in entries}
        legacy = self.legacy_keys(batch)
        # Optimistic, the keys ride along only when the streams need the round trip anyway.
        # Legacy keys always do: a repeat under a legacy key would not conflict on the save.
        if legacy:
            keys = [*keys, *legacy]
        elif optimistic and not wanted:
            keys = []
        known, existing = self.recorder.lookup(keys, list(wanted))
        if legacy:
            self.adopt_legacy(batch, known)
        return known, wanted - existing

    def recorded_refusals(
        self,
        batch: list[Item],
        failed: dict[int, BaseException],
        outcomes: dict[int, Outcome],
        known: dict[str, Recorded],
    ) -> None:
        """Refused commands whose key was recorded before get the recorded answer, not the refusal
        (a till retrying a sale that went through is told so, even once the stock ran out)."""
        unsure = {k for i in failed if (k := batch[i].command.key) and k not in known}
        if not unsure:
            return
        refused = [batch[i] for i in failed]
        recorded = self.recorder.select_commands(sorted(unsure | set(self.legacy_keys(refused))))
        self.adopt_legacy(refused, recorded)
        for i in [i for i in failed if batch[i].command.key in recorded]:
            cmd = batch[i].command
            key = cmd.key
            assert key is not None  # only keyed commands were looked up
            stored_fp, outcome = recorded[key]
            if stored_fp == cmd.fingerprint():
                del failed[i]
                outcomes[i] = {**outcome, "duplicate": True}
            else:
                failed[i] = conflict(key)
