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
    """Feeds the write-path metrics from one `Ledger`, once, without touching the hot path's logic.

    - `EVENTS_APPENDED{type}`: from the application's `_notify(recordings)` hook, which the
      library calls after each committed save;
    - `BATCH_SIZE`: commands per committed batch, from the writer's `on_commit` listeners;
    - `COMMANDS{type,result}`: each submitted command's outcome (`ok`, `duplicate` or an error code).
    """
    if getattr(ledger, "_instrumented", False):
        return
    ledger._instrumented = True
    app, writer = ledger.app, ledger.writer
    notify = app._notify

    def count_events(recordings: Any) -> None:
        tally = Counter(type(r.domain_event).__name__ for r in recordings)
        for name, n in tally.items():
            EVENTS_APPENDED.labels(name).inc(n)
        notify(recordings)

    app._notify = count_events
    last = {"commands": writer.stats.get("commands", 0)}

    def count_batch(_: int) -> None:
        now = writer.stats.get("commands", 0)
        if now > last["commands"]:
            BATCH_SIZE.observe(now - last["commands"])
        last["commands"] = now

    writer.on_commit.append(count_batch)
    submit = writer.submit

    def counted_submit(command: Any) -> Future[dict[str, Any]]:
        future = submit(command)
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
        return future

    writer.submit = counted_submit
