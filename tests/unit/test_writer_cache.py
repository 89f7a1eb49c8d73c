"""The writer's aggregate cache is bounded by its size."""

from __future__ import annotations

from adapters.persistence.urls import ledger_env
from ledger import commands as c
from ledger.service import Ledger


def test_the_aggregate_cache_stays_within_its_size_and_evicted_state_is_loaded_again(sqlite_url):
    with Ledger(ledger_env(sqlite_url)) as ledger:
        ledger.writer.cache_size = 10
        for i in range(30):
            ledger.execute(c.ReceiveStock(sku=f"S{i}", location="WH", quantity=1, reference=f"r{i}"))
            assert len(ledger.writer.cache) <= 10
        ledger.execute(c.ReceiveStock(sku="S0", location="WH", quantity=2, reference="again"))  # evicted
        assert ledger.history.stock("S0", "WH").on_hand == 3
