"""`GET /metrics`: Prometheus text from `adapters.metrics.REGISTRY`, and the ledger's instrumentation.

No bearer token: Prometheus scrapes it like `/healthz`. It carries counts and latencies only,
never identifiers or personal data; keep the port internal, or put it behind the proxy's auth.
"""

from __future__ import annotations

import logging
from collections import Counter
from concurrent.futures import Future
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from adapters.metrics import BATCH_SIZE, COMMANDS, EVENTS_APPENDED, REGISTRY
from ledger.errors import LedgerError

log = logging.getLogger("ledger.metrics")

router = APIRouter(tags=["health"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}},
            "description": "Prometheus text exposition",
        }
    },
)
async def metrics() -> Response:
    """Prometheus text, with no token: scrape it on an internal port. Latency, events by type, lag, ..."""
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


def instrument(ledger: Any) -> None:
    """Feeds the write-path metrics from one `Ledger`, once, through the writer's observers.

    - `EVENTS_APPENDED{type}` and `BATCH_SIZE`: from each committed batch (`on_batch`);
    - `COMMANDS{type,result}`: each submitted command's outcome (`ok`, `duplicate` or an error code).
    """
    writer = ledger.writer
    if count_batch in writer.on_batch:
        return

    writer.on_batch.append(count_batch)
    writer.on_submit.append(count_command)


def count_batch(commands: int, recordings: list[Any]) -> None:
    if commands:
        BATCH_SIZE.observe(commands)
    for name, n in Counter(type(r.domain_event).__name__ for r in recordings).items():
        EVENTS_APPENDED.labels(name).inc(n)


def count_command(command: Any, future: Future[dict[str, Any]]) -> None:
    kind = type(command).__name__

    def done(f: Future[dict[str, Any]]) -> None:
        e = None if f.cancelled() else f.exception()
        if f.cancelled():
            result = "cancelled"
        elif e is None:
            result = "duplicate" if f.result().get("duplicate") else "ok"
        else:
            result = e.code if isinstance(e, LedgerError) else "error"
        COMMANDS.labels(kind, result).inc()

    future.add_done_callback(done)
