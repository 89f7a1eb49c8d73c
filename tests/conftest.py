"""Shared fixtures. Service-backed tests fail (never skip) when PostgreSQL or NATS is down."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest

PG_URL = os.environ.get("LEDGER_TEST_PG_URL", "postgresql://root@127.0.0.1:5432/test")
NATS_URL = os.environ.get("LEDGER_TEST_NATS_URL", "nats://127.0.0.1:4222")


def fresh_pg_url() -> str:
    """A PostgreSQL URL with a schema of its own, so tests never see each other's data."""
    schema = "t_" + uuid.uuid4().hex[:12]
    sep = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{sep}schema={schema}"


def drop_pg_schema(url: str) -> None:
    from adapters.persistence.urls import pg_conninfo, pg_parts

    schema = pg_parts(url)["schema"]
    try:
        with psycopg.connect(pg_conninfo(url), autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    except psycopg.Error:
        pass


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
