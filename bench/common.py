"""What every benchmark shares: a scratch schema, the raw baseline, a driver, the report.

Each run gets a fresh PostgreSQL schema (dropped afterwards), measures the raw batched insert
rate of the machine in that same run (the method of `tools/pg_limit.py`), drives the ledger
with concurrent callers and reports events/s, p50/p99 latency and the ratio to the baseline.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import psycopg

from adapters.persistence.urls import ledger_env, pg_conninfo, pg_parts

DEFAULT_URL = "postgresql://root@127.0.0.1:5432/test"

PAYLOAD = json.dumps(
    {
        "sku": "SKU-000123",
        "location": "STORE-042",
        "quantity": 3,
        "reason": "sale",
        "order_id": "ORD-1234567",
        "channel": "online",
        "occurred_at": "2026-11-26T18:00:00Z",
        "correlation_id": str(uuid.uuid4()),
        "causation_id": str(uuid.uuid4()),
        "reference": "shopify:webhook:6b2f0b4e-1c1e-4e5a-9d4e-3f0c2a1b9e77",
    }
).encode()


@dataclass
class Result:
    """One benchmark's figures; `ok` is False when an invariant check failed."""

    name: str
    events_per_s: float = 0.0
    commands_per_s: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    baseline: str = ""
    baseline_rate: float = 0.0
    ratio: float = 0.0
    ok: bool = True
    checks: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        head = f"{self.name:<12} {self.events_per_s:>9,.0f} events/s {self.commands_per_s:>9,.0f} cmds/s"
        lat = f"p50 {self.p50_ms:6.1f} ms  p99 {self.p99_ms:6.1f} ms"
        base = f"{self.ratio:5.0%} of {self.baseline} ({self.baseline_rate:,.0f}/s)" if self.baseline else ""
        status = "ok" if self.ok else "FAILED " + json.dumps(self.checks, default=str)
        return f"{head}  {lat}  {base}  {status}"


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


# ------------------------------------------------------------------ schema


@contextmanager
def scratch_schema(url: str) -> Iterator[str]:
    """A URL on a fresh schema of `url`'s database, dropped afterwards."""
    base = url.split("?")[0]
    schema = "bench_" + uuid.uuid4().hex[:10]
    scratch = f"{base}?schema={schema}"
    with psycopg.connect(pg_conninfo(scratch), autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield scratch
    finally:
        with psycopg.connect(pg_conninfo(scratch), autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _scalar(conn: psycopg.Connection[Any], sql: str) -> Any:
    row = conn.execute(sql).fetchone()
    assert row is not None  # a SHOW or an aggregate answers one row
    return row[0]


def server_facts(url: str) -> dict[str, str]:
    with psycopg.connect(pg_conninfo(url), autocommit=True) as conn:
        version = _scalar(conn, "SHOW server_version")
        sync = _scalar(conn, "SHOW synchronous_commit")
        fsync = _scalar(conn, "SHOW fsync")
    return {"postgres": version, "synchronous_commit": sync, "fsync": fsync}


# ---------------------------------------------------------------- baseline


def raw_insert_rate(url: str, seconds: float = 3.0, batch: int = 500) -> float:
    """Events/s of raw durable INSERTs, `batch` event-shaped rows per transaction, one connection.

    The method of tools/pg_limit.py, on a table in the run's own schema.
    """
    schema = pg_parts(url)["schema"] or "public"
    table = f'"{schema}".raw_limit_events'
    with psycopg.connect(pg_conninfo(url), autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {table}")
        conn.execute(
            f"CREATE TABLE {table} (position bigserial primary key, stream_id uuid not null, "
            "version int not null, type text not null, data bytea not null, unique (stream_id, version))"
        )
        insert = f"INSERT INTO {table} (stream_id, version, type, data) VALUES (%s, %s, %s, %s)"
        streams = {uuid.uuid4(): 0 for _ in range(256)}
        keys = list(streams)
        count = 0
        start = time.monotonic()
        deadline = start + seconds
        with conn.cursor() as cur:
            while time.monotonic() < deadline:
                rows = []
                for _ in range(batch):
                    s = random.choice(keys)
                    streams[s] += 1
                    rows.append((s, streams[s], "Sold", PAYLOAD))
                with conn.transaction():
                    cur.executemany(insert, rows)
                count += batch
        rate = count / (time.monotonic() - start)
        conn.execute(f"DROP TABLE {table}")
    return rate


# ------------------------------------------------------------------ driver


def drive(
    submit: Callable[[Any], Awaitable[Any]],
    commands: list[Any],
    callers: int,
) -> tuple[float, list[float], list[Any]]:
    """Runs `commands` through `submit` from `callers` concurrent asyncio callers.

    Each caller awaits its command's future before sending the next (a closed loop, like an
    HTTP client). Returns (elapsed seconds, latencies in ms, outcomes or exceptions in order).
    """
    outcomes: list[Any] = [None] * len(commands)
    latencies: list[float] = [0.0] * len(commands)
    cursor = iter(range(len(commands)))

    async def caller() -> None:
        for i in cursor:
            t0 = time.perf_counter()
            try:
                outcomes[i] = await submit(commands[i])
            except Exception as e:  # a refused command is an outcome too
                outcomes[i] = e
            latencies[i] = (time.perf_counter() - t0) * 1000

    async def main() -> float:
        t0 = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(callers)))
        return time.perf_counter() - t0

    elapsed = asyncio.run(main())
    return elapsed, latencies, outcomes


def make_ledger(url: str, **kw: Any) -> Any:
    from ledger.service import Ledger

    return Ledger(ledger_env(url, pool_size=8), **kw)


def count_events(url: str) -> int:
    schema = pg_parts(url)["schema"]
    with psycopg.connect(pg_conninfo(url), autocommit=True) as conn:
        return int(_scalar(conn, f'SELECT count(*) FROM "{schema}".ledger_events'))


def stream_movements(ledger: Any, agg_id: uuid.UUID) -> int:
    """On hand recomputed from the stored events of one stream (the audit check)."""
    from ledger.stock import movement_effect

    return sum(movement_effect(e)[0] for e in ledger.app.events.get(agg_id))
