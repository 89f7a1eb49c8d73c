"""`ledger bench api`: the HTTP write path and the ATS read against a trivial FastAPI GET.

`ledger serve` (one uvicorn worker, projection runner, relay and inbox worker in the process;
`--workers N`: `ledger serve --workers N`, N API processes and the workers in the supervisor) runs
on the run's scratch schema of PostgreSQL (durable commits), beside a trivial FastAPI `GET /ping`
(`bench/trivial.py`) on one uvicorn worker, each in its own process. The load comes from a third
process (`bench/load.py`, raw HTTP/1.1 keep-alive). The trivial GET is measured between every
two phases, and each phase is compared with the mean of the trivial runs before and after it:

1. receipts, 64 connections, spread over `SKUS` SKU-locations: >= 0.50x;
2. 3-line order captures, 64 connections: >= 0.40x, p99 <= 50 ms, every 201 durable and reserved;
3. ATS point reads, 32 connections, while orders are captured on 16 more: >= 1.0x, p99 < 20 ms;
4. signed Shopify `orders/create` webhooks (3 lines), 64 connections: >= 0.40x at the intake;
5. the same webhooks paced at `WEBHOOK_RATE` (500/s): stored-to-applied lag p99 < 1 s.

The checks: no error answer; the units reserved at the end equal three per order answered 201
and per webhook order applied; on hand equals the seeded units plus every receipt answered 201.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import Result, percentile

ROOT = Path(__file__).resolve().parents[1]
SKUS = 500
VARIANTS = 50
SEED = 1_000_000  # units of each SKU before the run: no order is refused for stock
WEBHOOK_RATE = 500.0
SECRET = "bench-secret"
TARGETS = {  # phase -> (minimum ratio to the trivial GET, maximum p99 ms or None)
    "receipts": (0.50, None),
    "orders": (0.40, 50.0),
    "ats": (1.0, 20.0),
    "webhooks": (0.40, None),
}
LAG_P99_MS = 1000.0
# phase -> the trivial runs just before and after it (at the phase's connections)
BASELINES = {"receipts": ("t1", "t2"), "orders": ("t2", "t3"), "ats": ("t4", "t5"), "webhooks": ("t6", "t7")}

RECEIPT = '{"sku": "SKU-{r}", "location": "WH-1", "quantity": 1, "reference": "r-{n}"}'
ORDER = (
    '{"order_id": "o-{n}", "channel": "online", "lines": ['
    '{"line_id": "1", "sku": "SKU-{r}", "quantity": 1, "location": "WH-1"}, '
    '{"line_id": "2", "sku": "SKU-{r}", "quantity": 1, "location": "WH-1"}, '
    '{"line_id": "3", "sku": "SKU-{r}", "quantity": 1, "location": "WH-1"}]}'
)
WEBHOOK = (
    '{"id": {i}, "name": "#{i}", "order_number": {i}, "updated_at": "2026-11-20T10:00:00-05:00", '
    '"financial_status": "paid", "line_items": ['
    '{"id": {i}1, "variant_id": 90{r}, "sku": null, "quantity": 1}, '
    '{"id": {i}2, "variant_id": 90{r}, "sku": null, "quantity": 1}, '
    '{"id": {i}3, "variant_id": 90{r}, "sku": null, "quantity": 1}]}'
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_http(port: int, proc: subprocess.Popen[str], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("server did not start")


def _load_args(
    url: str, connections: int, seconds: float, token: str = "", body: str | None = None, **options: Any
) -> list[str]:
    args = [
        sys.executable,
        "-m",
        "bench.load",
        url,
        "--connections",
        str(connections),
        "--seconds",
        str(seconds),
    ]
    if token:
        args += ["--token", token]
    if body:
        args += ["--body", body]
    for name, value in options.items():
        args += [f"--{name}", str(value)]
    return args


def _start_load(args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        args,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def _figures(proc: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    out, err = proc.communicate(timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(err[-2000:])
    figures: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return figures


def load(
    base: str,
    path: str,
    connections: int,
    seconds: float,
    token: str = "",
    body: str | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Runs the load generator in its own process (bench/load.py); returns its JSON figures."""
    proc = _start_load(_load_args(base + path, connections, seconds, token, body, **options))
    return _figures(proc, seconds + 120)


def _env(tree: Path, url: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(tree),
        "LEDGER_DATABASE_URL": url,
        "LEDGER_SHOPIFY_WEBHOOK_SECRETS": SECRET,
        "LEDGER_LOG_LEVEL": "INFO",
    }


def _serve(tree: Path, url: str, port: int, workers: int = 1, split: bool = False) -> subprocess.Popen[str]:
    """`ledger serve` (`split`: with `--no-workers`, the background workers left to `_worker`)."""
    return subprocess.Popen(
        [sys.executable, "-m", "cli.main", "serve", "--port", str(port)]
        + (["--workers", str(workers)] if workers > 1 else [])
        + (["--no-workers"] if split else []),
        cwd=tree,
        env=_env(tree, url),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def _worker(tree: Path, url: str) -> subprocess.Popen[str]:
    """`ledger worker`: the projection runner, relay, inbox worker and sweepers, no HTTP."""
    return subprocess.Popen(
        [sys.executable, "-m", "cli.main", "worker"],
        cwd=tree,
        env=_env(tree, url),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def _token(server: subprocess.Popen[str]) -> str:
    token = ""
    for line in server.stdout:  # type: ignore[union-attr]  # started with stdout=PIPE
        if line.startswith("  ") and line.strip():
            token = line.strip()
        if line.startswith("ledger serving"):
            break
    return token


def _seed(client: Any, run: str) -> None:
    client.put("/v1/channels/online", json={"locations": ["WH-1"], "safety_stock": 0}).raise_for_status()
    for i in range(SKUS):
        body = {"sku": f"SKU-{i:05d}", "location": "WH-1", "quantity": SEED, "reference": f"seed-{run}-{i}"}
        client.post("/v1/stock/receipts", json=body).raise_for_status()
    for v in range(VARIANTS):
        client.put(f"/v1/mappings/shopify/sku/90{v:05d}", json={"canonical": f"W-{v:05d}"}).raise_for_status()
        body = {"sku": f"W-{v:05d}", "location": "WH-1", "quantity": SEED, "reference": f"seed-{run}-w{v}"}
        client.post("/v1/stock/receipts", json=body).raise_for_status()


def _totals(client: Any, prefix: str, n: int) -> tuple[int, int]:
    """(on hand, reserved) summed over the SKU-locations `{prefix}00000..` at WH-1, from the ledger."""
    on_hand = reserved = 0
    for i in range(n):
        s = client.get(f"/v1/stock/{prefix}{i:05d}/WH-1").json()
        on_hand += int(s["on_hand"])
        reserved += int(s["reserved"])
    return on_hand, reserved


def _inbox(url: str, since: str | None = None) -> tuple[dict[str, int], list[float]]:
    """Webhook rows by status, and the stored-to-applied lag (ms) of those stored after `since`."""
    import psycopg

    from adapters.persistence.urls import pg_conninfo, pg_parts

    schema = pg_parts(url)["schema"]
    with psycopg.connect(pg_conninfo(url), autocommit=True) as conn:
        rows = conn.execute(
            f'SELECT status, received_at, updated_at FROM "{schema}".inbox WHERE source = %s', ("shopify",)
        ).fetchall()
    statuses: dict[str, int] = {}
    lags = []
    for status, received, updated in rows:
        statuses[status] = statuses.get(status, 0) + 1
        if status == "applied" and since is not None and received >= since:
            lags.append(
                (datetime.fromisoformat(updated) - datetime.fromisoformat(received)).total_seconds() * 1000
            )
    return statuses, lags


def _drained(url: str, timeout: float) -> tuple[dict[str, int], float]:
    """Waits until no webhook is left to apply (or `timeout` s); (statuses, seconds waited)."""
    t0 = time.monotonic()
    while True:
        statuses, _ = _inbox(url)
        if not statuses.get("received") or time.monotonic() - t0 > timeout:
            return statuses, time.monotonic() - t0
        time.sleep(0.25)


def api(
    url: str, seconds: float = 5.0, tree: Path | None = None, workers: int = 1, split: bool = False
) -> Result:
    """The four HTTP targets against the interleaved trivial GET (see the module docstring);
    `workers` > 1 serves the ledger by `ledger serve --workers N` (the trivial GET stays one worker);
    `split` serves it by `ledger serve --no-workers` beside one `ledger worker` (the production
    shape: the projection runner, relay and inbox worker off the API process's GIL)."""
    import httpx

    tree = tree or ROOT
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    trivial_port, port = _free_port(), _free_port()
    trivial = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bench.trivial:app",
            "--port",
            str(trivial_port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    server = _serve(tree, url, port, workers, split)
    worker = _worker(tree, url) if split else None
    r = Result("api", baseline="trivial FastAPI GET")
    try:
        _wait_http(trivial_port, trivial)
        token = _token(server)
        _wait_http(port, server)
        base, ping = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{trivial_port}"
        run = uuid.uuid4().hex[:6]
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60) as client:
            _seed(client, run)
            client.get(
                "/v1/ats/online/SKU-00000"
            ).raise_for_status()  # the key's verdict and the channel kept

            trivials: dict[str, dict[str, Any]] = {"t1": load(ping, "/ping", 64, seconds)}
            phases: dict[str, dict[str, Any]] = {}
            phases["receipts"] = load(base, "/v1/stock/receipts", 64, seconds, token, RECEIPT, spread=SKUS)
            trivials["t2"] = load(ping, "/ping", 64, seconds)
            phases["orders"] = load(base, "/v1/orders", 64, seconds, token, ORDER, spread=SKUS)
            trivials["t3"] = load(ping, "/ping", 64, seconds)
            trivials["t4"] = load(ping, "/ping", 32, seconds)
            beside = _start_load(_load_args(base + "/v1/orders", 16, seconds + 1, token, ORDER, spread=SKUS))
            time.sleep(0.5)  # the captures are under way before the reads start
            phases["ats"] = load(base, "/v1/ats/online/SKU-00001", 32, seconds, token)
            phases["ats"]["orders_beside"] = _figures(beside, seconds + 120)
            trivials["t5"] = load(ping, "/ping", 32, seconds)
            trivials["t6"] = load(ping, "/ping", 64, seconds)
            phases["webhooks"] = load(
                base, "/v1/webhooks/shopify", 64, seconds, body=WEBHOOK, spread=VARIANTS, sign=SECRET
            )
            trivials["t7"] = load(ping, "/ping", 64, seconds)
            backlog, waited = _drained(url, 300)
            applied_before = backlog.get("applied", 0)
            paced_from = datetime.now(UTC).isoformat()  # the inbox's own format (adapters.inbox.utcnow)
            lag_run = load(
                base,
                "/v1/webhooks/shopify",
                32,
                seconds,
                body=WEBHOOK,
                spread=VARIANTS,
                sign=SECRET,
                rate=WEBHOOK_RATE,
            )
            statuses, lag_wait = _drained(url, 120)
            _, lags = _inbox(url, paced_from)

            orders = sum(
                p["statuses"].get("201", 0) for p in (phases["orders"], phases["ats"]["orders_beside"])
            )
            receipts = phases["receipts"]["statuses"].get("201", 0)
            on_hand, reserved = _totals(client, "SKU-", SKUS)
            _, w_reserved = _totals(client, "W-", VARIANTS)
        ratios, baselines = {}, {}
        for name, (before, after) in BASELINES.items():
            baselines[name] = (trivials[before]["rps"] + trivials[after]["rps"]) / 2
            ratios[name] = phases[name]["rps"] / baselines[name] if baselines[name] else 0.0
        lag = {
            "rate": WEBHOOK_RATE,
            "sent": lag_run["requests"],
            "intake_rps": lag_run["rps"],
            "applied": len(lags),
            "p50_ms": round(percentile(lags, 0.5), 1),
            "p99_ms": round(percentile(lags, 0.99), 1),
            "backlog_drain_s": round(waited, 1),
            "backlog_applied": applied_before,
        }
        targets = {}
        for name, (least, p99) in TARGETS.items():
            met = ratios[name] >= least and (p99 is None or phases[name]["p99_ms"] <= p99)
            targets[name] = {
                "ratio": round(ratios[name], 3),
                "least": least,
                "p99_ms": phases[name]["p99_ms"],
                "p99_most": p99,
                "baseline_rps": round(baselines[name], 1),
                "met": met,
            }
        targets["webhook_lag"] = {
            "p99_ms": lag["p99_ms"],
            "p99_most": LAG_P99_MS,
            "met": lag["p99_ms"] < LAG_P99_MS and lag["applied"] == lag["sent"],
        }
        errors = sum(p["errors"] for p in phases.values()) + phases["ats"]["orders_beside"]["errors"]
        errors += lag_run["errors"]
        r.commands_per_s = phases["orders"]["rps"]
        r.p50_ms, r.p99_ms = phases["orders"]["p50_ms"], phases["orders"]["p99_ms"]
        r.baseline_rate = baselines["orders"]
        r.ratio = ratios["orders"]
        webhook_orders = statuses.get("applied", 0)
        r.checks = {
            "errors": errors,
            "reserved": reserved,
            "reserved_expected": 3 * orders,
            "on_hand": on_hand,
            "on_hand_expected": SKUS * SEED + receipts,
            "webhook_reserved": w_reserved,
            "webhook_reserved_expected": 3 * webhook_orders,
            "webhooks_left": statuses.get("received", 0),
        }
        r.ok = (
            errors == 0
            and reserved == 3 * orders
            and on_hand == SKUS * SEED + receipts
            and w_reserved == 3 * webhook_orders
            and not statuses.get("received")
        )
        r.extra = {
            "api_processes": workers,
            "split": split,
            "targets": targets,
            "phases": phases,
            "trivial": trivials,
            "webhook_lag": lag,
            "inbox": statuses,
        }
    finally:
        for p in (trivial, server, *([worker] if worker is not None else [])):
            p.terminate()
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
    return r


def report(r: Result) -> list[str]:
    """The four targets, one line each, PASS or MISS."""
    lines = []
    if r.extra.get("api_processes", 1) > 1:
        lines.append(f"ledger served by {r.extra['api_processes']} API processes (ledger serve --workers)")
    if r.extra.get("split"):
        lines.append("ledger served by `ledger serve --no-workers` beside one `ledger worker`")
    targets = r.extra.get("targets", {})
    phases = r.extra.get("phases", {})
    for name, label in (
        ("orders", "3-line orders, 64 conns"),
        ("receipts", "receipts, 64 conns"),
        ("webhooks", "Shopify orders/create webhooks at the intake, 64 conns"),
        ("ats", "ATS reads, 32 conns, orders captured beside"),
    ):
        t = targets.get(name)
        if t is None:
            continue
        p99 = f", p99 {t['p99_ms']:.1f} ms (target <= {t['p99_most']:.0f} ms)" if t["p99_most"] else ""
        rps = phases[name]["rps"]
        lines.append(
            f"{'PASS' if t['met'] else 'MISS'}  {label}: {rps:,.0f}/s = {t['ratio']:.2f}x "
            f"the trivial GET (target >= {t['least']:.2f}x){p99}"
        )
        if name == "webhooks" and "webhook_lag" in targets:
            lag, w = targets["webhook_lag"], r.extra["webhook_lag"]
            lines.append(
                f"{'PASS' if lag['met'] else 'MISS'}  webhook stored-to-applied lag at {w['rate']:.0f}/s: "
                f"p99 {lag['p99_ms']:.0f} ms (target < {lag['p99_most']:.0f} ms), "
                f"{w['applied']} of {w['sent']} applied"
            )
    return lines
