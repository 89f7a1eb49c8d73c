"""Read-side benchmarks: a projection rebuild, and the append-to-NATS delivery latency (the HTTP API
is `bench.api`)."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

from bench.common import Result, drive, make_ledger, percentile, raw_insert_rate
from ledger import commands as c

ROOT = Path(__file__).resolve().parents[1]


def fill(url: str, events: int, skus: int = 10_000) -> int:
    """Appends `events` events (receipts over up to `skus` SKU-locations) as fast as the writer takes them."""
    run = uuid.uuid4().hex[:6]
    streams = max(1, min(skus, events // 2))  # each stream's first receipt also opens it (one more event)
    with make_ledger(url) as ledger:
        cmds = [
            c.ReceiveStock(sku=f"SKU-{i % streams:05d}", location="WH-1", quantity=1, reference=f"{run}-{i}")
            for i in range(events - streams)
        ]
        drive(ledger.submit_async, cmds, 512)
        return ledger.app.recorder.max_position()


def projections(url: str, events: int = 1_000_000, baseline_seconds: float = 3.0) -> Result:
    """Rebuild of the `stock` and `ats` read models over `events` events, against the raw insert rate."""
    from adapters.channels import ChannelPolicies
    from adapters.persistence.db import Database
    from adapters.persistence.migrate import migrate
    from projections.rebuild import rebuild
    from projections.runner import Projector

    baseline = raw_insert_rate(url, baseline_seconds)
    t0 = time.perf_counter()
    head = fill(url, events)
    fill_seconds = time.perf_counter() - t0
    db = Database(url)
    migrate(db)
    r = Result("projections", baseline="raw batched insert", baseline_rate=baseline)
    try:
        with make_ledger(url) as ledger:
            projector = Projector(
                db, ledger.app, ChannelPolicies(db, record=ledger.execute), record=ledger.execute
            )
            rebuilt = {name: rebuild(projector, name) for name in ("stock", "ats", "orders")}
        stock = rebuilt["stock"]
        r.events_per_s = stock["events"] / stock["seconds"]
        r.ratio = r.events_per_s / baseline
        rows = (
            db.query_one("SELECT count(*) AS n, coalesce(sum(on_hand), 0) AS units FROM stock_levels")
            if _has_table(db, "stock_levels")
            else None
        )
        r.checks = {"position": stock["position"], "head": head, "rows": rows}
        r.ok = stock["position"] == head
        r.extra = {"rebuild": rebuilt, "fill_events_per_s": round(head / fill_seconds)}
        try:
            r.extra["append_to_nats"] = nats_latency(url)
            r.ok = r.ok and r.extra["append_to_nats"]["messages"] > 0
        except Exception as e:  # NATS down: the rebuild figures still stand, the check fails
            r.extra["append_to_nats"] = {"error": repr(e)}
            r.ok = False
    finally:
        db.close()
    return r


def _has_table(db: Any, name: str) -> bool:
    try:
        db.query_one(f"SELECT 1 FROM {name} LIMIT 1")
        return True
    except Exception:
        return False


def delivery(
    url: str, nats_url: str = "nats://127.0.0.1:4222", rate: int = 1000, seconds: float = 5.0
) -> Result:
    """Append → NATS latency with wake-ups, against the same run's relay that only polls (0.2 s)."""
    base = nats_latency(url, nats_url, rate, seconds, wake=False)
    woken = nats_latency(url, nats_url, rate, seconds)
    r = Result("nats", baseline="relay polling every 0.2 s", p50_ms=woken["p50_ms"], p99_ms=woken["p99_ms"])
    r.events_per_s = woken["messages"] / seconds
    r.ratio = woken["p99_ms"] / base["p99_ms"] if base["p99_ms"] else 0.0
    r.extra = {"woken": woken, "polling": base}
    r.checks = {
        k: {"sent": v["sent"], "received": v["messages"], "outbox_left": v["outbox_left"]}
        for k, v in r.extra.items()
    }
    r.ok = all(v["messages"] == v["sent"] and v["outbox_left"] == 0 for v in (woken, base))
    return r


class _Unwatched:
    """An outbox whose relay hears of new rows only by polling (the bench's baseline)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def watch(self, wake: Any) -> Any:
        return lambda: None


def nats_latency(
    url: str,
    nats_url: str = "nats://127.0.0.1:4222",
    rate: int = 1000,
    seconds: float = 5.0,
    wake: bool = True,
    trace: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Append → NATS latency at `rate` receipts/s: from the commit of a receipt to the arrival of the
    ATS message that carries its position (projection runner and outbox relay in this process).

    `wake=False` measures the relay as it was before wake-ups: no LISTEN, no in-process wake by the
    runner, a poll every 0.2 s. `trace`, when given, receives the raw commits and arrivals."""
    import asyncio
    import bisect
    import threading

    import nats

    from adapters.channels import ChannelPolicy
    from adapters.config import Settings
    from bootstrap import bootstrap

    container = bootstrap(Settings(database_url=url, nats_url=nats_url))
    if not wake:
        container.runner.on_commit.clear()
        publisher = container.publisher
        publisher.outbox, publisher.poll_seconds = _Unwatched(publisher.outbox), 0.2
    channel = "bench" + uuid.uuid4().hex[:6]
    where = "NATS-" + channel  # a location of this run only: the channel's first policy publishes nothing old
    commits: list[tuple[int, float]] = []  # (last position of a batch, when it committed), in order
    # (position, arrival): matched to commits after the run, since a message can overtake the writer's
    # callback that records its batch's commit (another thread, the GIL)
    arrived: list[tuple[int, float]] = []
    container.ledger.writer.on_commit.append(lambda pos: commits.append((pos, time.perf_counter())))

    def commit_time(position: int) -> float | None:
        i = bisect.bisect_left(commits, (position, 0.0))
        return commits[i][1] if i < len(commits) else None

    container.channels.put(ChannelPolicy(channel=channel, locations=(where,)), actor="bench")
    done, ready = threading.Event(), threading.Event()

    async def listen() -> None:
        nc = await nats.connect(nats_url)

        async def on_msg(msg: Any) -> None:
            arrived.append((int(json.loads(msg.data).get("position", -1)), time.perf_counter()))

        await nc.subscribe(f"ledger.ats.{channel}.>", cb=on_msg)
        await nc.flush()  # the server has the subscription: nothing published from now on is missed
        ready.set()
        while not done.is_set():
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)
        await nc.drain()

    listener = threading.Thread(target=lambda: asyncio.run(listen()), daemon=True)
    listener.start()
    try:
        if not ready.wait(30):
            raise RuntimeError("the bench's NATS subscriber did not start")
        container.start_workers()
        run = uuid.uuid4().hex[:6]
        n = int(rate * seconds)
        t0 = time.perf_counter()
        for i in range(n):  # paced: one receipt every 1/rate s, each on its own SKU (one ATS message each)
            container.ledger.submit(
                c.ReceiveStock(sku=f"N-{i}", location=where, quantity=1, reference=f"{run}-{i}")
            )
            delay = t0 + (i + 1) / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        time.sleep(2.0)
    finally:
        done.set()
        listener.join(timeout=10)
        left = container.publisher.outbox.depth()
        container.close()
    latencies: dict[int, float] = {}  # position -> ms; a message sent twice after a reconnect counts once
    early = 0  # arrived before the writer's callback ran: counted as 0 ms
    for pos, t in arrived:
        at = commit_time(pos)
        if at is not None and pos not in latencies:
            early += t < at
            latencies[pos] = max(0.0, t - at) * 1000
    ms = list(latencies.values())
    if trace is not None:
        trace.update(commits=commits, arrived=arrived)
    return {
        "wake": wake,
        "rate": rate,
        "sent": n,
        "messages": len(ms),
        "outbox_left": left,
        "before_callback": early,
        "p50_ms": round(percentile(ms, 0.5), 1),
        "p99_ms": round(percentile(ms, 0.99), 1),
        "max_ms": round(max(ms, default=0.0), 1),
    }
