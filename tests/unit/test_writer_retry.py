"""How the writer retries a save that conflicted with another process."""

from __future__ import annotations

import time

from ledger import commands as c
from ledger.writer.batch import Item
from ledger.writer.retry import CAUTIOUS_BATCHES, CONFLICT_RETRIES, Conflicts


def _item(enqueued: float) -> Item:
    item = Item(c.ReceiveStock(sku="A", location="WH", quantity=1, reference="r"))
    item.enqueued = enqueued
    return item


def test_a_batch_is_tried_a_few_times_then_its_commands_go_alone():
    conflicts = Conflicts(deadline=60.0)
    batch = [_item(time.monotonic()), _item(time.monotonic())]
    assert all(conflicts.again(batch, attempt) for attempt in range(CONFLICT_RETRIES))
    assert not conflicts.again(batch, CONFLICT_RETRIES)


def test_a_command_alone_is_tried_until_its_deadline_and_no_longer():
    conflicts = Conflicts(deadline=60.0)
    assert conflicts.again([_item(time.monotonic())], 50)  # long past the batch's few tries
    assert not conflicts.again([_item(time.monotonic() - 61.0)], 50)
    # Within the first few tries a command is tried again even when it waited long in the queue.
    assert conflicts.again([_item(time.monotonic() - 61.0)], 0)


def test_after_a_conflict_the_next_batches_look_their_keys_up_first():
    conflicts = Conflicts()
    assert conflicts.optimistic()
    conflicts.seen()
    assert [conflicts.optimistic() for _ in range(CAUTIOUS_BATCHES)] == [False] * CAUTIOUS_BATCHES
    assert conflicts.optimistic()
