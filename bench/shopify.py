"""Benchmark: the ATS push to Shopify against the Admin API stand-in at 100 points/s.

    ledger bench shopify [--seconds N] [--database-url URL]

- steady: 50 ATS changes/s spread over 1,000 SKUs for N seconds (default 20) through the whole
  service (writer, projection, feeder, pusher). Shopify's value must be current within p99 < 2 s,
  with no `THROTTLED` answer lost (exact at the end) and fewer than 1 mutation per 10 changes.
- burst: 5,000 changes on 10 SKUs in 10 s: exact at the end, and the mutations bounded by what
  the bucket allows (`(maximumAvailable + restoreRate × seconds) / 10`).
- baseline (same run, same change stream, a fresh stand-in): a naive client that sends one
  `inventorySetQuantities` per change, without compare, batching, coalescing or pacing, and
  sends a throttled change again after a second.

"Current within" is measured per change: from its submission to the moment the stand-in first
holds the value of that change or of a newer one of the same SKU.
"""

from __future__ import annotations

import os
import random
import sys
import threading
import time
import uuid
from typing import Any

from bench.common import Result, percentile

SHOP = "bench.myshopify.com"
TOKEN = "shpat_bench"
LOC = "gid://shopify/Location/1"
WH = "WH1"


def _standin() -> Any:
    tests = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    try:
        from standins.shopify_admin import ShopifyAdminStandIn
    except ImportError as e:  # an installed package without the tests folder
        raise SystemExit(f"`ledger bench shopify` needs the repository's tests/standins ({e})") from None
    return ShopifyAdminStandIn


def item(n: int) -> str:
    return f"gid://shopify/InventoryItem/{100000 + n}"


class Watch:
    """Polls the stand-in's levels and resolves each change when Shopify holds it (or a newer one)."""

    def __init__(self, api: Any, skus: int) -> None:
        self.api = api
        self.skus = skus
        self.pending: dict[int, list[tuple[float, int]]] = {}
        self.lags: list[float] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def change(self, sku: int, value: int) -> None:
        with self.lock:
            self.pending.setdefault(sku, []).append((time.monotonic(), value))

    def _run(self) -> None:
        while not self.stop.is_set():
            with self.lock:
                skus = [s for s, v in self.pending.items() if v]
            now = time.monotonic()
            for s in skus:
                level = self.api.level(SHOP, item(s), LOC)
                with self.lock:
                    changes = self.pending[s]
                    hit = max((i for i, (_, v) in enumerate(changes) if v == level), default=-1)
                    if hit >= 0:
                        self.lags += [now - t for t, _ in changes[: hit + 1]]
                        del changes[: hit + 1]
            time.sleep(0.01)

    def outstanding(self) -> int:
        with self.lock:
            return sum(len(v) for v in self.pending.values())


def _service(url: str, api: Any) -> Any:
    from adapters.channels import ChannelPolicy
    from adapters.config import Settings
    from bootstrap import bootstrap

    cont = bootstrap(Settings(database_url=url, shopify_shops=f"{SHOP}={TOKEN}", shopify_admin_url=api.url))
    cont.channels.put(ChannelPolicy("online", (WH,)), "bench")
    cont.shopify_sync.targets.set("online", SHOP, LOC, "bench")
    return cont


def _drive(cont: Any, watch: Watch, skus: int, changes: int, seconds: float, seed: int) -> list[tuple[int, int]]:
    """Submits `changes` ±1 adjustments over `seconds`; returns the (sku, value) stream."""
    from ledger import commands as c

    rnd = random.Random(seed)
    values = dict.fromkeys(range(skus), 100)
    stream = []
    start = time.monotonic()
    futures = []
    for i in range(changes):
        due = start + i * seconds / changes
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        s = rnd.randrange(skus)
        delta = rnd.choice((-1, 1)) if values[s] > 1 else 1
        values[s] += delta
        stream.append((s, values[s]))
        watch.change(s, values[s])
        futures.append(cont.ledger.submit(
            c.AdjustStock(sku=f"S{s}", location=WH, delta=delta, reason="bench", reference=uuid.uuid4().hex)
        ))
    for f in futures:
        f.result()
    return stream


def _seed(cont: Any, api: Any, skus: int) -> None:
    from ledger import commands as c

    for s in range(skus):
        api.add_item(SHOP, item(s), f"S{s}", {LOC: 0})
    for f in [cont.ledger.submit(c.ReceiveStock(sku=f"S{s}", location=WH, quantity=100, reference=f"seed{s}"))
              for s in range(skus)]:
        f.result()
    mappings = cont.mappings
    for s in range(skus):  # identities known up front, as after the first sync
        mappings.set("shopify", "inventory_item", str(100000 + s), f"S{s}", "bench")
    cont.start_workers()
    deadline = time.monotonic() + 120
    while any(api.level(SHOP, item(s), LOC) != 100 for s in range(skus)):
        if time.monotonic() > deadline:
            raise SystemExit("the seed never reached the stand-in")
        time.sleep(0.05)


def _run_ledger(url: str, skus: int, changes: int, seconds: float, seed: int) -> dict[str, Any]:
    api = _standin()({TOKEN: SHOP}, restore_rate=100.0, maximum_available=2000.0).start()
    cont = _service(url, api)
    try:
        _seed(cont, api, skus)
        api.calls.clear()
        watch = Watch(api, skus)
        watch.thread.start()
        t = time.monotonic()
        stream = _drive(cont, watch, skus, changes, seconds, seed)
        deadline = time.monotonic() + 60
        while watch.outstanding() and time.monotonic() < deadline:
            time.sleep(0.05)
        took = time.monotonic() - t
        watch.stop.set()
        final = {s: v for s, v in stream}
        exact = all(api.level(SHOP, item(s), LOC) == v for s, v in final.items())
        muts = api.count("mutation")
        return {
            "changes": changes,
            "seconds": round(took, 1),
            "p50_s": round(percentile(watch.lags, 0.5), 3),
            "p99_s": round(percentile(watch.lags, 0.99), 3),
            "mutations": muts,
            "mutations_per_change": round(muts / changes, 4),
            "throttled": api.count("throttled"),
            "exact_at_end": exact,
            "unresolved": watch.outstanding(),
        }
    finally:
        cont.close()
        api.stop()


def _run_naive(stream_skus: int, changes: int, seconds: float, seed: int) -> dict[str, Any]:
    """The baseline: one mutation per change, absolute set, no compare, batching, coalescing or pacing."""
    import httpx

    from adapters.shopify_admin import SET_QUANTITIES

    api = _standin()({TOKEN: SHOP}, restore_rate=100.0, maximum_available=2000.0).start()
    for s in range(stream_skus):
        api.add_item(SHOP, item(s), f"S{s}", {LOC: 100})
    watch = Watch(api, stream_skus)
    watch.thread.start()
    rnd = random.Random(seed)
    values = dict.fromkeys(range(stream_skus), 100)
    queue: list[tuple[int, int]] = []
    qlock = threading.Condition()
    done = threading.Event()

    def sender() -> None:  # one client connection, like a connector's worker
        with httpx.Client(timeout=10) as client:
            while True:
                with qlock:
                    while not queue and not done.is_set():
                        qlock.wait(0.1)
                    if not queue:
                        return
                    s, v = queue.pop(0)
                while True:
                    r = client.post(
                        f"{api.url}/admin/api/2026-04/graphql.json",
                        headers={"X-Shopify-Access-Token": TOKEN},
                        json={"query": SET_QUANTITIES % "", "variables": {"input": {
                            "name": "available", "reason": "correction", "referenceDocumentUri": "naive://x",
                            "quantities": [{"inventoryItemId": item(s), "locationId": LOC, "quantity": v,
                                            "changeFromQuantity": None}]}}},
                    )
                    if "THROTTLED" not in r.text:
                        break
                    time.sleep(1.0)

    th = threading.Thread(target=sender, daemon=True)
    th.start()
    t = time.monotonic()
    for i in range(changes):
        due = t + i * seconds / changes
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        s = rnd.randrange(stream_skus)
        delta = rnd.choice((-1, 1)) if values[s] > 1 else 1
        values[s] += delta
        watch.change(s, values[s])
        with qlock:
            queue.append((s, values[s]))
            qlock.notify()
    done.set()
    deadline = time.monotonic() + 60  # the naive client may never catch up: stop measuring after 60 s
    while watch.outstanding() and time.monotonic() < deadline:
        time.sleep(0.05)
    took = time.monotonic() - t
    watch.stop.set()
    with qlock:
        left = len(queue)
        queue.clear()
    th.join(15)
    api.stop()
    muts = api.count("mutation")
    return {
        "changes": changes,
        "seconds": round(took, 1),
        "p50_s": round(percentile(watch.lags, 0.5), 3),
        "p99_s": round(percentile(watch.lags, 0.99), 3) if not watch.outstanding() else None,
        "mutations": muts,
        "mutations_per_change": round(muts / changes, 4),
        "throttled": api.count("throttled"),
        "unsent_after_60_s": left,
        "unresolved": watch.outstanding(),
    }


def shopify(url: str, seconds: int = 20) -> Result:
    from bench.common import scratch_schema

    steady = _run_ledger(url, skus=1000, changes=50 * seconds, seconds=seconds, seed=1)
    with scratch_schema(url.split("?")[0]) as burst_url:
        burst = _run_ledger(burst_url, skus=10, changes=5000, seconds=10, seed=2)
    naive = _run_naive(1000, 50 * seconds, seconds, seed=1)
    bucket_bound = (2000 + 100 * burst["seconds"]) / 10
    checks = {
        "steady_p99_under_2_s": steady["p99_s"] < 2.0,
        "steady_exact_at_end": steady["exact_at_end"],
        "steady_under_1_mutation_per_10_changes": steady["mutations_per_change"] < 0.1,
        "burst_exact_at_end": burst["exact_at_end"],
        "burst_mutations_bounded_by_bucket": burst["mutations"] <= bucket_bound,
    }
    rate = steady["changes"] / max(steady["seconds"], 1e-9)
    return Result(
        name="shopify",
        commands_per_s=rate,
        p50_ms=steady["p50_s"] * 1000,
        p99_ms=steady["p99_s"] * 1000,
        baseline="naive one-mutation-per-change client",
        baseline_rate=naive["changes"] / max(naive["seconds"], 1e-9),
        ratio=rate / max(naive["changes"] / max(naive["seconds"], 1e-9), 1e-9),
        ok=all(checks.values()),
        checks=checks,
        extra={"steady": steady, "burst": burst, "naive": naive, "burst_mutation_bound": bucket_bound},
    )
