"""Posting the order story to the ERP through the durable queue, against a real HTTP ERP stand-in
that can go into maintenance, hold a document in flight, and be posted to by several workers."""

from __future__ import annotations

import threading
import time
import warnings
from collections import Counter
from collections.abc import Iterator

import pytest
from erpstandin import ErpStandIn

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from adapters.config import Settings
from adapters.erp import CircuitBreaker, ErpFeeder, ErpPoster, HttpErp
from api.app import create_app
from bootstrap import Container, bootstrap
from ledger import commands as c
from ledger.ports import StaticLocations


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


def poster_for(container: Container, erp: ErpStandIn, timeout: float = 10.0) -> ErpPoster:
    """A poster with fast backoff. `timeout` is the client's: generous, so that a busy machine
    never turns an accepted document into a timeout and a second request; a test of answers
    that come too late passes one shorter than the stand-in's `slow_seconds`."""
    return ErpPoster(
        container.ledger,
        container.erp_queue,
        HttpErp(erp.url, timeout=timeout),
        CircuitBreaker(threshold=5, cooldown=0.05),
        backoff_base=0.01,
        backoff_max=0.1,
        batch=200,
    )


def run_until_drained(container: Container, poster: ErpPoster, deadline: float = 60.0) -> None:
    feeder: ErpFeeder = container.erp_feeder
    queue = container.erp_queue
    end = time.monotonic() + deadline
    try:
        while time.monotonic() < end:
            while feeder.step():
                pass
            if not poster.step() and queue.depth() == 0 and not poster.in_flight:
                return
            time.sleep(0.005)
    finally:
        poster.close()
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
    erp = ErpStandIn(["down"] * 60 + ["slow"] * 4 + ["down"] * 10, slow_seconds=1.0)
    try:
        run_until_drained(container, poster_for(container, erp, timeout=0.2))
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
    erp = ErpStandIn(["down", "down"])
    try:
        poster = ErpPoster(
            ledger,
            container.erp_queue,
            HttpErp(erp.url, timeout=10.0),
            CircuitBreaker(threshold=100),
            backoff_base=0.0,
            backoff_max=0.0,
        )
        container.erp_feeder.step()
        poster.step()
        poster.drain()
        order = ledger.history.order("o-1")
        assert order is not None and order.stage == "reserved"
        assert {k: order.erp[k] for k in ("posted", "attempts", "last_error", "reference")} == {
            "posted": False,
            "attempts": 1,
            "last_error": "HTTP 503",
            "reference": None,
        }
        assert order.erp["documents"]["sales-order"]["last_error"] == "HTTP 503"
        assert container.erp_queue.rows("o-1")[0]["last_error"] == "HTTP 503"
        poster.step()
        poster.drain()
        poster.step()
        poster.close()
        order = ledger.history.order("o-1")
        assert order is not None and order.stage == "posted"
        assert order.erp["attempts"] == 3 and order.erp["reference"] == "ERP-0"
    finally:
        erp.close()


def test_a_confirmed_refund_is_posted_as_a_credit_memo_with_its_amount_and_settles(
    container: Container,
) -> None:
    ledger = container.ledger
    ledger.receive("SKU-A", "WH1", 5, "seed")
    ledger.capture_order("o-9", "online", [{"line_id": "1", "sku": "SKU-A", "quantity": 2}])
    ledger.execute(c.RecordRefund(order_id="o-9", refund_id="r1", amount="12.50", currency="EUR"))
    ledger.execute(
        c.ConfirmRefund(order_id="o-9", refund_id="r1", amount="12.50", currency="EUR", transaction="t-77")
    )
    erp = ErpStandIn([])
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
                "transaction": "t-77",
                "position": memos[0]["position"],
            }
        ]
        assert erp.paths == Counter({"/sales-orders": 1, "/credit-memos": 1})
        order = ledger.history.order("o-9")
        assert order is not None
        refund = order.refunds["r1"]
        assert (refund["status"], refund["settlement"]) == ("settled", "ERP-1")
        assert order.erp["documents"]["credit-memo:r1"]["reference"] == "ERP-1"
    finally:
        erp.close()


def test_the_erp_is_told_the_whole_story_of_an_order_in_the_order_it_happened(container: Container) -> None:
    ledger = container.ledger
    ledger.receive("SKU-A", "WH1", 10, "seed")
    lines = [{"line_id": "1", "sku": "SKU-A", "quantity": 3}, {"line_id": "2", "sku": "SKU-A", "quantity": 1}]
    ledger.capture_order("o-s", "online", lines)
    ledger.ship("o-s", "s1", [{"line_id": "1", "quantity": 2}])
    ledger.cancel("o-s", "customer", [{"line_id": "2", "quantity": 1}], reference="c1")
    ledger.return_items("o-s", "r1", [{"line_id": "1", "quantity": 1, "disposition": "damaged"}])
    ledger.execute(c.RecordRefund(order_id="o-s", refund_id="rf", amount="9.99", currency="EUR"))
    ledger.execute(
        c.ConfirmRefund(order_id="o-s", refund_id="rf", amount="9.99", currency="EUR", transaction="t1")
    )
    erp = ErpStandIn(["down", "down"])  # a short outage first: the order waits, nothing jumps ahead
    try:
        run_until_drained(container, poster_for(container, erp))
        story = erp.story("o-s")
        assert [p for p, _ in story] == [
            "/sales-orders",
            "/deliveries",
            "/sales-orders/o-s/cancellations",
            "/returns",
            "/credit-memos",
        ]
        assert story[1][1]["lines"] == [{"line_id": "1", "sku": "SKU-A", "location": "WH1", "quantity": 2}]
        assert story[2][1]["lines"] == [{"line_id": "2", "sku": "SKU-A", "quantity": 1}]
        assert story[3][1]["lines"][0]["disposition"] == "damaged"
        assert (story[4][1]["amount"], story[4][1]["currency"]) == ("9.99", "EUR")
        assert set(erp.accepted.values()) == {1}
        order = ledger.history.order("o-s")
        assert order is not None
        assert {d["reference"] for d in order.erp["documents"].values()} == {f"ERP-{i}" for i in range(5)}
        assert "post" not in order.open_work and "settle-refund" not in order.open_work
        assert order.open_work == ["ship", "invoice"]
    finally:
        erp.close()


def test_an_order_cancelled_while_the_erp_was_down_never_reaches_it_as_a_live_order(
    container: Container,
) -> None:
    ledger = container.ledger
    ledger.receive("SKU-A", "WH1", 10, "seed")
    ledger.capture_order("o-gone", "online", [{"line_id": "1", "sku": "SKU-A", "quantity": 1}])
    ledger.capture_order("o-kept", "online", [{"line_id": "1", "sku": "SKU-A", "quantity": 1}])
    erp = ErpStandIn(["down"] * 20)
    poster = poster_for(container, erp)
    try:
        container.erp_feeder.step()
        poster.step()  # the ERP is in maintenance: both sales orders fail and wait
        poster.drain()
        ledger.cancel("o-gone", "customer")
        ledger.execute(c.RecordRefund(order_id="o-gone", refund_id="rf", amount="5.00", currency="EUR"))
        ledger.execute(
            c.ConfirmRefund(order_id="o-gone", refund_id="rf", amount="5.00", currency="EUR", transaction="t")
        )
        run_until_drained(container, poster)
        assert erp.story("o-gone") == []
        assert [p for p, _ in erp.story("o-kept")] == ["/sales-orders"]
        rows = container.erp_queue.rows("o-gone")
        assert [(r["kind"], r["status"]) for r in rows] == [
            ("sales-order", "voided"),
            ("cancellation", "voided"),
            ("credit-memo", "voided"),
        ]
        order = ledger.history.order("o-gone")
        assert order is not None and order.stage == "cancelled" and order.erp_void
        assert "post" not in order.open_work and "settle-refund" not in order.open_work
    finally:
        erp.close()


def test_a_document_stuck_in_flight_holds_back_only_its_own_order(container: Container) -> None:
    ledger = container.ledger
    ledger.receive("SKU-A", "WH1", 10, "seed")
    for oid in ("o-stuck", "o-b", "o-c"):
        ledger.capture_order(oid, "online", [{"line_id": "1", "sku": "SKU-A", "quantity": 1}])
    ledger.ship("o-stuck", "s1", [{"line_id": "1", "quantity": 1}])
    erp = ErpStandIn([])
    erp.hold("o-stuck")
    poster = ErpPoster(ledger, container.erp_queue, HttpErp(erp.url, timeout=30.0), concurrency=4, wait=0.05)
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            container.erp_feeder.step()
            poster.step()

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    try:
        erp.wait_for(lambda e: "o-stuck" in e.waiting and e.paths["/sales-orders"] == 2)
        assert erp.story("o-stuck") == []  # still in flight, and its delivery waits behind it
        assert {oid for oid in ("o-b", "o-c") if erp.story(oid)} == {"o-b", "o-c"}
        erp.release("o-stuck")
        erp.wait_for(lambda e: e.paths["/deliveries"] == 1)
        assert [p for p, _ in erp.story("o-stuck")] == ["/sales-orders", "/deliveries"]
    finally:
        stop.set()
        worker.join(30)
        poster.close()
        erp.close()


def test_two_workers_after_an_outage_post_every_document_once(pg_url: str) -> None:
    containers = [
        bootstrap(Settings(database_url=pg_url), locations=StaticLocations({"online": ["WH1"]}))
        for _ in range(2)
    ]
    erp = ErpStandIn(["down"] * 38)
    try:
        ledger = containers[0].ledger
        ledger.receive("SKU-A", "WH1", 100, "seed")
        for i in range(19):
            ledger.capture_order(f"o-{i}", "online", [{"line_id": "1", "sku": "SKU-A", "quantity": 1}])
            ledger.ship(f"o-{i}", "s1", [{"line_id": "1", "quantity": 1}])
        containers[0].erp_feeder.step()
        posters = [
            ErpPoster(
                x.ledger,
                x.erp_queue,
                HttpErp(erp.url, timeout=5.0),
                CircuitBreaker(threshold=1000),
                backoff_base=0.01,
                backoff_max=0.02,
                concurrency=4,
                wait=0.05,
            )
            for x in containers
        ]
        queue = containers[0].erp_queue
        errors: list[BaseException] = []

        def run(poster: ErpPoster) -> None:
            try:
                end = time.monotonic() + 60
                while time.monotonic() < end and (queue.depth() or poster.in_flight):
                    poster.step()
            except BaseException as e:  # pragma: no cover - reported below
                errors.append(e)
            finally:
                poster.close()

        threads = [threading.Thread(target=run, args=(p,)) for p in posters]
        for t in threads:
            t.start()
        for t in threads:
            t.join(90)
        assert not errors and queue.depth() == 0
        assert erp.requests["down"] == 38
        assert len(erp.documents) == 38 and set(erp.accepted.values()) == {1}  # nothing posted twice
        for i in range(19):
            assert [p for p, _ in erp.story(f"o-{i}")] == ["/sales-orders", "/deliveries"]
    finally:
        erp.close()
        for x in containers:
            x.close()


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
