"""A PostgreSQL schema per test: URLs and clean-up, importable from any test module (`from pgschema import ...`)."""

from __future__ import annotations

import os
import uuid

import psycopg

PG_URL = os.environ.get("LEDGER_TEST_PG_URL", "postgresql://root@127.0.0.1:5432/test")


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
