"""Structured JSON logs (structlog) with personal data masked before anything is written.

Lines are rendered and written by one listener thread: the calling thread (a request, the
writer) only builds the event and puts it on a bounded queue (`QUEUE_SIZE`). When the queue is
full the line is dropped and counted (`ledger_log_lines_dropped_total`), so logging never blocks
the request path, even on a stalled stderr.

The access line, written for every write and a sample of reads, skips structlog and the stdlib
logger (`access_line`): the request puts its few fields on the queue as a tuple, and the listener
renders the same JSON line the structlog chain would. Its fields are bounded values (a method, a
route template, numbers) that are never masked, and the two ids, which are masked (`mask_text`
runs a pattern only on an id with "@", "+" or "lk_" in it).
"""

from __future__ import annotations

import atexit
import logging
import logging.handlers
import queue
import re
import sys
import threading
import time
from collections.abc import MutableMapping
from datetime import UTC, datetime
from typing import IO, Any, NamedTuple

import orjson
import structlog

from adapters.metrics import LOG_LINES_DROPPED

PERSONAL_KEYS = {
    "email",
    "phone",
    "first_name",
    "last_name",
    "name",
    "address1",
    "address2",
    "address",
    "city",
    "zip",
    "province",
    "company",
    "customer",
    "billing_address",
    "shipping_address",
    "contact_email",
    "default_address",
    "addresses",
    "note",
    "note_attributes",
    "properties",  # line item properties: engravings, gift messages (free text)
    "gift_message",
    "instructions",
    "browser_ip",
    "latitude",
    "longitude",
}
SECRET_KEYS = {
    "authorization",
    "token",
    "secret",
    "password",
    "x-shopify-hmac-sha256",
    "shopify_webhook_secrets",
}
EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
PHONE = re.compile(r"\+\d[\d\s()-]{7,}\d")
# A national number: (555) 123-4567, 555-123-4567, 020 7946 0958
LOCAL_PHONE = re.compile(r"(?<![\w.:/-])(?:\(\d{2,5}\)\s?|\d{2,5}[\s.-])\d{3,4}[\s.-]\d{3,4}(?![\w:/-])")
# A street address: a house number, up to four words, a street word (any order of the two)
_STREET = (
    r"(?:street|st|avenue|ave|road|rd|boulevard|blvd|lane|ln|drive|dr|way|court|ct|place|pl|square|sq|"
    r"terrace|close|crescent|highway|hwy|rue|avenida|calle|via|strasse|straße|str|weg|gasse|platz|allee|laan|"
    r"straat|gracht|plein|vej|gatan|gata)"
)
ADDRESS = re.compile(
    rf"\b\d{{1,5}}[a-z]?,?\s+(?:[\w'’.-]+\s+){{0,4}}{_STREET}\b\.?"
    rf"|\b{_STREET}\.?\s+(?:[\w'’.-]+\s+){{0,3}}\d{{1,5}}[a-z]?\b",
    re.IGNORECASE,
)
TOKEN = re.compile(r"lk_[0-9a-f]{12}_[A-Za-z0-9_-]+")


# Values of these keys are never masked: the logging machinery's own, and the access line's
# fields, which the middleware fills with bounded values (a method, a route template, numbers).
UNMASKED_KEYS = frozenset({"timestamp", "level", "logger", "method", "route", "status", "ms", "sampled"})
QUEUE_SIZE = 10_000  # lines waiting for the listener thread; more are dropped, never waited for


def mask_text(text: str) -> str:
    """Masks personal data by its shape: e-mail addresses, phone numbers, street addresses."""
    # The e-mail, phone and token patterns need their literal ("@", "+", "lk_"); the national
    # phone and street patterns need a digit. Text with neither is left without a regex run.
    if "@" in text or "+" in text or "lk_" in text:
        text = TOKEN.sub("lk_***", text)
        text = EMAIL.sub("***@***", text)
        text = PHONE.sub("***phone***", text)
    if " " in text and any(ch.isdigit() for ch in text):
        text = LOCAL_PHONE.sub("***phone***", text)
        text = ADDRESS.sub("***address***", text)
    return text


def mask(value: Any, key: str = "") -> Any:
    """Masks personal data and secrets in a log value, recursively."""
    k = key.lower()
    if k in SECRET_KEYS:
        return "***"
    if k in PERSONAL_KEYS and value not in (None, ""):
        return "***"
    if isinstance(value, dict):
        return {kk: mask(vv, str(kk)) for kk, vv in value.items()}
    if isinstance(value, list | tuple):
        return [mask(v) for v in value]
    if isinstance(value, str):
        return mask_text(value)
    return value


def _mask_processor(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    return {k: (v if k in UNMASKED_KEYS else mask(v, k)) for k, v in event_dict.items()}


def _record_context(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog's context of a stdlib record, captured in the thread that logged it."""
    record = event_dict.get("_record")
    context = getattr(record, "ledger_context", None)
    return {**context, **event_dict} if context else event_dict


class _MaskingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = mask_text(record.msg)
        if record.args:
            record.args = (
                tuple(mask(a) for a in record.args) if isinstance(record.args, tuple) else record.args
            )
        return True


class BoundedQueueHandler(logging.handlers.QueueHandler):
    """Puts records on a bounded queue for the listener thread; a full queue drops and counts.

    Records are handed over unformatted (the listener renders them); a stdlib record's message
    is merged with its arguments (masked first by `_MaskingFilter`) and its structlog context
    taken here, in the thread that logged it.
    """

    def __init__(self, q: queue.Queue[logging.LogRecord]) -> None:
        super().__init__(q)
        self.dropped = 0

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        if not isinstance(record.msg, dict):  # a stdlib record (structlog's carry an event dict)
            record.msg = record.getMessage()
            record.args = None
            context = structlog.contextvars.get_contextvars()
            if context:
                record.ledger_context = context
        return record

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1
            LOG_LINES_DROPPED.inc()


class AccessLine(NamedTuple):
    """An access line as the request leaves it on the queue (rendered by the listener)."""

    at: float
    method: str
    route: str
    status: int
    ms: float
    sampled: int | None
    request_id: str | None
    correlation_id: str | None

    def render(self) -> str:
        """The line the structlog chain writes for `log.info("request", ...)` on `ledger.access`."""
        line: dict[str, Any] = {
            "method": self.method,
            "route": self.route,
            "status": self.status,
            "ms": self.ms,
        }
        if self.sampled is not None:
            line["sampled"] = self.sampled
        line["event"] = "request"
        if self.request_id is not None:
            line["request_id"] = mask_text(self.request_id)
        if self.correlation_id is not None:
            line["correlation_id"] = mask_text(self.correlation_id)
        line["level"] = "info"
        line["logger"] = ACCESS_LOGGER
        line["timestamp"] = datetime.fromtimestamp(self.at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return _json(line)


ACCESS_LOGGER = "ledger.access"
_access = logging.getLogger(ACCESS_LOGGER)
_access_structlog = structlog.stdlib.get_logger(ACCESS_LOGGER)


def access_line(
    method: str,
    route: str,
    status: int,
    ms: float,
    request_id: str | None,
    correlation_id: str | None,
    sampled: int | None = None,
) -> None:
    """Logs one access line on `ledger.access` without structlog's chain (see the module docstring).
    Before `configure_logging` (a library use, a test), it goes through structlog as any line."""
    handler = _handler
    if not _access.isEnabledFor(logging.INFO):
        return
    if handler is None or handler not in logging.getLogger().handlers:
        extra = {} if sampled is None else {"sampled": sampled}
        _access_structlog.info("request", method=method, route=route, status=status, ms=ms, **extra)
        return
    handler.enqueue(AccessLine(time.time(), method, route, status, ms, sampled, request_id, correlation_id))  # type: ignore[arg-type]  # the listener renders AccessLine itself


class _Listener(logging.handlers.QueueListener):
    def enqueue_sentinel(self) -> None:
        self.queue.put(self._sentinel)  # type: ignore[attr-defined]  # blocks on a full queue: it is draining

    def handle(self, record: logging.LogRecord) -> None:
        if not isinstance(record, AccessLine):
            super().handle(record)
            return
        line = record.render()
        for handler in self.handlers:
            stream = getattr(handler, "stream", None)
            if stream is None:
                continue
            handler.acquire()
            try:
                stream.write(line + "\n")
                handler.flush()
            finally:
                handler.release()


_listener: logging.handlers.QueueListener | None = None
_handler: BoundedQueueHandler | None = None
_lock = threading.Lock()


def _json(obj: Any, **_: Any) -> str:
    return orjson.dumps(obj, default=repr).decode()


def configure_logging(
    level: str = "INFO", stream: IO[str] | None = None, queue_size: int = QUEUE_SIZE
) -> None:
    """JSON lines on `stream` (stderr), written by a listener thread from a bounded queue."""
    global _listener, _handler
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _mask_processor,
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[_record_context, *shared[1:]],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            _mask_processor,  # again: exception text may quote personal data
            structlog.processors.JSONRenderer(serializer=_json),
        ],
    )
    output = logging.StreamHandler(stream if stream is not None else sys.stderr)
    output.setFormatter(formatter)
    records: queue.Queue[logging.LogRecord] = queue.Queue(maxsize=queue_size)
    handler = BoundedQueueHandler(records)
    handler.addFilter(_MaskingFilter())
    with _lock:
        stop_logging()
        _handler = handler
        _listener = _Listener(records, output)
        _listener.start()
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def flush_logs() -> None:
    """Waits until every queued line has been written."""
    handler = _handler
    if handler is not None:
        handler.queue.join()  # type: ignore[attr-defined]  # QueueHandler.queue is a queue.Queue here


def dropped_lines() -> int:
    """Lines dropped because the queue was full, since logging was configured."""
    return _handler.dropped if _handler is not None else 0


def stop_logging() -> None:
    """Writes what is queued and stops the listener thread (at exit, or before reconfiguring)."""
    global _listener, _handler
    listener, _listener = _listener, None
    if listener is not None:
        listener.stop()
        root = logging.getLogger()
        if _handler in root.handlers:
            root.removeHandler(_handler)
    _handler = None


atexit.register(stop_logging)
