"""Why an outside level differs from the ledger: ranked causes drawn from the ledger's own facts.

`delta = external - ledger`, with the ledger's value taken as of `observed_at` in the quantity the
source reports. Each cause says how much of the delta it explains (same sign convention), how
sure that is (`exact` when the numbers add up, `possible` when the cause's size is unknown), and
names its events (ledger positions) or inbound messages (ids).

Order of the diagnosis:
1. `timing`: the outside number equals the ledger's at a nearby moment: it already counted
   movements recorded after `observed_at`, or not yet those recorded just before. Not drift.
2. A set of at most three known-size causes whose sizes add up to the delta, preferring fewer
   causes and higher-ranked kinds: `parked-message`, `duplicate-refused`,
   `reservations-not-counted`, `correction`.
3. Otherwise the causes that fit the delta's sign, then a POS sequence gap at that location as a
   `possible` cause of what is left, and finally an `unexplained` residual: never hidden.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

from adapters.reconciliation.facts import AsOf, Fact
from adapters.reconciliation.ports import InboundMessage, SequenceGap

RANK = {
    "timing": 1,
    "parked-message": 2,
    "pos-sequence-gap": 3,
    "duplicate-refused": 4,
    "reservations-not-counted": 5,
    "correction": 6,
    "unexplained": 9,
}
MAX_CANDIDATES = 12
MAX_TERMS = 3


@dataclass
class Cause:
    kind: str
    quantity: int
    detail: str
    basis: str = "exact"
    events: list[dict[str, Any]] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)

    @property
    def rank(self) -> int:
        return RANK[self.kind]

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.kind,
            "quantity": self.quantity,
            "basis": self.basis,
            "detail": self.detail,
        }
        if self.events:
            out["events"] = self.events
        if self.messages:
            out["messages"] = self.messages
        return out


def _positions(facts: Sequence[Fact]) -> str:
    ps = [str(f.position) for f in facts]
    return ", ".join(ps[:5]) + (f" and {len(ps) - 5} more" if len(ps) > 5 else "")


def timing(measure: str, external: int, s: AsOf) -> Cause | None:
    """The outside number equals the ledger's value a few movements later or earlier."""
    ledger = s.value(measure)
    running, seen = ledger, []
    for f in s.after:
        e = f.effect(measure)
        if not e:
            continue
        running += e
        seen.append(f)
        if running == external:
            return Cause(
                "timing",
                external - ledger,
                f"the snapshot already counts {len(seen)} movement(s) recorded after observed_at "
                f"(positions {_positions(seen)}): timing, not drift",
                events=[x.ref() for x in seen],
            )
    running, seen = ledger, []
    for f in reversed(s.before):
        e = f.effect(measure)
        if not e:
            continue
        running -= e
        seen.append(f)
        if running == external:
            seen.reverse()
            return Cause(
                "timing",
                external - ledger,
                f"the snapshot does not yet count {len(seen)} movement(s) recorded just before observed_at "
                f"(positions {_positions(seen)}): timing, not drift",
                events=[x.ref() for x in seen],
            )
    return None


def candidates(measure: str, s: AsOf, messages: Sequence[InboundMessage], match: Any) -> list[Cause]:
    """Causes of a known size. `match(effect)` tells whether a message effect is this level's."""
    out: list[Cause] = []
    for m in messages:
        size = sum(e.effect(measure) for e in m.effects if match(e))
        if not size:
            continue
        if m.status == "parked":
            out.append(
                Cause(
                    "parked-message",
                    size,
                    f"inbound {m.source} message {m.id} was parked ({m.reason}); the outside system "
                    f"counts it, the ledger does not",
                    messages=[m.id],
                )
            )
        elif m.status == "duplicate":
            out.append(
                Cause(
                    "duplicate-refused",
                    size,
                    f"inbound {m.source} message {m.id} was refused as a duplicate ({m.reason}); "
                    f"the outside system seems to have counted it twice",
                    messages=[m.id],
                )
            )
    held = s.held()
    sign = 1 if measure == "available" else -1
    what = (
        "the outside system does not count {what} held by the ledger"
        if measure == "available"
        else "the outside system already deducted {what} not yet shipped"
    )
    for rid, n in held.items():
        facts = s.reservations[rid]
        out.append(
            Cause(
                "reservations-not-counted",
                sign * n,
                what.format(what=f"reservation {rid} ({n} unit(s), position {facts[0].position})"),
                events=[f.ref() for f in facts],
            )
        )
    if len(held) > 1:
        total = sum(held.values())
        facts = [f for rid in held for f in s.reservations[rid]]
        out.append(
            Cause(
                "reservations-not-counted",
                sign * total,
                what.format(what=f"all {len(held)} reservations ({total} unit(s))"),
                events=[f.ref() for f in facts],
            )
        )
    for f in s.corrections:
        e = f.effect(measure)
        if e:
            out.append(
                Cause(
                    "correction",
                    -e,
                    f"the outside system has not applied correction {f.reference or ''} at position "
                    f"{f.position} ({f.data.get('reason', '')})".replace("  ", " "),
                    events=[f.ref()],
                )
            )
    out.sort(key=lambda c: c.rank)
    return out[:MAX_CANDIDATES]


def explain(
    measure: str,
    external: int,
    s: AsOf,
    messages: Sequence[InboundMessage] = (),
    gaps: Sequence[SequenceGap] = (),
    match: Any = lambda effect: True,
) -> tuple[str, list[Cause]]:
    """(`matched` | `timing` | `mismatch`, ranked causes) for one level."""
    ledger = s.value(measure)
    delta = external - ledger
    if delta == 0:
        return "matched", []
    t = timing(measure, external, s)
    if t is not None:
        return "timing", [t]
    cands = candidates(measure, s, messages, match)
    for size in range(1, MAX_TERMS + 1):
        best = None
        for combo in combinations(cands, size):
            if sum(c.quantity for c in combo) == delta:
                score = sum(c.rank for c in combo)
                if best is None or score < best[0]:
                    best = (score, list(combo))
        if best is not None:
            return "mismatch", sorted(best[1], key=lambda c: c.rank)
    causes: list[Cause] = []
    residual = delta
    for c in cands:
        if c.quantity * residual > 0 and abs(c.quantity) <= abs(residual):
            causes.append(c)
            residual -= c.quantity
    for g in gaps:
        if residual == 0:
            break
        causes.append(
            Cause(
                "pos-sequence-gap",
                residual,
                f"POS store {g.store} is missing batch sequence number(s) {', '.join(map(str, g.missing[:10]))}; "
                f"their movements are not in the ledger yet (size unknown)",
                basis="possible",
                messages=[f"pos:{g.store}:{n}" for n in g.missing[:10]],
            )
        )
        residual = 0
    if residual:
        causes.append(
            Cause(
                "unexplained",
                residual,
                f"{residual:+d} unit(s) not explained by any fact in the ledger",
                basis="residual",
            )
        )
    return "mismatch", sorted(causes, key=lambda c: c.rank)


def summary(causes: Sequence[Cause]) -> str:
    """One readable line: the causes, highest-ranked first."""
    return "; ".join(f"{c.kind} {c.quantity:+d}: {c.detail}" for c in causes)
