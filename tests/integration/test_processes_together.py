"""Two API processes and two workers, started together on an empty database, with an ERP that has
an outage: each ERP document is accepted once, each inbox row is applied once with its right
status, exactly one worker runs the leader's jobs, and no process fails.

The topology of `docker-compose.ha.yml` on one machine: `ledger serve --no-workers` twice and
`ledger worker` twice, real OS processes of this checkout, on one fresh PostgreSQL schema that
none of them has seen (they race to create it). The ERP is `tests/erpstandin.py`, a real HTTP
server, answering its first POSTs 503 (maintenance) and everything after. Orders, shipments,
Shopify webhooks (with redeliveries) and POS batches go to both API processes at once.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from erpstandin import ErpStandIn
from private_servers import free_port, wait_for

from adapters.channels import ChannelPolicies
from adapters.erp import ErpQueue
from adapters.inbox import Inbox, Status
from adapters.keys import ApiKeys
from adapters.persistence.db import Database
from adapters.shopify import sign

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[2]
SECRET = "shpss_processes"
SHOP = "together.myshopify.com"
ORDERS, SHIPPED = 16, 8  # orders through the API; the even ones shipped
WEBHOOK_ORDERS = 12  # Shopify orders; every third redelivered under a new id, every fourth resent
BATCHES = 10  # POS batches of one store, out of order, one of them sent twice
OUTAGE = 20  # the ERP's first POSTs answer 503


class Process:
    """One `ledger ...` process of this checkout, its output in a log file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], logs: Path) -> None:
        self.name = name
        self.log = logs / f"{name}.log"
        self.out = open(self.log, "wb")  # noqa: SIM115  # closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", *args], cwd=ROOT, env=env, stdout=self.out, stderr=subprocess.STDOUT
        )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        assert self.proc.poll() is None, f"{self.name} exited ({self.proc.returncode}):\n{self.text()[-3000:]}"
        return True

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.out.close()
        return self.proc.returncode


class Api(Process):
    def __init__(self, name: str, env: dict[str, str], logs: Path) -> None:
        self.port = free_port()
        super().__init__(name, ["serve", "--no-workers", "--port", str(self.port)], env, logs)
        self.base = f"http://127.0.0.1:{self.port}"

    def ready(self) -> bool:
        self.alive()
        try:
            return httpx.get(f"{self.base}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False


class Worker(Process):
    def __init__(self, name: str, env: dict[str, str], logs: Path) -> None:
        self.port = free_port()
        super().__init__(name, ["worker", "--metrics-port", str(self.port)], env, logs)

    def leads(self) -> bool | None:
        """Whether it runs the ERP feeder as the leader (None while its metrics do not answer)."""
        self.alive()
        try:
            text = httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=2).text
        except httpx.HTTPError:
            return None
        found = re.search(r'^ledger_leader\{task="erp-feeder"\} (\S+)$', text, re.M)
        return None if found is None else float(found.group(1)) == 1.0


@pytest.fixture
def erp() -> Iterator[ErpStandIn]:
    s = ErpStandIn(["down"] * OUTAGE)
    yield s
    s.close()


@pytest.fixture
def fleet(pg_url: str, erp: ErpStandIn, tmp_path: Path) -> Iterator[tuple[list[Api], list[Worker]]]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "LEDGER_DATABASE_URL": pg_url,
        "LEDGER_ERP_URL": erp.url,
        "LEDGER_SHOPIFY_WEBHOOK_SECRETS": SECRET,
        "LEDGER_LOG_LEVEL": "WARNING",
    }
    env.pop("LEDGER_NATS_URL", None)
    # All four at once, on a schema that does not exist yet.
    procs: list[Process] = [Api("api-1", env, tmp_path), Api("api-2", env, tmp_path)]
    procs += [Worker("worker-1", env, tmp_path), Worker("worker-2", env, tmp_path)]
    apis = [p for p in procs if isinstance(p, Api)]
    workers = [p for p in procs if isinstance(p, Worker)]
    try:
        yield apis, workers
    finally:
        for p in procs:
            p.stop()


class Client:
    """Both API processes, each request to the one it is told."""

    def __init__(self, apis: list[Api], tokens: dict[str, str]) -> None:
        self.clients = [httpx.Client(base_url=a.base, timeout=60) for a in apis]
        self.tokens = tokens
        self.answers: list[tuple[str, int]] = []  # (path, status) of every request

    def send(self, n: int, method: str, path: str, scope: str = "ingest:write", **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.tokens[scope]}", **kw.pop("headers", {})}
        r = self.clients[n % 2].request(method, path, headers=headers, **kw)
        self.answers.append((path, r.status_code))
        return r

    def webhook(self, n: int, payload: dict[str, Any], webhook_id: str) -> httpx.Response:
        body = orjson.dumps(payload)
        headers = {
            "X-Shopify-Topic": "orders/create",
            "X-Shopify-Shop-Domain": SHOP,
            "X-Shopify-Webhook-Id": webhook_id,
            "X-Shopify-Hmac-Sha256": sign(body, SECRET),
            "Content-Type": "application/json",
        }
        r = self.clients[n % 2].post("/v1/webhooks/shopify", content=body, headers=headers)
        self.answers.append(("/v1/webhooks/shopify", r.status_code))
        return r

    def close(self) -> None:
        for c in self.clients:
            c.close()


def shopify_order(order_id: int) -> dict[str, Any]:
    return {
        "id": order_id,
        "name": f"#{order_id}",
        "created_at": "2026-11-20T10:00:00-05:00",
        "updated_at": "2026-11-20T10:00:00-05:00",
        "financial_status": "paid",
        "currency": "USD",
        "line_items": [{"id": order_id * 10, "variant_id": 701, "sku": None, "quantity": 1}],
    }


def pos_batch(seq: int) -> dict[str, Any]:
    sale = {"txn_id": f"T{seq}", "type": "sale", "occurred_at": "2026-11-20T10:00:00Z",
            "lines": [{"item": "ITEM-1", "quantity": 1}]}
    return {"store": "P001", "batch_id": f"B{seq}", "sequence": seq, "transactions": [sale]}


def setup(client: Client) -> None:
    """The channel, the mappings and the stock, through API process 1."""
    admin = "admin"
    r = client.send(0, "PUT", "/v1/channels/online", admin, json={"locations": ["WH1"], "safety_stock": 0})
    assert r.status_code == 200, r.text
    set_at = time.monotonic()
    for source, kind, external, canonical in [
        ("shopify", "sku", "701", "SKU-B"), ("pos", "location", "P001", "STORE1"), ("pos", "sku", "ITEM-1", "SKU-A"),
    ]:
        r = client.send(0, "PUT", f"/v1/mappings/{source}/{kind}/{external}", admin, json={"canonical": canonical})
        assert r.status_code == 200, r.text
    for sku, location, quantity in [("SKU-A", "WH1", 100), ("SKU-B", "WH1", 100), ("SKU-A", "STORE1", 50)]:
        body = {"sku": sku, "location": location, "quantity": quantity, "reference": f"seed-{sku}-{location}"}
        r = client.send(0, "POST", "/v1/stock/receipts", json=body)
        assert r.status_code == 201, r.text
    # API process 2 reads the new policy once its cached copy is older than the cache's lifetime.
    wait_for(lambda: time.monotonic() - set_at > ChannelPolicies.CACHE_SECONDS, 10, "policy caches refreshed")


def traffic(client: Client) -> None:
    """Everything at once, spread over both API processes."""

    def order(i: int) -> None:
        body = {"order_id": f"o-{i}", "channel": "online", "lines": [{"line_id": "1", "sku": "SKU-A", "quantity": 1}]}
        key = {"Idempotency-Key": f"order-{i}"}
        first = client.send(i, "POST", "/v1/orders", json=body, headers=key)
        assert first.status_code == 201, first.text
        if i % 4 == 0:  # the client retries on the other process: the first answer, nothing appended
            again = client.send(i + 1, "POST", "/v1/orders", json=body, headers=key)
            assert (again.status_code, again.json()) == (201, first.json())
        if i % 2 == 0:
            ship = {"shipment_id": f"s-{i}", "lines": [{"line_id": "1", "quantity": 1}]}
            r = client.send(i + 1, "POST", f"/v1/orders/o-{i}/shipments", json=ship)
            assert r.status_code in (200, 201), r.text

    def webhook(j: int) -> None:
        oid = 5_000_000 + j
        r = client.webhook(j, shopify_order(oid), f"wh-{oid}")
        assert r.status_code == 200, r.text
        if j % 4 == 0:  # the same delivery again: the same row
            r = client.webhook(j + 1, shopify_order(oid), f"wh-{oid}")
            assert r.status_code == 200 and r.json()["duplicate"] is True, r.text
        if j % 3 == 0:  # a real redelivery: a new webhook id
            r = client.webhook(j + 1, shopify_order(oid), f"wh-{oid}-again")
            assert r.status_code == 200, r.text

    def batch(seq: int) -> None:
        r = client.send(seq, "POST", "/v1/pos/batches", json=pos_batch(seq))
        assert r.status_code == 200, r.text

    sequences = list(range(1, BATCHES + 1)) + [3]
    random.Random(16).shuffle(sequences)
    jobs = [(order, i) for i in range(ORDERS)] + [(webhook, j) for j in range(WEBHOOK_ORDERS)]
    jobs += [(batch, s) for s in sequences]
    random.Random(61).shuffle(jobs)
    with ThreadPoolExecutor(max_workers=8) as pool:
        for f in [pool.submit(fn, arg) for fn, arg in jobs]:
            f.result()


@pytest.mark.timeout(600)  # four processes start on a loaded machine; the ERP's breaker cools down 30 s
def test_two_apis_and_two_workers_on_an_empty_database_post_each_document_once_and_apply_each_message_once(
    fleet: tuple[list[Api], list[Worker]], erp: ErpStandIn, pg_url: str
) -> None:
    apis, workers = fleet
    for api in apis:
        wait_for(api.ready, 120, f"{api.name} answers /readyz")
    for w in workers:
        wait_for(lambda w=w: w.leads() is not None, 120, f"{w.name} serves its metrics")
    wait_for(lambda: [w.leads() for w in workers].count(True) == 1, 60, "one worker leads")

    db = Database(pg_url, pool_size=2)
    inbox, queue = Inbox(db), ErpQueue(db)
    keys = ApiKeys(db)
    tokens = {s: keys.create(f"together-{s}", [s])[1] for s in ("admin", "ingest:write", "audit:read")}
    client = Client(apis, tokens)
    try:
        setup(client)
        traffic(client)

        documents = ORDERS + SHIPPED + WEBHOOK_ORDERS
        erp.wait_for(lambda e: len(e.documents) >= documents, timeout=240)
        wait_for(lambda: queue.depth() == 0, 60, "the ERP queue drained")
        final = {Status.APPLIED, Status.DUPLICATE, Status.REJECTED, Status.PARKED}
        wait_for(lambda: {r["status"] for r in inbox.list(limit=1000)} <= final, 120, "every message applied")

        # The ERP: the outage was seen, then each document was accepted exactly once.
        assert erp.requests["down"] == OUTAGE
        assert len(erp.documents) == documents
        assert set(erp.accepted.values()) == {1}, [k for k, n in erp.accepted.items() if n > 1]
        assert erp.paths == Counter({"/sales-orders": ORDERS + WEBHOOK_ORDERS, "/deliveries": SHIPPED})
        for i in range(0, ORDERS, 2):  # each order's story in order
            assert [p for p, _ in erp.story(f"o-{i}")] == ["/sales-orders", "/deliveries"]

        # The inbox: one row per delivery id; the first delivery of each order applied, a new
        # delivery of the same order a duplicate; each POS batch applied once.
        rows = inbox.list(limit=1000)
        shopify = [r for r in rows if r["source"] == "shopify"]
        pos = [r for r in rows if r["source"] == "pos"]
        assert len(shopify) == WEBHOOK_ORDERS + len(range(0, WEBHOOK_ORDERS, 3))
        for j in range(WEBHOOK_ORDERS):
            oid = 5_000_000 + j
            mine = sorted((r for r in shopify if r["external_id"].startswith(f"wh-{oid}")), key=lambda r: r["id"])
            assert [r["status"] for r in mine] == ["applied"] + ["duplicate"] * (j % 3 == 0), (j, mine)
            first = next(r for r in mine if r["external_id"] == f"wh-{oid}")
            assert first["status"] == "applied" and first["deliveries"] == (2 if j % 4 == 0 else 1)
        assert len(pos) == BATCHES and {r["status"] for r in pos} == {"applied"}, pos
        assert sorted(r["deliveries"] for r in pos) == [1] * (BATCHES - 1) + [2]
        assert {r["attempts"] for r in rows} == {1}, [(r["id"], r["status"], r["attempts"]) for r in rows]

        # The stock moved once per fact, read through API process 2.
        def stock(sku: str, location: str) -> tuple[int, int]:
            r = client.send(1, "GET", f"/v1/stock/{sku}/{location}", "audit:read")
            assert r.status_code == 200, r.text
            return r.json()["on_hand"], r.json()["reserved"]

        assert stock("SKU-A", "WH1") == (100 - SHIPPED, ORDERS - SHIPPED)
        assert stock("SKU-B", "WH1") == (100, WEBHOOK_ORDERS)
        assert stock("SKU-A", "STORE1") == (50 - BATCHES, 0)

        # No 5xx anywhere; every process still running, one worker the leader, no traceback logged.
        assert not [a for a in client.answers if a[1] >= 500], client.answers
        assert [w.leads() for w in workers].count(True) == 1
        for p in [*apis, *workers]:
            assert p.alive() and "Traceback" not in p.text(), f"{p.name}:\n{p.text()[-3000:]}"
    finally:
        client.close()
        db.close()
    for p in [*apis, *workers]:  # uvicorn ends by re-raising the SIGTERM it handled
        assert p.stop() in (0, -signal.SIGTERM), f"{p.name} stopped uncleanly:\n{p.text()[-3000:]}"
        assert "Traceback" not in p.text(), f"{p.name}:\n{p.text()[-3000:]}"
