"""Every LEDGER_* variable is checked at start: a bad value fails with one line naming it.

`BAD` holds at least one bad value per Settings field; `test_every_variable_has_a_bad_value`
fails when a field is added without one.
"""

from __future__ import annotations

import pytest
import typer
from pydantic import ValidationError

from adapters.config import Settings, variable
from cli.common import settings as cli_settings

# field -> [(bad value, words the message must contain)]
BAD: dict[str, list[tuple[str, str]]] = {
    "database_url": [("mysql://h/db", "postgresql://"), ("postgresql://h/db?bogus=1", "libpq")],
    "nats_url": [("http://a:4222", "nats://"), ("nats://", "host")],
    "nats_stream_replicas": [("three", "whole number"), ("0", "from 1 to 5"), ("7", "from 1 to 5")],
    "shopify_webhook_secrets": [("one secret,two words", "without spaces")],
    "erp_url": [("erp.local", "http://"), ("ftp://erp", "http://"), ("http://erp:port", "port")],
    "inbox_retention_days": [("a month", "whole number of days"), ("0", "from 1 to 36500")],
    "max_body_bytes": [
        ("abc", "whole number of bytes, got 'abc'"),
        ("1.5", "whole number"),
        ("10", "at least 1024"),
    ],
    "erp_posting_deadline_seconds": [("soon", "whole number of seconds"), ("0", "at least 1")],
    "log_level": [("loud", "DEBUG, INFO, WARNING, ERROR, CRITICAL")],
    "run_workers": [("maybe", "true or false")],
    "reconcile_thresholds": [
        ("erp=lots", "source=absolute/percent%"),
        ("erp=-1/0%", "source=absolute/percent%"),
        ("2/5%", "source=absolute/percent%"),
        ("nowhere=0/0%", "unknown source 'nowhere'"),
    ],
    "reconcile_sources": [("pos", "cannot pull 'pos'"), ("shopify,ledger", "cannot pull 'ledger'")],
    "reconcile_interval_seconds": [("hourly", "whole number of seconds"), ("5", "at least 10")],
    "shopify_shops": [("shop.myshopify.com", "shop-domain=admin-access-token"), ("=token", "pairs")],
    "shopify_admin_url": [("localhost:9000", "http://")],
    "shopify_api_version": [("latest", "YYYY-MM"), ("2026-13", "YYYY-MM")],
    "hold_orders_above": [("EUR=lots", "CUR=amount"), ("-5", "CUR=amount"), ("eur=5", "CUR=amount")],
    "ship_to_regions": [("DEU", "two-letter"), ("D1", "two-letter")],
    "shopify_recovery_interval_seconds": [("-3", "at least 1"), ("5m", "whole number of seconds")],
    "writer_cache_size": [("lots", "whole number of aggregates"), ("99", "at least 100")],
}

CASES = [(field, bad, words) for field, cases in BAD.items() for bad, words in cases]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    for field in Settings.model_fields:
        monkeypatch.delenv(variable(field), raising=False)
    monkeypatch.chdir(tmp_path)  # no .env file


def test_every_variable_has_a_bad_value() -> None:
    assert set(Settings.model_fields) == set(BAD), "add a bad value to BAD for each new setting"


@pytest.mark.parametrize(("field", "bad", "words"), CASES, ids=[f"{f}={b}" for f, b, _ in CASES])
def test_a_bad_value_fails_the_start_with_one_line_naming_the_variable(
    field: str, bad: str, words: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(variable(field), bad)
    with pytest.raises(ValidationError):
        Settings()
    with pytest.raises(typer.Exit) as exit_:
        cli_settings(reach_database=False)  # what every command calls first
    assert exit_.value.exit_code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(variable(field)), lines[0]
    assert words in lines[0], lines[0]
    for leak in ("Value error", "Input should", "pydantic", "invalid literal", "Traceback"):
        assert leak not in lines[0]


def test_a_shop_token_is_never_printed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LEDGER_SHOPIFY_SHOPS", "good.myshopify.com=shpat_secret, bad shop=shpat_other")
    with pytest.raises(typer.Exit):
        cli_settings(reach_database=False)
    err = capsys.readouterr().err
    assert "LEDGER_SHOPIFY_SHOPS" in err and "shpat_" not in err


def test_erp_as_a_scheduled_source_needs_the_erp_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEDGER_RECONCILE_SOURCES", "shopify,erp")
    with pytest.raises(ValidationError, match="LEDGER_ERP_URL"):
        Settings()
    monkeypatch.setenv("LEDGER_ERP_URL", "http://erp.local:8080")
    assert Settings().reconcile_sources == "shopify,erp"


def test_good_values_are_read() -> None:
    s = Settings(
        max_body_bytes="2_048",  # type: ignore[arg-type]  # the environment gives text
        nats_stream_replicas=" 3 ",  # type: ignore[arg-type]  # the environment gives text
        log_level="debug",
        run_workers="off",  # type: ignore[arg-type]  # the environment gives text
        reconcile_thresholds="shopify=2/5%, erp=0/0%,pos=1",
        shopify_shops="a.myshopify.com=tok1,b.myshopify.com=tok2",
        shopify_api_version="unstable",
        erp_url="https://erp.example:8443/api",
    )
    assert (s.max_body_bytes, s.nats_stream_replicas, s.log_level, s.run_workers) == (2048, 3, "DEBUG", False)
    assert s.shopify_tokens == {"a.myshopify.com": "tok1", "b.myshopify.com": "tok2"}
    assert Settings().log_level == "INFO" and Settings().run_workers is True
