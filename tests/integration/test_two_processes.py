"""Two OS processes reserving on one SKU-location through their own writers never oversell."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from adapters.persistence.urls import ledger_env
from ledger.service import Ledger

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[2]

CHILD = r"""
import json, sys
from adapters.persistence.urls import ledger_env
from ledger import commands as c
from ledger.errors import InsufficientStockError
from ledger.service import Ledger

url, sku, name, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
sys.stdin.readline()  # start together
with Ledger(ledger_env(url)) as ledger:
    futures = [ledger.submit(c.Reserve(sku=sku, location="WH", order_id=f"{name}-{i}", line_id="1",
                                       quantity=1)) for i in range(n)]
    granted, refused, other = [], 0, []
    for i, f in enumerate(futures):
        try:
            f.result(timeout=120)
            granted.append(f"{name}-{i}/1")
        except InsufficientStockError:
            refused += 1
        except Exception as e:
            other.append(repr(e))
    print(json.dumps({"granted": granted, "refused": refused, "other": other,
                      "conflicts": ledger.writer.stats["conflicts"]}))
"""


def test_two_processes_reserving_one_sku_never_oversell(pg_url):
    sku = "HOT-" + uuid.uuid4().hex[:6]
    stock, per_process = 300, 250
    with Ledger(ledger_env(pg_url)) as ledger:
        ledger.receive(sku, "WH", stock, "stock")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, pg_url, sku, name, str(per_process)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for name in ("p1", "p2")
    ]
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    results = []
    for p in procs:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert all(not r["other"] for r in results), results
    granted = [rid for r in results for rid in r["granted"]]
    assert len(granted) == len(set(granted))
    with Ledger(ledger_env(pg_url)) as ledger:
        s = ledger.history.stock(sku, "WH")
        assert s is not None
        # Exactly the stock is granted: a refusal only ever came once the store was sold out.
        assert len(granted) == stock == s.reserved
        assert sorted(s.reservations) == sorted(granted)
        assert s.available == 0
        assert sum(r["refused"] for r in results) == 2 * per_process - stock
