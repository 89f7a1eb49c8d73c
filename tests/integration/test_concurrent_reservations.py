"""Flash-sale contention on PostgreSQL: 32 threads race for one SKU-location's last units.

Exactly the available units are reserved, never more, whether all threads share one Ledger
(group commit) or split over two Ledgers on the same schema (two writers: optimistic conflicts).
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter

import pytest

from adapters.persistence.urls import ledger_env
from ledger import commands as c
from ledger.bounds import stock_id
from ledger.errors import InsufficientStockError
from ledger.service import Ledger
from ledger.stock import SkuLocation

THREADS = 32
PER_THREAD = 3
UNITS = 40

pytestmark = pytest.mark.postgres


def race(ledgers: list[Ledger], sku: str, quantity_of) -> tuple[list[int], Counter]:
    """Each thread reserves PER_THREAD times; returns the granted quantities and the refusals."""
    barrier = threading.Barrier(THREADS)
    granted: list[int] = []
    refused: Counter = Counter()
    lock = threading.Lock()

    def reserver(n: int) -> None:
        ledger = ledgers[n % len(ledgers)]
        barrier.wait()
        for k in range(PER_THREAD):
            qty = quantity_of(n, k)
            try:
                ledger.reserve(sku, "wh-1", f"order-{n}-{k}", "1", qty)
            except InsufficientStockError:
                with lock:
                    refused["insufficient"] += 1
            except Exception as e:  # anything else is a failure of the write path
                with lock:
                    refused[type(e).__name__] += 1
            else:
                with lock:
                    granted.append(qty)

    threads = [threading.Thread(target=reserver, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    return granted, refused


def stored(url: str, sku: str) -> tuple[SkuLocation, int]:
    with Ledger(ledger_env(url)) as fresh:
        s = fresh.history.stock(sku, "wh-1")
        reserved_events = sum(
            isinstance(e, SkuLocation.StockReserved) for e in fresh.app.events.get(stock_id(sku, "wh-1"))
        )
        return s, reserved_events


@pytest.mark.parametrize("writers", [1, 2], ids=["one-ledger", "two-ledgers"])
def test_32_concurrent_reservers_get_exactly_the_available_units(pg_url, writers):
    sku = "SKU-" + uuid.uuid4().hex[:8]
    ledgers = [Ledger(ledger_env(pg_url)) for _ in range(writers)]
    try:
        ledgers[0].receive(sku, "wh-1", UNITS, "po-1")
        granted, refused = race(ledgers, sku, lambda n, k: 1)
    finally:
        for ledger in ledgers:
            ledger.close()
    assert sum(granted) == UNITS
    assert refused == Counter(insufficient=THREADS * PER_THREAD - UNITS)
    s, reserved_events = stored(pg_url, sku)
    assert (s.on_hand, s.reserved, s.available) == (UNITS, UNITS, 0)
    assert reserved_events == UNITS and len(s.reservations) == UNITS


@pytest.mark.parametrize("writers", [1, 2], ids=["one-ledger", "two-ledgers"])
def test_concurrent_reservations_of_mixed_sizes_never_oversell(pg_url, writers):
    sku = "SKU-" + uuid.uuid4().hex[:8]
    ledgers = [Ledger(ledger_env(pg_url)) for _ in range(writers)]
    try:
        ledgers[0].receive(sku, "wh-1", UNITS, "po-1")
        granted, refused = race(ledgers, sku, lambda n, k: 1 + (n + k) % 3)
    finally:
        for ledger in ledgers:
            ledger.close()
    assert set(refused) <= {"insufficient"}, refused
    s, reserved_events = stored(pg_url, sku)
    assert s.reserved == sum(granted) <= UNITS
    assert s.available == UNITS - sum(granted) < 3  # a refusal only when too few units were left
    assert reserved_events == len(granted)


def test_a_ledger_never_refuses_on_stale_state_after_another_ledger_released_units(pg_url):
    sku = "SKU-" + uuid.uuid4().hex[:8]
    with Ledger(ledger_env(pg_url)) as a, Ledger(ledger_env(pg_url)) as b:
        a.receive(sku, "wh-1", 2, "po-1")
        a.reserve(sku, "wh-1", "o-1", "1", 2)  # a's writer now caches available = 0
        b.execute(
            c.ReleaseReservation(
                sku=sku,
                location="wh-1",
                reservation_id="o-1/1",
                quantity=2,
                reason="cancelled",
                reference="rel-1",
            )
        )
        assert a.reserve(sku, "wh-1", "o-2", "1", 2)["available"] == 0
        with pytest.raises(InsufficientStockError):
            b.reserve(sku, "wh-1", "o-3", "1", 1)
