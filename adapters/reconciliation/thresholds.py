"""Which mismatches become `drift` exceptions: per-source absolute and percent thresholds.

Configured with `LEDGER_RECONCILE_THRESHOLDS`, e.g. `shopify=2/5%,erp=0/0%,pos=1/0%`: a mismatch
of source S becomes an exception when `|delta| > absolute` and `|delta| > percent% of
max(|ledger|, 1)`. A source not named uses `0/0%` (every mismatch that is not timing).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Threshold:
    absolute: int = 0
    percent: float = 0.0

    def exceeded(self, delta: int, ledger: int) -> bool:
        size = abs(delta)
        return size > self.absolute and size * 100 > self.percent * max(abs(ledger), 1)

    def __str__(self) -> str:
        return f"{self.absolute}/{self.percent:g}%"


def parse_thresholds(text: str | None) -> dict[str, Threshold]:
    """`source=absolute/percent%` items, comma-separated; raises ValueError on a malformed item."""
    out: dict[str, Threshold] = {}
    for item in (text or "").split(","):
        item = item.strip()
        if not item:
            continue
        source, sep, rule = item.partition("=")
        absolute, _, percent = rule.partition("/")
        try:
            a = int(absolute.strip())
            p = float(percent.strip().rstrip("%") or 0)
        except ValueError:
            raise ValueError(f"threshold {item!r} is not source=absolute/percent%") from None
        if not sep or not source.strip() or a < 0 or p < 0:
            raise ValueError(f"threshold {item!r} is not source=absolute/percent%")
        out[source.strip()] = Threshold(a, p)
    return out
