"""The channel policy store: versioned rows of each channel's policy, with who changed it and when.

The policy itself and the ATS formula are domain rules (`ledger.policy`); this module only
stores and loads them.

`ChannelPolicies` is also the ledger's `LocationDirectory`: orders of a channel reserve at
the channel's locations, in their order.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import orjson

from adapters.persistence.db import Database, Tx
from ledger.commands import ChangeChannelPolicy, Command
from ledger.policy import ChannelPolicy, Policies

__all__ = ["ChannelPolicies", "ChannelPolicy", "Policies"]

TABLE = "channel_policies"


def _row_to_policy(r: dict[str, Any]) -> ChannelPolicy:
    return ChannelPolicy(
        channel=r["channel"],
        locations=tuple(orjson.loads(r["locations"])),
        safety_stock=int(r["safety_stock"]),
        safety_stock_overrides=orjson.loads(r["overrides"]),
        buffer_units=int(r["buffer_units"]),
        buffer_percent=int(r["buffer_percent"]),
        excluded_skus=frozenset(orjson.loads(r["excluded"])),
        include_incoming_days=int(r["include_incoming_days"]),
        version=int(r["id"]),
        actor=r["actor"],
        at=r["at"],
    )


_COLUMNS = (
    "id, channel, locations, safety_stock, overrides, buffer_units, buffer_percent, excluded, "
    "include_incoming_days, actor, at"
)


class ChannelPolicies:
    """The policy store (a `LocationDirectory` for the ledger's order capture)."""

    CACHE_SECONDS = 1.0

    def __init__(self, db: Database, record: Callable[[Command], Any] | None = None) -> None:
        self.db = db
        self.record = record  # executes a command through the ledger's writer (given by `bootstrap()`)
        self._lock = threading.Lock()
        self._cached: tuple[float, Policies] | None = None

    def put(self, policy: ChannelPolicy, actor: str) -> ChannelPolicy:
        """Stores a new version of the channel's policy; returns it with its version."""
        at = datetime.now(UTC).isoformat()
        with self.db.transaction() as tx:
            row = tx.execute(
                f"INSERT INTO {TABLE} (channel, locations, safety_stock, overrides, buffer_units, "
                "buffer_percent, excluded, include_incoming_days, actor, at) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
                (
                    policy.channel,
                    orjson.dumps(list(policy.locations)).decode(),
                    policy.safety_stock,
                    orjson.dumps(policy.safety_stock_overrides, option=orjson.OPT_SORT_KEYS).decode(),
                    policy.buffer_units,
                    policy.buffer_percent,
                    orjson.dumps(sorted(policy.excluded_skus)).decode(),
                    policy.include_incoming_days,
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

    def incoming_days(self, channel: str) -> int:
        policy = self.cached().by_channel.get(channel)
        return 0 if policy is None else policy.include_incoming_days

    def incoming_days_at(self, location: str) -> int:
        return self.cached().incoming_days_at(location)
