"""Property: over random order histories (orders held by their checks or not, releases, partial
shipments, cancellations, returns, refunds pending or confirmed, ERP outages between steps), the
ERP's documents replayed in order give the ledger's order; an order cancelled before its sales
order was accepted never reaches the ERP; a held order reaches it only once released; the credit
memos sum to the confirmed refunds."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from decimal import Decimal

import pytest
from erpstandin import ErpStandIn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.config import Settings
from adapters.erp import CircuitBreaker, ErpPoster, HttpErp
from bootstrap import Container, bootstrap
from ledger import commands as c
from ledger.errors import LedgerError
from ledger.ports import StaticLocations

COUNTER = itertools.count()

step = st.one_of(
    st.tuples(st.just("ship"), st.sampled_from(["1", "2"]), st.integers(1, 3)),
    st.tuples(st.just("cancel"), st.sampled_from(["1", "2"]), st.integers(1, 3)),
    st.tuples(st.just("cancel-all"), st.just(""), st.just(0)),
    st.tuples(st.just("return"), st.sampled_from(["1", "2"]), st.integers(1, 2)),
    st.tuples(st.just("refund"), st.sampled_from(["pending", "confirmed"]), st.integers(1, 9999)),
    st.tuples(st.just("post"), st.just(""), st.integers(0, 3)),  # post now, after that many 503s
    st.tuples(st.just("release"), st.just(""), st.just(0)),  # an operator releases a held order
)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Container, ErpStandIn, ErpPoster]]:
    url = f"sqlite:///{tmp_path_factory.mktemp('erp')}/ledger.db"
    settings = Settings(database_url=url, hold_orders_above="EUR=100")  # orders above 100 EUR are held
    container = bootstrap(settings, locations=StaticLocations({"online": ["WH1"]}))
    erp = ErpStandIn()
    poster = ErpPoster(
        container.ledger,
        container.erp_queue,
        HttpErp(erp.url, timeout=5.0),
        CircuitBreaker(threshold=10_000),
        backoff_base=0.0,
        backoff_max=0.0,
        concurrency=2,
        wait=0.05,
        hold_recheck=3600.0,  # looked at again when the feeder reads its release or cancellation
    )
    container.ledger.receive("SKU-A", "WH1", 1_000_000, "seed")
    try:
        yield container, erp, poster
    finally:
        poster.close()
        erp.close()
        container.close()


def held_waiting(container: Container) -> int:
    """Documents waiting behind the sales order of a held order (they wait for its release)."""
    rows = [r for r in container.erp_queue.rows() if r["status"] == "pending"]
    orders = [container.ledger.history.order(r["order_id"]) for r in rows]
    return sum(1 for o in orders if o is not None and o.held)


def post_all(container: Container, poster: ErpPoster) -> None:
    for _ in range(10_000):
        while container.erp_feeder.step():
            pass
        if not poster.step() and not poster.in_flight and container.erp_queue.depth() == held_waiting(container):
            return
    raise AssertionError("documents still waiting")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    quantities=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    held=st.booleans(),
    steps=st.lists(step, max_size=8),
)
def test_the_erps_documents_replay_to_the_ledgers_order(world, quantities, held, steps) -> None:
    container, erp, poster = world
    ledger = container.ledger
    oid = f"p-{next(COUNTER)}"
    lines = [{"line_id": str(i), "sku": "SKU-A", "quantity": q} for i, q in enumerate(quantities, 1)]
    facts = {"total": "500.00" if held else "50.00", "currency": "EUR"}
    ledger.execute(c.CaptureOrder(order_id=oid, channel="online", lines=tuple(lines), facts=facts))
    captured = ledger.history.order(oid)
    assert captured is not None and captured.held is held
    confirmed = Decimal(0)
    cancelled_before_posting = False
    for n, (kind, arg, k) in enumerate(steps):
        order = ledger.history.order(oid)
        try:
            if kind == "ship":
                ledger.ship(oid, f"s{n}", [{"line_id": arg, "quantity": k}])
            elif kind == "cancel":
                ledger.cancel(oid, "customer", [{"line_id": arg, "quantity": k}], reference=f"c{n}")
            elif kind == "cancel-all":
                ledger.cancel(oid, "customer")
            elif kind == "return":
                ledger.return_items(oid, f"r{n}", [{"line_id": arg, "quantity": k, "disposition": "restock"}])
            elif kind == "refund":
                amount = f"{k / 100:.2f}"
                ledger.execute(
                    c.RecordRefund(order_id=oid, refund_id=f"rf{n}", amount=amount, currency="EUR")
                )
                if arg == "confirmed":
                    ledger.execute(
                        c.ConfirmRefund(
                            order_id=oid,
                            refund_id=f"rf{n}",
                            amount=amount,
                            currency="EUR",
                            transaction=f"t{n}",
                        )
                    )
                    confirmed += Decimal(amount)
            elif kind == "release":
                ledger.execute(c.ReleaseOrder(order_id=oid, by="ops"))
            else:
                with erp.lock:
                    erp.script += ["down"] * k
                post_all(container, poster)
        except LedgerError:
            continue  # a step the order's state refuses (nothing left to ship, cancel, return, release)
        after = ledger.history.order(oid)
        assert after is not None and order is not None
        if after.held:  # held and not released: the ERP has heard nothing of the order
            assert erp.story(oid) == []
        if (
            after.whole_cancelled
            and not order.erp["posted"]
            and not any(p == "/sales-orders" for p, _ in erp.story(oid))
        ):
            cancelled_before_posting = True
    post_all(container, poster)
    order = ledger.history.order(oid)
    assert order is not None
    story = erp.story(oid)
    if cancelled_before_posting:
        assert story == [] and order.erp_void
        return
    if order.held:
        assert story == [] and "release" in order.open_work and order.stage == "held"
        return
    # Replay the ERP's documents, in the order it accepted them.
    assert story[0][0] == "/sales-orders"
    replay = {
        x["line_id"]: {"quantity": x["quantity"], "shipped": 0, "cancelled": 0, "returned": 0}
        for x in story[0][1]["lines"]
    }
    memos = Decimal(0)
    for path, doc in story[1:]:
        assert path != "/sales-orders"
        field = {"/deliveries": "shipped", "/returns": "returned", "/credit-memos": None}.get(
            path, "cancelled"
        )
        if field is None:
            memos += Decimal(doc["amount"])
            continue
        for x in doc["lines"]:
            replay[x["line_id"]][field] += x["quantity"]
    ledger_lines = {
        lid: {k: x[k] for k in ("quantity", "shipped", "cancelled", "returned")}
        for lid, x in order.lines.items()
    }
    assert replay == ledger_lines
    assert memos == confirmed
    assert "post" not in order.open_work
