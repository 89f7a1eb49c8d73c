"""Settings, read from the environment (prefix LEDGER_) and from a `.env` file. Fails fast.

Every variable is checked when the settings are built, that is at start: a bad value raises a
`ValueError` whose message names the variable and says what is allowed, in one line (the CLI
prints it and exits 2, see `cli/common.py`). Nothing is accepted at start that fails later.
Numbers and switches are parsed here too (`before` validators), so the message is in plain
words rather than pydantic's.
"""

from __future__ import annotations

import logging
import re
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

from pydantic import field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from adapters.persistence.urls import check_database_url
from adapters.reconciliation.thresholds import parse_thresholds
from ledger.validation import AmountCheck, OrderCheck, RegionCheck
from ledger.writer import CACHE_SIZE

DEFAULT_DATABASE_URL = "sqlite:///./ledger.db"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
RECONCILE_SOURCES = ("shopify", "erp")  # the sources the scheduled job can pull
THRESHOLD_SOURCES = ("shopify", "erp", "pos")
TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
API_VERSION = re.compile(r"^(\d{4}-(0[1-9]|1[0-2])|unstable)$")
SHOP_DOMAIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]*$")


def variable(field: str) -> str:
    return "LEDGER_" + field.upper()


def _whole(field: str, value: Any, least: int, most: int | None = None, unit: str = "") -> int:
    """A whole number in [least, most], from an int or its decimal text; else one plain line."""
    what = f"a whole number of {unit}" if unit else "a whole number"
    if isinstance(value, bool):
        raise ValueError(f"{variable(field)}: must be {what}, got {value!r}")
    if isinstance(value, int):
        n = value
    else:
        text = str(value).strip().replace("_", "")
        if not re.fullmatch(r"[+-]?\d+", text):
            raise ValueError(f"{variable(field)}: must be {what}, got {str(value)!r}")
        n = int(text)
    if n < least or (most is not None and n > most):
        bounds = f"from {least} to {most}" if most is not None else f"at least {least}"
        raise ValueError(f"{variable(field)}: must be {what} {bounds}, got {n}")
    return n


def _http_url(field: str, value: str | None) -> str | None:
    text = (value or "").strip()
    if not text:
        return None
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{variable(field)}: must be an http:// or https:// URL with a host, got {text!r}")
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise ValueError(f"{variable(field)}: the port must be a number, got {text!r}") from None
    return text


# field -> (least, most, unit) of the whole-number variables
WHOLE: dict[str, tuple[int, int | None, str]] = {
    "nats_stream_replicas": (1, 5, ""),
    "max_body_bytes": (1024, None, "bytes"),
    "erp_posting_deadline_seconds": (1, None, "seconds"),
    "reconcile_interval_seconds": (10, None, "seconds"),
    "shopify_recovery_interval_seconds": (1, None, "seconds"),
    "writer_cache_size": (100, None, "aggregates"),
}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LEDGER_", env_file=".env", extra="ignore")

    database_url: str = DEFAULT_DATABASE_URL
    nats_url: str | None = None  # one server or several, comma-separated
    nats_stream_replicas: int = 1  # LEDGER stream, when the ledger creates it (1 to 5)
    shopify_webhook_secrets: str = ""
    erp_url: str | None = None
    # Raw inbox bodies: finished messages older than this lose their personal data (unset: kept)
    inbox_retention_days: int | None = None  # 1 to 36500
    max_body_bytes: int = 1_048_576  # at least 1024
    erp_posting_deadline_seconds: int = 900
    log_level: str = "INFO"
    run_workers: bool = True  # projections and publisher in the `serve` process
    # The writer's aggregate cache (ledger/writer/cache.py): aggregates held at most, LRU evicted.
    # The default keeps one process at <= 1 GiB resident after 1,000,000 SKU-locations (`ledger bench memory`).
    writer_cache_size: int = CACHE_SIZE  # at least 100
    # Reconciliation (adapters/reconciliation): `source=absolute/percent%,...`; sources pulled on a schedule.
    reconcile_thresholds: str = ""
    reconcile_sources: str = ""  # e.g. "shopify,erp"
    reconcile_interval_seconds: int = 3600  # at least 10
    # Shopify, outbound (adapters/shopify_push.py): `shop-domain=admin-access-token,...`
    shopify_shops: str = ""
    shopify_admin_url: str | None = None
    shopify_api_version: str = "2026-04"
    shopify_recovery_interval_seconds: int = 300
    # Order checks (ledger/validation.py): an order above the amount of its currency, or shipping
    # outside the regions, is held until an operator releases it. Unset: no validation stage.
    hold_orders_above: str = ""  # `5000` (any currency) or `EUR=5000,USD=5500`
    ship_to_regions: str = ""  # ISO 3166-1 alpha-2 codes, comma-separated: `DE,FR,NL`

    @field_validator(*WHOLE, mode="before")
    @classmethod
    def _whole_numbers(cls, v: Any, info: Any) -> int:
        least, most, unit = WHOLE[info.field_name]
        return _whole(info.field_name, v, least, most, unit)

    @field_validator("inbox_retention_days", mode="before")
    @classmethod
    def _retention(cls, v: Any) -> int | None:
        if v is None or (isinstance(v, str) and not v.strip()):
            return None  # unset: kept
        return _whole("inbox_retention_days", v, 1, 36_500, "days")

    @field_validator("run_workers", mode="before")
    @classmethod
    def _switch(cls, v: Any) -> bool:
        if isinstance(v, bool):
            return v
        text = str(v).strip().lower()
        if text in TRUE or text in FALSE:
            return text in TRUE
        raise ValueError(
            f"LEDGER_RUN_WORKERS: must be true or false (or 1/0, yes/no, on/off), got {str(v)!r}"
        )

    @field_validator("database_url")
    @classmethod
    def _known_scheme(cls, v: str) -> str:
        return check_database_url(v)  # libpq parses a PostgreSQL URL; an error names the variable

    @field_validator("nats_url")
    @classmethod
    def _nats_scheme(cls, v: str | None) -> str | None:
        servers = [s.strip() for s in (v or "").split(",") if s.strip()]
        if not servers:
            return None
        for s in servers:
            parts = urlsplit(s)
            if parts.scheme not in ("nats", "tls") or not parts.hostname:
                raise ValueError(
                    f"LEDGER_NATS_URL must be nats:// or tls:// URLs with a host, comma-separated, got {s!r}"
                )
        return ",".join(servers)

    @field_validator("erp_url", "shopify_admin_url")
    @classmethod
    def _urls(cls, v: str | None, info: Any) -> str | None:
        return _http_url(info.field_name, v)

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, v: str) -> str:
        level = v.strip().upper()
        if level not in LOG_LEVELS:
            raise ValueError(f"LEDGER_LOG_LEVEL: must be one of {', '.join(LOG_LEVELS)}, got {v!r}")
        assert isinstance(logging.getLevelName(level), int)
        return level

    @field_validator("shopify_webhook_secrets")
    @classmethod
    def _secrets(cls, v: str) -> str:
        for secret in (s.strip() for s in v.split(",")):
            if any(c.isspace() for c in secret):
                raise ValueError(
                    "LEDGER_SHOPIFY_WEBHOOK_SECRETS: comma-separated app secrets, each without spaces"
                )
        return v

    @field_validator("reconcile_thresholds")
    @classmethod
    def _thresholds(cls, v: str) -> str:
        try:
            parsed = parse_thresholds(v)
        except ValueError as e:
            raise ValueError(
                f"LEDGER_RECONCILE_THRESHOLDS: {e}, e.g. erp=0/0%,shopify=2/5% (whole absolute, percent >= 0)"
            ) from None
        unknown = sorted(set(parsed) - set(THRESHOLD_SOURCES))
        if unknown:
            raise ValueError(
                f"LEDGER_RECONCILE_THRESHOLDS: unknown source {unknown[0]!r} "
                f"(one of {', '.join(THRESHOLD_SOURCES)})"
            )
        return v

    @field_validator("reconcile_sources")
    @classmethod
    def _sources(cls, v: str) -> str:
        for name in (s.strip() for s in v.split(",") if s.strip()):
            if name not in RECONCILE_SOURCES:
                raise ValueError(
                    f"LEDGER_RECONCILE_SOURCES: cannot pull {name!r} "
                    f"(comma-separated, each one of {', '.join(RECONCILE_SOURCES)})"
                )
        return v

    @field_validator("shopify_shops")
    @classmethod
    def _shops(cls, v: str) -> str:
        shops_of(v)
        return v

    @field_validator("hold_orders_above")
    @classmethod
    def _hold_above(cls, v: str) -> str:
        amount_limits(v)
        return v

    @field_validator("ship_to_regions")
    @classmethod
    def _regions(cls, v: str) -> str:
        regions_of(v)
        return v

    @field_validator("shopify_api_version")
    @classmethod
    def _api_version(cls, v: str) -> str:
        if not API_VERSION.match(v.strip()):
            raise ValueError(
                f"LEDGER_SHOPIFY_API_VERSION: must be YYYY-MM (e.g. 2026-04) or unstable, got {v!r}"
            )
        return v.strip()

    @model_validator(mode="after")
    def _together(self) -> Settings:
        names = [s.strip() for s in self.reconcile_sources.split(",")]
        if "erp" in names and not self.erp_url:
            raise ValueError("LEDGER_RECONCILE_SOURCES: erp is pulled from LEDGER_ERP_URL, which is not set")
        return self

    @property
    def webhook_secrets(self) -> list[str]:
        return [s.strip() for s in self.shopify_webhook_secrets.split(",") if s.strip()]

    @property
    def order_checks(self) -> list[OrderCheck]:
        """The validation stage's checks, from `LEDGER_HOLD_ORDERS_ABOVE` and `LEDGER_SHIP_TO_REGIONS`."""
        checks: list[OrderCheck] = []
        if limits := amount_limits(self.hold_orders_above):
            checks.append(AmountCheck(limits))
        if regions := regions_of(self.ship_to_regions):
            checks.append(RegionCheck(regions))
        return checks

    @property
    def shopify_tokens(self) -> dict[str, str]:
        """Shop domain -> Admin API access token, from `LEDGER_SHOPIFY_SHOPS`."""
        return shops_of(self.shopify_shops)


def shops_of(text: str) -> dict[str, str]:
    """`shop-domain=admin-access-token` pairs, comma-separated; ValueError naming the variable."""
    out: dict[str, str] = {}
    for pair in text.split(","):
        shop, sep, token = pair.strip().partition("=")
        if not pair.strip():
            continue
        if not sep or not SHOP_DOMAIN.match(shop.strip()) or not token.strip():
            raise ValueError(
                "LEDGER_SHOPIFY_SHOPS: must be shop-domain=admin-access-token pairs, comma-separated, "
                f"got {shop.strip() + sep + ('...' if token else '')!r}"
            )
        out[shop.strip()] = token.strip()
    return out


def amount_limits(text: str) -> dict[str, Decimal]:
    """`5000` (any currency: `*`) or `EUR=5000,USD=5500`; ValueError naming the variable."""
    out: dict[str, Decimal] = {}
    for part in (x.strip() for x in text.split(",")):
        if not part:
            continue
        currency, sep, amount = part.rpartition("=")
        currency = currency.strip() if sep else "*"
        try:
            limit = Decimal(amount.strip())
        except InvalidOperation:
            limit = Decimal("NaN")
        if not limit.is_finite() or limit < 0 or not (currency == "*" or re.fullmatch(r"[A-Z]{3}", currency)):
            raise ValueError(
                "LEDGER_HOLD_ORDERS_ABOVE: an amount (any currency) or CUR=amount pairs, comma-separated, "
                f"e.g. EUR=5000,USD=5500; got {part!r}"
            )
        out[currency] = limit
    return out


def regions_of(text: str) -> frozenset[str]:
    """ISO 3166-1 alpha-2 codes, comma-separated; ValueError naming the variable."""
    out = set()
    for part in (x.strip() for x in text.split(",")):
        if not part:
            continue
        if not re.fullmatch(r"[A-Za-z]{2}", part):
            raise ValueError(
                f"LEDGER_SHIP_TO_REGIONS: two-letter country codes, comma-separated (e.g. DE,FR); got {part!r}"
            )
        out.add(part.upper())
    return frozenset(out)
