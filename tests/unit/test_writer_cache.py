"""The writer's aggregate cache is bounded by its size, `LEDGER_WRITER_CACHE_SIZE` by default."""

from __future__ import annotations

from adapters.config import Settings
from adapters.persistence.urls import ledger_env
from bootstrap import bootstrap
from ledger import commands as c
from ledger.bounds import stock_id
from ledger.service import Ledger
from ledger.writer import CACHE_SIZE


def test_the_aggregate_cache_stays_within_its_size_and_evicted_state_is_loaded_again(sqlite_url):
    with Ledger(ledger_env(sqlite_url)) as ledger:
        ledger.writer.cache_size = 10
        for i in range(30):
            ledger.execute(c.ReceiveStock(sku=f"S{i}", location="WH", quantity=1, reference=f"r{i}"))
            assert len(ledger.writer.cache) <= 10
        ledger.execute(c.ReceiveStock(sku="S0", location="WH", quantity=2, reference="again"))  # evicted
        assert ledger.history.stock("S0", "WH").on_hand == 3


def test_the_setting_bounds_the_cache_under_batches_and_evicted_aggregates_decide_on_their_stored_state(
    sqlite_url,
):
    """Batches of many new SKU-locations (the writer's `remember` path) stay within the setting;
    an evicted SKU-location is loaded again with its whole state: a reservation made before the
    eviction still counts, so a second one beyond the stock is refused."""
    container = bootstrap(Settings(database_url=sqlite_url, writer_cache_size=100, run_workers=False))
    try:
        ledger = container.ledger
        assert ledger.writer.cache_size == 100
        ledger.writer.start()
        ledger.execute(c.ReceiveStock(sku="FIRST", location="WH", quantity=5, reference="first"))
        ledger.execute(c.Reserve(sku="FIRST", location="WH", order_id="o1", line_id="1", quantity=4))
        futures = [
            ledger.submit(c.ReceiveStock(sku=f"S{i}", location="WH", quantity=1, reference=f"r{i}"))
            for i in range(350)
        ]
        for f in futures:
            f.result(timeout=60)
        assert len(ledger.writer.cache) <= 100
        assert stock_id("FIRST", "WH") not in ledger.writer.cache  # evicted
        refused = ledger.submit(c.Reserve(sku="FIRST", location="WH", order_id="o2", line_id="1", quantity=2))
        assert refused.exception(timeout=60) is not None  # 1 left after the evicted reservation of 4
        ledger.execute(c.Reserve(sku="FIRST", location="WH", order_id="o3", line_id="1", quantity=1))
        stock = ledger.history.stock("FIRST", "WH")
        assert (stock.on_hand, stock.reserved) == (5, 5)
    finally:
        container.close()


def test_the_default_size_is_the_settings_default():
    assert Settings.model_fields["writer_cache_size"].default == CACHE_SIZE
    with Ledger() as ledger:  # in memory
        assert ledger.writer.cache_size == CACHE_SIZE


def test_receipts_for_a_sku_nobody_waits_for_read_nothing_from_the_store(database_url):
    """A receipt looks at its SKU's queue of backordered lines; when there is none, the batch's one
    lookup says so (`stream_ids`), instead of a read of the missing queue per receipt."""
    with Ledger(ledger_env(database_url)) as ledger:
        ledger.execute(c.ReceiveStock(sku="QUIET", location="WH", quantity=1, reference="first"))
        reads: list[object] = []
        repository = ledger.app.repository
        get = repository.get

        def counted(agg_id, *args, **kwargs):  # type: ignore[no-untyped-def]  # wraps the library's
            reads.append(agg_id)
            return get(agg_id, *args, **kwargs)

        repository.get = counted  # type: ignore[method-assign]  # a spy on the store's reads
        try:
            for i in range(20):
                ledger.execute(c.ReceiveStock(sku="QUIET", location="WH", quantity=1, reference=f"r{i}"))
        finally:
            repository.get = get  # type: ignore[method-assign]  # the spy removed
        assert reads == []
        assert ledger.history.stock("QUIET", "WH").on_hand == 21
