"""Shared fixtures. Service-backed tests fail (never skip) when PostgreSQL or NATS is down."""

from __future__ import annotations

import os
from collections.abc import Iterator

import psycopg
import pytest
from pgschema import PG_URL, drop_pg_schema, fresh_pg_url

NATS_URL = os.environ.get("LEDGER_TEST_NATS_URL", "nats://127.0.0.1:4222")

__all__ = ["PG_URL", "NATS_URL", "drop_pg_schema", "fresh_pg_url"]


@pytest.fixture
def pg_url() -> Iterator[str]:
    from adapters.persistence.urls import pg_conninfo

    url = fresh_pg_url()
    try:
        with psycopg.connect(pg_conninfo(url), connect_timeout=5) as conn:
            conn.execute("select 1")
    except psycopg.OperationalError as e:  # fail, do not skip: CI must see a missing service
        pytest.fail(f"PostgreSQL is not reachable at {PG_URL}: {e}")
    yield url
    drop_pg_schema(url)


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path}/ledger.db"


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request) -> str:
    """Runs a test once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("pg_url")
