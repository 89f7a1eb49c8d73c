"""`ledger bench`: append, hot, orders, projections, api, memory, reconcile, shopify, all.

Each run uses a fresh schema of `--database-url` (dropped afterwards), measures its same-run
baseline, prints events/s, p50/p99 latency and the ratio to the baseline, and checks invariants.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from collections.abc import Callable
from typing import Annotated, Any

import typer

from bench.common import DEFAULT_URL

bench_app = typer.Typer(
    help="benchmarks with a same-run baseline (PostgreSQL, durable commits)", no_args_is_help=True
)

UrlOpt = Annotated[
    str, typer.Option("--database-url", help="PostgreSQL URL; a fresh schema is used and dropped")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON document instead of lines")]
CallersOpt = Annotated[int, typer.Option(help="concurrent callers")]


def machine(url: str) -> dict[str, Any]:
    from bench.common import server_facts

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        ).stdout.strip()
    except OSError:
        commit = ""
    mem = 0
    try:
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) // 1024
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "memory_mb": mem,
        "python": platform.python_version(),
        "commit": commit,
        **server_facts(url),
    }


def _run(
    url: str,
    as_json: bool,
    jobs: list[tuple[str, Callable[[str], Any]]],
    after: Callable[[], Any] | None = None,
) -> None:
    from bench.common import scratch_schema

    facts = machine(url)
    results = []
    if not as_json:
        typer.echo(" ".join(f"{k}={v}" for k, v in facts.items()))
    for _name, job in jobs:
        with scratch_schema(url) as scratch:
            r = job(scratch)
        results.append(r)
        if not as_json:
            typer.echo(r.line())
    if as_json:
        typer.echo(
            json.dumps({"machine": facts, "results": [r.as_dict() for r in results]}, indent=2, default=str)
        )
    elif after is not None:
        after()
    if not all(r.ok for r in results):
        raise typer.Exit(1)


@bench_app.command("append")
def append_cmd(
    database_url: UrlOpt = DEFAULT_URL,
    commands: int = 60_000,
    callers: CallersOpt = 64,
    skus: int = 10_000,
    processes: Annotated[
        int, typer.Option(help="writer processes, each with its share of the callers and SKU-locations")
    ] = 1,
    as_json: JsonOpt = False,
) -> None:
    """Receipts spread over 10,000 SKU-locations from 64 concurrent callers."""
    from bench.writes import append

    _run(
        database_url,
        as_json,
        [
            (
                "append",
                lambda u: append(u, commands=commands, callers=callers, skus=skus, processes=processes),
            )
        ],
    )


@bench_app.command("hot")
def hot_cmd(
    database_url: UrlOpt = DEFAULT_URL,
    commands: int = 60_000,
    callers: CallersOpt = 64,
    as_json: JsonOpt = False,
) -> None:
    """64 concurrent reservers on one SKU-location (stock runs out; no oversell allowed)."""
    from bench.writes import hot

    _run(database_url, as_json, [("hot", lambda u: hot(u, commands=commands, callers=callers))])


@bench_app.command("orders")
def orders_cmd(
    database_url: UrlOpt = DEFAULT_URL,
    commands: int = 20_000,
    callers: CallersOpt = 64,
    as_json: JsonOpt = False,
) -> None:
    """3-line order captures in process."""
    from bench.writes import orders

    _run(database_url, as_json, [("orders", lambda u: orders(u, commands=commands, callers=callers))])


@bench_app.command("long")
def long_cmd(database_url: UrlOpt = DEFAULT_URL, events: int = 1_000_000, as_json: JsonOpt = False) -> None:
    """One SKU-location with N events (default 1,000,000): write rate at the end vs the start, cold load."""
    from bench.writes import long_stream

    _run(database_url, as_json, [("long", lambda u: long_stream(u, events=events))])


@bench_app.command("open-reservations")
def open_reservations_cmd(
    database_url: UrlOpt = DEFAULT_URL,
    reservations: int = 20_000,
    window: int = 2_000,
    as_json: JsonOpt = False,
) -> None:
    """A hot SKU with N open reservations (default 20,000): the stock view's rate over its last
    window of events vs its first, and the WAL per event."""
    from bench.hotrows import open_reservations

    _run(
        database_url,
        as_json,
        [("open-reservations", lambda u: open_reservations(u, reservations=reservations, window=window))],
    )


@bench_app.command("projections")
def projections_cmd(
    database_url: UrlOpt = DEFAULT_URL, events: int = 1_000_000, as_json: JsonOpt = False
) -> None:
    """Rebuild of the stock and ATS read models over N events (default 1,000,000)."""
    from bench.reads import projections

    _run(database_url, as_json, [("projections", lambda u: projections(u, events=events))])


@bench_app.command("nats")
def nats_cmd(
    database_url: UrlOpt = DEFAULT_URL,
    nats_url: str = "nats://127.0.0.1:4222",
    rate: int = 1000,
    seconds: float = 5.0,
    as_json: JsonOpt = False,
) -> None:
    """Append → NATS delivery latency at RATE receipts/s, against the same run's polling-only relay."""
    from bench.reads import delivery

    _run(database_url, as_json, [("nats", lambda u: delivery(u, nats_url, rate, seconds))])


@bench_app.command("api")
def api_cmd(
    database_url: UrlOpt = DEFAULT_URL,
    seconds: Annotated[float, typer.Option(help="seconds of load per phase (11 phases)")] = 5.0,
    tree: Annotated[
        str | None, typer.Option(help="serve the ledger from this checkout (a before/after comparison)")
    ] = None,
    workers: Annotated[int, typer.Option(min=1, help="API processes: `ledger serve --workers N`")] = 1,
    split: Annotated[
        bool,
        typer.Option(
            help="serve by `ledger serve --no-workers` beside one `ledger worker` (production shape)"
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Orders, receipts, webhooks and ATS reads over HTTP against an interleaved trivial GET: PASS/MISS."""
    from pathlib import Path

    from bench.api import api, report

    results = []

    def job(u: str) -> Any:
        r = api(u, seconds=seconds, tree=Path(tree).resolve() if tree else None, workers=workers, split=split)
        results.append(r)
        return r

    def print_targets() -> None:
        for r in results:
            for line in report(r):
                typer.echo(line)

    _run(database_url, as_json, [("api", job)], after=print_targets)


@bench_app.command("memory")
def memory_cmd(
    database_url: UrlOpt = DEFAULT_URL,
    sku_locations: Annotated[
        int, typer.Option("--sku-locations", help="distinct SKU-locations touched, one receipt each")
    ] = 1_000_000,
    every: Annotated[int, typer.Option(help="sample the resident set every N SKU-locations")] = 100_000,
    as_json: JsonOpt = False,
) -> None:
    """The resident set of one writer process touching N SKU-locations (default 1,000,000): PASS/MISS
    against a plateau <= 1 GiB with the default LEDGER_WRITER_CACHE_SIZE."""
    from bench.memory import memory, report

    results = []

    def progress(sample: dict[str, Any]) -> None:
        if not as_json:
            typer.echo(
                f"  {sample['sku_locations']:>9,} SKU-locations  RSS {sample['rss_mib']:>7,.1f} MiB  "
                f"cached {sample['cached']:>7,}  {sample['seconds']:>6.1f} s"
            )

    def job(u: str) -> Any:
        r = memory(u, sku_locations=sku_locations, every=max(1, every), progress=progress)
        results.append(r)
        return r

    def print_target() -> None:
        for r in results:
            for line in report(r):
                typer.echo(line)

    _run(database_url, as_json, [("memory", job)], after=print_target)


@bench_app.command("reconcile")
def reconcile_cmd(
    database_url: UrlOpt = DEFAULT_URL, levels: int = 100_000, as_json: JsonOpt = False
) -> None:
    """Reconcile a snapshot of N levels (default 100,000) as of a moment inside a stream of sales."""
    from bench.reconcile import reconcile

    _run(database_url, as_json, [("reconcile", lambda u: reconcile(u, levels=levels))])


@bench_app.command("shopify")
def shopify_cmd(database_url: UrlOpt = DEFAULT_URL, seconds: int = 20, as_json: JsonOpt = False) -> None:
    """The ATS push to Shopify against the Admin API stand-in at 100 points/s, with a naive baseline."""
    from bench.shopify import shopify

    _run(database_url, as_json, [("shopify", lambda u: shopify(u, seconds=seconds))])


@bench_app.command("all")
def all_cmd(database_url: UrlOpt = DEFAULT_URL, events: int = 1_000_000, as_json: JsonOpt = False) -> None:
    """Every benchmark, one after the other."""
    from bench.api import api
    from bench.hotrows import open_reservations
    from bench.reads import projections
    from bench.writes import append, hot, orders

    _run(
        database_url,
        as_json,
        [
            ("append", append),
            ("hot", hot),
            ("orders", orders),
            ("projections", lambda u: projections(u, events=events)),
            ("open-reservations", open_reservations),
            ("api", api),
        ],
    )
