"""Settings, read from the environment (prefix LEDGER_) and from a `.env` file. Fails fast."""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from adapters.persistence.urls import check_database_url

DEFAULT_DATABASE_URL = "sqlite:///./ledger.db"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LEDGER_", env_file=".env", extra="ignore")

    database_url: str = DEFAULT_DATABASE_URL
    nats_url: str | None = None  # one server or several, comma-separated
    nats_stream_replicas: int = Field(default=1, ge=1, le=5)  # LEDGER stream, when the ledger creates it
    shopify_webhook_secrets: str = ""
    erp_url: str | None = None
    # Raw inbox bodies: finished messages older than this lose their personal data (unset: kept)
    inbox_retention_days: int | None = Field(default=None, ge=1, le=36_500)
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    erp_posting_deadline_seconds: int = Field(default=900, ge=1)
    log_level: str = "INFO"
    run_workers: bool = True  # projections and publisher in the `serve` process
    # Reconciliation (adapters/reconciliation): `source=absolute/percent%,...`; sources pulled on a schedule.
    reconcile_thresholds: str = ""
    reconcile_sources: str = ""  # e.g. "shopify,erp"
    reconcile_interval_seconds: int = Field(default=3600, ge=10)
    # Shopify, outbound (adapters/shopify_push.py): `shop-domain=admin-access-token,...`
    shopify_shops: str = ""
    shopify_admin_url: str | None = None
    shopify_api_version: str = "2026-04"
    shopify_recovery_interval_seconds: int = Field(default=300, ge=1)

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
        if not all(s.startswith(("nats://", "tls://")) for s in servers):
            raise ValueError("LEDGER_NATS_URL must be nats:// or tls:// URLs, comma-separated")
        return ",".join(servers)

    @property
    def webhook_secrets(self) -> list[str]:
        return [s.strip() for s in self.shopify_webhook_secrets.split(",") if s.strip()]

    @property
    def shopify_tokens(self) -> dict[str, str]:
        """Shop domain -> Admin API access token, from `LEDGER_SHOPIFY_SHOPS`."""
        out: dict[str, str] = {}
        for pair in self.shopify_shops.split(","):
            shop, sep, token = pair.strip().partition("=")
            if pair.strip() and (not sep or not shop.strip() or not token.strip()):
                raise ValueError("LEDGER_SHOPIFY_SHOPS is shop-domain=admin-access-token pairs, comma-separated")
            if sep:
                out[shop.strip()] = token.strip()
        return out
