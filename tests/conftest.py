"""Shared fixtures. Service-backed tests fail (never skip) when PostgreSQL or NATS is down."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import psycopg
import pytest
import structlog
from pgschema import PG_URL, drop_pg_schema, fresh_pg_url


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


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    """The service's log configuration, writing into a buffer instead of stderr."""
    from adapters.logs import configure_logging, flush_logs, stop_logging

    class Written(io.StringIO):
        def getvalue(self) -> str:  # the lines logged so far, once the listener wrote them
            flush_logs()
            return super().getvalue()

    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    out = Written()
    configure_logging("INFO", stream=out)
    try:
        yield out
    finally:
        stop_logging()
        root.handlers[:], level = saved[0], saved[1]
        root.setLevel(level)
        structlog.reset_defaults()
