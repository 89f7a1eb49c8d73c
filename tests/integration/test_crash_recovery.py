"""A process killed between a batch's decision and its commit loses no acknowledged command.

The child acknowledges a command (a line on stdout) only after its future resolved, and blocks
in the writer's `before_save` hook on a later batch; the parent then kills it with SIGKILL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from adapters.persistence.urls import ledger_env
from ledger import commands as c
from ledger.bounds import stock_id
from ledger.service import Ledger
from ledger.stock import SkuLocation

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[2]

CHILD = r"""
import sys, threading, time
from adapters.persistence.urls import ledger_env
from ledger import commands as c
from ledger.service import Ledger

# The commands go in waves; each wave is committed and acknowledged before the next is sent, and
# the first save after `committed_waves` waves blocks. Counting batches instead would hang on a
# loaded machine, where the writer can take every command in fewer batches than the count.
url, n, committed_waves = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
waves = committed_waves + 2
ledger = Ledger(ledger_env(url))
ledger.receive("SKU", "A", n, "stock")
out = sys.stdout
lock = threading.Lock()
block = threading.Event()

def before_save(aggregates):
    if block.is_set():
        with lock:
            out.write("DECIDED\n"); out.flush()
        time.sleep(3600)  # killed here, between the decision and the commit

ledger.writer.before_save = before_save

def ack(ref):
    def done(f):
        if f.exception() is None:
            with lock:
                out.write(f"ACK {ref}\n"); out.flush()
    return done

per = n // waves
for w in range(waves):
    if w == committed_waves:
        block.set()
    futures = []
    for i in range(w * per, (w + 1) * per):
        ref = f"t{i}"
        cmd = c.TransferStock(sku="SKU", from_location="A", to_location="B", quantity=1, reference=ref)
        f = ledger.submit(cmd)
        f.add_done_callback(ack(ref))
        futures.append(f)
        if i % 7 == 0:
            time.sleep(0.002)  # spread the commands over several batches
    if not block.is_set():
        for f in futures:
            f.result()  # this wave is committed and acknowledged
time.sleep(3600)
"""


def test_a_kill_between_decision_and_commit_loses_no_acknowledged_command(pg_url):
    n = 400
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, pg_url, str(n), "2"], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    acked: list[str] = []
    try:
        for line in child.stdout:  # type: ignore[union-attr]  # stdout=PIPE
            if line.startswith("ACK "):
                acked.append(line.split()[1])
            elif line.startswith("DECIDED"):
                break
        else:
            pytest.fail("the child never reached the blocked batch")
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    assert acked, "the child acknowledged nothing before the crash"

    with Ledger(ledger_env(pg_url)) as ledger:
        outs = {
            e.transfer_id
            for e in ledger.app.events.get(stock_id("SKU", "A"))
            if isinstance(e, SkuLocation.StockTransferredOut)
        }
        ins = {
            e.transfer_id
            for e in ledger.app.events.get(stock_id("SKU", "B"))
            if isinstance(e, SkuLocation.StockTransferredIn)
        }
        # Every acknowledged command is stored ...
        assert set(acked) <= outs
        # ... and nothing is half-applied: each transfer left A and reached B, or neither.
        assert outs == ins
        assert len(outs) < n  # the blocked batch and the ones after it never committed
        legs = [
            c.TransferStock(sku="SKU", from_location="A", to_location="B", quantity=1, reference=f"t{i}")
            for i in range(n)
        ]
        keys = {leg.key: leg.reference for leg in legs}
        known = ledger.app.recorder.select_commands(list(keys))
        assert {keys[k] for k in known} == outs  # the command log agrees
        a, b = ledger.history.stock("SKU", "A"), ledger.history.stock("SKU", "B")
        assert a.on_hand + b.on_hand == n and b.on_hand == len(ins)
        # After the crash a new process carries on from the stored state.
        out = ledger.transfer("SKU", "A", "B", 1, "after-crash")
        assert out["to"]["on_hand"] == len(ins) + 1
