"""A PostgreSQL outage under keyed write load, over HTTP (a real server, requests in parallel):
only 2xx or 503 `storage-unavailable` with Retry-After, never a 500, and every key usable as soon
as the database is back (a 503'd key runs or replays its first answer; none is held "in progress").

The database is a private server (see test_postgres_restart), crashed and started again."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from live_server import serving
from test_postgres_restart import PrivatePostgres, pg_bin_dir, schema_url

from adapters.config import Settings
from adapters.mappings import Lookup
from adapters.persistence.db import OUTAGE_ERRORS
from adapters.persistence.urls import ensure_pg_schema
from adapters.translate import Park
from bootstrap import bootstrap

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def pg() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres(pg_bin_dir())
    try:
        server.init()
        server.start()
        server.create_database()
        yield server
    finally:
        server.destroy()


class Load:
    """Threads posting keyed receipts, each with a key and reference of its own, until stopped."""

    def __init__(self, base: str, token: str, threads: int = 4) -> None:
        self.base, self.token = base, token
        self.answers: list[tuple[str, dict[str, Any], int, httpx.Headers, float]] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def _run(self, n: int) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        with httpx.Client(base_url=self.base, headers=headers, timeout=120) as client:
            i = 0
            while not self.stop.is_set():
                i += 1
                key = f"k-{n}-{i}"
                body = {"sku": f"SKU-{i % 3}", "location": f"L{n}", "quantity": 1, "reference": key}
                r = client.post("/v1/stock/receipts", json=body, headers={"Idempotency-Key": key})
                with self.lock:
                    self.answers.append((key, body, r.status_code, r.headers, time.monotonic()))

    def count(self, since: float, ok: bool) -> int:
        with self.lock:
            return sum(1 for *_, s, _, t in self.answers if t >= since and (200 <= s < 300) == ok)


def wait_for(condition: Any, what: str, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_keyed_writes_through_a_postgres_outage_answer_2xx_or_503_and_keys_stay_usable(
    pg: PrivatePostgres,
) -> None:
    url = schema_url(pg)
    ensure_pg_schema(url)
    container = bootstrap(Settings(database_url=url, run_workers=False))
    token = container.keys.create("load", ["ingest:write"])[1]
    try:
        with serving(container) as base:
            load = Load(base, token)
            start = time.monotonic()
            for t in load.threads:
                t.start()
            wait_for(lambda: load.count(start, ok=True) >= 20, "writes before the outage")
            down = time.monotonic()
            pg.crash()
            wait_for(lambda: load.count(down, ok=False) >= 8, "answers during the outage")
            pg.start()
            up = time.monotonic()
            wait_for(lambda: load.count(up, ok=True) >= 20, "writes after the outage")
            load.stop.set()
            for t in load.threads:
                t.join(120)

            statuses = {s for _, _, s, _, _ in load.answers}
            assert statuses <= {201, 503}, sorted(statuses)
            refused = [(k, b) for k, b, s, _, _ in load.answers if s == 503]
            assert refused
            for _, _, s, headers, _ in load.answers:
                if s == 503:
                    assert headers["retry-after"] and headers["content-type"] == "application/problem+json"
            # Right after: each refused key runs now (or gives its first answer), none is in progress.
            with httpx.Client(
                base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60
            ) as client:
                for key, body in refused:
                    r = client.post("/v1/stock/receipts", json=body, headers={"Idempotency-Key": key})
                    assert r.status_code == 201, (key, r.status_code, r.text)
                for key, body, s, _, _ in load.answers[:5]:
                    r = client.post("/v1/stock/receipts", json=body, headers={"Idempotency-Key": key})
                    assert r.status_code == s and r.headers.get("idempotent-replayed") == "true"
    finally:
        container.close()


def test_a_message_translated_while_the_database_is_down_stays_due_and_is_not_rejected(pg: PrivatePostgres) -> None:
    """A translator's mapping lookup that meets the outage fails the step (the inbox row stays due
    for the next one); it does not reject the message as untranslatable."""
    url = schema_url(pg)
    ensure_pg_schema(url)
    container = bootstrap(Settings(database_url=url, run_workers=False))
    sale = {"txn_id": "T1", "type": "sale", "occurred_at": "2026-11-20T10:00:00Z",
            "lines": [{"item": "I1", "quantity": 1}]}
    body = orjson.dumps({"store": "S1", "batch_id": "B1", "sequence": 1, "transactions": [sale]})
    row = {"id": 1, "source": "pos", "external_id": '["S1", "B1"]', "kind": "batch", "body": body}
    try:
        pg.crash()
        try:
            with pytest.raises(OUTAGE_ERRORS):
                container.intake.translate(row, Lookup(container.mappings, "pos"))
        finally:
            pg.start()
        back = container.intake.translate(row, Lookup(container.mappings, "pos"))
        assert isinstance(back, Park)  # the store is not mapped: parked, as without the outage
    finally:
        container.close()
