"""Structured JSON logs (structlog) with personal data masked before anything is written."""

from __future__ import annotations

import logging
import re
from collections.abc import MutableMapping
from typing import Any

import structlog

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
TOKEN = re.compile(r"lk_[0-9a-f]{12}_[A-Za-z0-9_-]+")


def mask_text(text: str) -> str:
    text = TOKEN.sub("lk_***", text)
    text = EMAIL.sub("***@***", text)
    return PHONE.sub("***phone***", text)


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
    return {
        k: (mask(v, k) if k not in ("timestamp", "level", "logger") else v) for k, v in event_dict.items()
    }


class _MaskingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = mask_text(record.msg)
        if record.args:
            record.args = (
                tuple(mask(a) for a in record.args) if isinstance(record.args, tuple) else record.args
            )
        return True


def configure_logging(level: str = "INFO") -> None:
    shared = [
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
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            _mask_processor,  # again: exception text may quote personal data
            structlog.processors.JSONRenderer(),
        ],
    )
    handler = logging.StreamHandler()
    handler.setFormatter(formatter)
    handler.addFilter(_MaskingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
