"""PostgreSQL crashes or restarts under a running ledger: nothing acknowledged is lost, and the
ledger recovers by itself.

The fault: the database server goes away under the writer, either by a crash (`pg_ctl stop -m
immediate`: every backend is killed, no checkpoint, the server replays its WAL when it starts
again) while commands are being submitted, or by a clean restart while the ledger is idle. Every
pooled connection the ledger holds is then dead. The promise under test:

- a command whose future returned a result is stored (its command row, and its stock movement);
- a command that was not stored fails with a `LedgerError` (e.g. `StorageError`), never hangs;
- once the server is back, the same `Ledger` (same process, same pool, same warm cache) carries
  on: new commands are acknowledged and decided on the stored state, not on state left over
  from a batch that never committed.

The tests never touch the shared PostgreSQL: they start a private server of their own (as the
`postgres` system user, on a free port, in a temporary directory, fsync and synchronous_commit
on) and always stop it and remove its directory at the end.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import TimeoutError as FutureTimeout

import pytest
from private_servers import schema_url

from adapters.persistence.urls import ledger_env
from ledger import commands as c
from ledger.errors import LedgerError
from ledger.service import Ledger

pytestmark = pytest.mark.postgres

FUTURE_TIMEOUT = 60.0  # generous: a future that takes this long is a hang, not a slow commit


def receipt_key(reference: str, place: tuple[str, str]) -> str:
    """The key the receipt of `reference` at `place` was recorded under (its document line)."""
    return c.ReceiveStock(sku=place[0], location=place[1], quantity=1, reference=reference).key  # type: ignore[return-value]  # a keyed command


def test_a_crash_of_postgres_loses_no_acknowledged_command_and_the_writer_recovers(private_pg):
    url = schema_url(private_pg)
    places = [(f"SKU-{i % 5}", f"LOC-{i // 5}") for i in range(20)]  # 20 SKU-locations
    ledger = Ledger(ledger_env(url))
    # What every submitting thread saw, by reference: (place, quantity, phase, outcome or error).
    sent: dict[str, tuple[tuple[str, str], int, str, object]] = {}
    sent_lock = threading.Lock()
    phase = ["before"]  # "before" the crash, "down" while it is down, "after" it is back
    stop = threading.Event()
    hung: list[str] = []

    def submitter(worker: int) -> None:
        i = 0
        while not stop.is_set():
            i += 1
            ref = f"w{worker}-{i}"
            place = places[(worker * 7 + i) % len(places)]
            qty = 1 + (worker + i) % 5
            at = phase[0]
            cmd = c.ReceiveStock(sku=place[0], location=place[1], quantity=qty, reference=ref)
            future = ledger.submit(cmd)
            try:
                outcome: object = future.result(timeout=FUTURE_TIMEOUT)
            except FutureTimeout:
                hung.append(ref)
                return
            except BaseException as e:  # judged below: it must be a LedgerError
                outcome = e
            with sent_lock:
                sent[ref] = (place, qty, at, outcome)
            if isinstance(outcome, BaseException):
                time.sleep(0.01)  # do not spin while the server is down

    try:
        ledger.receive(*places[0], 1, "warm-up")  # tables created, pool open
        threads = [threading.Thread(target=submitter, args=(w,), daemon=True) for w in range(8)]
        for t in threads:
            t.start()

        def acked(at: str) -> int:
            with sent_lock:
                return sum(1 for _, _, p, o in sent.values() if p == at and isinstance(o, dict))

        deadline = time.monotonic() + 30
        while acked("before") < 300:  # the writer is busy when the server dies
            assert time.monotonic() < deadline, "the ledger acknowledged too little before the crash"
            time.sleep(0.01)
        phase[0] = "down"
        private_pg.crash()

        def answered_while_down() -> int:
            with sent_lock:
                return sum(1 for _, _, p, _ in sent.values() if p == "down")

        deadline = time.monotonic() + 120  # commands submitted while it is down, and answered
        while answered_while_down() < 8:
            assert time.monotonic() < deadline, "no command submitted during the outage was answered"
            time.sleep(0.01)
        private_pg.start()
        phase[0] = "after"
        # Keep submitting after the restart until plenty of new commands went through.
        deadline = time.monotonic() + 60
        while acked("after") < 300 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.5)
        stop.set()
        for t in threads:
            t.join(timeout=FUTURE_TIMEOUT + 5)
        assert not hung, f"futures never resolved: {hung[:5]}"
        assert not any(t.is_alive() for t in threads), "a submitting thread hangs"

        # The same Ledger, warm cache and all, goes on after the restart: one more receipt per
        # SKU-location, decided on what was stored (not on a batch that never committed).
        refs = list(sent)
        keys = {receipt_key(r, sent[r][0]): r for r in refs}
        stored = {keys[k] for k in ledger.app.recorder.select_commands(list(keys))}
        expected = {p: 0 for p in places}
        expected[places[0]] += 1  # the warm-up receipt
        for ref in stored:
            place, qty, _, _ = sent[ref]
            expected[place] += qty
        for n, place in enumerate(places):
            out = ledger.receive(*place, 1, f"final-{n}")
            expected[place] += 1
            assert out["on_hand"] == expected[place], f"the running ledger's state of {place} is wrong"
    finally:
        stop.set()
        ledger.close()

    acknowledged = {r for r, (_, _, _, o) in sent.items() if isinstance(o, dict)}
    failed = {r: o for r, (_, _, _, o) in sent.items() if not isinstance(o, dict)}
    after = [o for _, _, p, o in sent.values() if p == "after"]

    # Every failure is the ledger's own error (e.g. StorageError), not a stray driver exception.
    strays = {r: repr(e) for r, e in failed.items() if not isinstance(e, LedgerError)}
    assert not strays, f"failures that are not LedgerErrors: {list(strays.items())[:5]}"
    # The fault was real: commands were submitted while the server was gone, and it came back
    # through crash recovery (WAL replay), not a clean start ...
    assert any(p == "down" for _, _, p, _ in sent.values()), "nothing was submitted during the outage"
    assert "not properly shut down" in private_pg.log_text(), "the server did not crash"
    # ... and nothing acknowledged is lost.
    assert acknowledged <= stored, f"acknowledged but not stored: {sorted(acknowledged - stored)[:10]}"
    # The writer and its pool recovered without a process restart.
    assert sum(isinstance(o, dict) for o in after) >= 300, "few commands succeeded after the restart"

    # A fresh ledger (cold cache) reads exactly the stored receipts, per SKU-location.
    with Ledger(ledger_env(url)) as fresh:
        for place in places:
            stock = fresh.history.stock(*place)
            assert stock is not None and stock.on_hand == expected[place], place
        # It finds the same command rows: what the running ledger read was not a stale view.
        assert set(fresh.app.recorder.select_commands(list(keys))) == {receipt_key(r, sent[r][0]) for r in stored}
    print(
        f"\n{len(sent)} receipts: {len(acknowledged)} acknowledged, {len(failed)} failed "
        f"({len(set(failed) & stored)} of them stored anyway), "
        f"{sum(not isinstance(o, dict) for o in after)} failures after the restart"
    )


def test_a_restart_while_idle_is_invisible_to_the_next_command(private_pg):
    url = schema_url(private_pg)
    with Ledger(ledger_env(url)) as ledger:
        assert ledger.receive("SKU-I", "A", 5, "idle-1")["on_hand"] == 5
        assert ledger.receive("SKU-I", "B", 2, "idle-2")["on_hand"] == 2

        private_pg.restart()  # every connection in the ledger's pool is now dead

        # The next command opens a SKU-location the writer has not seen (so it looks the stream
        # up before deciding) ...
        assert ledger.receive("SKU-J", "A", 4, "idle-3")["on_hand"] == 4
        # ... then one to a stream the writer has cached, and one over two streams.
        assert ledger.receive("SKU-I", "A", 3, "idle-4")["on_hand"] == 8
        out = ledger.transfer("SKU-I", "A", "B", 6, "idle-5")
        assert (out["from"]["on_hand"], out["to"]["on_hand"]) == (2, 8)
        # A repeat of a command from before the restart gets its first answer and writes nothing.
        again = ledger.receive("SKU-I", "A", 5, "idle-1")
        assert again["duplicate"] is True and again["on_hand"] == 5
        # Reads through the same ledger see the stored state.
        assert ledger.history.stock("SKU-I", "A").on_hand == 2  # type: ignore[union-attr]  # it exists
        assert ledger.history.stock("SKU-I", "B").on_hand == 8  # type: ignore[union-attr]  # it exists

    with Ledger(ledger_env(url)) as fresh:  # and so does a cold one
        assert fresh.history.stock("SKU-I", "A").on_hand == 2  # type: ignore[union-attr]  # it exists
        assert fresh.history.stock("SKU-I", "B").on_hand == 8  # type: ignore[union-attr]  # it exists
        assert fresh.history.stock("SKU-J", "A").on_hand == 4  # type: ignore[union-attr]  # it exists
