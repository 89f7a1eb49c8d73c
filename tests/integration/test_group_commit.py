"""Group commit on PostgreSQL: many callers, two writers, and a hot SKU never oversold."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from adapters.persistence.urls import ledger_env
from ledger import commands as c
from ledger.errors import IdempotencyConflictError, InsufficientStockError, LedgerError
from ledger.service import Ledger

pytestmark = pytest.mark.postgres


def _reserve_all(ledger: Ledger, sku: str, orders: list[str]) -> tuple[int, list[BaseException]]:
    futures = [
        ledger.submit(c.Reserve(sku=sku, location="WH", order_id=o, line_id="1", quantity=1)) for o in orders
    ]
    granted, errors = 0, []
    for f in futures:
        try:
            f.result(timeout=60)
            granted += 1
        except LedgerError as e:
            errors.append(e)
    return granted, errors


def test_many_threads_on_two_writers_reserving_one_sku_never_oversell(pg_url):
    sku = "HOT-" + uuid.uuid4().hex[:6]
    stock = 150
    with Ledger(ledger_env(pg_url)) as a, Ledger(ledger_env(pg_url)) as b:
        a.receive(sku, "WH", stock, "stock-1")
        b.history.stock(sku, "WH")  # b starts cold; a's cached state is warm
        results: list[tuple[int, list[BaseException]]] = []
        lock = threading.Lock()

        def worker(i: int) -> None:
            ledger = a if i % 2 else b
            r = _reserve_all(ledger, sku, [f"o-{i}-{k}" for k in range(15)])
            with lock:
                results.append(r)

        with ThreadPoolExecutor(16) as pool:
            list(pool.map(worker, range(16)))  # 240 attempts for 150 units
        granted = sum(g for g, _ in results)
        errors = [e for _, errs in results for e in errs]
        assert all(isinstance(e, InsufficientStockError) for e in errors), errors[:3]
        a.writer.evict()
        s = a.history.stock(sku, "WH")
        assert s is not None
        # Every unit is granted exactly once: refusals came only when the store was sold out.
        assert granted == stock == s.reserved
        assert s.available == 0 and s.on_hand == stock
        assert len(s.reservations) == stock


def test_a_command_refused_against_stale_cache_is_decided_again_on_fresh_state(pg_url):
    with Ledger(ledger_env(pg_url)) as a, Ledger(ledger_env(pg_url)) as b:
        a.receive("S", "WH", 1, "r1")
        b.reserve("S", "WH", "o1", "1", 1)  # b caches S with nothing available
        a.receive("S", "WH", 5, "r2")  # another process receives meanwhile
        out = b.reserve("S", "WH", "o2", "1", 3)
        assert out["available"] == 2 and out["reserved"] == 4
        assert b.writer.stats["refreshes"] == 1
        with pytest.raises(InsufficientStockError):
            b.reserve("S", "WH", "o3", "1", 3)  # truly short: refused, state unchanged
        assert b.history.stock("S", "WH").reserved == 4


def test_conflicting_writers_retry_and_lose_nothing(pg_url):
    with Ledger(ledger_env(pg_url)) as a, Ledger(ledger_env(pg_url)) as b:
        a.receive("S", "WH", 1, "first")
        b.receive("S", "WH", 1, "second")
        futures = []
        for i in range(200):
            ledger = a if i % 2 else b
            futures.append(
                ledger.submit(c.ReceiveStock(sku="S", location="WH", quantity=1, reference=f"r{i}"))
            )
        outcomes = [f.result(timeout=60) for f in futures]
        assert not any(o.get("duplicate") for o in outcomes)
        assert a.writer.stats["conflicts"] + b.writer.stats["conflicts"] > 0
        s = Ledger(ledger_env(pg_url))
        try:
            assert s.history.stock("S", "WH").on_hand == 202
            assert len(list(s.app.events.get(s.history.stock("S", "WH").id))) == 203  # opened + 202
        finally:
            s.close()


def test_a_repeated_key_in_one_batch_and_across_writers_is_applied_once(pg_url):
    cmd = c.ReceiveStock(sku="S", location="WH", quantity=4, reference="dup")
    with Ledger(ledger_env(pg_url)) as a, Ledger(ledger_env(pg_url)) as b:
        futures = [a.submit(cmd) for _ in range(5)] + [b.submit(cmd) for _ in range(5)]
        outcomes = [f.result(timeout=60) for f in futures]
        assert sum(1 for o in outcomes if not o.get("duplicate")) == 1
        assert a.history.stock("S", "WH").on_hand == 4


def test_two_writers_capturing_the_same_new_orders_reserve_each_order_once(pg_url):
    with Ledger(ledger_env(pg_url)) as a, Ledger(ledger_env(pg_url)) as b:
        a.receive("S", "WH", 1000, "stock")
        b.history.stock("S", "WH")

        def capture(i: int) -> c.CaptureOrder:
            return c.CaptureOrder(
                order_id=f"o{i}",
                channel="web",
                lines=({"line_id": "1", "sku": "S", "quantity": 2, "location": "WH"},),
            )

        futures = [ledger.submit(capture(i)) for i in range(60) for ledger in (a, b)]
        outcomes = [f.result(timeout=60) for f in futures]
        assert all(o["lines"][0]["reserved"] == 2 for o in outcomes)
        a.writer.evict()
        s = a.history.stock("S", "WH")
        assert s.reserved == 120 and len(s.reservations) == 60


def test_reservations_are_granted_first_come_first_served_and_expired_ones_come_back(pg_url):
    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC)
    with Ledger(ledger_env(pg_url)) as ledger:
        ledger.receive("S", "WH", 5, "stock")
        futures = [
            ledger.submit(
                c.Reserve(
                    sku="S",
                    location="WH",
                    order_id=f"o{i}",
                    line_id="1",
                    quantity=1,
                    expires_at=now - timedelta(seconds=1) if i < 2 else None,
                )
            )
            for i in range(10)
        ]
        granted = []
        for i, f in enumerate(futures):
            try:
                f.result(timeout=60)
                granted.append(i)
            except InsufficientStockError:
                pass
        assert granted == [0, 1, 2, 3, 4]  # in submission order
        # The sweeper's command, through the same writer: both expired holds come back at once.
        out = ledger.execute(c.ReleaseExpired(sku="S", location="WH", now=now))
        assert out["released"] == 2 and out["available"] == 2
        late = [
            ledger.submit(c.Reserve(sku="S", location="WH", order_id=f"late{i}", line_id="1", quantity=1))
            for i in range(3)
        ]
        results = [f.exception(timeout=60) for f in late]
        assert [r is None for r in results] == [True, True, False]
        assert ledger.history.stock("S", "WH").reserved == 5


def test_a_commit_the_database_refuses_fails_only_its_batch_and_leaves_no_trace(pg_url):
    import psycopg

    from adapters.persistence.urls import pg_conninfo, pg_parts
    from ledger.bounds import stock_id
    from ledger.writer import StorageError

    with Ledger(ledger_env(pg_url)) as ledger:
        ledger.receive("OK-0", "WH", 1, "warm")  # creates the tables
        schema = pg_parts(pg_url)["schema"]
        boom = stock_id("BOOM", "WH")
        with psycopg.connect(pg_conninfo(pg_url), autocommit=True) as conn:
            conn.execute(f"""
                CREATE FUNCTION "{schema}".refuse() RETURNS trigger AS $$
                BEGIN RAISE EXCEPTION 'refused by the test'; END $$ LANGUAGE plpgsql;
                CREATE TRIGGER refuse BEFORE INSERT ON "{schema}".ledger_events FOR EACH ROW
                WHEN (NEW.originator_id = '{boom}') EXECUTE FUNCTION "{schema}".refuse();""")
        cmds = [
            c.ReceiveStock(sku=f"OK-{i % 7}", location="WH", quantity=1, reference=f"r{i}")
            for i in range(300)
        ]
        cmds.insert(150, c.ReceiveStock(sku="BOOM", location="WH", quantity=1, reference="boom"))
        ledger.writer.max_batch = 50  # several batches, pipelined
        futures = [ledger.submit(cmd) for cmd in cmds]
        ok, failed = [], []
        for cmd, f in zip(cmds, futures, strict=True):
            (failed if f.exception(timeout=60) else ok).append(cmd)
        assert isinstance(futures[150].exception(), StorageError)
        assert 0 < len(failed) <= 50  # the refused batch only
        assert ledger.writer.stats["failures"] == 1
        cached = {f"OK-{k}": ledger.writer.cache[stock_id(f"OK-{k}", "WH")].on_hand for k in range(7)}
        ledger.writer.evict()
        stored = ledger.app.recorder.select_commands([cmd.key for cmd in cmds])
        assert set(stored) == {cmd.key for cmd in ok}  # acknowledged ⇔ stored
        for k in range(7):
            s = ledger.history.stock(f"OK-{k}", "WH")
            expected = sum(1 for cmd in ok if cmd.sku == f"OK-{k}") + (k == 0)
            assert s.on_hand == expected == cached[f"OK-{k}"]  # the cache never kept a refused batch
        assert ledger.history.stock("BOOM", "WH") is None
        assert ledger.receive("OK-1", "WH", 1, "after")["on_hand"] == cached["OK-1"] + 1


def test_two_pipelined_writers_allocating_orders_across_locations_keep_every_stream_whole(pg_url):
    from ledger.bounds import stock_id
    from ledger.ports import StaticLocations

    groups = StaticLocations({"web": ["L1", "L2", "L3"]})
    with Ledger(ledger_env(pg_url), groups) as a, Ledger(ledger_env(pg_url), groups) as b:
        for loc in ("L1", "L2", "L3"):
            a.receive("S", loc, 40, f"stock-{loc}")
        # `b` then writes all three streams, so `a`'s cached versions are stale: its first batch
        # conflicts however the two writers are scheduled (a busy machine may run them one after
        # the other), and is decided again on the stored state.
        warm = c.CaptureOrder(
            order_id="warm",
            channel="web",
            lines=tuple(
                {"line_id": loc, "sku": "S", "quantity": 1, "location": loc} for loc in ("L1", "L2", "L3")
            ),
        )
        b.execute(warm)
        a.writer.max_batch = b.writer.max_batch = 8  # many small pipelined batches, many conflicts

        def order(i: int) -> c.CaptureOrder:
            return c.CaptureOrder(
                order_id=f"o{i}", channel="web", lines=({"line_id": "1", "sku": "S", "quantity": 1 + i % 3},)
            )

        futures = [(a if i % 2 else b).submit(order(i)) for i in range(120)]
        captured = [f.result(timeout=60) for f in futures if f.exception(timeout=60) is None]
        units = sum(o["lines"][0]["quantity"] for o in captured) + 3  # and the warm-up's
        assert a.writer.stats["conflicts"] > 0
    with Ledger(ledger_env(pg_url)) as fresh:
        reserved = 0
        for loc in ("L1", "L2", "L3"):
            versions = [e.originator_version for e in fresh.app.events.get(stock_id("S", loc))]
            assert versions == list(range(1, len(versions) + 1))  # no gap, no double
            s = fresh.history.stock("S", loc)
            assert 0 <= s.reserved <= s.on_hand == 40
            reserved += s.reserved
        assert reserved == units


def test_a_recorded_command_repeated_in_a_busy_batch_changes_nothing_and_its_batch_still_commits(pg_url):
    # The writer does not look keys up before deciding a batch: a repeat is decided again, its
    # batch's save fails on the key, and the batch is decided once more with the keys looked up.
    with Ledger(ledger_env(pg_url)) as ledger:
        first = ledger.execute(c.ReceiveStock(sku="R", location="WH", quantity=5, reference="rcv-1"))
        others = [
            c.ReceiveStock(sku=f"O{i}", location="WH", quantity=1, reference=f"o-{i}") for i in range(50)
        ]
        futures = [ledger.submit(cmd) for cmd in others[:25]]
        again = ledger.submit(c.ReceiveStock(sku="R", location="WH", quantity=5, reference="rcv-1"))
        futures += [ledger.submit(cmd) for cmd in others[25:]]
        assert again.result(timeout=60) == {**first, "duplicate": True}
        assert all(not f.result(timeout=60).get("duplicate") for f in futures)
        assert ledger.history.stock("R", "WH").on_hand == 5
        assert all(ledger.history.stock(f"O{i}", "WH").on_hand == 1 for i in range(50))


def test_a_recorded_key_repeated_with_other_content_is_refused_and_changes_nothing(pg_url):
    with Ledger(ledger_env(pg_url)) as ledger:
        ledger.execute(c.ReceiveStock(sku="R", location="WH", quantity=5, reference="rcv-1"))
        other = ledger.submit(c.ReceiveStock(sku="R", location="WH", quantity=6, reference="rcv-1"))
        with pytest.raises(IdempotencyConflictError):
            other.result(timeout=60)
        assert ledger.history.stock("R", "WH").on_hand == 5


def test_a_sale_repeated_after_stock_ran_out_gets_its_recorded_answer_not_a_refusal(pg_url):
    # Deciding the repeat again refuses it (nothing left to sell); the writer looks its key up
    # before answering, so the client retrying a sale that went through is told it went through.
    sale = c.SellDirect(sku="LAST", location="WH", quantity=1, reference="till-7/0042")
    with Ledger(ledger_env(pg_url)) as ledger:
        ledger.execute(c.ReceiveStock(sku="LAST", location="WH", quantity=1, reference="in"))
        sold = ledger.execute(sale)
        late = ledger.submit(c.SellDirect(sku="LAST", location="WH", quantity=1, reference="till-7/0043"))
        again = ledger.submit(sale)
        with pytest.raises(InsufficientStockError):
            late.result(timeout=60)
        assert again.result(timeout=60) == {**sold, "duplicate": True}
    with Ledger(ledger_env(pg_url)) as cold:  # and from a cold cache, after a restart
        assert cold.execute(sale) == {**sold, "duplicate": True}
        assert cold.history.stock("LAST", "WH").on_hand == 0


def test_a_burst_of_retried_commands_makes_one_save_conflict_not_one_per_batch(pg_url):
    # After a save fails on a recorded key, the next batches look their keys up first: a client
    # (or an intake worker after a crash) sending hundreds of repeats, mixed with new commands on
    # the same SKU-locations, costs one wasted save, not one per batch.
    def receipt(i: int) -> c.ReceiveStock:
        return c.ReceiveStock(sku=f"B{i % 10}", location="WH", quantity=1, reference=f"b-{i}")

    with Ledger(ledger_env(pg_url)) as ledger:
        for f in [ledger.submit(receipt(i)) for i in range(300)]:
            f.result(timeout=60)
        before = ledger.writer.stats["conflicts"]
        repeats, fresh = [], []
        for k in range(0, 300, 10):  # 30 bursts: 10 repeats and 10 new receipts each
            repeats += [ledger.submit(receipt(i)) for i in range(k, k + 10)]
            fresh += [ledger.submit(receipt(1000 + i)) for i in range(k, k + 10)]
            fresh[-1].result(timeout=60)
        assert all(f.result(timeout=60).get("duplicate") for f in repeats)
        assert not any(f.result(timeout=60).get("duplicate") for f in fresh)
        assert ledger.writer.stats["conflicts"] - before <= 2
        assert sum(ledger.history.stock(f"B{i}", "WH").on_hand for i in range(10)) == 600
