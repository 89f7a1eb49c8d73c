"""PostgreSQL goes away under concurrent Shopify webhook deliveries and comes back.

The intake stores concurrent deliveries a batch per transaction (`adapters.batching.GroupCommit`).
The fault: the service runs as its own process on a private PostgreSQL; threads post signed
`orders/create` deliveries, each with its own webhook id; the server is killed (`pg_ctl stop -m
immediate`) and started again once deliveries are refused. The promise: every answer is 200 or
503 with `Retry-After` (as a problem: Shopify retries it), never 500 nor a dropped connection;
every delivery answered 200 is stored; a delivery sent again, as Shopify does, is stored once.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import httpx
import orjson
import pytest
from keyed_load import Service, answered
from private_servers import wait_for

from adapters.config import Settings
from adapters.shopify import sign
from bootstrap import bootstrap

pytestmark = pytest.mark.postgres
SECRET = "outage-secret"


class Deliveries:
    """`threads` Shopify stand-ins posting signed deliveries, recording each answer by phase."""

    def __init__(self, service: Service, threads: int = 8) -> None:
        self.service = service
        self.phase = "before"
        self.answers: dict[str, list[tuple[str, int]]] = {}  # webhook id -> [(phase, status)]
        self.bodies: dict[str, bytes] = {}
        self.strays: list[str] = []
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(threads)]

    def start(self) -> None:
        wait_for(self.service.up, 60, "the service answers")
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)

    def post(self, client: httpx.Client, webhook_id: str, body: bytes) -> int | None:
        headers = {
            "Content-Type": "application/json",
            "X-Shopify-Topic": "orders/create",
            "X-Shopify-Webhook-Id": webhook_id,
            "X-Shopify-Shop-Domain": "outage.myshopify.com",
            "X-Shopify-Hmac-Sha256": sign(body, SECRET),
        }
        r = answered(
            client, "/v1/webhooks/shopify", webhook_id, self.strays, self.lock, content=body, headers=headers
        )
        return None if r is None else r.status_code

    def _run(self, n: int) -> None:
        with httpx.Client(base_url=self.service.base) as client:
            i = 0
            while not self._stop.is_set():
                i += 1
                order = int(f"{n + 1}{i:06d}")
                webhook_id = f"wh-{n}-{i}-{uuid.uuid4().hex[:6]}"
                payload: dict[str, Any] = {
                    "id": order,
                    "name": f"#{order}",
                    "updated_at": "2026-11-27T10:00:00-05:00",
                    "financial_status": "paid",
                    "line_items": [{"id": order * 10, "variant_id": 4242, "sku": None, "quantity": 1}],
                }
                body = orjson.dumps(payload)
                at = self.phase
                status = self.post(client, webhook_id, body)
                if status is None:
                    continue
                with self.lock:
                    self.answers[webhook_id] = [(at, status)]
                    self.bodies[webhook_id] = body
                if status == 503:
                    self._stop.wait(0.05)  # Shopify backs off before it retries

    def count(self, phase: str, status: int) -> int:
        with self.lock:
            return sum(1 for a in self.answers.values() if a[0] == (phase, status))

    def wait(self, cond: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{self.service.log_tail()}"
            time.sleep(0.05)


def test_an_outage_under_concurrent_webhooks_answers_only_200_or_503_and_loses_no_acknowledged_delivery(
    private_pg, tmp_path, monkeypatch
):
    url = f"{private_pg.url}?connect_timeout=3"
    bootstrap(Settings(database_url=url)).close()  # the tables, before the service starts
    monkeypatch.setenv("LEDGER_SHOPIFY_WEBHOOK_SECRETS", SECRET)
    service = Service(url, tmp_path / "service.log")
    load = Deliveries(service)
    try:
        load.start()
        load.wait(lambda: load.count("before", 200) >= 200, 120, "deliveries stored before the outage")
        load.phase = "down"
        private_pg.crash()
        load.wait(lambda: load.count("down", 503) >= 1, 120, "503s during the outage")
        private_pg.start()
        load.phase = "after"
        load.wait(lambda: load.count("after", 200) >= 200, 120, "deliveries stored after the outage")
        load.stop()
        assert load.strays == []
        statuses = {s for answers in load.answers.values() for _, s in answers}
        assert statuses <= {200, 503}, statuses
        acknowledged = {w for w, a in load.answers.items() if a[0][1] == 200}
        c = bootstrap(Settings(database_url=private_pg.url))
        try:
            stored = {r["external_id"] for r in c.db.query("SELECT external_id FROM inbox")}
        finally:
            c.close()
        assert acknowledged <= stored  # nothing answered 200 was lost
        # Shopify delivers every one again (a 503 is retried, a 200 may be repeated): each is
        # answered 200 and stored once.
        with httpx.Client(base_url=service.base) as client:
            for webhook_id, body in load.bodies.items():
                assert load.post(client, webhook_id, body) == 200
        c = bootstrap(Settings(database_url=private_pg.url))
        try:
            rows = c.db.query("SELECT external_id, deliveries FROM inbox")
        finally:
            c.close()
        assert sorted(r["external_id"] for r in rows) == sorted(load.bodies)
        assert all(r["deliveries"] >= 1 for r in rows)
        assert sum(1 for r in rows if r["external_id"] in acknowledged and r["deliveries"] >= 2) == len(
            acknowledged
        )
    finally:
        load.stop()
        service.stop()
    assert "not properly shut down" in private_pg.log_text()
