"""A channel's policy and the ATS formula: which locations fulfil a channel, and how much it may sell.

`ATS(channel, sku) = max(0, Σ available + Σ incoming counted over the channel's locations
− safety stock − buffer)`, or 0 when the SKU is excluded. The safety stock is the channel
default unless the SKU has an override; the buffer is a fixed number of units or a percentage
(rounded up) of the summed available and counted incoming. The location group's order is the
sourcing order of the channel's orders.

Incoming counted (`include_incoming_days` N, like Salesforce's available-to-order): 0 counts
none. N ≥ 1 counts the incoming units of each lot (an advance shipping notice line, a dispatched
transfer) whose due date was at most N days after the moment the lot was recorded; a lot with
no due date (a dispatched transfer) is due at once. The rule is fixed when the lot is recorded,
so the ATS is a fold of the log (a rebuild gives the same values) and does not change as the
clock passes a due window: a lot announced further out than N days counts only once received.
A receipt of expected units lands the earliest-due lots first.

Pure domain rules: the policy store (`adapters.channels`) keeps versions of these values, the
`ats` read model (`projections.models`) and the explanation apply `available_to_sell`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ledger.bounds import MAX_QUANTITY, check_id
from ledger.errors import InvalidCommandError

DAY = 86_400  # seconds
MAX_INCOMING_DAYS = 3650


@dataclass(frozen=True)
class ChannelPolicy:
    channel: str
    locations: tuple[str, ...]
    safety_stock: int = 0
    safety_stock_overrides: dict[str, int] = field(default_factory=dict)
    buffer_units: int = 0
    buffer_percent: int = 0
    excluded_skus: frozenset[str] = frozenset()
    include_incoming_days: int = 0
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
        days = self.include_incoming_days
        if isinstance(days, bool) or not isinstance(days, int) or not 0 <= days <= MAX_INCOMING_DAYS:
            raise InvalidCommandError(
                f"include_incoming_days is a whole number from 0 to {MAX_INCOMING_DAYS}"
            )
        for sku in (*self.safety_stock_overrides, *self.excluded_skus):
            check_id(sku, "sku")

    def safety_for(self, sku: str) -> int:
        return self.safety_stock_overrides.get(sku, self.safety_stock)

    def buffer_for(self, total_available: int) -> int:
        """The buffer held back: fixed units, or a percentage (rounded up) of the summed available."""
        return self.buffer_units or -(-max(total_available, 0) * self.buffer_percent // 100)

    def ats(self, sku: str, total_available: int, incoming: int = 0) -> int:
        """The available-to-sell for a SKU, given the sum of available over the channel's locations
        and the incoming units it counts there (`counted_incoming`)."""
        if sku in self.excluded_skus:
            return 0
        total = total_available + incoming
        return max(0, total - self.safety_for(sku) - self.buffer_for(total))

    def counted_incoming(self, lots: Iterable[Sequence[Any]]) -> int:
        """The units of these incoming lots (`[due, quantity, lead seconds]`) the channel counts."""
        return counted_lots(lots, self.include_incoming_days)

    def rules(self) -> dict[str, Any]:
        """The policy without its version and author: what `PolicyChanged` carries in the log."""
        return {
            "locations": list(self.locations),
            "safety_stock": self.safety_stock,
            "safety_stock_overrides": dict(sorted(self.safety_stock_overrides.items())),
            "buffer_units": self.buffer_units,
            "buffer_percent": self.buffer_percent,
            "excluded_skus": sorted(self.excluded_skus),
            "include_incoming_days": self.include_incoming_days,
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
            include_incoming_days=rules.get("include_incoming_days", 0),  # absent before it existed
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
            "include_incoming_days": self.include_incoming_days,
            "changed_by": self.actor,
            "changed_at": self.at,
        }


def counted_lots(lots: Iterable[Sequence[Any]], days: int) -> int:
    """The units of incoming lots (`[due, quantity, lead seconds]`) counted under a window of
    `days` (`include_incoming_days`): those whose lead was at most that many days; 0 counts none."""
    if days <= 0:
        return 0
    return sum(int(lot[1]) for lot in lots if lot[2] <= days * DAY)


@dataclass(frozen=True)
class Policies:
    """A snapshot of every channel's current policy, as one projection batch sees it."""

    by_channel: dict[str, ChannelPolicy]
    version: int  # the newest policy row id; 0 when there is none

    def channels_at(self, location: str) -> list[ChannelPolicy]:
        return [p for p in self.by_channel.values() if location in p.locations]

    def incoming_days_at(self, location: str) -> int:
        """The widest `include_incoming_days` of the channels the location fulfils: the incoming
        units there that some channel may have promised (they cover its reservations)."""
        return max((p.include_incoming_days for p in self.channels_at(location)), default=0)


def available_to_sell(
    policy: ChannelPolicy,
    sku: str,
    available: Mapping[str, int],
    incoming: Mapping[str, Iterable[Sequence[Any]]] | None = None,
) -> int:
    """The channel's ATS of `sku`, given `available` per location (a location absent holds none)
    and each location's incoming lots (`[due, quantity, lead seconds]`)."""
    counted = sum(policy.counted_incoming((incoming or {}).get(loc, ())) for loc in policy.locations)
    return policy.ats(sku, sum(available.get(loc, 0) for loc in policy.locations), counted)
