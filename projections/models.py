"""The read models `stock`, `ats` and `orders`: tables, and how each event changes them.

Each projection folds events into a `Store` (`apply`) and, at the end of a batch, queues
one outbox message per row whose published value changed (`finish`): a channel sees the
final ATS of a batch, not every step on the way. Channel policies are facts in the log
(`Channel.PolicyChanged`): the `ats` read model keeps the versions it applied in
`ats_policies`, so a replay sees the same policy at the same position. A rebuild's marker
(`ReadModel.Rebuilt`) makes a view republish the keys the rebuild corrected (`republish`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import orjson

from adapters.outbox import subject_token
from adapters.persistence.db import Database
from ledger.backorders import Backorders
from ledger.bounds import stock_id
from ledger.channels import Channel
from ledger.effects import Effect, event_effect
from ledger.errors import InvalidCommandError
from ledger.holds import Hold
from ledger.locations import Location
from ledger.policy import ChannelPolicy, Policies, available_to_sell
from ledger.stock import fold_lots
from projections import folds
from projections.store import Store, Table, lock_tracking

Event = Any
log = logging.getLogger("ledger.projections")


class Projection:
    name: str
    tables: tuple[Table, ...]

    def begin(self, store: Store) -> None:
        """A batch starts."""

    def apply(self, store: Store, position: int, event: Event) -> None:
        raise NotImplementedError

    def republish(self, store: Store, keys: list[tuple[Any, ...]], position: int) -> None:
        """Publishes these rows' current values at `position` (a rebuild's marker)."""

    def finish(self, store: Store) -> None:
        """A batch ends: queue the messages for what changed."""

    def prefetch(self, store: Store, events: Iterable[tuple[int, Event]]) -> None:
        """Loads in bulk the rows a batch of events will touch."""

    def upgrade(self, db: Database) -> None:
        """Brings tables an earlier version left into this version's shape, once its tables exist
        (`Projector.create_tables`, under the start-up DDL lock); nothing when they are current."""


class StockView(Projection):
    """`stock`: levels per SKU-location, and its open reservations with their expiry."""

    name = "stock"
    LEVELS = Table(
        "stock_levels",
        ("stream_id",),
        ("sku", "location", "on_hand", "reserved", "unavailable", "incoming", "available", "version", "position"),
        types={
            c: "BIGINT"
            for c in ("on_hand", "reserved", "unavailable", "incoming", "available", "version", "position")
        },
        indexes=(("sku", "location"),),
    )
    # One row per open reservation of a SKU-location (`folds.fold_reservation`): the sweeper
    # releases those past `expires_at` and names the newest (`since`) a shortfall leaves uncovered.
    # Not carried between batches: a reservation is touched when it opens and again only when it
    # is sold or released, mostly much later; carried, they would crowd the hot levels out.
    RESERVATIONS = Table(
        "stock_reservations",
        ("stream_id", "reservation_id"),
        ("quantity", "expires_at", "since"),
        types={"quantity": "BIGINT", "expires_at": "DOUBLE PRECISION", "since": "BIGINT"},
        indexes=(("expires_at",),),
        carried=False,
    )
    # The backordered lines waiting per SKU (`ledger.backorders`; a queue's SKU by its stream),
    # and each location's policy (`ledger.locations`): the sweeper fills waiting lines where units
    # are free although no movement freed them (`projections.sweeper`).
    QUEUES = Table("backorder_queues", ("stream_id",), ("sku",))
    WAITING = Table(
        "backorders_waiting",
        ("sku", "order_id", "line_id"),
        ("channel", "location", "position"),
        types={"position": "BIGINT"},
    )
    LOCATIONS = Table(
        "location_policies",
        ("stream_id",),
        ("location", "backorders", "position"),
        types={"backorders": "INTEGER", "position": "BIGINT"},
    )
    tables = (LEVELS, RESERVATIONS, QUEUES, WAITING, LOCATIONS)

    def __init__(self) -> None:
        self._effects: dict[int, Effect] = {}  # the batch's stock events' effects, by position

    def begin(self, store: Store) -> None:
        self._effects.clear()

    def upgrade(self, db: Database) -> None:
        """Before this version a stock row kept its open reservations as JSON (`reservations`, in
        the order they were opened) with their earliest expiry (`next_expiry`). Their rows move to
        `stock_reservations` (`since`: that order) and the two columns go, in one transaction
        holding the view's tracking row, so no runner writes the view meanwhile and no rebuild is
        needed."""
        levels, res = self.LEVELS.name, self.RESERVATIONS.name
        if "reservations" not in db.columns(levels):
            return
        with db.transaction() as tx:
            lock_tracking(tx, self.name, db.dialect)
            moved = [
                (r["stream_id"], rid, int(held[0]), held[1], since)
                for r in tx.execute(f"SELECT stream_id, reservations FROM {levels}").fetchall()
                for since, (rid, held) in enumerate(orjson.loads(r["reservations"] or "{}").items(), start=1)
            ]
            tx.executemany(
                f"INSERT INTO {res} (stream_id, reservation_id, quantity, expires_at, since) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (stream_id, reservation_id) DO NOTHING",
                moved,
            )
            tx.execute(f"DROP INDEX IF EXISTS {self.LEVELS.index_name(('next_expiry',))}")
            for column in ("reservations", "next_expiry"):
                tx.execute(f"ALTER TABLE {levels} DROP COLUMN {column}")
        log.info("stock: %d open reservations moved to %s", len(moved), res)

    def prefetch(self, store: Store, events: Iterable[tuple[int, Event]]) -> None:
        stock = [(p, e) for p, e in events if folds.is_stock_event(e)]
        self._effects.update((p, event_effect(e)) for p, e in stock)
        store.load(self.LEVELS.name, [(str(e.originator_id),) for _, e in stock])
        moved = [
            (str(e.originator_id), rid)
            for p, e in stock
            if (rid := folds.reservation_moved(self._effects[p])) is not None
        ]
        store.load(self.RESERVATIONS.name, moved)

    def apply(self, store: Store, position: int, event: Event) -> None:
        if isinstance(event, Backorders.Opened | Backorders.Event | Location.Opened | Location.Event):
            self.fold_policy_or_queue(store, position, event)
            return
        if not folds.is_stock_event(event):
            return
        key = (str(event.originator_id),)
        effect = self._effects.get(position) or event_effect(event)
        row = folds.fold_stock(store.get(self.LEVELS.name, key), event, position, effect)
        if row is None:
            return
        store.put(self.LEVELS.name, key, row)
        rid = folds.reservation_moved(effect)
        if rid is not None:
            rkey = (key[0], rid)
            held = folds.fold_reservation(store.get(self.RESERVATIONS.name, rkey), event, position, effect)
            if held is None:
                store.delete(self.RESERVATIONS.name, rkey)
            else:
                store.put(self.RESERVATIONS.name, rkey, held)


    def fold_policy_or_queue(self, store: Store, position: int, event: Event) -> None:
        key = (str(event.originator_id),)
        if isinstance(event, Backorders.Opened):
            store.put(self.QUEUES.name, key, {"sku": event.sku})
        elif isinstance(event, Backorders.LineQueued | Backorders.LineDequeued):
            queue = store.get(self.QUEUES.name, key)
            if queue is None:
                return
            line = (queue["sku"], event.order_id, event.line_id)
            if isinstance(event, Backorders.LineQueued):
                row = {"channel": event.channel, "location": event.location, "position": position}
                store.put(self.WAITING.name, line, row)
            else:
                store.delete(self.WAITING.name, line)
        elif isinstance(event, Location.Opened):
            store.put(self.LOCATIONS.name, key, {"location": event.location, "backorders": 0, "position": position})
        elif isinstance(event, Location.BackordersSet):
            policy = store.get(self.LOCATIONS.name, key)
            if policy is not None:
                allowed = 1 if event.allowed else 0
                store.put(self.LOCATIONS.name, key, {**policy, "backorders": allowed, "position": position})


class OrdersView(Projection):
    """`orders`: the stage of each order, with per-line quantities; publishes stage changes."""

    name = "orders"
    ORDERS = Table(
        "order_views",
        ("order_key",),
        ("order_id", "channel", "stage", "state", "captured_at", "erp_posted", "version", "position"),
        types={
            "captured_at": "DOUBLE PRECISION",
            "erp_posted": "INTEGER",
            "version": "BIGINT",
            "position": "BIGINT",
        },
        json=frozenset({"state"}),
        indexes=(("order_id",), ("erp_posted", "captured_at")),
    )
    REFS = Table(
        "order_refs",
        ("reference", "order_id", "system"),
        ("position",),
        types={"position": "BIGINT"},
        indexes=(("order_id",),),
    )
    # Orders that named a hold after it expired (`Hold.LateOrderRecorded`): the sweeper opens
    # `late-order` for each, once (`projections.sweeper`).
    LATE = Table(
        "order_late_holds",
        ("order_id",),
        ("reservation_id", "channel", "position"),
        types={"position": "BIGINT"},
    )
    tables = (ORDERS, REFS, LATE)

    def __init__(self) -> None:
        self._before: dict[tuple[Any, ...], str | None] = {}
        # Per order of the batch (from `prefetch`): the position of its last event there, whose
        # fold alone works out the stage; and the orders whose row a fold of this batch made.
        self._last: dict[tuple[Any, ...], int] = {}
        self._owned: set[tuple[Any, ...]] = set()

    def begin(self, store: Store) -> None:
        self._before.clear()
        self._last.clear()
        self._owned.clear()

    def prefetch(self, store: Store, events: Iterable[tuple[int, Event]]) -> None:
        keys = [((str(e.originator_id),), p) for p, e in events if folds.is_order_event(e)]
        self._last.update(keys)
        store.load(self.ORDERS.name, [k for k, _ in keys])

    def apply(self, store: Store, position: int, event: Event) -> None:
        if isinstance(event, Hold.LateOrderRecorded):
            late = {"reservation_id": event.reservation_id, "channel": event.channel, "position": position}
            store.put(self.LATE.name, (event.order_id,), late)
            return
        if not folds.is_order_event(event):
            return
        key = (str(event.originator_id),)
        old = store.get(self.ORDERS.name, key)
        last = self._last.get(key)
        row = folds.fold_order(
            old, event, position, staged=last is None or position >= last, owned=key in self._owned
        )
        if row is None:
            return
        self._owned.add(key)
        if key not in self._before:
            self._before[key] = None if old is None else old["stage"]
        store.put(self.ORDERS.name, key, row)
        for system, ref in folds.order_refs(event):
            store.put(self.REFS.name, (ref, row["order_id"], system), {"position": position})

    def republish(self, store: Store, keys: list[tuple[Any, ...]], position: int) -> None:
        for key in keys:
            row = store.get(self.ORDERS.name, key)
            if row is not None:
                if key in self._owned:  # folded in this batch, perhaps not staged yet
                    row["stage"] = folds.order_stage(row)
                store.emit(*stage_message(row, position))
                self._before[key] = row["stage"]  # published: only a later change is news

    def finish(self, store: Store) -> None:
        for key, before in self._before.items():
            row = store.get(self.ORDERS.name, key)
            if row is not None and row["stage"] != before:
                store.emit(*stage_message(row, row["position"]))
        self._before.clear()


def stage_message(row: dict[str, Any], position: int) -> tuple[str, dict[str, Any], str]:
    """(subject, payload, msg id) of an order's stage."""
    return (
        f"ledger.orders.{subject_token(row['order_id'])}",
        {"order_id": row["order_id"], "channel": row["channel"], "stage": row["stage"], "position": position},
        f"order:{row['order_id']}:{position}",
    )


class AtsView(Projection):
    """`ats`: available-to-sell per channel and SKU, under the channels' current policies.

    It keeps its own `available` per SKU-location (`ats_levels`), so it can be rebuilt
    without the `stock` read model, and the incoming lots of each SKU-location
    (`ats_incoming`: `[due, quantity, lead seconds]`, see `ledger.stock.fold_lots`) for the channels
    that count incoming units (`include_incoming_days`).
    """

    name = "ats"
    LEVELS = Table(
        "ats_levels",
        ("stream_id",),
        ("sku", "location", "available", "position"),
        types={"available": "BIGINT", "position": "BIGINT"},
        indexes=(("location",),),
    )
    ATS = Table(
        "ats",
        ("channel", "sku"),
        ("available", "position"),
        types={"available": "BIGINT", "position": "BIGINT"},
        indexes=(("position",),),  # the rows changed since a version (`projections.cache`)
    )
    POLICIES = Table(
        "ats_policies",
        ("channel",),
        ("version", "rules", "changed_by", "position"),
        types={"version": "BIGINT", "position": "BIGINT"},
        json=frozenset({"rules"}),
    )
    INCOMING = Table("ats_incoming", ("stream_id",), ("lots",), json=frozenset({"lots"}))
    tables = (LEVELS, ATS, POLICIES, INCOMING)

    def __init__(self) -> None:
        self.policies = Policies({}, 0)
        self.position = 0  # the newest position this batch saw
        self._before: dict[tuple[str, str], int | None] = {}

    def begin(self, store: Store) -> None:
        self.policies = self.applied_policies(store)
        self._before.clear()

    def applied_policies(self, store: Store) -> Policies:
        """The policy versions this read model applied (from `PolicyChanged` events)."""
        by_channel = {}
        for (channel,), row in store.scan(self.POLICIES.name):
            policy = policy_of(channel, row["rules"], row["version"], row["changed_by"])
            if policy is not None:
                by_channel[channel] = policy
        return policies_of(by_channel)

    def change_policy(self, store: Store, position: int, event: Event) -> None:
        """A newer policy version: recompute the channel's ATS; the changed values carry `position`."""
        key = (event.channel,)
        cur = store.get(self.POLICIES.name, key)
        if cur is not None and cur["version"] >= event.version:
            return
        policy = policy_of(event.channel, event.policy, event.version, event.changed_by)
        if policy is None:
            return  # a malformed policy in the log changes nothing (the adapter validated it before)
        store.put(
            self.POLICIES.name,
            key,
            {
                "version": event.version,
                "rules": event.policy,
                "changed_by": event.changed_by,
                "position": position,
            },
        )
        self.policies = policies_of({**self.policies.by_channel, event.channel: policy})
        self.recompute_channels(store, [event.channel], position)

    def prefetch(self, store: Store, events: Iterable[tuple[int, Event]]) -> None:
        events = [(p, e) for p, e in events if folds.is_stock_event(e)]
        store.load(self.LEVELS.name, [(str(e.originator_id),) for _, e in events])
        store.load(self.INCOMING.name, [(str(e.originator_id),) for _, e in events])
        pairs: set[tuple[str, str]] = set()
        for _, e in events:
            lv = store.get(self.LEVELS.name, (str(e.originator_id),))
            sku, loc = (
                (e.sku, e.location)
                if lv is None and hasattr(e, "sku")
                else ((lv["sku"], lv["location"]) if lv else (None, None))
            )
            if sku is None or loc is None:
                continue
            for p in self.policies.channels_at(loc):
                pairs.add((p.channel, sku))
        streams = [(str(stock_id(s, loc)),) for ch, s in pairs for loc in self.policies.by_channel[ch].locations]
        store.load(self.LEVELS.name, streams)
        store.load(self.INCOMING.name, streams)
        store.load(self.ATS.name, list(pairs))

    def apply(self, store: Store, position: int, event: Event) -> None:
        if isinstance(event, Channel.PolicyChanged):
            self.change_policy(store, position, event)
            return
        if not folds.is_stock_event(event):
            return
        self.position = max(self.position, position)
        key = (str(event.originator_id),)
        if isinstance(event, folds.S.Opened):
            lv: dict[str, Any] | None = {
                "sku": event.sku,
                "location": event.location,
                "available": 0,
                "position": position,
            }
        else:
            lv = store.get(self.LEVELS.name, key)
            if lv is None:
                return
            lots = self.fold_incoming(store, key, event)
            delta = folds.available_delta(event)
            if delta == 0 and not lots:
                return
            if delta:
                lv = {**lv, "available": lv["available"] + delta, "position": position}
        assert lv is not None
        store.put(self.LEVELS.name, key, lv)
        for policy in self.policies.channels_at(lv["location"]):
            self.recompute(store, policy, lv["sku"], position)

    def fold_incoming(self, store: Store, key: tuple[str], event: Event) -> bool:
        """Folds the event into the SKU-location's incoming lots; whether they changed."""
        if not isinstance(event, folds.S.StockExpected | folds.S.StockReceived):
            return False
        row = store.get(self.INCOMING.name, key)
        lots = fold_lots(None if row is None else row["lots"], event)
        if lots is None:
            return False
        if lots:
            store.put(self.INCOMING.name, key, {"lots": lots})
        elif row is not None:
            store.delete(self.INCOMING.name, key)
        return True

    def recompute(self, store: Store, policy: ChannelPolicy, sku: str, position: int) -> None:
        available: dict[str, int] = {}
        incoming: dict[str, list[list[Any]]] = {}
        for loc in policy.locations:
            stream = (str(stock_id(sku, loc)),)
            lv = store.get(self.LEVELS.name, stream)
            if lv is not None:
                available[loc] = int(lv["available"])
            if policy.include_incoming_days:
                row = store.get(self.INCOMING.name, stream)
                if row is not None:
                    incoming[loc] = row["lots"]
        seen = bool(available)
        key = (policy.channel, sku)
        cur = store.get(self.ATS.name, key)
        if not seen:  # none of the channel's locations knows the SKU (any more): no row, ATS 0
            if cur is not None:
                self._before.setdefault(key, cur["available"])
                store.delete(self.ATS.name, key)
            return
        value = available_to_sell(policy, sku, available, incoming)
        if cur is not None and cur["available"] == value:
            return
        self._before.setdefault(key, None if cur is None else cur["available"])
        store.put(self.ATS.name, key, {"available": value, "position": position})

    def recompute_channels(self, store: Store, channels: list[str], position: int) -> None:
        """Applies changed policies: every ATS row of these channels, from the levels at hand."""
        self.position = max(self.position, position)
        for ch in channels:
            policy = self.policies.by_channel[ch]
            skus = {row["sku"] for _, row in store.select(self.LEVELS.name, "location", policy.locations)}
            skus |= {k[1] for k, _ in store.select(self.ATS.name, "channel", (ch,))}
            for sku in sorted(skus):
                self.recompute(store, policy, sku, position)

    def republish(self, store: Store, keys: list[tuple[Any, ...]], position: int) -> None:
        self.position = max(self.position, position)
        for channel, sku in keys:
            row = store.get(self.ATS.name, (channel, sku))
            value = 0 if row is None else int(row["available"])
            if row is not None:
                store.put(self.ATS.name, (channel, sku), {**row, "position": position})
            store.emit(*ats_message(channel, sku, value, position))
            self._before[(channel, sku)] = value  # published: only a later change is news

    def finish(self, store: Store) -> None:
        for (channel, sku), before in self._before.items():
            row = store.get(self.ATS.name, (channel, sku))
            if row is None:
                if before:
                    store.emit(*ats_message(channel, sku, 0, self.position))
            elif row["available"] != before:
                store.emit(*ats_message(channel, sku, row["available"], row["position"]))
        self._before.clear()


def ats_message(channel: str, sku: str, available: int, position: int) -> tuple[str, dict[str, Any], str]:
    """(subject, payload, msg id) of one ATS value."""
    return (
        f"ledger.ats.{subject_token(channel)}.{subject_token(sku)}",
        {"channel": channel, "sku": sku, "available": available, "position": position},
        f"ats:{subject_token(channel)}:{subject_token(sku)}:{position}:{available}",
    )


def policies_of(by_channel: dict[str, ChannelPolicy]) -> Policies:
    return Policies(by_channel, max((p.version for p in by_channel.values()), default=0))


def policy_of(channel: str, rules: Any, version: int, changed_by: str) -> ChannelPolicy | None:
    try:
        return ChannelPolicy.from_rules(channel, rules, int(version), changed_by)
    except (InvalidCommandError, KeyError, TypeError, ValueError):
        return None


def all_views() -> dict[str, Projection]:
    return {p.name: p for p in (AtsView(), OrdersView(), StockView())}
