"""The ATS promise as a stateful invariant (hypothesis): for any history of receipts, till sales,
orders, shipments, cancellations, transfers (immediate, or dispatched then received) and
advance shipping notices, an order for no more than the ATS a channel shows can be reserved,
and what is reserved never exceeds on hand less unavailable, plus the incoming units the
location's channels count (`include_incoming_days`), at a location that does not allow
backorders.

The incoming units are the test's own tally of lots (each `[due, units]`, landed earliest due
first), not the aggregate's: a lot counts for a channel when it was announced due within the
channel's window."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from ledger import commands as c
from ledger.errors import LedgerError
from ledger.orders import Order
from ledger.policy import DAY, ChannelPolicy, available_to_sell
from tests.unit.test_sourcing import Store

SKUS = ["A", "B"]
POLICIES = {
    "web": ChannelPolicy("web", ("W1", "W2"), safety_stock=1),
    "shop": ChannelPolicy("shop", ("W2", "W3"), buffer_percent=20, include_incoming_days=2),
    "all": ChannelPolicy("all", ("W1", "W2", "W3")),
    "ato": ChannelPolicy("ato", ("W1", "W3"), include_incoming_days=5),
}
LOCATIONS = ["W1", "W2", "W3"]


class PromiseMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.store = Store(
            {ch: list(p.locations) for ch, p in POLICIES.items()},
            {ch: p.include_incoming_days for ch, p in POLICIES.items()},
        )
        self.orders: list[str] = []
        self.n = 0
        # the test's tally of incoming lots per (sku, location): [due, units, announced due in days]
        self.lots: dict[tuple[str, str], list[list[object]]] = {}

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
        """The channel's ATS, by the formula over the ledger's own levels and the test's lots (what
        the `ats` read model shows once caught up: tests/unit/test_projection_folds.py and
        tests/unit/test_incoming_ats.py tie the two)."""
        available = {}
        incoming = {}
        for loc in POLICIES[channel].locations:
            s = self.store.level(sku, loc)
            if s is not None:
                available[loc] = s.available
                # [due, units, lead]: announced `days` out, its lead is just under that
                incoming[loc] = [[due, n, days * DAY - 1] for due, n, days in self.lots.get((sku, loc), [])]
        return available_to_sell(POLICIES[channel], sku, available, incoming) if available else 0

    def counted(self, sku: str, loc: str) -> int:
        """The incoming units at a location that its channels' widest window counts."""
        window = max((p.include_incoming_days for p in POLICIES.values() if loc in p.locations), default=0)
        return sum(int(n) for _, n, days in self.lots.get((sku, loc), []) if 0 < window and int(days) <= window)

    def announce(self, sku: str, loc: str, q: int, days: int) -> None:
        lots = self.lots.setdefault((sku, loc), [])
        lots.append([datetime.now(UTC) + timedelta(days=days), q, days])
        lots.sort(key=lambda x: x[0])  # type: ignore[arg-type, return-value]  # a moment

    def land(self, sku: str, loc: str, q: int) -> None:
        left, kept = q, []
        for due, n, days in self.lots.get((sku, loc), []):
            taken = min(left, int(n))  # type: ignore[call-overload]  # units
            left -= taken
            if int(n) > taken:  # type: ignore[call-overload]  # units
                kept.append([due, int(n) - taken, days])  # type: ignore[call-overload]  # units
        self.lots[(sku, loc)] = kept

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

    @rule(
        sku=st.sampled_from(SKUS),
        loc=st.sampled_from(LOCATIONS),
        q=st.integers(1, 6),
        days=st.sampled_from([1, 2, 5, 30]),
    )
    def advance_shipping_notice(self, sku: str, loc: str, q: int, days: int) -> None:
        due = datetime.now(UTC) + timedelta(days=days)
        if self.send(c.ExpectStock(sku=sku, location=loc, quantity=q, reference=f"asn-{self.ref()}", due_at=due)):
            self.announce(sku, loc, q, days)

    @rule(sku=st.sampled_from(SKUS), loc=st.sampled_from(LOCATIONS), q=st.integers(1, 6))
    def receive_announced(self, sku: str, loc: str, q: int) -> None:
        ref = f"asn-po-{self.ref()}"
        if self.send(c.ReceiveStock(sku=sku, location=loc, quantity=q, reference=ref, expected=True)):
            self.land(sku, loc, q)

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

    @rule(
        sku=st.sampled_from(SKUS),
        a=st.sampled_from(LOCATIONS),
        b=st.sampled_from(LOCATIONS),
        q=st.integers(1, 4),
        arrives=st.booleans(),
    )
    def transfer_in_transit(self, sku: str, a: str, b: str, q: int, arrives: bool) -> None:
        """Dispatched (incoming at the destination, due at once), then perhaps received."""
        if a == b:
            return
        ref = f"t-{self.ref()}"
        move = {"sku": sku, "from_location": a, "to_location": b, "quantity": q, "reference": ref}
        if not self.send(c.TransferStock(**move, status="dispatched")):
            return
        self.lots.setdefault((sku, b), []).append([datetime.now(UTC), q, 0])
        self.lots[(sku, b)].sort(key=lambda x: x[0])  # type: ignore[arg-type, return-value]  # a moment
        if arrives and self.send(c.TransferStock(**move, status="received")):
            self.land(sku, b, q)

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
                assert s.incoming == sum(int(n) for _, n, _ in self.lots.get((sku, loc), []))  # type: ignore[call-overload]  # units
                if not s.allow_backorder:
                    cover = s.on_hand - s.unavailable + self.counted(sku, loc)
                    assert s.reserved <= cover, f"{sku} at {loc} over-reserved"


PromiseMachine.TestCase.settings = settings(
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    max_examples=int(os.environ.get("LEDGER_STATEFUL_EXAMPLES", "200")),
    stateful_step_count=30,
)
TestAtsPromise = PromiseMachine.TestCase
