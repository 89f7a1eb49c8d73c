"""`ledger bench memory`: the resident set of one process that touches N SKU-locations.

One writer process (the `Ledger`, its writer and its aggregate cache of
`LEDGER_WRITER_CACHE_SIZE` aggregates, the default unless the variable is set) receives one unit
on each of `sku_locations` distinct SKU-locations (default 1,000,000), from 64 concurrent callers,
in chunks. After every `every` SKU-locations the process's resident set (`VmRSS` of
/proc/self/status) is sampled. The target: the peak (`VmHWM`) stays <= 1 GiB with the default
setting, that is the cache's bound holds and nothing else grows with the SKU-locations touched.

The check: SKU-locations touched first (long evicted when N exceeds the cache) receive a second
unit; each then has on hand 2, read back from the store.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from bench.common import Result, count_events, drive, make_ledger
from ledger import commands as c

TARGET_BYTES = 1 << 30  # 1 GiB
CHUNK = 10_000
CHECKED = 100  # SKU-locations touched first, received again at the end


def status_kib(field: str) -> int:
    """A `VmRSS`-style field of /proc/self/status, in KiB (0 where there is none)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _sku(run: str, i: int) -> tuple[str, str]:
    return f"M{run}-{i // 10:06d}", f"LOC-{i % 10}"  # ten locations per SKU


def memory(
    url: str,
    sku_locations: int = 1_000_000,
    every: int = 100_000,
    callers: int = 64,
    cache_size: int | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> Result:
    """Touches `sku_locations` SKU-locations through one writer; RSS sampled every `every`."""
    from adapters.config import Settings
    from ledger.writer import CACHE_SIZE

    size = cache_size if cache_size is not None else Settings().writer_cache_size
    run = uuid.uuid4().hex[:6]
    samples: list[dict[str, Any]] = []
    start_kib = status_kib("VmRSS")
    with make_ledger(url, cache_size=size) as ledger:
        ledger.writer.start()
        before = count_events(url)
        t0 = time.perf_counter()
        refused = 0
        done, due = 0, every
        while done < sku_locations:
            n = min(CHUNK, due - done, sku_locations - done)
            cmds = []
            for i in range(done, done + n):
                sku, location = _sku(run, i)
                cmds.append(c.ReceiveStock(sku=sku, location=location, quantity=1, reference=f"{run}-{i}"))
            _, _, outcomes = drive(ledger.submit_async, cmds, callers)
            refused += sum(isinstance(o, BaseException) for o in outcomes)
            done += n
            if done == due or done == sku_locations:
                due += every
                sample = {
                    "sku_locations": done,
                    "rss_mib": round(status_kib("VmRSS") / 1024, 1),
                    "cached": len(ledger.writer.cache),
                    "seconds": round(time.perf_counter() - t0, 1),
                }
                samples.append(sample)
                if progress is not None:
                    progress(sample)
        elapsed = time.perf_counter() - t0
        again = [
            c.ReceiveStock(sku=s, location=loc, quantity=1, reference=f"{run}-again-{i}")
            for i in range(min(CHECKED, sku_locations))
            for s, loc in [_sku(run, i)]
        ]
        _, _, outcomes = drive(ledger.submit_async, again, callers)
        refused += sum(isinstance(o, BaseException) for o in outcomes)
        wrong = 0
        for i in range(len(again)):
            s = ledger.history.stock(*_sku(run, i))
            wrong += s is None or s.on_hand != 2
        events = count_events(url) - before
        cached = len(ledger.writer.cache)
    peak_kib = status_kib("VmHWM")
    r = Result(
        "memory",
        events_per_s=events / elapsed,
        commands_per_s=sku_locations / elapsed,
    )
    r.ratio = peak_kib * 1024 / TARGET_BYTES
    r.checks = {"refused": refused, "on_hand_wrong": wrong, "checked": len(again), "cached": cached}
    r.ok = not refused and not wrong and cached <= size
    r.extra = {
        "sku_locations": sku_locations,
        "cache_size": size,
        "default_cache_size": size == CACHE_SIZE,
        "rss_start_mib": round(start_kib / 1024, 1),
        "rss_peak_mib": round(peak_kib / 1024, 1),
        "rss_end_mib": samples[-1]["rss_mib"] if samples else 0.0,
        "samples": samples,
        "seconds": round(elapsed, 1),
        "target": {"peak_most_mib": TARGET_BYTES // (1 << 20), "met": peak_kib * 1024 <= TARGET_BYTES},
    }
    return r


def report(r: Result) -> list[str]:
    """The target line, PASS or MISS, and what it was measured with."""
    x = r.extra
    setting = "the default" if x["default_cache_size"] else "NOT the default"
    return [
        f"{'PASS' if x['target']['met'] else 'MISS'}  resident set after {x['sku_locations']:,} SKU-locations: "
        f"peak {x['rss_peak_mib']:,.0f} MiB, last {x['rss_end_mib']:,.0f} MiB (target: plateau <= 1,024 MiB "
        f"with the default setting); LEDGER_WRITER_CACHE_SIZE={x['cache_size']:,} ({setting})"
    ]
