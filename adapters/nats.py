"""`NatsPublisher`: the outbox relay to NATS JetStream (stream `LEDGER`, subjects `ledger.>`).

It publishes outbox rows in order, each with its `Nats-Msg-Id`, keeps a bounded window
of acknowledgements in flight, and deletes a row only after JetStream acknowledged it.
When NATS is down, rows stay in the outbox and drain once it is back; a message that was
stored but whose ack was lost is sent again and dropped by JetStream's de-duplication
(window `DUPLICATE_WINDOW`). With no URL configured the relay does nothing and the outbox
keeps filling.

Servers: `LEDGER_NATS_URL` is one server or a comma-separated list. The client connects to
one of them and, when that server goes away, reconnects to another one of the list or of the
servers the cluster announces (nats-py's server pool, reconnecting without end). Publishes
that were not acknowledged during a failover (the connection moving, a stream leader being
elected) stay in the outbox and are sent again. A connection that cannot be made at all is
logged with its reason and retried with a backoff; `readiness` is then `degraded`.

Wake-ups: the relay reads the outbox when told rows were committed — by the outbox's
`watch` (PostgreSQL LISTEN/NOTIFY, from any process) or by an in-process `wake()` (the
projection runner calls it after committing outbox rows) — and polls every `poll_seconds`
only as a fallback (a lost wake-up, a LISTEN connection down, SQLite across processes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit, urlunsplit

from adapters import metrics

log = logging.getLogger("ledger.nats")

STREAM = "LEDGER"
SUBJECTS = ["ledger.>"]
MAX_AGE_SECONDS = 7 * 24 * 3600
DUPLICATE_WINDOW = 30 * 60
CONNECT_TIMEOUT = 2  # seconds per server and attempt
RECONNECT_WAIT = 0.5  # seconds before the same server is tried again
ACK_TIMEOUT = 5.0  # seconds JetStream has to acknowledge one publish
PING_INTERVAL = 10  # seconds; a server that went silent is left after three unanswered pings

Readiness = Literal["ok", "degraded", "not-configured"]


def server_list(url: str | None) -> list[str]:
    """The servers of `LEDGER_NATS_URL`: one URL or several, comma-separated (blanks dropped)."""
    if not url:
        return []
    return [s.strip() for s in url.split(",") if s.strip()]


def redact(server: str) -> str:
    """A server URL fit for a log line: user and password taken out."""
    parts = urlsplit(server)
    if parts.username is None and parts.password is None:
        return server
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def describe(e: BaseException) -> str:
    """`ConnectionRefusedError: [Errno 111] ...`: the reason of a failed connection, on one line."""
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


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
        self,
        url: str | None,
        outbox: Outbox,
        window: int = 256,
        batch: int = 1000,
        poll_seconds: float = 1.0,
        replicas: int = 1,
    ) -> None:
        self.url = url
        self.servers = server_list(url)
        self.outbox = outbox
        self.window = window
        self.batch = batch
        self.poll_seconds = poll_seconds
        self.replicas = replicas
        self.connected = False
        self.connected_url: str | None = None  # the server this relay is connected to, when it is
        self.published = 0
        self.last_error: str | None = None  # why the last connection or publish failed
        self._logged: str | None = None  # the reason last logged for not publishing
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._wake: asyncio.Event | None = None
        self._reconnected: asyncio.Event | None = None
        self._unwatch: Callable[[], None] | None = None

    @property
    def healthy(self) -> bool:
        """Ready unless this process relays (started, URL set) and NATS is unreachable.

        `ledger serve --no-workers` beside a `ledger worker` does not relay: NATS is the worker's concern.
        """
        return not self.servers or self._thread is None or self.connected

    @property
    def readiness(self) -> Readiness:
        """What `/readyz` says of NATS: `not-configured` without a URL, `degraded` while a relaying
        process has no connection that JetStream acknowledges on."""
        if not self.servers:
            return "not-configured"
        return "ok" if self.healthy else "degraded"

    def start(self) -> None:
        if not self.servers:
            log.info("LEDGER_NATS_URL is not set: messages wait in the outbox")
            return
        # The loop and its events exist before the thread runs, so a stop right after start is seen.
        self._loop = asyncio.new_event_loop()
        self._stop, self._wake, self._reconnected = asyncio.Event(), asyncio.Event(), asyncio.Event()
        self._thread = threading.Thread(target=self._main, name="nats-publisher", daemon=True)
        self._thread.start()
        self._unwatch = self.outbox.watch(self.wake)

    def stop(self) -> None:
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None
        self._set(self._stop)
        self.wake()
        self._set(self._reconnected)
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
        from nats.aio.client import Client

        assert self._stop is not None
        backoff = 0.2
        while not self._stop.is_set():
            nc = Client()
            self.last_error = None
            try:
                await self._connect(nc)
                js = nc.jetstream(timeout=ACK_TIMEOUT)
                await self._ensure_stream(js)
                self._up(nc)
                backoff = 0.2
                await self._relay(nc, js)
            except Exception as e:
                reason = self.last_error if isinstance(e, TimeoutError) and self.last_error else describe(e)
                if self.connected:
                    log.warning("NATS publishing interrupted (%s); the outbox keeps the messages", reason)
                elif reason != self._logged:  # once per outage and reason, not at every retry
                    log.warning(
                        "cannot publish to NATS at %s (%s); the outbox keeps the messages, retrying in %.1f s",
                        ",".join(redact(s) for s in self.servers),
                        reason,
                        backoff,
                    )
                self.last_error = self._logged = reason
            finally:
                self._down()  # before the close, so it is not reported as a lost connection
                if not nc.is_closed:
                    with contextlib.suppress(Exception):
                        await nc.close()
            await self._sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    async def _connect(self, nc: Any) -> None:
        """Connects to one of the servers. nats-py goes round its server pool without end (and later
        reconnects the same way, adding the servers the cluster announces): bound the first round, so
        a stop or a backoff is never stuck behind it and the reason is logged."""

        async def reconnected() -> None:
            await self._on_reconnected(nc)

        await asyncio.wait_for(
            nc.connect(
                servers=self.servers,
                connect_timeout=CONNECT_TIMEOUT,
                allow_reconnect=True,
                max_reconnect_attempts=-1,
                reconnect_time_wait=RECONNECT_WAIT,
                error_cb=self._on_error,
                disconnected_cb=self._on_disconnected,
                reconnected_cb=reconnected,
                ping_interval=PING_INTERVAL,
                max_outstanding_pings=3,
            ),
            timeout=CONNECT_TIMEOUT * len(self.servers) + 2 * RECONNECT_WAIT + 1,
        )
        if not nc.is_connected:
            raise ConnectionError(self.last_error or "no server accepted the connection")

    def _up(self, nc: Any) -> None:
        url = nc.connected_url
        self.connected_url = redact(url.geturl()) if url is not None else None
        if not self.connected:
            log.info("publishing to NATS at %s", self.connected_url)
        self.connected, self.last_error, self._logged = True, None, None

    def _down(self) -> None:
        self.connected, self.connected_url = False, None

    async def _on_error(self, e: Exception) -> None:
        # nats-py prints a traceback by default; the reason is kept and logged once per outage.
        self.last_error = describe(e)
        log.debug("NATS client error: %s", self.last_error)

    async def _on_disconnected(self) -> None:
        if self.connected:
            log.warning("NATS connection to %s lost; reconnecting to another server", self.connected_url)
        self._down()

    async def _on_reconnected(self, nc: Any) -> None:
        self._up(nc)
        assert self._reconnected is not None
        self._reconnected.set()
        self.wake()

    async def _ensure_stream(self, js: Any) -> None:
        from nats.js.errors import NotFoundError

        try:
            await js.stream_info(STREAM)  # an existing stream is left as the operator made it
        except NotFoundError:
            await js.add_stream(
                name=STREAM,
                subjects=SUBJECTS,
                max_age=MAX_AGE_SECONDS,
                duplicate_window=DUPLICATE_WINDOW,
                num_replicas=self.replicas,
            )
            log.info("created the NATS stream %s with %d replica(s)", STREAM, self.replicas)

    async def _sleep(self, seconds: float, event: asyncio.Event | None = None) -> None:
        event = event or self._wake
        assert event is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), seconds)
        event.clear()

    async def _relay(self, nc: Any, js: Any) -> None:
        assert self._stop is not None and self._reconnected is not None
        retry = 0.1
        while not self._stop.is_set():
            if nc.is_closed:
                raise ConnectionError(self.last_error or "NATS connection closed")
            if not nc.is_connected:  # nats-py is moving to another server
                await self._sleep(self.poll_seconds, self._reconnected)
                continue
            rows = await asyncio.to_thread(self.outbox.pending, self.batch)
            metrics.OUTBOX_DEPTH.set(
                len(rows) if len(rows) < self.batch else await asyncio.to_thread(self.outbox.depth)
            )
            if not rows:
                await self._sleep(self.poll_seconds)
                continue
            failed = 0
            for i in range(0, len(rows), self.window):
                failed = await self._publish(js, rows[i : i + self.window])
                if failed:
                    break
            if not failed:
                retry = 0.1
                if not self.connected and nc.is_connected:
                    self._up(nc)
                continue
            # Not acknowledged: the server went away, or the stream has no leader for a moment. The
            # rows stay in the outbox and go again (JetStream drops what it already stored).
            metrics.NATS_PUBLISH_FAILURES.inc(failed)
            if retry >= 1.0 and self.connected:
                log.warning("NATS does not acknowledge publishes (%s); retrying", self.last_error)
                self._down()
            await self._sleep(retry, self._reconnected)
            retry = min(retry * 2, 5.0)

    async def _publish(self, js: Any, chunk: list[dict[str, Any]]) -> int:
        """Publishes one window of rows, removes the acknowledged ones; answers how many were not."""
        results = await asyncio.gather(
            *(
                js.publish(r["subject"], r["payload"].encode(), headers={"Nats-Msg-Id": r["msg_id"]})
                for r in chunk
            ),
            return_exceptions=True,
        )
        acked = [r["id"] for r, res in zip(chunk, results, strict=True) if not isinstance(res, BaseException)]
        errors = [res for res in results if isinstance(res, BaseException)]
        if errors:
            self.last_error = describe(errors[0])
        if acked:
            await asyncio.to_thread(self.outbox.remove, acked)
            self.published += len(acked)
            metrics.NATS_PUBLISHED.inc(len(acked))
        return len(errors)
