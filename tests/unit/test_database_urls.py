"""LEDGER_DATABASE_URL goes to libpq as it is, apart from the ledger's own `schema` parameter."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from psycopg.conninfo import conninfo_to_dict

from adapters.config import Settings
from adapters.persistence.urls import (
    CONNINFO_ENV,
    DatabaseUrlError,
    ledger_env,
    pg_conninfo,
    pg_parts,
)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_a_multi_host_uri_keeps_its_hosts_ports_and_target_session_attrs() -> None:
    url = "postgresql://u@h1:5432,h2:5433/db?target_session_attrs=read-write"
    assert conninfo_to_dict(pg_conninfo(url)) == {
        "user": "u",
        "dbname": "db",
        "host": "h1,h2",
        "port": "5432,5433",
        "target_session_attrs": "read-write",
    }


def test_the_libpq_host_and_port_list_form_is_kept() -> None:
    params = conninfo_to_dict(pg_conninfo("postgresql:///db?host=a,b&port=6432,6433"))
    assert params["host"] == "a,b"
    assert params["port"] == "6432,6433"
    assert params["dbname"] == "db"


def test_every_libpq_parameter_is_kept_and_only_schema_is_taken_out() -> None:
    url = "postgresql://u:p%40ss@db.example:5432/ledger?sslmode=require&schema=tenant_1&connect_timeout=3"
    parts = pg_parts(url)
    assert parts["schema"] == "tenant_1"
    assert conninfo_to_dict(pg_conninfo(url)) == {
        "user": "u",
        "password": "p@ss",
        "host": "db.example",
        "port": "5432",
        "dbname": "ledger",
        "sslmode": "require",
        "connect_timeout": "3",
    }


def test_a_url_without_schema_has_an_empty_one() -> None:
    assert pg_parts("postgres://h/db")["schema"] == ""
    assert pg_parts("postgresql://h/db?schema=s1")["schema"] == "s1"


def test_the_event_store_connects_with_the_whole_conninfo() -> None:
    env = ledger_env("postgresql://u@h1:5432,h2:5432/db?target_session_attrs=read-write&sslmode=disable")
    assert env["PERSISTENCE_MODULE"] == "adapters.persistence.postgres:LedgerPostgresFactory"
    assert conninfo_to_dict(env[CONNINFO_ENV])["target_session_attrs"] == "read-write"
    assert conninfo_to_dict(env[CONNINFO_ENV])["host"] == "h1,h2"


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://h/db?bogus=1",  # libpq knows no such parameter
        "postgresql://h/db?sslmode=require&schema=bad;name",  # the schema is an identifier
        "mysql://h/db",
    ],
)
def test_an_unusable_url_names_the_variable(url: str) -> None:
    with pytest.raises(DatabaseUrlError, match="^LEDGER_DATABASE_URL"):
        ledger_env(url)
    with pytest.raises(ValueError, match="LEDGER_DATABASE_URL"):
        Settings(database_url=url)


def test_the_start_fails_with_one_line_naming_the_variable() -> None:
    env = {**os.environ, "LEDGER_DATABASE_URL": "postgresql://h/db?bogus=1", "PYTHONPATH": ROOT}
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "serve"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "LEDGER_DATABASE_URL" in lines[0]
    assert "Traceback" not in done.stderr
