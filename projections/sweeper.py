"""Time-driven exceptions: reservations past their expiry, and orders stuck before the ERP.

Every few seconds, from the read models:
- a SKU-location holding a reservation past its expiry opens `reservation-expired` and gets a
  `ReleaseExpired` command through the writer; the exception closes once the read model
  shows no expired reservation there any more;
- a SKU-location whose available went below zero under reservations (a till sale, a count or
  damage the ledger recorded although the units were promised) opens `shortfall`, naming the
  order lines no longer covered, and gets a `CoverShortfall` command that reallocates them to
  other locations of their channel's group; it closes once nothing there is uncovered (units
  incoming that a channel of the location counts cover its reservations);
- a SKU-location whose on hand went below zero (more units left it than the ledger saw arrive:
  a sale shipped before its receipt was recorded, an offline till, a count that is due) opens
  `negative-stock` with the units incoming there; it closes once on hand is back at zero or more;
- a backordered line waiting where units are free that no movement freed (a location that now
  allows backorders, a channel whose group gained a location with stock) gets `FillBackorders`;
- an order that named a hold after the hold expired (`order_late_holds`, from the hold's
  `LateOrderRecorded`) opens `late-order`, once: an operator closes it;
- an order captured more than `erp_posting_deadline_seconds` ago and still not posted to the
  ERP (nor cancelled, nor held) opens `stuck-order`; it closes when the order is posted or cancelled;
- an order its checks held opens `held-order` with the checks' reasons; it closes when an
  operator releases or cancels it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future
from datetime import UTC, datetime
from typing import Any

import orjson

from adapters import exceptions, metrics
from adapters.channels import ChannelPolicies
from adapters.loop import Loop
from adapters.persistence.db import Database
from ledger.bounds import parse_reservation_id
from ledger.commands import CoverShortfall, FillBackorders, ReleaseExpired
from ledger.policy import Policies, counted_lots
from ledger.stock import uncovered

log = logging.getLogger("ledger.sweeper")

Submit = Callable[[Any], Future[dict[str, Any]]]


class Sweeper:
    def __init__(
        self,
        db: Database,
        submit: Submit,
        deadline_seconds: float,
        period_seconds: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.submit = submit
        self.deadline_seconds = deadline_seconds
        self.period_seconds = period_seconds
        self.clock = clock
        self._loop = Loop("sweeper", self._step, poll=period_seconds)

    def start(self) -> None:
        self._loop.start()

    def stop(self) -> None:
        self._loop.stop()

    def _step(self) -> int:
        self.sweep()
        return 0  # then wait a period

    def below_zero(self) -> list[dict[str, Any]]:
        """The SKU-locations whose on hand, or available under reservations, is below zero: one
        scan of the levels for `short` and `negative`."""
        return self.db.query(
            "SELECT s.stream_id, s.sku, s.location, s.on_hand, s.reserved, s.available, s.incoming, "
            "i.lots FROM stock_levels s LEFT JOIN ats_incoming i ON i.stream_id = s.stream_id "
            "WHERE s.on_hand < 0 OR (s.available < 0 AND s.reserved > 0)"
        )

    def negative(self, levels: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        """`negative-stock` details: the SKU-locations whose on hand is below zero, with what is
        incoming there (a receipt of it would bring it back)."""
        return [
            {k: r[k] for k in ("sku", "location", "on_hand", "incoming")}
            for r in (self.below_zero() if levels is None else levels)
            if int(r["on_hand"]) < 0
        ]

    def short(
        self, policies: Policies | None = None, levels: list[dict[str, Any]] | None = None
    ) -> list[dict[str, Any]]:
        """The SKU-locations whose reservations some units no longer cover: available below zero
        under reservations, beyond the incoming units a channel of the location counts
        (`include_incoming_days`: its orders may reserve them, `SkuLocation.uncovered`)."""
        rows = [
            {k: r[k] for k in ("stream_id", "sku", "location", "available", "lots")}
            for r in (self.below_zero() if levels is None else levels)
            if int(r["available"]) < 0 and int(r["reserved"]) > 0
        ]
        if not rows:
            return rows
        policies = policies or ChannelPolicies(self.db).current()
        out = []
        for r in rows:
            lots = r.pop("lots")
            if isinstance(lots, str | bytes):
                lots = orjson.loads(lots)
            cover = counted_lots(lots or [], policies.incoming_days_at(r["location"]))
            if -int(r["available"]) > cover:
                out.append({**r, "short": -int(r["available"]) - cover, "reservations": []})
        if out:  # their open reservations, oldest first: the newest are the uncovered ones
            by_stream = {r["stream_id"]: r for r in out}
            marks = ", ".join(["%s"] * len(by_stream))
            for x in self.db.query(
                "SELECT stream_id, reservation_id, quantity FROM stock_reservations "
                f"WHERE stream_id IN ({marks}) ORDER BY stream_id, since, reservation_id",
                list(by_stream),
            ):
                by_stream[x["stream_id"]]["reservations"].append((x["reservation_id"], int(x["quantity"])))
        for r in out:
            del r["stream_id"]
        return out

    def fillable(self, policies: Policies | None = None) -> list[tuple[str, str]]:
        """(SKU, location) pairs where units are free for a waiting backordered line of the SKU
        whose group includes the location: available units there, or a location that allows
        backorders. A movement that frees units fills the queue at once; these are the units no
        movement freed (a location's policy changed, a channel's group gained the location)."""
        rows = self.db.query(
            "SELECT w.sku, w.channel, w.location AS named, s.location FROM backorders_waiting w "
            "JOIN stock_levels s ON s.sku = w.sku AND s.available > 0 "
            "UNION SELECT w.sku, w.channel, w.location AS named, p.location FROM backorders_waiting w "
            "JOIN location_policies p ON p.backorders = 1"
        )
        if not rows:
            return []
        by_channel = (policies or ChannelPolicies(self.db).current()).by_channel
        pairs = set()
        for r in rows:
            policy = by_channel.get(r["channel"])
            group = [r["named"]] if r["named"] else (policy.locations if policy is not None else ())
            if r["location"] in group:
                pairs.add((r["sku"], r["location"]))
        return sorted(pairs)

    def sweep(self) -> dict[str, int]:
        """One pass; returns how many exceptions were opened and closed and commands submitted."""
        now = self.clock()
        opened = closed = submitted = 0
        expired = self.db.query(
            "SELECT s.sku, s.location, min(r.expires_at) AS next_expiry FROM stock_reservations r "
            "JOIN stock_levels s ON s.stream_id = r.stream_id "
            "WHERE r.expires_at IS NOT NULL AND r.expires_at <= %s GROUP BY s.sku, s.location",
            (now,),
        )
        stuck = self.db.query(
            "SELECT order_id, channel, captured_at FROM order_views "
            "WHERE erp_posted = 0 AND stage NOT IN ('cancelled', 'held') "
            "AND captured_at <= %s",
            (now - self.deadline_seconds,),
        )
        held = self.db.query("SELECT order_id, channel, captured_at, state FROM order_views WHERE stage = 'held'")
        # every late order once: an exception opened before (even one an operator closed) is not
        # opened again, so a rebuild of the read model raises nothing twice
        late = self.db.query(
            "SELECT l.order_id, l.reservation_id, l.channel FROM order_late_holds l "
            "LEFT JOIN ledger_exceptions e ON e.kind = 'late-order' AND e.key = l.order_id "
            "WHERE e.key IS NULL"
        )
        policies = ChannelPolicies(self.db).current()  # once a pass, for shortfalls and backorders
        levels = self.below_zero()
        short = self.short(policies, levels)
        short_keys = {f"{r['sku']}@{r['location']}" for r in short}
        negative = self.negative(levels)
        negative_keys = {f"{r['sku']}@{r['location']}" for r in negative}
        expired_keys = {f"{r['sku']}@{r['location']}" for r in expired}
        stuck_keys = {r["order_id"] for r in stuck}
        held_keys = {r["order_id"] for r in held}
        with self.db.transaction() as tx:
            for r in expired:
                opened += exceptions.open_exception(
                    tx,
                    "reservation-expired",
                    f"{r['sku']}@{r['location']}",
                    {"sku": r["sku"], "location": r["location"], "expired_at": r["next_expiry"]},
                )
            for r in stuck:
                opened += exceptions.open_exception(
                    tx,
                    "stuck-order",
                    r["order_id"],
                    {
                        "order_id": r["order_id"],
                        "channel": r["channel"],
                        "captured_at": r["captured_at"],
                        "deadline_seconds": self.deadline_seconds,
                    },
                )
            for r in short:
                opened += exceptions.open_exception(
                    tx, "shortfall", f"{r['sku']}@{r['location']}", shortfall(r), refresh=True
                )
            for r in negative:
                key = f"{r['sku']}@{r['location']}"
                opened += exceptions.open_exception(tx, "negative-stock", key, r, refresh=True)
            for r in held:
                opened += exceptions.open_exception(tx, "held-order", r["order_id"], held_order(r))
            for r in late:
                detail = {"order_id": r["order_id"], "channel": r["channel"], "reservation_id": r["reservation_id"]}
                opened += exceptions.open_exception(tx, "late-order", r["order_id"], detail)
            for kind, keys in (
                ("reservation-expired", expired_keys),
                ("stuck-order", stuck_keys),
                ("shortfall", short_keys),
                ("negative-stock", negative_keys),
                ("held-order", held_keys),
            ):
                for row in exceptions.list_exceptions_tx(tx, kind):
                    if row["key"] not in keys:
                        closed += exceptions.close_exception(tx, kind, row["key"], {"resolved": True})
        when = datetime.fromtimestamp(now, UTC)
        for r in expired:
            try:
                self.submit(ReleaseExpired(sku=r["sku"], location=r["location"], now=when))
                submitted += 1
            except Exception:
                log.exception("could not submit ReleaseExpired")
        for r in short:
            try:
                self.submit(CoverShortfall(sku=r["sku"], location=r["location"]))
                submitted += 1
            except Exception:
                log.exception("could not submit CoverShortfall")
        for sku, location in self.fillable(policies):
            try:
                self.submit(FillBackorders(sku=sku, location=location))
                submitted += 1
            except Exception:
                log.exception("could not submit FillBackorders")
        for kind, n in exceptions.open_counts(self.db).items():
            metrics.EXCEPTIONS_OPEN.labels(kind).set(n)
        return {"opened": opened, "closed": closed, "submitted": submitted}


def held_order(row: dict[str, Any]) -> dict[str, Any]:
    """A `held-order` exception's detail: the order and why its checks held it."""
    state = row["state"]
    if isinstance(state, str | bytes):
        state = orjson.loads(state)
    validation = (state or {}).get("validation") or {}
    return {
        "order_id": row["order_id"],
        "channel": row["channel"],
        "captured_at": row["captured_at"],
        "holds": validation.get("holds", []),
    }


def shortfall(row: dict[str, Any]) -> dict[str, Any]:
    """A `shortfall` exception's detail: the SKU-location, the units short and the order lines
    (newest reservations first) that no unit on hand covers any more. `row["reservations"]`: its
    open reservations `(id, units)`, oldest first."""
    lines = []
    short = int(row.get("short", -int(row["available"])))
    for rid, units in uncovered(list(row["reservations"]), short):
        parsed = parse_reservation_id(rid)
        order_id, line_id = parsed if parsed else (None, None)
        lines.append({"reservation_id": rid, "order_id": order_id, "line_id": line_id, "quantity": units})
    return {
        "sku": row["sku"],
        "location": row["location"],
        "short": short,
        "uncovered": lines,
    }
