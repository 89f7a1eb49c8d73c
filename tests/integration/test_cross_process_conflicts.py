"""Two writers on separate pools hammering one hot SKU: conflicts are retried until the command's
deadline, so nobody is answered 503 and nothing is oversold."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from adapters.persistence.urls import ledger_env
from ledger import commands as c
from ledger.errors import InsufficientStockError
from ledger.service import Ledger

pytestmark = pytest.mark.postgres


def test_two_writers_on_one_hot_sku_answer_every_command_from_the_store(pg_url):
    sku = "HOT-" + uuid.uuid4().hex[:6]
    stock, callers, per_caller = 1_200, 8, 80  # 2 x 8 x 80 = 1,280 reservations for 1,200 units
    with Ledger(ledger_env(pg_url)) as ledger:
        ledger.receive(sku, "WH", stock, "stock")
    first, second = Ledger(ledger_env(pg_url)), Ledger(ledger_env(pg_url))
    # Each takes a unit before the callers start, `second` last: `first`'s cached state is stale,
    # so the two get in each other's way however a busy machine schedules them.
    warm = [f"warm-{tag}/1" for tag in ("a", "b")]
    for ledger, tag in ((first, "a"), (second, "b")):
        ledger.execute(c.Reserve(sku=sku, location="WH", order_id=f"warm-{tag}", line_id="1", quantity=1))
    start = threading.Barrier(2 * callers)

    def caller(ledger: Ledger, name: str) -> tuple[list[str], int, list[str]]:
        granted, refused, other = [], 0, []
        start.wait()
        for i in range(per_caller):  # each caller waits for its answer: the batches keep flowing
            order = f"{name}-{i}"
            try:
                ledger.execute(c.Reserve(sku=sku, location="WH", order_id=order, line_id="1", quantity=1))
                granted.append(f"{order}/1")
            except InsufficientStockError:
                refused += 1
            except Exception as e:
                other.append(repr(e))
        return granted, refused, other

    try:
        with ThreadPoolExecutor(2 * callers) as pool:
            runs = [
                pool.submit(caller, ledger, f"{tag}{k}")
                for tag, ledger in (("a", first), ("b", second))
                for k in range(callers)
            ]
            results = [r.result(timeout=300) for r in runs]
        conflicts = first.writer.stats["conflicts"] + second.writer.stats["conflicts"]
    finally:
        first.close()
        second.close()
    assert [e for _, _, other in results for e in other] == []  # no 503, nor any other error
    assert conflicts > 0  # the two writers did get in each other's way
    granted = warm + [g for ok, _, _ in results for g in ok]
    with Ledger(ledger_env(pg_url)) as ledger:
        s = ledger.history.stock(sku, "WH")
        assert s is not None
        assert len(granted) == stock == s.reserved == len(set(granted))
        assert sorted(s.reservations) == sorted(granted)
        assert sum(refused for _, refused, _ in results) == len(warm) + 2 * callers * per_caller - stock
