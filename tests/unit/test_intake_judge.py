"""How the inbox worker judges a message from its commands' outcomes."""

from __future__ import annotations

from adapters.intake import Intake
from adapters.translate import Translation
from ledger import commands as c
from ledger.errors import InsufficientStockError
from ledger.writer import StorageError


def _translation(n: int = 2) -> Translation:
    t = Translation()
    for i in range(n):
        t.add(c.ReceiveStock(sku="S", location="L", quantity=1, reference=f"r{i}"))
    return t


def test_a_message_whose_commands_got_no_answer_in_time_is_tried_again_not_rejected():
    # The writer may still store a command it has not answered (a long PostgreSQL outage queues
    # batches): marking the message rejected could disagree with the ledger later.
    status, reason, wait_for = Intake._judge(_translation(), None, [{"on_hand": 1}, TimeoutError()])
    assert (status, reason, wait_for) == ("received", None, None)


def test_a_message_whose_commands_were_not_stored_is_tried_again():
    status, _, _ = Intake._judge(_translation(), None, [StorageError("down"), StorageError("down")])
    assert status == "received"


def test_a_message_whose_commands_were_all_refused_is_rejected_with_the_reasons():
    refused = InsufficientStockError("cannot sell 1 of S at L: 0 available")
    status, reason, _ = Intake._judge(_translation(1), None, [refused])
    assert status == "rejected" and "0 available" in (reason or "")
