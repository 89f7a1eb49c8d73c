"""The outbound ATS push to Shopify: a durable consumer of the `ats` read model with its own position.

Feeding (`Feeder.step`): the `ats` rows of channels with a Shopify target whose `position` is
newer than the feeder's own position (`shopify_push_position`) become pending writes in
`shopify_writes`, one row per (shop, Shopify location, SKU) keeping only the newest value
(an upsert: coalescing). The rows and the new position commit together, so a restart neither
loses nor repeats a change. The projection runner writes `ats` rows in position order under its
tracking lock, so every row committed later carries a newer position.

Pushing (`Pusher.step`, one per shop): claims up to `batch` pending rows (`FOR UPDATE SKIP
LOCKED` on PostgreSQL: several workers never claim the same row), resolves each SKU's Shopify
inventory item (mapping `shopify/inventory_item/{id}` → SKU, else an `inventory_items/update`
observation, else a `productVariants` lookup by SKU, each learned as a mapping), reads
Shopify's level before the first write of an item, and sends one `inventorySetQuantities` with
`changeFromQuantity` = what the ledger last knew Shopify held, `reason: correction`,
`referenceDocumentUri: ledger://{shop}/positions/{newest position}` and an `@idempotent` key
derived from the exact write (a retry of the same write reuses it).

Outcomes: accepted → `accepted`/`accepted_position` move, the failure exception closes;
`CHANGE_FROM_QUANTITY_STALE` → the stale items are re-read, Shopify's level is recorded as an
observation (`shopify_observations`, what reconciliation reads), counted, and written again at
once; `THROTTLED`/429 → nothing changes, the pusher waits; an unknown outcome (5xx, timeout,
dropped connection) or an answer not understood → the rows stay pending with a reason, retried
with exponential backoff, an exception `shopify-write` after the first refusal or the third
unknown outcome. A SKU without an inventory item is an exception `shopify-unresolved-sku`. A
failing row never blocks the others: it waits for its `next_at`, the others go on.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from adapters import shopify_metrics as m
from adapters.exceptions import close_exception, open_exception
from adapters.loop import Loop
from adapters.persistence.db import Database, Tx
from adapters.reconciliation.engine import drift_key
from adapters.reconciliation.thresholds import Threshold, parse_thresholds
from adapters.shopify_admin import (
    MUTATION_COST,
    AdminClient,
    AdminError,
    Refused,
    Throttled,
    Unavailable,
    gid,
    numeric_id,
)
from adapters.shopify_recovery import Recovery

log = logging.getLogger("ledger.shopify.push")

WRITES = "shopify_writes"
POSITION = "shopify_push_position"
TARGETS = "shopify_targets"
SYNC = "shopify_sync"
FAILED_KIND = "shopify-write"
UNRESOLVED_KIND = "shopify-unresolved-sku"
REASON = "correction"
UNKNOWN_OUTCOMES_BEFORE_EXCEPTION = 3
MAX_BACKOFF_SECONDS = 300.0

PENDING = "(accepted_position IS NULL OR position > accepted_position)"


def _now() -> str:
    return datetime.now(UTC).isoformat()


# ---------------------------------------------------------------------- targets


class ShopifyTargets:
    """Which channel's ATS goes to which Shopify shop and location (versioned: every change is a row)."""

    def __init__(self, db: Database, shops: Sequence[str]) -> None:
        self.db = db
        self.shops = frozenset(shops)

    def set(self, channel: str, shop: str | None, location_id: str | None, actor: str) -> None:
        """Sets (or with `shop=None` removes) the channel's target; the feeder sends its whole ATS."""
        if shop is not None and shop not in self.shops:
            raise ValueError(f"shop {shop!r} is not in LEDGER_SHOPIFY_SHOPS")
        if shop is not None and not (location_id or "").startswith("gid://shopify/Location/"):
            raise ValueError("location_id is Shopify's location gid (gid://shopify/Location/…)")
        cur = self.get(channel)
        if cur == ({"shop": shop, "location_id": location_id} if shop else None):
            return
        self.db.execute(
            f"INSERT INTO {TARGETS} (channel, shop, location_id, actor, at) VALUES (%s, %s, %s, %s, %s)",
            (channel, shop, location_id if shop else None, actor, _now()),
        )

    def get(self, channel: str) -> dict[str, Any] | None:
        row = self.db.query_one(
            f"SELECT shop, location_id FROM {TARGETS} WHERE channel = %s ORDER BY id DESC LIMIT 1", (channel,)
        )
        return None if row is None or row["shop"] is None else {"shop": row["shop"], "location_id": row["location_id"]}

    @staticmethod
    def current(tx: Tx) -> list[dict[str, Any]]:
        return tx.execute(
            f"SELECT id, channel, shop, location_id, fed FROM {TARGETS} t WHERE id = "
            f"(SELECT MAX(id) FROM {TARGETS} u WHERE u.channel = t.channel) AND shop IS NOT NULL"
        ).fetchall()


# ---------------------------------------------------------------------- feeding


def _upsert(tx: Tx, rows: Sequence[tuple[str, str, str, str, int, int]]) -> None:
    """(shop, location_id, sku, channel, desired, position) → pending writes, newest value kept."""
    if not rows:
        return
    now = _now()
    tx.executemany(
        f"INSERT INTO {WRITES} (shop, location_id, sku, channel, desired, position, enqueued_at, changed_at) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (shop, location_id, sku) DO UPDATE SET "
        "desired = excluded.desired, position = excluded.position, channel = excluded.channel, "
        "changed_at = excluded.changed_at, next_at = 0, "
        f"enqueued_at = CASE WHEN {WRITES}.accepted_position IS NULL OR {WRITES}.position > "
        f"{WRITES}.accepted_position THEN {WRITES}.enqueued_at ELSE excluded.enqueued_at END "
        f"WHERE excluded.position > {WRITES}.position",
        [(*r, now, now) for r in rows],
    )


class Feeder:
    """Turns ATS changes of channels with a Shopify target into pending writes (its own position)."""

    NAME = "shopify-push"

    def __init__(self, db: Database, shops: Sequence[str], on_fed: Callable[[], None] | None = None) -> None:
        self.db = db
        self.shops = frozenset(shops)
        self.on_fed = on_fed

    def step(self) -> int:
        with self.db.transaction() as tx:
            lock = " FOR UPDATE" if tx.dialect == "postgres" else ""
            row = tx.execute(f"SELECT position FROM {POSITION} WHERE name = %s{lock}", (self.NAME,)).fetchone()
            if row is None:
                tx.execute(
                    f"INSERT INTO {POSITION} (name, position) VALUES (%s, 0) ON CONFLICT (name) DO NOTHING",
                    (self.NAME,),
                )
                position = 0
            else:
                position = int(row["position"])
            targets = [t for t in ShopifyTargets.current(tx) if t["shop"] in self.shops]
            if not targets:
                return 0
            by_channel = {t["channel"]: t for t in targets}
            channels = sorted(by_channel)
            marks = ", ".join(["%s"] * len(channels))
            changed = tx.execute(
                f"SELECT channel, sku, available, position FROM ats WHERE channel IN ({marks}) AND position > %s",
                (*channels, position),
            ).fetchall()
            new = [t for t in targets if not t["fed"]]  # a new target: the channel's whole ATS
            if new:
                marks_new = ", ".join(["%s"] * len(new))
                changed += tx.execute(
                    f"SELECT channel, sku, available, position FROM ats WHERE channel IN ({marks_new})",
                    [t["channel"] for t in new],
                ).fetchall()
                tx.executemany(f"UPDATE {TARGETS} SET fed = 1 WHERE id = %s", [(t["id"],) for t in new])
            changed += self._removed(tx, by_channel, channels, position)
            newest: dict[tuple[str, str, str], tuple[str, str, str, str, int, int]] = {}
            for r in changed:
                t = by_channel[r["channel"]]
                key = (t["shop"], t["location_id"], r["sku"])
                cand = (t["shop"], t["location_id"], r["sku"], r["channel"], int(r["available"]), int(r["position"]))
                if key not in newest or cand[5] > newest[key][5]:
                    newest[key] = cand
            _upsert(tx, sorted(newest.values()))
            top = max((int(r["position"]) for r in changed), default=position)
            if top > position:
                tx.execute(f"UPDATE {POSITION} SET position = %s WHERE name = %s", (top, self.NAME))
        if newest and self.on_fed is not None:
            self.on_fed()
        return len(newest)

    @staticmethod
    def _removed(
        tx: Tx, by_channel: dict[str, dict[str, Any]], channels: list[str], position: int
    ) -> list[dict[str, Any]]:
        """A policy change can remove `ats` rows (the SKU left every location of the channel): such a
        SKU's ATS is 0, written at the policy change's position."""
        marks = ", ".join(["%s"] * len(channels))
        policies = tx.execute(
            f"SELECT channel, position FROM ats_policies WHERE channel IN ({marks}) AND position > %s",
            (*channels, position),
        ).fetchall()
        out: list[dict[str, Any]] = []
        for p in policies:
            t = by_channel[p["channel"]]
            gone = tx.execute(
                f"SELECT sku FROM {WRITES} w WHERE shop = %s AND location_id = %s AND channel = %s "
                "AND desired <> 0 AND NOT EXISTS (SELECT 1 FROM ats a WHERE a.channel = w.channel AND a.sku = w.sku)",
                (t["shop"], t["location_id"], p["channel"]),
            ).fetchall()
            out += [
                {"channel": p["channel"], "sku": g["sku"], "available": 0, "position": int(p["position"])}
                for g in gone
            ]
        return out


# ---------------------------------------------------------------------- pushing


def write_key(shop: str, rows: Sequence[dict[str, Any]]) -> str:
    """The idempotency key of one exact write: the same rows, values and compares give the same key."""
    h = hashlib.sha256(shop.encode())
    for r in sorted(rows, key=lambda r: (r["item_id"], r["location_id"])):
        h.update(f"\x1f{r['item_id']}\x1f{r['location_id']}\x1f{r['desired']}\x1f{r['position']}\x1f{r['known']}".encode())
    return "ledger-" + h.hexdigest()[:40]


def backoff(attempts: int) -> float:
    return min(MAX_BACKOFF_SECONDS, 2.0 ** max(0, attempts - 1))


def _item_from_mappings(tx: Tx, sku: str) -> str | None:
    row = tx.execute(
        "SELECT external_id FROM mappings WHERE source = 'shopify' AND kind = 'inventory_item' AND canonical = %s "
        "ORDER BY version DESC LIMIT 1",
        (sku,),
    ).fetchone()
    return None if row is None else gid("InventoryItem", row["external_id"])


def _item_from_observations(tx: Tx, sku: str) -> str | None:
    rows = tx.execute(
        "SELECT object_id FROM shopify_observations WHERE kind = 'item' AND sku = %s", (sku,)
    ).fetchall()
    return gid("InventoryItem", rows[0]["object_id"]) if len(rows) == 1 else None


def record_observation(tx: Tx, item_id: str, location_id: str, available: int) -> None:
    """Shopify's level as read through the API, beside the webhook observations (reconciliation reads them)."""
    stamp = _now()
    tx.execute(
        "INSERT INTO shopify_observations (kind, object_id, location_id, available, sku, updated_at, inbox_id) "
        "VALUES ('level', %s, %s, %s, NULL, %s, 0) ON CONFLICT (kind, object_id, location_id) DO UPDATE SET "
        "available = excluded.available, updated_at = excluded.updated_at, inbox_id = excluded.inbox_id "
        "WHERE shopify_observations.updated_at IS NULL OR shopify_observations.updated_at <= excluded.updated_at",
        (numeric_id(item_id), numeric_id(location_id), available, stamp),
    )


class Pusher:
    """Sends one shop's pending writes to Shopify (a `Loop` step)."""

    def __init__(
        self,
        db: Database,
        client: AdminClient,
        mappings: Any,
        batch: int = 250,
        sleep: Callable[[float], Any] = time.sleep,
        threshold: Threshold | None = None,
    ) -> None:
        self.threshold = threshold or Threshold()
        self.db = db
        self.client = client
        self.shop = client.shop
        self.mappings = mappings
        self.batch = batch
        self.sleep = sleep
        self.stale_compares = 0
        self.accepted = 0
        self._learned: list[tuple[str, str, str]] = []  # (inventory item id, sku, from): kept as mappings

    # -- public

    def step(self) -> int:
        self.client.pace(MUTATION_COST)  # wait for a mutation's cost outside any transaction
        retry_after = 0.0
        with self.db.transaction() as tx:
            rows = self._claim(tx)
            if not rows:
                self._gauge(tx)
                return 0
            try:
                done = self._push(tx, rows)
            except Throttled as e:
                retry_after, done = e.retry_after, 0
                m.THROTTLE_WAITS.labels(self.shop).inc()
            self._save_throttle(tx)
            self._gauge(tx)
        self._keep_learned()
        if retry_after:
            self.sleep(retry_after)
        return done or (1 if retry_after else 0)

    def _keep_learned(self) -> None:
        """Identities learned in the step become versioned mappings (after its transaction)."""
        learned, self._learned = self._learned, []
        if self.mappings is None:
            return
        for item, sku, source in learned:
            if self.mappings.get("shopify", "inventory_item", item) is None:
                try:
                    self.mappings.set("shopify", "inventory_item", item, sku, f"shopify-push ({source})")
                except ValueError:
                    log.warning("inventory item %s could not be kept as a mapping", item)

    # -- steps

    def _claim(self, tx: Tx) -> list[dict[str, Any]]:
        lock = " FOR UPDATE SKIP LOCKED" if tx.dialect == "postgres" else ""
        return tx.execute(
            f"SELECT shop, location_id, sku, channel, item_id, desired, position, known, attempts, reason, "
            f"changed_at FROM {WRITES} WHERE shop = %s AND {PENDING} AND next_at <= %s "
            f"ORDER BY position LIMIT %s{lock}",
            (self.shop, time.time(), self.batch),
        ).fetchall()

    def _push(self, tx: Tx, rows: list[dict[str, Any]]) -> int:
        try:
            rows = self._resolve(tx, rows)
            rows = self._read_unknown(tx, rows)
        except (Unavailable, Refused) as e:
            self._fail(tx, rows, e)
            return len(rows)
        if not rows:
            return 1
        try:
            errors = self.client.set_available(
                [
                    {
                        "inventoryItemId": r["item_id"],
                        "locationId": r["location_id"],
                        "quantity": int(r["desired"]),
                        "changeFromQuantity": int(r["known"]),
                    }
                    for r in rows
                ],
                REASON,
                f"ledger://{self.shop}/positions/{max(int(r['position']) for r in rows)}",
                write_key(self.shop, rows),
            )
        except (Unavailable, Refused) as e:
            self._fail(tx, rows, e)
            return len(rows)
        if not errors:
            self._accept(tx, rows)
            return len(rows)
        stale, refused, unnamed = self._sort_errors(rows, errors)
        if stale:
            self._restale(tx, stale)
        for r, message in refused:
            if message.startswith(("INVALID_INVENTORY_ITEM", "ITEM_NOT_STOCKED_AT_LOCATION")):
                self._forget_item(tx, r)
            self._fail(tx, [r], Refused(message))
        if not stale and not refused and unnamed:  # errors naming no quantity: the whole call
            self._fail(tx, rows, Refused("; ".join(unnamed)[:500]))
        return len(rows)  # the others were voided with the call and go again at once

    def _resolve(self, tx: Tx, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Rows with their inventory item id; a SKU Shopify does not know is an exception, not a skip."""
        out = []
        for r in rows:
            if r["item_id"] is None:
                item = _item_from_mappings(tx, r["sku"])
                learned_from = None
                if item is None:
                    item = _item_from_observations(tx, r["sku"])
                    learned_from = "inventory_items/update"
                if item is None:
                    found = self.client.items_for_sku(r["sku"])
                    if len(found) != 1:
                        reason = (
                            f"Shopify has no variant with SKU {r['sku']!r}"
                            if not found
                            else f"{len(found)} Shopify inventory items carry SKU {r['sku']!r}: set the mapping"
                        )
                        self._unresolved(tx, r, reason)
                        continue
                    item, learned_from = found[0], "productVariants lookup"
                if learned_from is not None:
                    self._learned.append((numeric_id(item), r["sku"], learned_from))
                tx.execute(
                    f"UPDATE {WRITES} SET item_id = %s WHERE shop = %s AND location_id = %s AND sku = %s",
                    (item, r["shop"], r["location_id"], r["sku"]),
                )
                close_exception(tx, UNRESOLVED_KIND, f"{self.shop}/{r['sku']}", {"inventory_item": item})
                r = {**r, "item_id": item}
            out.append(r)
        return out

    def _unresolved(self, tx: Tx, r: dict[str, Any], reason: str) -> None:
        attempts = int(r["attempts"]) + 1
        tx.execute(
            f"UPDATE {WRITES} SET attempts = %s, next_at = %s, reason = %s WHERE shop = %s AND location_id = %s "
            "AND sku = %s",
            (attempts, time.time() + backoff(attempts), reason, r["shop"], r["location_id"], r["sku"]),
        )
        open_exception(
            tx, UNRESOLVED_KIND, f"{self.shop}/{r['sku']}",
            {"shop": self.shop, "sku": r["sku"], "channel": r["channel"], "reason": reason},
            int(r["position"]),
        )

    def _read_unknown(self, tx: Tx, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Before the first write of an item, what Shopify holds becomes the compare value."""
        unknown = [r for r in rows if r["known"] is None]
        if not unknown:
            return rows
        levels = self.client.levels([(r["item_id"], r["location_id"]) for r in unknown])
        out = []
        for r in rows:
            if r["known"] is None:
                level = levels.get((r["item_id"], r["location_id"]))
                if level is None:
                    self._forget_item(tx, r)
                    self._fail(tx, [r], Refused(f"inventory item {r['item_id']} is not stocked at {r['location_id']}"))
                    continue
                record_observation(tx, r["item_id"], r["location_id"], level)
                self._set_known(tx, r, level)
                r = {**r, "known": level}
            out.append(r)
        return out

    @staticmethod
    def _forget_item(tx: Tx, r: dict[str, Any]) -> None:
        """A stale identity: the next attempt resolves the SKU again (an operator's new mapping wins)."""
        tx.execute(
            f"UPDATE {WRITES} SET item_id = NULL, known = NULL WHERE shop = %s AND location_id = %s AND sku = %s",
            (r["shop"], r["location_id"], r["sku"]),
        )

    @staticmethod
    def _set_known(tx: Tx, r: dict[str, Any], level: int) -> None:
        tx.execute(
            f"UPDATE {WRITES} SET known = %s WHERE shop = %s AND location_id = %s AND sku = %s",
            (level, r["shop"], r["location_id"], r["sku"]),
        )

    @staticmethod
    def _sort_errors(
        rows: list[dict[str, Any]], errors: list[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], list[tuple[dict[str, Any], str]], list[str]]:
        stale: list[dict[str, Any]] = []
        refused: list[tuple[dict[str, Any], str]] = []
        unnamed: list[str] = []
        for e in errors:
            field = e.get("field") or []
            index = None
            if len(field) >= 3 and field[:2] == ["input", "quantities"]:
                try:
                    index = int(field[2])
                except (TypeError, ValueError):
                    index = None
            message = f"{e.get('code') or 'user error'}: {str(e.get('message'))[:200]}"
            if index is None or not 0 <= index < len(rows):
                unnamed.append(message)
            elif e.get("code") == "CHANGE_FROM_QUANTITY_STALE":
                stale.append(rows[index])
            else:
                refused.append((rows[index], message))
        return stale, refused, unnamed

    def _restale(self, tx: Tx, stale: list[dict[str, Any]]) -> None:
        """Re-reads what Shopify holds, records it as an observation, and lets the write go again."""
        self.stale_compares += len(stale)
        m.STALE_COMPARES.labels(self.shop).inc(len(stale))
        tx.execute(
            f"INSERT INTO {SYNC} (shop, stale_compares) VALUES (%s, %s) ON CONFLICT (shop) DO UPDATE SET "
            f"stale_compares = {SYNC}.stale_compares + excluded.stale_compares",
            (self.shop, len(stale)),
        )
        try:
            levels = self.client.levels([(r["item_id"], r["location_id"]) for r in stale])
        except (Unavailable, Refused) as e:
            for r in stale:
                tx.execute(
                    f"UPDATE {WRITES} SET known = NULL WHERE shop = %s AND location_id = %s AND sku = %s",
                    (r["shop"], r["location_id"], r["sku"]),
                )
            self._fail(tx, stale, e)
            return
        for r in stale:
            level = levels.get((r["item_id"], r["location_id"]))
            if level is None:
                self._forget_item(tx, r)
                self._fail(tx, [r], Refused(f"inventory item {r['item_id']} is not stocked at {r['location_id']}"))
                continue
            record_observation(tx, r["item_id"], r["location_id"], level)
            self._set_known(tx, r, level)
            self._judge(tx, r, level)

    def _judge(self, tx: Tx, r: dict[str, Any], level: int) -> None:
        """A stale compare explained by the ledger's own record is routine; any other difference
        beyond the `shopify` threshold is a drift exception (source `shopify`).

        Explained: Shopify already holds the ledger's value, or Shopify went down by no more than
        the ledger's own ATS went down since its last accepted write (units sold on Shopify orders
        the ledger has captured, which reserved them)."""
        from adapters.exceptions import open_exception

        known, desired = int(r["known"]), int(r["desired"])
        shopify_drop, ledger_drop = known - level, known - int(desired)
        if level == desired or 0 < shopify_drop <= ledger_drop:
            return
        delta = level - desired
        if not self.threshold.exceeded(delta, desired):
            return
        open_exception(
            tx,
            "drift",
            drift_key("shopify", r["sku"], r["location_id"]),
            {
                "source": "shopify", "measure": "available", "sku": r["sku"], "location": r["location_id"],
                "external": level, "ledger": desired, "delta": delta,
                "explanation": f"a stale compare: Shopify held {level} where the ledger last knew {known}; "
                "not explained by orders the ledger captured (the push writes the ledger's value again)",
            },
            int(r["position"]),
        )

    def _accept(self, tx: Tx, rows: list[dict[str, Any]]) -> None:
        at = _now()
        now = datetime.now(UTC)
        tx.executemany(
            f"UPDATE {WRITES} SET accepted = %s, accepted_position = %s, accepted_at = %s, known = %s, "
            "attempts = 0, next_at = 0, reason = NULL WHERE shop = %s AND location_id = %s AND sku = %s",
            [
                (r["desired"], r["position"], at, r["desired"], r["shop"], r["location_id"], r["sku"])
                for r in rows
            ],
        )
        top = max(int(r["position"]) for r in rows)
        tx.execute(
            f"INSERT INTO {SYNC} (shop, last_accepted_at, last_accepted_position) VALUES (%s, %s, %s) "
            f"ON CONFLICT (shop) DO UPDATE SET last_accepted_at = excluded.last_accepted_at, "
            f"last_accepted_position = excluded.last_accepted_position",
            (self.shop, at, top),
        )
        for r in rows:
            try:
                m.PUSH_LAG.labels(self.shop).observe(
                    max(0.0, (now - datetime.fromisoformat(r["changed_at"])).total_seconds())
                )
            except (TypeError, ValueError):
                pass
            if r["reason"]:
                close_exception(tx, FAILED_KIND, f"{self.shop}/{r['location_id']}/{r['sku']}", {"resolved_at": at})
        self.accepted += len(rows)

    def _fail(self, tx: Tx, rows: list[dict[str, Any]], error: AdminError) -> None:
        m.FAILED_WRITES.labels(self.shop).inc(len(rows))
        for r in rows:
            attempts = int(r["attempts"]) + 1
            tx.execute(
                f"UPDATE {WRITES} SET attempts = %s, next_at = %s, reason = %s WHERE shop = %s AND "
                "location_id = %s AND sku = %s",
                (attempts, time.time() + backoff(attempts), error.reason, r["shop"], r["location_id"], r["sku"]),
            )
            if isinstance(error, Refused) or attempts >= UNKNOWN_OUTCOMES_BEFORE_EXCEPTION:
                open_exception(
                    tx, FAILED_KIND, f"{self.shop}/{r['location_id']}/{r['sku']}",
                    {"shop": self.shop, "sku": r["sku"], "location_id": r["location_id"], "desired": int(r["desired"]),
                     "reason": error.reason, "attempts": attempts},
                    int(r["position"]),
                )
        log.warning("Shopify write of %d item(s) failed for %s: %s", len(rows), self.shop, error.reason)

    def _save_throttle(self, tx: Tx) -> None:
        t = self.client.throttle
        if t is None:
            return
        tx.execute(
            f"INSERT INTO {SYNC} (shop, throttle) VALUES (%s, %s) ON CONFLICT (shop) DO UPDATE SET "
            "throttle = excluded.throttle",
            (self.shop, orjson.dumps(t.as_dict()).decode()),
        )

    def _gauge(self, tx: Tx) -> None:
        row = tx.execute(f"SELECT COUNT(*) AS n FROM {WRITES} WHERE shop = %s AND {PENDING}", (self.shop,)).fetchone()
        m.QUEUE_DEPTH.labels(self.shop).set(int(row["n"]) if row else 0)


# ---------------------------------------------------------------------- status


def sync_status(db: Database, shops: Sequence[str]) -> dict[str, Any]:
    """`GET /v1/shopify/sync`: per shop, what waits, what Shopify last accepted, throttle, stale, recovery."""
    out = []
    now = datetime.now(UTC)
    for shop in shops:
        agg = db.query_one(
            f"SELECT COUNT(*) AS pending, MIN(enqueued_at) AS oldest, "
            f"SUM(CASE WHEN reason IS NOT NULL THEN 1 ELSE 0 END) AS failed FROM {WRITES} "
            f"WHERE shop = %s AND {PENDING}",
            (shop,),
        ) or {}
        sync = db.query_one(f"SELECT * FROM {SYNC} WHERE shop = %s", (shop,)) or {}
        oldest = agg.get("oldest")
        throttle = orjson.loads(sync["throttle"]) if sync.get("throttle") else None
        out.append(
            {
                "shop": shop,
                "pending": int(agg.get("pending") or 0),
                "oldest_pending_seconds": (
                    round(max(0.0, (now - datetime.fromisoformat(oldest)).total_seconds()), 3) if oldest else 0
                ),
                "last_accepted": {
                    "at": sync.get("last_accepted_at"),
                    "position": sync.get("last_accepted_position"),
                },
                "throttle": throttle
                or {"currently_available": None, "maximum_available": None, "restore_rate": None},
                "stale_compares": int(sync.get("stale_compares") or 0),
                "failed": int(agg.get("failed") or 0),
                "recovery": {"checkpoint": sync.get("recovery_checkpoint"), "last_run_at": sync.get("recovery_run_at")},
            }
        )
    return {"shops": out}


def failed_writes(db: Database, shop: str) -> list[dict[str, Any]]:
    return db.query(
        f"SELECT location_id, sku, desired, attempts, reason FROM {WRITES} WHERE shop = %s AND {PENDING} "
        "AND reason IS NOT NULL ORDER BY sku",
        (shop,),
    )


# ---------------------------------------------------------------------- wiring


class ShopifySync:
    """Everything the Shopify push needs, built once from settings (`build`)."""

    def __init__(
        self, db: Database, targets: ShopifyTargets, shops: list[str], workers: list[Any],
        recoveries: list[Any] | None = None,
    ) -> None:
        self.db = db
        self.targets = targets
        self.shops = shops
        self.workers = workers  # the feeder and the pushers: every worker process runs them (claims)
        self.recoveries = recoveries or []  # one per shop: run by the elected leader only

    def status(self) -> dict[str, Any]:
        return sync_status(self.db, self.shops)


def build(
    settings: Any, db: Database, mappings: Any, inbox: Any = None, wake_inbox: Any = None, poll: float = 0.5
) -> ShopifySync:
    """Targets, the feeder, one pusher per shop and, with an inbox, one recovery per shop (the
    tables come from the migrations). The recoveries are apart: they run under the leader."""
    tokens: dict[str, str] = settings.shopify_tokens
    shops = sorted(tokens)
    targets = ShopifyTargets(db, shops)
    threshold = parse_thresholds(settings.reconcile_thresholds).get("shopify", Threshold())
    workers: list[Any] = []
    recoveries: list[Any] = []
    if shops:
        pushers = []
        for shop in shops:
            client = AdminClient(shop, tokens[shop], settings.shopify_admin_url, settings.shopify_api_version)
            pusher = Pusher(db, client, mappings, threshold=threshold)
            pushers.append(Loop(f"shopify-push-{shop}", pusher.step, poll))
            if inbox is not None:
                reader = AdminClient(shop, tokens[shop], settings.shopify_admin_url, settings.shopify_api_version)
                recovery = Recovery(db, reader, inbox, on_stored=wake_inbox)
                recoveries.append(Loop(f"shopify-recovery-{shop}", recovery.step,
                                       float(settings.shopify_recovery_interval_seconds)))

        def wake_pushers() -> None:
            for p in pushers:
                p.wake()

        workers.append(Loop("shopify-feed", Feeder(db, shops, on_fed=wake_pushers).step, poll))
        workers.extend(pushers)
    return ShopifySync(db, targets, shops, workers, recoveries)
