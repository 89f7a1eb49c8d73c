"""PostgreSQL goes away under keyed HTTP write load and comes back: only 2xx or 503, and keys
usable right after.

The fault: the ledger's HTTP service runs as its own process on a private PostgreSQL; threads
post receipts, each with its own `Idempotency-Key`. The server is killed (`pg_ctl stop -m
immediate`: no checkpoint, WAL replay at the next start) and started again once every writer has
been refused. The promise (checked by `KeyedLoad.check`): every answer is 201 or 503 with
`Retry-After`, every acknowledged receipt is stored, the same process acknowledges writes again,
and each key sent again with its body answers 2xx, never 409.
"""

from __future__ import annotations

import time

import pytest
from keyed_load import KeyedLoad, Service, ingest_token

pytestmark = pytest.mark.postgres


def test_an_outage_under_keyed_load_answers_only_2xx_or_503_and_leaves_every_key_usable(private_pg, tmp_path):
    url = f"{private_pg.url}?connect_timeout=3"
    service = Service(url, tmp_path / "service.log")
    load = KeyedLoad(service, ingest_token(url))
    try:
        load.start()
        load.wait(lambda: load.count("before") >= 150, 120, "receipts acknowledged before the outage")
        load.phase = "down"
        private_pg.crash()
        load.wait(lambda: load.count("down", ok=False) >= 1, 120, "503s during the outage")
        private_pg.start()
        back_at = time.monotonic()
        load.phase = "after"
        load.wait(lambda: load.count("after") >= 150, 120, "receipts acknowledged after the outage")
        load.stop()
        figures = load.check(private_pg.url)
    finally:
        load.stop()
        service.stop()
    assert "not properly shut down" in private_pg.log_text()  # it crashed and replayed its WAL
    assert load.resumed_at is not None
    print(
        f"\n{figures['sent']} keyed receipts: {figures['acknowledged']} acknowledged at first, "
        f"{figures['refused']} answered 503 during the outage; first write acknowledged "
        f"{load.resumed_at - back_at:.2f} s after the server was back"
    )
