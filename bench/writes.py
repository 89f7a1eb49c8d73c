"""The write-path benchmarks: spread appends, one hot SKU, 3-line order captures."""

from __future__ import annotations

import time
import uuid
from typing import Any

from bench.common import (
    Result,
    count_events,
    drive,
    make_ledger,
    percentile,
    raw_insert_rate,
    stream_movements,
)
from ledger import commands as c
from ledger.bounds import stock_id


def _finish(
    name: str, url: str, ledger: Any, before: int, elapsed: float, lat: list[float], n: int, baseline: float
) -> Result:
    """The run's figures. The raw baseline is measured again right after the run and the two are
    averaged: on a shared machine it moves by a third within a minute, and one side of the run
    alone would flatter or wrong the ratio."""
    events = count_events(url) - before
    after = raw_insert_rate(url, 3.0)
    before_rate, baseline = baseline, (baseline + after) / 2
    r = Result(
        name,
        events_per_s=events / elapsed,
        commands_per_s=n / elapsed,
        p50_ms=percentile(lat, 0.5),
        p99_ms=percentile(lat, 0.99),
        baseline="raw batched insert",
        baseline_rate=baseline,
    )
    r.ratio = r.events_per_s / baseline if baseline else 0.0
    r.extra = {
        "commands": n,
        "events": events,
        "seconds": round(elapsed, 2),
        "writer": dict(ledger.writer.stats),
        "baseline_before_after": [round(before_rate), round(after)],
    }
    return r


def _receipts(run: str, skus: list[int], commands: int, tag: str) -> list[c.ReceiveStock]:
    """Receipts over `skus` in turn; quantity 1-5 by command number (the checks recompute it)."""
    return [
        c.ReceiveStock(
            sku=f"SKU-{skus[i % len(skus)]:05d}",
            location="WH-1",
            quantity=1 + i % 5,
            reference=f"{run}-{tag}-{i}",
        )
        for i in range(commands)
    ]


def _append_part(
    url: str, run: str, part: int, parts: int, skus: int, commands: int, callers: int, gates: Any, out: Any
) -> None:
    """One writer process of a multi-process `append`: its own Ledger (writer, cache, pool) over the
    SKU-locations `i % parts == part`, opened first, then driven after the common start."""
    mine = [i for i in range(skus) if i % parts == part]
    with make_ledger(url) as ledger:
        ledger.writer.start()
        opened = [
            c.ReceiveStock(sku=f"SKU-{i:05d}", location="WH-1", quantity=1, reference=f"{run}-open-{i}")
            for i in mine
        ]
        drive(ledger.submit_async, opened, callers)
        cmds = _receipts(run, mine, commands, f"p{part}")
        gates[0].wait()  # opened: the parent counts the events stored so far
        gates[1].wait()
        t0 = time.time()
        elapsed, lat, outcomes = drive(ledger.submit_async, cmds, callers)
        out.put(
            {
                "part": part,
                "start": t0,
                "end": t0 + elapsed,
                "latencies": lat,
                "refused": sum(isinstance(o, BaseException) for o in outcomes),
                "writer": dict(ledger.writer.stats),
            }
        )


def append(
    url: str,
    commands: int = 60_000,
    callers: int = 64,
    skus: int = 10_000,
    baseline_seconds: float = 3.0,
    processes: int = 1,
) -> Result:
    """Receipts spread over `skus` SKU-locations from `callers` concurrent callers.

    With `processes` > 1, the callers are split over that many writer processes, each writing its
    own share of the SKU-locations (as workers that own channels or locations would), all into
    the same store: their saves still take turns on the table lock.
    """
    if processes > 1:
        return _append_processes(url, commands, callers, skus, baseline_seconds, processes)
    baseline = raw_insert_rate(url, baseline_seconds)
    run = uuid.uuid4().hex[:6]
    with make_ledger(url) as ledger:
        ledger.writer.start()
        # Open every SKU-location first, so the timed run appends one event per command.
        warm = [
            c.ReceiveStock(sku=f"SKU-{i:05d}", location="WH-1", quantity=1, reference=f"{run}-open-{i}")
            for i in range(skus)
        ]
        drive(ledger.submit_async, warm, callers)
        cmds = _receipts(run, list(range(skus)), commands, "r")
        before = count_events(url)
        elapsed, lat, outcomes = drive(ledger.submit_async, cmds, callers)
        r = _finish("append", url, ledger, before, elapsed, lat, commands, baseline)
        failed = sum(isinstance(o, BaseException) for o in outcomes)
        expected = {i: 1 for i in range(skus)}
        for i, cmd in enumerate(cmds):
            expected[i % skus] += cmd.quantity
        _check_on_hand(r, ledger, expected, failed)
    return r


def _append_processes(
    url: str, commands: int, callers: int, skus: int, baseline_seconds: float, processes: int
) -> Result:
    import multiprocessing

    baseline = raw_insert_rate(url, baseline_seconds)
    run = uuid.uuid4().hex[:6]
    with make_ledger(url):
        pass  # creates the tables once, before the writers start
    ctx = multiprocessing.get_context("spawn")
    gates, out = (ctx.Barrier(processes + 1), ctx.Barrier(processes + 1)), ctx.Queue()
    per = commands // processes
    workers = [
        ctx.Process(
            target=_append_part,
            args=(url, run, p, processes, skus, per, max(1, callers // processes), gates, out),
        )
        for p in range(processes)
    ]
    for w in workers:
        w.start()
    gates[0].wait()
    before = count_events(url)
    gates[1].wait()
    parts = [out.get(timeout=600) for _ in workers]
    for w in workers:
        w.join()
    elapsed = max(p["end"] for p in parts) - min(p["start"] for p in parts)
    lat = [x for p in parts for x in p["latencies"]]
    with make_ledger(url) as ledger:
        r = _finish("append", url, ledger, before, elapsed, lat, per * processes, baseline)
        r.extra["processes"] = processes
        r.extra["writer"] = [p["writer"] for p in parts]
        expected = {i: 1 for i in range(skus)}
        for p in range(processes):
            mine = [i for i in range(skus) if i % processes == p]
            for i, cmd in enumerate(_receipts(run, mine, per, f"p{p}")):
                expected[mine[i % len(mine)]] += cmd.quantity
        _check_on_hand(r, ledger, expected, sum(p["refused"] for p in parts))
    return r


def _check_on_hand(r: Result, ledger: Any, expected: dict[int, int], refused: int) -> None:
    """Each sampled SKU-location's on hand equals the sum of its stored movements and what the
    commands received; nothing was refused."""
    skus = len(expected)
    sample = list(range(0, skus, max(1, skus // 200)))
    mismatches = 0
    for k in sample:
        sid = stock_id(f"SKU-{k:05d}", "WH-1")
        s = ledger.history.stock(f"SKU-{k:05d}", "WH-1")
        if s is None or s.on_hand != stream_movements(ledger, sid) or s.on_hand != expected[k]:
            mismatches += 1
    r.checks = {"refused": refused, "on_hand_mismatches": mismatches, "sampled": len(sample)}
    r.ok = not refused and not mismatches


def hot(url: str, commands: int = 60_000, callers: int = 64, baseline_seconds: float = 3.0) -> Result:
    """`callers` concurrent reservers on one SKU-location; stock runs out before the commands do."""
    baseline = raw_insert_rate(url, baseline_seconds)
    run = uuid.uuid4().hex[:6]
    stock = commands * 9 // 10
    sku, loc = f"HOT-{run}", "WH-1"
    with make_ledger(url) as ledger:
        ledger.execute(c.ReceiveStock(sku=sku, location=loc, quantity=stock, reference=f"{run}-stock"))
        cmds = [
            c.Reserve(sku=sku, location=loc, order_id=f"{run}-o{i}", line_id="1", quantity=1)
            for i in range(commands)
        ]
        before = count_events(url)
        elapsed, lat, outcomes = drive(ledger.submit_async, cmds, callers)
        r = _finish("hot", url, ledger, before, elapsed, lat, commands, baseline)
        granted = sum(1 for o in outcomes if not isinstance(o, BaseException))
        refused = [o for o in outcomes if isinstance(o, BaseException)]
        wrong = [type(o).__name__ for o in refused if getattr(o, "code", "") != "insufficient-stock"]
        ledger.writer.evict()
        s = ledger.history.stock(sku, loc)
        assert s is not None
        r.checks = {
            "granted": granted,
            "stock": stock,
            "reserved": s.reserved,
            "on_hand": s.on_hand,
            "oversold": max(0, s.reserved - s.on_hand),
            "other_errors": len(wrong),
            "on_hand_equals_movements": s.on_hand == stream_movements(ledger, stock_id(sku, loc)),
        }
        r.ok = (
            s.reserved == granted == min(stock, commands)
            and s.reserved <= s.on_hand
            and not wrong
            and r.checks["on_hand_equals_movements"]
        )
    return r


def orders(
    url: str, commands: int = 20_000, callers: int = 64, skus: int = 2_000, baseline_seconds: float = 3.0
) -> Result:
    """3-line order captures over `skus` SKU-locations, each line reserving at its location."""
    baseline = raw_insert_rate(url, baseline_seconds)
    run = uuid.uuid4().hex[:6]
    per_sku = commands * 3 // skus + 10
    with make_ledger(url) as ledger:
        warm = [
            c.ReceiveStock(sku=f"SKU-{i:05d}", location="WH-1", quantity=per_sku, reference=f"{run}-s{i}")
            for i in range(skus)
        ]
        drive(ledger.submit_async, warm, callers)
        cmds = [
            c.CaptureOrder(
                order_id=f"{run}-{i}",
                channel="online",
                lines=tuple(
                    {
                        "line_id": str(j + 1),
                        "sku": f"SKU-{(i * 3 + j * 7) % skus:05d}",
                        "quantity": 1,
                        "location": "WH-1",
                    }
                    for j in range(3)
                ),
            )
            for i in range(commands)
        ]
        before = count_events(url)
        elapsed, lat, outcomes = drive(ledger.submit_async, cmds, callers)
        r = _finish("orders", url, ledger, before, elapsed, lat, commands, baseline)
        failed = [o for o in outcomes if isinstance(o, BaseException)]
        ledger.writer.evict()
        reserved = 0
        oversold = 0
        for i in range(skus):
            s = ledger.history.stock(f"SKU-{i:05d}", "WH-1")
            assert s is not None
            reserved += s.reserved
            oversold += s.reserved > s.on_hand
        r.checks = {
            "refused": len(failed),
            "reserved_units": reserved,
            "expected_units": 3 * commands,
            "oversold_skus": oversold,
        }
        r.ok = not failed and reserved == 3 * commands and not oversold
    return r


def long_stream(
    url: str, events: int = 1_000_000, callers: int = 256, window: int = 20_000, baseline_seconds: float = 3.0
) -> Result:
    """One SKU-location written to `events` events: the last window's rate vs the first's, and a
    cold load of the long stream vs a fresh one (events read through the recorder, and time)."""
    from ledger.application import SNAPSHOT_INTERVAL

    baseline = raw_insert_rate(url, baseline_seconds)
    run = uuid.uuid4().hex[:6]
    r = Result("long", baseline="raw batched insert", baseline_rate=baseline)
    with make_ledger(url) as ledger:
        rates: list[float] = []
        lat_last: list[float] = []
        done = 1
        ledger.execute(c.ReceiveStock(sku="LONG", location="WH", quantity=1, reference=f"{run}-0"))
        ledger.execute(c.ReceiveStock(sku="FRESH", location="WH", quantity=1, reference=f"{run}-f"))
        while done < events - 1:
            n = min(window, events - 1 - done)
            cmds = [
                c.ReceiveStock(sku="LONG", location="WH", quantity=1, reference=f"{run}-{done + k}")
                for k in range(n)
            ]
            elapsed, lat, _ = drive(ledger.submit_async, cmds, callers)
            rates.append(n / elapsed)
            lat_last = lat
            done += n
        r.events_per_s = rates[-1]
        r.ratio = rates[-1] / rates[0]
        r.p50_ms, r.p99_ms = percentile(lat_last, 0.5), percentile(lat_last, 0.99)
    loads = {}
    for sku in ("LONG", "FRESH"):
        with make_ledger(url) as cold:
            read = [0]
            inner = cold.app.recorder.select_events

            def counted(*a: Any, _inner: Any = inner, _read: list[int] = read, **k: Any) -> Any:
                rows = _inner(*a, **k)
                _read[0] += len(rows)
                return rows

            cold.app.recorder.select_events = counted
            t0 = time.perf_counter()
            s = cold.history.stock(sku, "WH")
            loads[sku] = {
                "ms": round((time.perf_counter() - t0) * 1000, 2),
                "events_read": read[0],
                "version": s.version if s else 0,
                "on_hand": s.on_hand if s else 0,
            }
    r.checks = {"load_long": loads["LONG"], "load_fresh": loads["FRESH"]}
    r.ok = loads["LONG"]["on_hand"] == events - 1 and loads["LONG"]["events_read"] <= SNAPSHOT_INTERVAL
    r.extra = {
        "first_window_per_s": round(rates[0]),
        "last_window_per_s": round(rates[-1]),
        "windows": len(rates),
    }
    r.baseline = "first window of the same stream"
    r.baseline_rate = rates[0]
    return r
