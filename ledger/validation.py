"""Order checks: the validation stage between capture and posting to the ERP.

A check is any callable with a `name` that gets the canonical order (`OrderToCheck`: its id,
channel, lines and the facts its channel gave, such as the total and the region it ships to)
and answers None to pass it or a reason to hold it. Checks run when the order is captured; an
order any check holds is `held` (not posted until an operator releases it), else `validated`.
No check configured: no validation stage, the order goes straight on.

The facts a check may read (`OrderToCheck.facts`), none of them personal data:
- `total`, `currency`: the order's total as an exact decimal string and its ISO 4217 code;
- `region`: the ISO 3166-1 alpha-2 country the order ships to.
A check that asks an outside service (tax, fraud) fits the same shape.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol


@dataclass(frozen=True)
class OrderToCheck:
    order_id: str
    channel: str
    lines: tuple[Mapping[str, Any], ...]
    facts: Mapping[str, Any] = field(default_factory=dict)


class OrderCheck(Protocol):
    """Passes an order (None) or names why it is held."""

    @property
    def name(self) -> str: ...

    def __call__(self, order: OrderToCheck) -> str | None: ...


def _decimal(value: object) -> Decimal | None:
    try:
        d = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return d if d.is_finite() else None


@dataclass(frozen=True)
class AmountCheck:
    """Holds an order whose total is above the limit for its currency (`limits`: currency ->
    amount, `*` for any currency), or whose total is not a number at or above zero."""

    limits: Mapping[str, Decimal]
    name: str = "amount"

    def __call__(self, order: OrderToCheck) -> str | None:
        if "total" not in order.facts:
            return None
        total = _decimal(order.facts["total"])
        if total is None or total < 0:
            return f"the order's total {str(order.facts['total'])[:40]!r} is not an amount"
        currency = str(order.facts.get("currency") or "")
        limit = self.limits.get(currency, self.limits.get("*"))
        if limit is not None and total > limit:
            unit = f" {currency}" if currency else ""
            return f"total {total}{unit} is above the {limit}{unit} limit"
        return None


@dataclass(frozen=True)
class RegionCheck:
    """Holds an order shipping to a region outside `regions` (an order with no region passes)."""

    regions: frozenset[str]
    name: str = "region"

    def __call__(self, order: OrderToCheck) -> str | None:
        region = order.facts.get("region")
        if region and str(region).upper() not in self.regions:
            return f"ships to {str(region)[:8]}, outside {', '.join(sorted(self.regions))}"
        return None


def run_checks(checks: Sequence[OrderCheck], order: OrderToCheck) -> list[dict[str, str]]:
    """The holds the checks give (`{check, reason}`), in the checks' order; empty: validated."""
    holds = []
    for check in checks:
        reason = check(order)
        if reason:
            holds.append({"check": check.name, "reason": str(reason)[:300]})
    return holds
