"""`NatsPublisher`: the outbox relay to NATS JetStream (stream `LEDGER`, subjects `ledger.>`).

It publishes outbox rows in order, each with its `Nats-Msg-Id`, keeps a bounded window
of acknowledgements in flight, and deletes a row only after JetStream acknowledged it.
When NATS is down, rows stay in the outbox and drain once it is back; a message that was
stored but whose ack was lost is sent again and dropped by JetStream's de-duplication
(window `DUPLICATE_WINDOW`). With no URL configured the relay does nothing and the outbox
keeps filling.

Wake-ups: the relay reads the outbox when told rows were committed — by the outbox's
`watch` (PostgreSQL LISTEN/NOTIFY, from any process) or by an in-process `wake()` (the
projection runner calls it after committing outbox rows) — and polls every `poll_seconds`
only as a fallback (a lost wake-up, a LISTEN connection down, SQLite across processes).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol

from adapters import metrics

log = logging.getLogger("ledger.nats")

STREAM = "LEDGER"
SUBJECTS = ["ledger.>"]
MAX_AGE_SECONDS = 7 * 24 * 3600
DUPLICATE_WINDOW = 30 * 60


class Outbox(Protocol):
    """Where messages wait for publishing (the transactional outbox)."""

    def pending(self, limit: int) -> list[dict[str, Any]]: ...
    def remove(self, ids: list[int]) -> None: ...
    def depth(self) -> int: ...
    def watch(self, wake: Callable[[], None]) -> Callable[[], None]:
        """Calls `wake()` when rows were committed (from any process, where the store can tell); returns a stopper."""
        ...


class NatsPublisher:
    """A worker (start/stop) that relays the outbox to JetStream."""

    def __init__(
        self, url: str | None, outbox: Outbox, window: int = 256, batch: int = 1000, poll_seconds: float = 1.0
    ) -> None:
        self.url = url
        self.outbox = outbox
        self.window = window
        self.batch = batch
        self.poll_seconds = poll_seconds
        self.connected = False
        self.published = 0
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._wake: asyncio.Event | None = None
        self._unwatch: Callable[[], None] | None = None

    @property
    def healthy(self) -> bool:
        """Ready unless this process relays (started, URL set) and NATS is unreachable.

        `ledger serve --no-workers` beside a `ledger worker` does not relay: NATS is the worker's concern.
        """
        return self.url is None or self._thread is None or self.connected

    def start(self) -> None:
        if self.url is None:
            log.info("LEDGER_NATS_URL is not set: messages wait in the outbox")
            return
        # The loop and its events exist before the thread runs, so a stop right after start is seen.
        self._loop = asyncio.new_event_loop()
        self._stop, self._wake = asyncio.Event(), asyncio.Event()
        self._thread = threading.Thread(target=self._main, name="nats-publisher", daemon=True)
        self._thread.start()
        self._unwatch = self.outbox.watch(self.wake)

    def stop(self) -> None:
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None
        self._set(self._stop)
        self.wake()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._thread = None

    def wake(self, *_: Any) -> None:
        """Rows were committed: read the outbox now (callable from any thread)."""
        self._set(self._wake)

    def _set(self, event: asyncio.Event | None) -> None:
        """Sets one of the loop's events from any thread (nothing when the loop never ran or ended)."""
        if self._loop is not None and event is not None:
            try:
                self._loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # the loop already ended
                pass

    def _main(self) -> None:
        assert self._loop is not None
        try:
            self._loop.run_until_complete(self._run())
        finally:
            self._loop.close()

    async def _run(self) -> None:
        import nats

        assert self._stop is not None
        backoff = 0.2
        while not self._stop.is_set():
            nc = None
            try:
                # nats-py keeps retrying a refused first connection inside connect(): bound it, so
                # a stop or a backoff is never stuck behind it.
                nc = await asyncio.wait_for(
                    nats.connect(
                        self.url,
                        connect_timeout=2,
                        max_reconnect_attempts=0,
                        allow_reconnect=False,
                        error_cb=self._on_error,
                    ),
                    timeout=3,
                )
                if not nc.is_connected:  # nats-py reports a refused connection through error_cb only
                    raise ConnectionError(f"NATS at {self.url} is unreachable")
                js = nc.jetstream(timeout=5)
                await self._ensure_stream(js)
                self.connected, backoff = True, 0.2
                await self._relay(nc, js)
            except Exception as e:
                if self.connected:
                    log.warning(
                        "NATS publishing interrupted (%s); the outbox keeps the messages", type(e).__name__
                    )
                self.connected = False
            finally:
                if nc is not None and not nc.is_closed:
                    try:
                        await nc.close()
                    except Exception:
                        pass
            await self._sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    @staticmethod
    async def _on_error(e: Exception) -> None:
        # nats-py prints a traceback by default; one line is enough (the loop above reconnects).
        log.debug("NATS client error: %s", type(e).__name__)

    async def _ensure_stream(self, js: Any) -> None:
        from nats.js.errors import NotFoundError

        try:
            await js.stream_info(STREAM)
        except NotFoundError:
            await js.add_stream(
                name=STREAM, subjects=SUBJECTS, max_age=MAX_AGE_SECONDS, duplicate_window=DUPLICATE_WINDOW
            )

    async def _sleep(self, seconds: float) -> None:
        assert self._wake is not None
        try:
            await asyncio.wait_for(self._wake.wait(), seconds)
        except TimeoutError:
            pass
        self._wake.clear()

    async def _relay(self, nc: Any, js: Any) -> None:
        assert self._stop is not None
        while not self._stop.is_set():
            if not nc.is_connected:
                raise ConnectionError("NATS connection lost")
            rows = await asyncio.to_thread(self.outbox.pending, self.batch)
            metrics.OUTBOX_DEPTH.set(
                len(rows) if len(rows) < self.batch else await asyncio.to_thread(self.outbox.depth)
            )
            if not rows:
                await self._sleep(self.poll_seconds)
                continue
            for i in range(0, len(rows), self.window):
                chunk = rows[i : i + self.window]
                results = await asyncio.gather(
                    *(
                        js.publish(r["subject"], r["payload"].encode(), headers={"Nats-Msg-Id": r["msg_id"]})
                        for r in chunk
                    ),
                    return_exceptions=True,
                )
                acked = [
                    r["id"]
                    for r, res in zip(chunk, results, strict=True)
                    if not isinstance(res, BaseException)
                ]
                failed = len(chunk) - len(acked)
                await asyncio.to_thread(self.outbox.remove, acked)
                self.published += len(acked)
                metrics.NATS_PUBLISHED.inc(len(acked))
                if failed:
                    metrics.NATS_PUBLISH_FAILURES.inc(failed)
                    raise ConnectionError(f"{failed} publishes were not acknowledged")
