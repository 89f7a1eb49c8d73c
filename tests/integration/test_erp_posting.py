"""Posting to the ERP through the durable queue, against a real HTTP server that can go into maintenance."""

from __future__ import annotations

import threading
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from adapters.config import Settings
from adapters.erp import CircuitBreaker, ErpFeeder, ErpPoster, HttpErp
from api.app import create_app
from bootstrap import Container, bootstrap
from ledger import commands as c
from ledger.ports import StaticLocations


class FakeErp:
    """An ERP over HTTP. `script` lists the answer mode of the first requests (`down`: 503, `slow`:
    answers after the client gave up); after the script every request is accepted. Documents are
    created once per Idempotency-Key, as a careful ERP does."""

    def __init__(self, script: list[str]) -> None:
        self.script = list(script)
        self.lock = threading.Lock()
        self.documents: dict[str, dict[str, Any]] = {}
        self.requests: Counter[str] = Counter()
        self.paths: Counter[str] = Counter()
        erp = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with erp.lock:
                    mode = erp.script.pop(0) if erp.script else "ok"
                    erp.requests[mode] += 1
                if mode == "down":
                    return self._answer(503, {"error": "maintenance"})
                if mode == "slow":
                    time.sleep(0.3)
                key = self.headers.get("Idempotency-Key", "")
                with erp.lock:
                    if key not in erp.documents:
                        erp.documents[key] = {"path": self.path, **orjson.loads(body)}
                        erp.paths[self.path] += 1
                    reference = f"ERP-{list(erp.documents).index(key)}"
                self._answer(201, {"reference": reference})

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = orjson.dumps(body)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client timed out and left

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def container(pg_url: str) -> Iterator[Container]:
    c = bootstrap(Settings(database_url=pg_url), locations=StaticLocations({"online": ["WH1"]}))
    try:
        yield c
    finally:
        c.close()


def ats(container: Container, channel: str, sku: str) -> int:
    """`GET /v1/ats/{channel}/{sku}` once the projection has caught up (the channel's policy set first)."""
    app = create_app(container=container, run_workers=False)
    with TestClient(app, raise_server_exceptions=False) as client:
        admin = {"Authorization": f"Bearer {container.keys.create('admin', ['admin'])[1]}"}
        reader = {"Authorization": f"Bearer {container.keys.create('reader', ['ats:read'])[1]}"}
        r = client.put(
            f"/v1/channels/{channel}", json={"locations": ["WH1"], "safety_stock": 0}, headers=admin
        )
        assert r.status_code == 200, r.text
        projector = container.projector
        projector.catch_up()
        r = client.get(f"/v1/ats/{channel}/{sku}", headers=reader)
        assert r.status_code == 200, r.text
        assert r.json()["position"] == projector.head()
        return int(r.json()["available"])


def poster_for(container: Container, erp: FakeErp) -> ErpPoster:
    return ErpPoster(
        container.ledger,
        container.erp_queue,
        HttpErp(erp.url, timeout=0.1),
        CircuitBreaker(threshold=5, cooldown=0.05),
        backoff_base=0.01,
        backoff_max=0.1,
        batch=200,
    )


def run_until_drained(container: Container, poster: ErpPoster, deadline: float = 60.0) -> None:
    feeder: ErpFeeder = container.erp_feeder
    queue = container.erp_queue
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        while feeder.step():
            pass
        if not poster.step() and queue.depth() == 0:
            return
        time.sleep(0.005)
    raise AssertionError(f"{queue.depth()} documents still waiting")


def test_a_maintenance_window_during_a_burst_of_500_orders_delays_posting_but_loses_and_doubles_nothing(
    container: Container,
) -> None:
    ledger = container.ledger
    ledger.receive("SKU-A", "WH1", 1000, "seed")
    futures = [
        ledger.submit(
            c.CaptureOrder(
                order_id=f"o-{i}", channel="online", lines=({"line_id": "1", "sku": "SKU-A", "quantity": 1},)
            )
        )
        for i in range(500)
    ]
    for f in futures:
        f.result(timeout=60)
    erp = FakeErp(["down"] * 60 + ["slow"] * 4 + ["down"] * 10)
    try:
        run_until_drained(container, poster_for(container, erp))
        # Every order reached the ERP exactly once (one document per Idempotency-Key, one key per order).
        orders = Counter(d["order_id"] for d in erp.documents.values())
        assert len(orders) == 500 and set(orders.values()) == {1}
        assert erp.paths == Counter({"/sales-orders": 500})
        assert erp.requests["down"] == 70 and erp.requests["slow"] == 4
        stages = Counter()
        retried = 0
        for i in range(500):
            order = ledger.history.order(f"o-{i}")
            assert order is not None and order.erp["posted"]
            stages[order.stage] += 1
            retried += order.erp["attempts"] > 1
        assert stages == Counter({"posted": 500})
        assert retried >= 1
        assert container.erp_queue.depth() == 0
        # The stock and the ATS read model (over HTTP) hold exactly the 500 units reserved, once.
        s = ledger.history.stock("SKU-A", "WH1")
        assert s is not None and (s.on_hand, s.reserved) == (1000, 500)
        assert ats(container, "online", "SKU-A") == 500
        # A second feeder over the same log (which now also holds the channel policy's events)
        # queues nothing again.
        ErpFeeder(ledger, container.erp_queue).step()
        assert len(container.erp_queue.rows()) == 500
        assert container.erp_queue.depth() == 0
    finally:
        erp.close()


def test_a_failed_attempt_shows_on_the_order_with_its_count_until_it_is_posted(container: Container) -> None:
    ledger = container.ledger
    ledger.receive("SKU-A", "WH1", 5, "seed")
    ledger.capture_order("o-1", "online", [{"line_id": "1", "sku": "SKU-A", "quantity": 1}])
    erp = FakeErp(["down", "down"])
    try:
        poster = ErpPoster(
            ledger,
            container.erp_queue,
            HttpErp(erp.url, timeout=1.0),
            CircuitBreaker(threshold=100),
            backoff_base=0.0,
            backoff_max=0.0,
        )
        container.erp_feeder.step()
        poster.step()
        order = ledger.history.order("o-1")
        assert order is not None and order.stage == "reserved"
        assert order.erp == {"posted": False, "attempts": 1, "last_error": "HTTP 503", "reference": None}
        poster.step()
        poster.step()
        order = ledger.history.order("o-1")
        assert order is not None and order.stage == "posted"
        assert order.erp["attempts"] == 3 and order.erp["reference"] == "ERP-0"
    finally:
        erp.close()


def test_a_settled_refund_is_posted_as_a_credit_memo(container: Container) -> None:
    ledger = container.ledger
    ledger.receive("SKU-A", "WH1", 5, "seed")
    ledger.capture_order("o-9", "online", [{"line_id": "1", "sku": "SKU-A", "quantity": 2}])
    ledger.execute(c.RecordRefund(order_id="o-9", refund_id="r1", amount="12.50", currency="EUR"))
    ledger.execute(c.SettleRefund(order_id="o-9", refund_id="r1", settlement_reference="psp-77"))
    erp = FakeErp([])
    try:
        run_until_drained(container, poster_for(container, erp))
        memos = [d for d in erp.documents.values() if d["path"] == "/credit-memos"]
        assert memos == [
            {
                "path": "/credit-memos",
                "order_id": "o-9",
                "refund_id": "r1",
                "amount": "12.50",
                "currency": "EUR",
                "lines": [],
                "settlement_reference": "psp-77",
                "position": memos[0]["position"],
            }
        ]
        assert erp.paths == Counter({"/sales-orders": 1, "/credit-memos": 1})
    finally:
        erp.close()


def test_with_no_erp_configured_postings_wait_in_their_queue(container: Container) -> None:
    ledger = container.ledger
    ledger.receive("SKU-A", "WH1", 5, "seed")
    ledger.capture_order("o-2", "online", [{"line_id": "1", "sku": "SKU-A", "quantity": 1}])
    assert container.erp_poster.gateway is None  # LEDGER_ERP_URL unset
    container.erp_feeder.step()
    assert container.erp_poster.step() == 0
    assert container.erp_queue.depth() == 1
    order = ledger.history.order("o-2")
    assert order is not None and order.erp["attempts"] == 0


def test_the_breaker_opens_after_repeated_failures_and_lets_a_trial_through_after_cooldown() -> None:
    now = [0.0]
    b = CircuitBreaker(threshold=3, cooldown=10, clock=lambda: now[0])
    for _ in range(3):
        assert b.allow()
        b.failure()
    assert not b.allow()
    now[0] = 10.0
    assert b.allow() and b.state == "half-open"
    b.failure()
    assert not b.allow()
    now[0] = 20.0
    assert b.allow()
    b.success()
    assert b.state == "closed" and b.allow()
