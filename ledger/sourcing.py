"""Sourcing: which locations of a channel's group reserve an order line, and how many units each.

The plan is deterministic and simple to explain:
1. the first location, in the group's order, that can fill the whole line alone;
2. else the fewest locations that together can, and of those the set that comes first in the
   group's order; each takes what it has, in the group's order, the last one the rest;
3. else (the group together is short) every location gives what it has, in the group's order,
   and the rest of the line is short: refused, or backordered with `allow_partial`.

A location that allows backorders can give any quantity. A line naming its location is planned
over that location alone.
"""

from __future__ import annotations

from collections.abc import Sequence

# (location, units it can give; None for a location that allows backorders)
Capacity = tuple[str, int | None]


def _can(cap: int | None, want: int) -> int:
    return want if cap is None else max(0, min(cap, want))


def plan(quantity: int, capacities: Sequence[Capacity]) -> tuple[list[tuple[str, int]], int]:
    """The allocations `[(location, units)]` for `quantity` units, and the units left short."""
    usable = [(loc, cap) for loc, cap in capacities if cap is None or cap > 0]
    for loc, cap in usable:
        if _can(cap, quantity) == quantity:
            return [(loc, quantity)], 0
    sizes = [quantity if cap is None else min(cap, quantity) for _, cap in usable]
    if sum(sizes) < quantity:
        out = [(loc, n) for (loc, _), n in zip(usable, sizes, strict=True) if n > 0]
        return out, quantity - sum(sizes)
    # The fewest locations: the largest first reach the quantity with the smallest count.
    need, count = quantity, 0
    for n in sorted(sizes, reverse=True):
        need -= n
        count += 1
        if need <= 0:
            break
    # Of the sets of `count` locations that can fill the line, the first in the group's order.
    chosen: list[int] = []
    left = quantity
    for i, n in enumerate(sizes):
        picks = count - len(chosen)
        if picks == 0 or left <= 0:
            break
        rest = sorted(sizes[i + 1 :], reverse=True)[: picks - 1]
        if n + sum(rest) >= left:
            chosen.append(i)
            left -= n
    out = []
    left = quantity
    for i in chosen:
        n = min(sizes[i], left)
        out.append((usable[i][0], n))
        left -= n
    return out, 0
