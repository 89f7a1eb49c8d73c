"""The ATS promise as a stateful invariant (hypothesis): for any history of receipts, till sales,
orders, shipments, cancellations and transfers, an order for no more than the ATS a channel
shows can be reserved, and what is reserved never exceeds on hand less unavailable at a
location that does not allow backorders."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from ledger import commands as c
from ledger.errors import LedgerError
from ledger.orders import Order
from ledger.policy import ChannelPolicy, available_to_sell
from tests.unit.test_sourcing import Store

SKUS = ["A", "B"]
POLICIES = {
    "web": ChannelPolicy("web", ("W1", "W2"), safety_stock=1),
    "shop": ChannelPolicy("shop", ("W2", "W3"), buffer_percent=20),
    "all": ChannelPolicy("all", ("W1", "W2", "W3")),
}
LOCATIONS = ["W1", "W2", "W3"]


class PromiseMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.store = Store({ch: list(p.locations) for ch, p in POLICIES.items()})
        self.orders: list[str] = []
        self.n = 0

    def ref(self) -> str:
        self.n += 1
        return str(self.n)

    def send(self, cmd: c.Command) -> bool:
        try:
            self.store.decide(cmd)
        except LedgerError:
            return False
        return True

    def ats(self, channel: str, sku: str) -> int:
        """The channel's ATS, by the formula over the ledger's own levels (what the `ats` read model
        shows once caught up: tests/unit/test_projection_folds.py ties the two)."""
        available = {}
        for loc in POLICIES[channel].locations:
            s = self.store.level(sku, loc)
            if s is not None:
                available[loc] = s.available
        return available_to_sell(POLICIES[channel], sku, available) if available else 0

    @initialize(backorders=st.booleans())
    def seed(self, backorders: bool) -> None:
        for sku in SKUS:
            for loc in LOCATIONS:
                self.send(c.ReceiveStock(sku=sku, location=loc, quantity=2, reference=f"seed-{self.ref()}"))
        if backorders:
            self.send(c.ConfigureBackorders(sku="B", location="W3", allowed=True))

    @rule(sku=st.sampled_from(SKUS), loc=st.sampled_from(LOCATIONS), q=st.integers(1, 6))
    def receive(self, sku: str, loc: str, q: int) -> None:
        self.send(c.ReceiveStock(sku=sku, location=loc, quantity=q, reference=f"po-{self.ref()}"))

    @rule(sku=st.sampled_from(SKUS), loc=st.sampled_from(LOCATIONS), q=st.integers(1, 4))
    def till_sale(self, sku: str, loc: str, q: int) -> None:
        self.send(c.SellDirect(sku=sku, location=loc, quantity=q, reference=f"till-{self.ref()}"))

    @rule(
        sku=st.sampled_from(SKUS),
        a=st.sampled_from(LOCATIONS),
        b=st.sampled_from(LOCATIONS),
        q=st.integers(1, 4),
    )
    def transfer(self, sku: str, a: str, b: str, q: int) -> None:
        if a != b:
            self.send(
                c.TransferStock(
                    sku=sku, from_location=a, to_location=b, quantity=q, reference=f"t-{self.ref()}"
                )
            )

    @rule(channel=st.sampled_from(sorted(POLICIES)), sku=st.sampled_from(SKUS), share=st.floats(0, 1))
    def order_within_ats(self, channel: str, sku: str, share: float) -> None:
        shown = self.ats(channel, sku)
        if shown <= 0:
            return
        q = max(1, int(shown * share))
        order_id = f"o-{self.ref()}"
        ok = self.send(
            c.CaptureOrder(
                order_id=order_id, channel=channel, lines=({"line_id": "1", "sku": sku, "quantity": q},)
            )
        )
        assert ok, f"{channel} showed ATS {shown} of {sku} but an order of {q} was refused"
        self.orders.append(order_id)

    @rule(
        channel=st.sampled_from(sorted(POLICIES)),
        sku=st.sampled_from(SKUS),
        q=st.integers(1, 12),
        partial=st.booleans(),
    )
    def any_order(self, channel: str, sku: str, q: int, partial: bool) -> None:
        order_id = f"o-{self.ref()}"
        if self.send(
            c.CaptureOrder(
                order_id=order_id,
                channel=channel,
                lines=({"line_id": "1", "sku": sku, "quantity": q},),
                allow_partial=partial,
            )
        ):
            self.orders.append(order_id)

    @precondition(lambda self: self.orders)
    @rule(pick=st.integers(0, 1000), q=st.integers(1, 6))
    def ship(self, pick: int, q: int) -> None:
        o = self.store.order(self.orders[pick % len(self.orders)])
        line = o.lines["1"]
        q = min(q, Order.held_quantity(line))
        if q > 0:
            self.send(
                c.ShipOrder(
                    order_id=o.order_id,
                    shipment_id=f"s-{self.ref()}",
                    lines=({"line_id": "1", "quantity": q},),
                )
            )

    @precondition(lambda self: self.orders)
    @rule(pick=st.integers(0, 1000))
    def cancel(self, pick: int) -> None:
        self.send(c.CancelOrder(order_id=self.orders[pick % len(self.orders)], reason="customer"))

    @invariant()
    def reserved_never_exceeds_what_is_there(self) -> None:
        held: dict[tuple[str, str], int] = {}
        for order_id in self.orders:
            line = self.store.order(order_id).lines["1"]
            assert line["backordered"] + Order.held_quantity(line) <= Order.open_quantity(line)
            for loc, n in Order.allocations_of(line).items():
                held[(line["sku"], loc)] = held.get((line["sku"], loc), 0) + n
        for sku in SKUS:
            for loc in LOCATIONS:
                s = self.store.level(sku, loc)
                if s is None:
                    continue
                assert s.reserved == held.get((sku, loc), 0)
                if not s.allow_backorder:
                    assert s.reserved <= s.on_hand - s.unavailable, f"{sku} at {loc} over-reserved"


PromiseMachine.TestCase.settings = settings(
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    max_examples=int(os.environ.get("LEDGER_STATEFUL_EXAMPLES", "200")),
    stateful_step_count=30,
)
TestAtsPromise = PromiseMachine.TestCase
