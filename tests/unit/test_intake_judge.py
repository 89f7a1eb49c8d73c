"""How the inbox worker judges a message from its commands' outcomes."""

from __future__ import annotations

from adapters.inbox import Status
from adapters.intake import Intake
from adapters.translate import Apply
from ledger import commands as c
from ledger.errors import InsufficientStockError
from ledger.writer import StorageError


def _translation(n: int = 2) -> Apply:
    t = Apply()
    for i in range(n):
        t.add(c.ReceiveStock(sku="S", location="L", quantity=1, reference=f"r{i}"))
    return t


def test_a_message_whose_commands_got_no_answer_in_time_is_tried_again_not_rejected():
    # The writer may still store a command it has not answered (a long PostgreSQL outage queues
    # batches): marking the message rejected could disagree with the ledger later.
    verdict = Intake._judge(_translation(), [{"on_hand": 1}, TimeoutError()])
    assert (verdict.status, verdict.reason, verdict.wait_for) == (Status.RECEIVED, None, None)


def test_a_message_whose_commands_were_not_stored_is_tried_again():
    verdict = Intake._judge(_translation(), [StorageError("down"), StorageError("down")])
    assert verdict.status is Status.RECEIVED


def test_a_message_whose_commands_were_all_refused_is_rejected_with_the_reasons():
    refused = InsufficientStockError("cannot sell 1 of S at L: 0 available")
    verdict = Intake._judge(_translation(1), [refused])
    assert verdict.status is Status.REJECTED and "0 available" in (verdict.reason or "")


def test_every_outcome_type_has_its_own_status() -> None:
    from adapters.translate import Duplicate, Park, Reject, Wait, WaitKey

    key = WaitKey.pos_txn("S1", "T9")
    assert Intake._judge(Park("unknown item X"), []).status is Status.PARKED
    assert Intake._judge(Reject("never"), []) == Intake._judge(Reject("never"), [])
    assert Intake._judge(Reject("never"), []).status is Status.REJECTED
    assert Intake._judge(Wait(key), []).wait_for == key and str(key) == "pos-txn:S1:T9"
    assert Intake._judge(Duplicate(), []).status is Status.DUPLICATE
    assert WaitKey.parse("pos-txn:S1:T9") == key and WaitKey.parse("nothing") is None
    assert Intake._judge(_translation(1), [{"duplicate": True}]).status is Status.DUPLICATE
