"""Random command sequences through the real `Ledger` (group-commit writer + decider on SQLite),
checked against a plain-Python reference model after every step.

After each step: the stored state equals the model's; on hand and unavailable equal the sums of
the stream's movements; reserved equals the sum of open reservations; nothing is oversold at a
location that never allowed backorders; and the ledger holds exactly as many events as the model
expects, so a duplicated command appended nothing and answered its first outcome.
"""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from adapters.persistence.urls import ledger_env
from ledger import commands as c
from ledger.bounds import stock_id
from ledger.errors import (
    CorrectionError,
    IdempotencyConflictError,
    InsufficientStockError,
    LedgerError,
    ReservationError,
    StockNotFoundError,
)
from ledger.orders import Order
from ledger.ports import StaticLocations
from ledger.service import Ledger
from ledger.stock import movement_effect
from ledger.writer import StorageError

SKU = "SKU-1"
LOCATIONS = ("north", "south")
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)

locations = st.sampled_from(LOCATIONS)
quantities = st.integers(1, 6)
picks = st.integers(0, 10_000)


@dataclass
class Loc:
    """The reference model of one SKU-location."""

    on_hand: int = 0
    unavailable: int = 0
    reservations: dict[str, list[Any]] = field(default_factory=dict)  # rid -> [qty, expires_at]
    backorder: bool = False
    ever_backorder: bool = False
    effects: list[tuple[int, int]] = field(default_factory=lambda: [(0, 0)])  # by version; 1 = opened
    corrected: set[int] = field(default_factory=set)

    @property
    def reserved(self) -> int:
        return sum(q for q, _ in self.reservations.values())

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved - self.unavailable

    @property
    def version(self) -> int:
        return len(self.effects)

    def move(self, on_hand: int, unavailable: int = 0) -> None:
        self.on_hand += on_hand
        self.unavailable += unavailable
        self.effects.append((on_hand, unavailable))

    def mark(self) -> None:
        self.effects.append((0, 0))

    def take(self, rid: str, qty: int) -> None:
        self.reservations[rid][0] -= qty
        if self.reservations[rid][0] == 0:
            del self.reservations[rid]


class Model:
    """What the ledger should decide, in plain Python. `decide` raises the expected domain error."""

    def __init__(self) -> None:
        self.locs: dict[str, Loc] = {}
        self.done: dict[str, tuple[str, dict[str, Any]]] = {}  # key -> (fingerprint, first outcome)

    def open(self, location: str) -> Loc:
        return self.locs.setdefault(location, Loc())

    def existing(self, location: str, error: type[LedgerError] = StockNotFoundError) -> Loc:
        if location not in self.locs:
            raise error("no stock")
        return self.locs[location]

    def decide(self, cmd: c.Command) -> None:
        getattr(self, type(cmd).__name__)(cmd)

    def ReceiveStock(self, cmd: c.ReceiveStock) -> None:
        self.open(cmd.location).move(cmd.quantity)

    def Reserve(self, cmd: c.Reserve) -> None:
        s = self.existing(cmd.location, InsufficientStockError)
        if not (s.backorder or cmd.quantity <= s.available):
            raise InsufficientStockError("oversell")
        rid = f"{cmd.order_id}/{cmd.line_id}"
        s.reservations.setdefault(rid, [0, cmd.expires_at])[0] += cmd.quantity
        s.mark()

    def ReleaseReservation(self, cmd: c.ReleaseReservation) -> None:
        s = self.existing(cmd.location)
        held = s.reservations.get(cmd.reservation_id, [0])[0]
        if cmd.quantity > held:
            raise ReservationError("over-release")
        s.take(cmd.reservation_id, cmd.quantity)
        s.mark()

    def ReleaseExpired(self, cmd: c.ReleaseExpired) -> None:
        s = self.existing(cmd.location)
        for rid, (qty, expires_at) in list(s.reservations.items()):
            if expires_at is not None and expires_at <= cmd.now:
                s.take(rid, qty)
                s.mark()

    def SellDirect(self, cmd: c.SellDirect) -> None:
        s = self.existing(cmd.location, InsufficientStockError)
        if cmd.reservation_id is not None:
            if cmd.quantity > s.reservations.get(cmd.reservation_id, [0])[0]:
                raise ReservationError("over-sale of a reservation")
            s.take(cmd.reservation_id, cmd.quantity)
        elif not (s.backorder or cmd.quantity <= s.available):
            raise InsufficientStockError("oversell")
        s.move(-cmd.quantity)

    def TransferStock(self, cmd: c.TransferStock) -> None:
        src = self.existing(cmd.from_location, InsufficientStockError)
        if cmd.quantity > src.available:
            raise InsufficientStockError("oversell")
        src.move(-cmd.quantity)
        self.open(cmd.to_location).move(cmd.quantity)

    def ReturnToStock(self, cmd: c.ReturnToStock) -> None:
        damaged = cmd.quantity if cmd.disposition == "damaged" else 0
        self.open(cmd.location).move(cmd.quantity, damaged)

    def WriteOffDamaged(self, cmd: c.WriteOffDamaged) -> None:
        s = self.existing(cmd.location)
        if cmd.quantity > s.unavailable:
            raise InsufficientStockError("nothing damaged to write off")
        s.move(-cmd.quantity, -cmd.quantity)

    def AdjustStock(self, cmd: c.AdjustStock) -> None:
        if cmd.location not in self.locs and cmd.delta < 0:
            raise InsufficientStockError("no stock")
        s = self.open(cmd.location)
        after = s.on_hand + cmd.delta
        if cmd.delta < 0 and (after < 0 or after < s.reserved + s.unavailable):
            raise InsufficientStockError("below reserved")
        s.move(cmd.delta)

    @staticmethod
    def _check_correction(s: Loc, on_hand: int, unavailable: int) -> None:
        new_unavailable = s.unavailable + unavailable
        new_available = s.on_hand + on_hand - s.reserved - new_unavailable
        if new_unavailable < 0 or (not s.backorder and new_available < 0 and on_hand < 0):
            raise InsufficientStockError("correction would oversell")

    def CorrectMovement(self, cmd: c.CorrectMovement) -> None:
        wrong = self.existing(cmd.location)
        if cmd.version > wrong.version:
            raise CorrectionError("no such event")
        on_hand, unavailable = wrong.effects[cmd.version - 1]
        if (on_hand, unavailable) == (0, 0) or cmd.version in wrong.corrected:
            raise CorrectionError("not a movement, or already corrected")
        self._check_correction(wrong, -on_hand, -unavailable)
        if cmd.to_location is not None:
            if cmd.to_location == cmd.location:
                raise CorrectionError("re-posting to the same stream")
            right = self.locs.get(cmd.to_location, Loc())
            self._check_correction(right, on_hand, unavailable)
        wrong.move(-on_hand, -unavailable)
        wrong.corrected.add(cmd.version)
        if cmd.to_location is not None:
            self.open(cmd.to_location).move(on_hand, unavailable)

    def ConfigureBackorders(self, cmd: c.ConfigureBackorders) -> None:
        s = self.open(cmd.location)
        if s.backorder != cmd.allowed:
            s.backorder = cmd.allowed
            s.ever_backorder |= cmd.allowed
            s.mark()


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="ledger-stateful-")
        self.ledger = Ledger(ledger_env(f"sqlite:///{self.dir}/ledger.db"))
        self.model = Model()
        self.n = 0
        self.history: list[c.Command] = []  # every command sent, for duplicates and retries
        self.buffer: list[c.Command] | None = None  # commands of a burst, sent together

    def teardown(self) -> None:
        self.ledger.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def ref(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}-{self.n}"

    def send(self, cmd: c.Command) -> None:
        """Sends a command to the ledger (or to the burst being built) and checks its decision."""
        self.history.append(cmd)
        if self.buffer is not None:
            self.buffer.append(cmd)
            return
        self.check(cmd, self.ledger.submit(cmd))

    def check(self, cmd: c.Command, future: Future) -> None:
        """Compares the ledger's decision of a command with the model's, in submission order."""
        key = cmd.key
        expected_error: type[Exception] | None = None
        model = copy.deepcopy(self.model)
        first = None
        if key and key in model.done:
            fingerprint, first = model.done[key]
            if fingerprint != cmd.fingerprint():
                expected_error = IdempotencyConflictError
        else:
            try:
                model.decide(cmd)
            except LedgerError as e:
                expected_error = type(e)
        try:
            outcome = future.result(timeout=60)
        except LedgerError as e:
            assert type(e) is expected_error, f"{cmd} refused with {e!r}, model expected {expected_error}"
            return
        assert expected_error is None, (
            f"{cmd} accepted with {outcome}, model expected {expected_error.__name__}"
        )
        if first is not None:
            assert outcome == {**first, "duplicate": True}, "a repeat must answer its first outcome"
            assert outcome["duplicate"] is True
        elif key:
            assert "duplicate" not in outcome
            model.done[key] = (cmd.fingerprint(), outcome)
        self.model = model

    @initialize(location=locations, quantity=st.integers(1, 10))
    def seed(self, location, quantity):
        self.send(c.ReceiveStock(sku=SKU, location=location, quantity=quantity, reference=self.ref("po")))

    # ------------------------------------------------------------------ rules

    @rule(location=locations, quantity=quantities)
    def receive(self, location, quantity):
        self.send(c.ReceiveStock(sku=SKU, location=location, quantity=quantity, reference=self.ref("po")))

    @rule(location=locations, quantity=quantities, expires_in=st.one_of(st.none(), st.integers(1, 5)))
    def reserve(self, location, quantity, expires_in):
        expires_at = None if expires_in is None else T0 + timedelta(minutes=expires_in)
        self.send(
            c.Reserve(
                sku=SKU,
                location=location,
                order_id=self.ref("order"),
                line_id="1",
                quantity=quantity,
                expires_at=expires_at,
            )
        )

    def _reservation(self, location: str, pick: int) -> str:
        held = sorted(self.model.locs.get(location, Loc()).reservations)
        return held[pick % len(held)] if held and pick % 5 else f"unknown-{pick}/1"

    @rule(location=locations, pick=picks, quantity=quantities)
    def release(self, location, pick, quantity):
        rid = self._reservation(location, pick)
        self.send(
            c.ReleaseReservation(
                sku=SKU,
                location=location,
                reservation_id=rid,
                quantity=quantity,
                reason="cancelled",
                reference=self.ref("release"),
            )
        )

    @rule(location=locations, minutes=st.integers(0, 6))
    def release_expired(self, location, minutes):
        self.send(c.ReleaseExpired(sku=SKU, location=location, now=T0 + timedelta(minutes=minutes)))

    @rule(location=locations, pick=picks, quantity=quantities)
    def sell_from_reservation(self, location, pick, quantity):
        rid = self._reservation(location, pick)
        self.send(
            c.SellDirect(
                sku=SKU, location=location, quantity=quantity, reference=self.ref("ship"), reservation_id=rid
            )
        )

    @rule(location=locations, quantity=quantities)
    def sell_direct(self, location, quantity):
        self.send(c.SellDirect(sku=SKU, location=location, quantity=quantity, reference=self.ref("till")))

    @rule(route=st.permutations(LOCATIONS), quantity=quantities)
    def transfer(self, route, quantity):
        self.send(
            c.TransferStock(
                sku=SKU,
                from_location=route[0],
                to_location=route[1],
                quantity=quantity,
                reference=self.ref("transfer"),
            )
        )

    @rule(location=locations, quantity=quantities, disposition=st.sampled_from(["restock", "damaged"]))
    def return_items(self, location, quantity, disposition):
        self.send(
            c.ReturnToStock(
                sku=SKU,
                location=location,
                quantity=quantity,
                disposition=disposition,
                reference=self.ref("return"),
            )
        )

    @rule(location=locations, quantity=quantities)
    def write_off(self, location, quantity):
        self.send(
            c.WriteOffDamaged(sku=SKU, location=location, quantity=quantity, reference=self.ref("write-off"))
        )

    @rule(location=locations, delta=st.integers(-8, 8).filter(bool))
    def adjust(self, location, delta):
        self.send(
            c.AdjustStock(
                sku=SKU, location=location, delta=delta, reason="cycle-count", reference=self.ref("count")
            )
        )

    @rule(location=locations, pick=picks, to=st.one_of(st.none(), locations))
    def correct(self, location, pick, to):
        version = pick % (self.model.locs[location].version + 1) + 1 if location in self.model.locs else 2
        self.send(
            c.CorrectMovement(
                sku=SKU,
                location=location,
                version=version,
                reason="mis-posted",
                reference=self.ref("fix"),
                to_location=to,
            )
        )

    @rule(location=locations, allowed=st.booleans())
    def configure_backorders(self, location, allowed):
        self.send(c.ConfigureBackorders(sku=SKU, location=location, allowed=allowed))

    @rule()
    def restart(self):
        """Close the ledger and open it again on the same file: the writer's cache starts cold."""
        self.ledger.close()
        self.ledger = Ledger(ledger_env(f"sqlite:///{self.dir}/ledger.db"))

    @precondition(lambda self: self.history)
    @rule(pick=picks)
    def repeat_a_command(self, pick):
        """The same command again: a duplicate webhook, a retried request, a replayed batch."""
        self.send(self.history[pick % len(self.history)])

    @precondition(lambda self: any(isinstance(x, c.ReceiveStock) for x in self.history))
    @rule(pick=picks)
    def reuse_a_reference_for_other_content(self, pick):
        receipts = [x for x in self.history if isinstance(x, c.ReceiveStock)]
        old = receipts[pick % len(receipts)]
        self.send(
            c.ReceiveStock(sku=SKU, location=old.location, quantity=old.quantity + 1, reference=old.reference)
        )

    @rule(data=st.data(), size=st.integers(2, 8))
    def burst(self, data, size):
        """Several commands queued at once, so the writer decides them in one batch (group commit):
        each must be decided exactly as if it had come alone, in order."""
        self.buffer = []
        try:
            for _ in range(size):
                name = data.draw(st.sampled_from(sorted(BURSTABLE)))
                if name == "repeat_a_command" and not self.history:
                    continue
                getattr(self, name)(**{k: data.draw(v) for k, v in BURSTABLE[name].items()})
        finally:
            burst, self.buffer = self.buffer, None
        futures = [self.ledger.submit(cmd) for cmd in burst]
        for cmd, future in zip(burst, futures, strict=True):
            self.check(cmd, future)

    # ------------------------------------------------------------ invariants

    @invariant()
    def the_ledger_agrees_with_the_model(self):
        app = self.ledger.app
        expected_events = 0
        for location in LOCATIONS:
            m = self.model.locs.get(location)
            s = self.ledger.history.stock(SKU, location)
            if m is None:
                assert s is None, f"{location} should have no stream"
                continue
            expected_events += m.version
            assert s is not None
            assert (s.on_hand, s.reserved, s.unavailable, s.version, s.allow_backorder) == (
                m.on_hand,
                m.reserved,
                m.unavailable,
                m.version,
                m.backorder,
            )
            effects = [movement_effect(e) for e in app.events.get(stock_id(SKU, location))]
            assert s.on_hand == sum(d for d, _ in effects), "on hand is the sum of the movements"
            assert s.unavailable == sum(u for _, u in effects)
            assert s.reserved == sum(r["quantity"] for r in s.reservations.values()), (
                "reserved = open reservations"
            )
            assert {k: v["quantity"] for k, v in s.reservations.items()} == {
                k: v[0] for k, v in m.reservations.items()
            }
            if not m.ever_backorder:
                assert s.available >= 0, "oversold at a location that never allowed backorders"
        assert app.recorder.max_position() == expected_events, "a refused or repeated command appended events"


# The rules a burst draws from, with their argument strategies.
BURSTABLE = {
    "receive": {"location": locations, "quantity": quantities},
    "reserve": {
        "location": locations,
        "quantity": quantities,
        "expires_in": st.one_of(st.none(), st.integers(1, 5)),
    },
    "release": {"location": locations, "pick": picks, "quantity": quantities},
    "release_expired": {"location": locations, "minutes": st.integers(0, 6)},
    "sell_from_reservation": {"location": locations, "pick": picks, "quantity": quantities},
    "sell_direct": {"location": locations, "quantity": quantities},
    "transfer": {"route": st.permutations(LOCATIONS), "quantity": quantities},
    "return_items": {
        "location": locations,
        "quantity": quantities,
        "disposition": st.sampled_from(["restock", "damaged"]),
    },
    "write_off": {"location": locations, "quantity": quantities},
    "adjust": {"location": locations, "delta": st.integers(-8, 8).filter(bool)},
    "correct": {"location": locations, "pick": picks, "to": st.one_of(st.none(), locations)},
    "configure_backorders": {"location": locations, "allowed": st.booleans()},
    "repeat_a_command": {"pick": picks},
}

MACHINE_SETTINGS = settings(
    deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]
)
LedgerMachine.TestCase.settings = settings(
    MACHINE_SETTINGS,
    max_examples=int(os.environ.get("LEDGER_STATEFUL_EXAMPLES", "200")),
    stateful_step_count=25,
)
TestLedgerAgainstModel = LedgerMachine.TestCase


# ---------------------------------------------------------------------------------------------
# Orders moving stock: random captures, shipments (partial, split across locations),
# cancellations, returns and repeats. No reference model decides here; instead, after every
# step, the orders and the SKU-locations must agree with each other and conserve every unit.

SKUS = ("SKU-A", "SKU-B")
order_locations = st.sampled_from(LOCATIONS)


def fit(quantity: int, room: int) -> int:
    """Mostly a quantity that fits what is left (so steps succeed), sometimes one that does not."""
    return min(quantity, room) if room > 0 and quantity % 4 else quantity


class OrderMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="ledger-orders-")
        self.ledger = Ledger(
            ledger_env(f"sqlite:///{self.dir}/ledger.db"), StaticLocations({"online": LOCATIONS})
        )
        self.orders: list[str] = []
        self.received = dict.fromkeys(SKUS, 0)
        self.sent: list[c.Command] = []
        self.n = 0

    def teardown(self) -> None:
        self.ledger.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def send(self, cmd: c.Command) -> dict[str, Any] | None:
        """Sends a command; a refusal must be a domain error and must append nothing."""
        self.sent.append(cmd)
        before = self.ledger.app.recorder.max_position()
        try:
            outcome = self.ledger.execute(cmd)
        except StorageError:
            raise
        except LedgerError:
            assert self.ledger.app.recorder.max_position() == before, f"refused {cmd} appended events"
            return None
        if outcome.get("duplicate"):
            assert self.ledger.app.recorder.max_position() == before, f"repeated {cmd} appended events"
        if isinstance(cmd, c.CaptureOrder) and cmd.order_id not in self.orders:
            self.orders.append(cmd.order_id)  # a refused capture may succeed when repeated later
        return outcome

    def ref(self) -> str:
        self.n += 1
        return str(self.n)

    def order(self, pick: int, wanted: Any = None) -> Any:
        """An order picked by `pick`, preferring (three times in four) one for which `wanted` holds."""
        orders = [self.ledger.history.order(x) for x in self.orders]
        if wanted is not None and pick % 4:
            orders = [o for o in orders if wanted(o)] or orders
        return orders[pick % len(orders)]

    @initialize()
    def seed(self):
        for s in SKUS:
            for location in LOCATIONS:
                self.receive(s, location, 3)

    @rule(sku=st.sampled_from(SKUS), location=order_locations, quantity=quantities)
    def receive(self, sku, location, quantity):
        if self.send(
            c.ReceiveStock(sku=sku, location=location, quantity=quantity, reference=f"po-{self.ref()}")
        ):
            self.received[sku] += quantity

    @rule(
        lines=st.lists(
            st.tuples(st.sampled_from(SKUS), st.integers(1, 4), st.one_of(st.none(), order_locations)),
            min_size=1,
            max_size=3,
        ),
        partial=st.booleans(),
    )
    def capture(self, lines, partial):
        order_id = f"order-{self.ref()}"
        self.send(
            c.CaptureOrder(
                order_id=order_id,
                channel="online",
                lines=tuple(
                    {"line_id": str(i), "sku": s, "quantity": q, "location": loc}
                    for i, (s, q, loc) in enumerate(lines, 1)
                ),
                allow_partial=partial,
            )
        )

    @precondition(lambda self: self.orders)
    @rule(
        pick=picks,
        quantity=st.integers(1, 4),
        elsewhere=st.sampled_from([None, None, None, *LOCATIONS]),
        both=st.booleans(),
    )
    def ship(self, pick, quantity, elsewhere, both):
        o = self.order(pick, lambda o: any(Order.open_quantity(x) for x in o.lines.values()))
        lines = list(o.lines)[: 2 if both else 1]
        self.send(
            c.ShipOrder(
                order_id=o.order_id,
                shipment_id=f"s-{self.ref()}",
                lines=tuple(
                    {
                        "line_id": lid,
                        "quantity": fit(quantity, Order.open_quantity(o.lines[lid])),
                        "location": elsewhere,
                    }
                    for lid in lines
                ),
            )
        )

    @precondition(lambda self: self.orders)
    @rule(pick=picks, quantity=st.one_of(st.none(), st.integers(1, 3)))
    def cancel(self, pick, quantity):
        o = self.order(pick)
        if quantity is None:
            self.send(c.CancelOrder(order_id=o.order_id, reason="customer"))
        else:
            line = list(o.lines)[pick % len(o.lines)]
            self.send(
                c.CancelOrder(
                    order_id=o.order_id,
                    reason="customer",
                    lines=({"line_id": line, "quantity": quantity},),
                    reference=f"c-{self.ref()}",
                )
            )

    @precondition(lambda self: self.orders)
    @rule(pick=picks, quantity=st.integers(1, 3), disposition=st.sampled_from(["restock", "damaged"]))
    def return_items(self, pick, quantity, disposition):
        o = self.order(pick, lambda o: any(o.returnable(x) for x in o.lines))
        line = max(o.lines, key=o.returnable) if pick % 3 else list(o.lines)[pick % len(o.lines)]
        self.send(
            c.ReturnItems(
                order_id=o.order_id,
                return_id=f"r-{self.ref()}",
                lines=(
                    {
                        "line_id": line,
                        "quantity": fit(quantity, o.returnable(line)),
                        "disposition": disposition,
                    },
                ),
            )
        )

    @precondition(lambda self: self.sent)
    @rule(pick=picks)
    def repeat(self, pick):
        self.send(self.sent[pick % len(self.sent)])

    @invariant()
    def orders_and_stock_agree_and_every_unit_is_accounted_for(self):
        h = self.ledger.history
        stock = {(s, loc): h.stock(s, loc) for s in SKUS for loc in LOCATIONS}
        held: dict[tuple[str, str], int] = {}
        shipped = dict.fromkeys(SKUS, 0)
        returned = dict.fromkeys(SKUS, 0)
        damaged: dict[tuple[str, str], int] = {}
        for order_id in self.orders:
            o = h.order(order_id)
            for lid, line in o.lines.items():
                assert line["shipped"] + line["cancelled"] <= line["quantity"]
                assert 0 <= line["returned"] <= line["shipped"]
                hold = Order.held_quantity(line)
                assert 0 <= hold <= Order.open_quantity(line), f"{order_id}/{lid} holds {hold}: {line}"
                allocations = Order.allocations_of(line)
                assert sum(allocations.values()) == hold, f"{order_id}/{lid}: {line}"
                for location, n in allocations.items():
                    s = stock[(line["sku"], location)]
                    assert s.reserved_for(f"{order_id}/{lid}") == n, f"{order_id}/{lid}: {line}"
                    key = (line["sku"], location)
                    held[key] = held.get(key, 0) + n
                shipped[line["sku"]] += line["shipped"]
            for lines in o.returns.values():
                for r in lines:
                    sku = o.lines[r["line_id"]]["sku"]
                    returned[sku] += r["quantity"]
                    if r["disposition"] == "damaged":
                        damaged[(sku, r["location"])] = damaged.get((sku, r["location"]), 0) + r["quantity"]
        for key, s in stock.items():
            assert s.reserved == held.get(key, 0), (
                f"{key}: reserved {s.reserved}, orders hold {held.get(key, 0)}"
            )
            assert s.unavailable == damaged.get(key, 0)
            assert s.available >= 0, f"{key} oversold"
        for sku in SKUS:
            on_hand = sum(stock[(sku, loc)].on_hand for loc in LOCATIONS)
            assert on_hand == self.received[sku] - shipped[sku] + returned[sku], (
                f"{sku} lost or invented units"
            )


OrderMachine.TestCase.settings = settings(
    MACHINE_SETTINGS,
    max_examples=int(os.environ.get("LEDGER_STATEFUL_ORDER_EXAMPLES", "100")),
    stateful_step_count=30,
)
TestOrdersMoveStockConsistently = OrderMachine.TestCase
