"""Channel policies: which locations fulfil a sales channel and how much of their stock it may sell.

A policy is versioned data: every change is a new row with who made it and when, and the
history is kept. `ATS(channel, sku) = max(0, Σ available over the channel's locations −
safety stock − buffer)`, or 0 when the SKU is excluded. The safety stock is the channel
default unless the SKU has an override; the buffer is a fixed number of units or a
percentage (rounded up) of the summed available.

`ChannelPolicies` is also the ledger's `LocationDirectory`: orders of a channel reserve at
the channel's locations, in their order.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import orjson

from adapters.persistence.db import Database, Tx
from ledger.bounds import MAX_QUANTITY, check_id
from ledger.commands import ChangeChannelPolicy, Command
from ledger.errors import InvalidCommandError

TABLE = "channel_policies"


@dataclass(frozen=True)
class ChannelPolicy:
    channel: str
    locations: tuple[str, ...]
    safety_stock: int = 0
    safety_stock_overrides: dict[str, int] = field(default_factory=dict)
    buffer_units: int = 0
    buffer_percent: int = 0
    excluded_skus: frozenset[str] = frozenset()
    version: int = 0
    actor: str = ""
    at: str = ""

    def __post_init__(self) -> None:
        check_id(self.channel, "channel")
        if not self.locations:
            raise InvalidCommandError("a channel needs at least one location")
        if len(set(self.locations)) != len(self.locations):
            raise InvalidCommandError("a location appears twice in the channel's group")
        for loc in self.locations:
            check_id(loc, "location")
        for n in (self.safety_stock, self.buffer_units, *self.safety_stock_overrides.values()):
            if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= MAX_QUANTITY:
                raise InvalidCommandError(
                    f"safety stock and buffer units are whole numbers from 0 to {MAX_QUANTITY}"
                )
        if (
            isinstance(self.buffer_percent, bool)
            or not isinstance(self.buffer_percent, int)
            or not (0 <= self.buffer_percent <= 100)
        ):
            raise InvalidCommandError("a buffer percentage is a whole number from 0 to 100")
        if self.buffer_units and self.buffer_percent:
            raise InvalidCommandError("a buffer is either units or a percentage, not both")
        for sku in (*self.safety_stock_overrides, *self.excluded_skus):
            check_id(sku, "sku")

    def safety_for(self, sku: str) -> int:
        return self.safety_stock_overrides.get(sku, self.safety_stock)

    def ats(self, sku: str, total_available: int) -> int:
        """The available-to-sell for a SKU, given the sum of available over the channel's locations."""
        if sku in self.excluded_skus:
            return 0
        buffer = self.buffer_units or -(-max(total_available, 0) * self.buffer_percent // 100)
        return max(0, total_available - self.safety_for(sku) - buffer)

    def rules(self) -> dict[str, Any]:
        """The policy without its version and author: what `PolicyChanged` carries in the log."""
        return {
            "locations": list(self.locations),
            "safety_stock": self.safety_stock,
            "safety_stock_overrides": dict(sorted(self.safety_stock_overrides.items())),
            "buffer_units": self.buffer_units,
            "buffer_percent": self.buffer_percent,
            "excluded_skus": sorted(self.excluded_skus),
        }

    @classmethod
    def from_rules(cls, channel: str, rules: dict[str, Any], version: int, actor: str = "") -> ChannelPolicy:
        """Inverse of `rules()`; raises InvalidCommandError (or KeyError, TypeError) on a malformed dict."""
        if not all(isinstance(rules[k], list) for k in ("locations", "excluded_skus")) or not isinstance(
            rules["safety_stock_overrides"], dict
        ):
            raise InvalidCommandError("malformed channel policy")
        return cls(
            channel=channel,
            locations=tuple(rules["locations"]),
            safety_stock=rules["safety_stock"],
            safety_stock_overrides=dict(rules["safety_stock_overrides"]),
            buffer_units=rules["buffer_units"],
            buffer_percent=rules["buffer_percent"],
            excluded_skus=frozenset(rules["excluded_skus"]),
            version=version,
            actor=actor,
        )

    def as_dict(self) -> dict[str, Any]:
        buffer = {"percent": self.buffer_percent} if self.buffer_percent else {"units": self.buffer_units}
        return {
            "channel": self.channel,
            "version": self.version,
            "locations": list(self.locations),
            "safety_stock": self.safety_stock,
            "safety_stock_overrides": dict(self.safety_stock_overrides),
            "buffer": buffer,
            "excluded_skus": sorted(self.excluded_skus),
            "changed_by": self.actor,
            "changed_at": self.at,
        }


@dataclass(frozen=True)
class Policies:
    """A snapshot of every channel's current policy, as one projection batch sees it."""

    by_channel: dict[str, ChannelPolicy]
    version: int  # the newest policy row id; 0 when there is none

    def channels_at(self, location: str) -> list[ChannelPolicy]:
        return [p for p in self.by_channel.values() if location in p.locations]


def _row_to_policy(r: dict[str, Any]) -> ChannelPolicy:
    return ChannelPolicy(
        channel=r["channel"],
        locations=tuple(orjson.loads(r["locations"])),
        safety_stock=int(r["safety_stock"]),
        safety_stock_overrides=orjson.loads(r["overrides"]),
        buffer_units=int(r["buffer_units"]),
        buffer_percent=int(r["buffer_percent"]),
        excluded_skus=frozenset(orjson.loads(r["excluded"])),
        version=int(r["id"]),
        actor=r["actor"],
        at=r["at"],
    )


_COLUMNS = (
    "id, channel, locations, safety_stock, overrides, buffer_units, buffer_percent, excluded, actor, at"
)


class ChannelPolicies:
    """The policy store (a `LocationDirectory` for the ledger's order capture)."""

    CACHE_SECONDS = 1.0

    def __init__(self, db: Database, record: Callable[[Command], Any] | None = None) -> None:
        self.db = db
        self.record = record  # executes a command through the ledger's writer (set by the wiring)
        self._lock = threading.Lock()
        self._cached: tuple[float, Policies] | None = None

    def put(self, policy: ChannelPolicy, actor: str) -> ChannelPolicy:
        """Stores a new version of the channel's policy; returns it with its version."""
        at = datetime.now(UTC).isoformat()
        with self.db.transaction() as tx:
            row = tx.execute(
                f"INSERT INTO {TABLE} (channel, locations, safety_stock, overrides, buffer_units, "
                "buffer_percent, excluded, actor, at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
                (
                    policy.channel,
                    orjson.dumps(list(policy.locations)).decode(),
                    policy.safety_stock,
                    orjson.dumps(policy.safety_stock_overrides, option=orjson.OPT_SORT_KEYS).decode(),
                    policy.buffer_units,
                    policy.buffer_percent,
                    orjson.dumps(sorted(policy.excluded_skus)).decode(),
                    actor,
                    at,
                ),
            ).fetchone()
        with self._lock:
            self._cached = None
        assert row is not None
        saved = replace(policy, version=int(row["id"]), actor=actor, at=at)
        self.log(saved)
        return saved

    def log(self, policy: ChannelPolicy) -> None:
        """Records the version in the ledger (`PolicyChanged`): the `ats` read model applies it from there."""
        if self.record is not None:
            self.record(
                ChangeChannelPolicy(
                    channel=policy.channel,
                    version=policy.version,
                    policy=policy.rules(),
                    changed_by=policy.actor,
                    cause={"source": "channels", "reference": f"{policy.channel}@{policy.version}"},
                )
            )

    def sync(self) -> int:
        """Records every channel's current version in the ledger (a no-op for versions already there).

        Heals a version stored here whose command never reached the ledger (a crash in between),
        and policies written before policy changes were facts in the log. Returns the channels.
        """
        policies = list(self.current().by_channel.values())
        for p in policies:
            self.log(p)
        return len(policies)

    def current(self, tx: Tx | None = None) -> Policies:
        """Every channel's newest policy (read in `tx` when given, so a batch sees one snapshot)."""
        sql = (
            f"SELECT {_COLUMNS} FROM {TABLE} p WHERE id = (SELECT MAX(id) FROM {TABLE} q "
            "WHERE q.channel = p.channel)"
        )
        rows = tx.execute(sql).fetchall() if tx is not None else self.db.query(sql)
        by_channel = {r["channel"]: _row_to_policy(r) for r in rows}
        return Policies(by_channel, max((p.version for p in by_channel.values()), default=0))

    def get(self, channel: str) -> ChannelPolicy | None:
        return self.cached().by_channel.get(channel)

    def history(self, channel: str, limit: int = 100) -> list[ChannelPolicy]:
        rows = self.db.query(
            f"SELECT {_COLUMNS} FROM {TABLE} WHERE channel = %s ORDER BY id DESC LIMIT %s", (channel, limit)
        )
        return [_row_to_policy(r) for r in rows]

    def cached(self) -> Policies:
        with self._lock:
            if self._cached is not None and time.monotonic() - self._cached[0] < self.CACHE_SECONDS:
                return self._cached[1]
        policies = self.current()
        with self._lock:
            self._cached = (time.monotonic(), policies)
        return policies

    def locations_for(self, channel: str) -> Sequence[str]:
        policy = self.cached().by_channel.get(channel)
        return () if policy is None else policy.locations
