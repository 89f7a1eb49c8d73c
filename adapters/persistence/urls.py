"""Turns LEDGER_DATABASE_URL into connection parameters and the eventsourcing library's environment.

A PostgreSQL URL is a libpq connection URI and is handed to libpq as it is (parsed and rebuilt
with `psycopg.conninfo`), so every libpq parameter (`sslmode`, `connect_timeout`,
`target_session_attrs`, ...) and host lists (`postgresql://u@h1:5432,h2:5432/db`,
`?host=a,b&port=p1,p2`) keep their meaning. Only the ledger's own `schema` query parameter is
taken out: it names the PostgreSQL schema the ledger's tables live in.
"""

from __future__ import annotations

import os
import re
from urllib.parse import unquote

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

VARIABLE = "LEDGER_DATABASE_URL"
PG_FACTORY = "adapters.persistence.postgres:LedgerPostgresFactory"
PG_RECORDER = "adapters.persistence.postgres:LedgerPostgresRecorder"
SQLITE_RECORDER = "adapters.persistence.sqlite:LedgerSQLiteRecorder"
TRANSCODER = "adapters.persistence.transcoder:OrjsonTranscoder"
CONNINFO_ENV = "LEDGER_PG_CONNINFO"  # the libpq key/value string the event store's pool connects with
SCHEMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


class DatabaseUrlError(ValueError):
    """LEDGER_DATABASE_URL cannot be used; the message names the variable and says why, in one line."""


def lock_key(schema: str) -> str:
    """The advisory lock every start-up DDL of a schema takes (`hashtext` of this): the
    migrations, the event store's tables, the read models' tables."""
    return f"ledger-ddl:{schema or 'public'}"


def is_postgres(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


def _split_schema(url: str) -> tuple[str, str]:
    """(the URL without its `schema` query parameter, the schema or "")."""
    base, sep, query = url.partition("?")
    if not sep:
        return url, ""
    kept: list[str] = []
    schema = ""
    for item in query.split("&"):
        name, _, value = item.partition("=")
        if unquote(name) == "schema":
            schema = unquote(value)
        elif item:
            kept.append(item)
    return (base + "?" + "&".join(kept)) if kept else base, schema


def pg_params(url: str) -> tuple[dict[str, str], str]:
    """(libpq's parameters for a PostgreSQL URL, the ledger's schema or ""). Raises DatabaseUrlError."""
    rest, schema = _split_schema(url)
    try:
        params = {k: str(v) for k, v in conninfo_to_dict(rest).items() if v is not None}
    except psycopg.Error as e:
        reason = " ".join(str(e).split()) or type(e).__name__
        raise DatabaseUrlError(f"{VARIABLE} is not a valid libpq connection URI: {reason}") from None
    if schema and not SCHEMA_NAME.match(schema):
        raise DatabaseUrlError(
            f"{VARIABLE}: schema must be 1 to 63 letters, digits or underscores, not starting with a digit"
        )
    return params, schema


def pg_parts(url: str) -> dict[str, str]:
    """libpq's parameters for a PostgreSQL URL, plus the ledger's `schema` ("" when not set)."""
    params, schema = pg_params(url)
    return {**params, "schema": schema}


def pg_conninfo(url: str) -> str:
    """The libpq key/value connection string for a PostgreSQL URL (every parameter but `schema`)."""
    return make_conninfo(**pg_params(url)[0])


def sqlite_path(url: str) -> str:
    path = url[len("sqlite:///") :]
    return path or "./ledger.db"


def check_database_url(url: str) -> str:
    """The URL if the ledger can use it; else DatabaseUrlError (one line naming LEDGER_DATABASE_URL)."""
    if is_postgres(url):
        pg_params(url)
        return url
    if url.startswith("sqlite:///"):
        return url
    raise DatabaseUrlError(f"{VARIABLE} must start with postgresql://, postgres:// or sqlite:///")


def ledger_env(url: str, pool_size: int = 4) -> dict[str, str]:
    """The eventsourcing environment for a database URL (postgresql://... or sqlite:///path)."""
    check_database_url(url)
    env = {"IS_SNAPSHOTTING_ENABLED": "y", "CREATE_TABLE": "y", "TRANSCODER_TOPIC": TRANSCODER}
    if is_postgres(url):
        params, schema = pg_params(url)
        env.update(
            PERSISTENCE_MODULE=PG_FACTORY,
            APPLICATION_RECORDER_TOPIC=PG_RECORDER,
            # The library requires these; LedgerPostgresFactory connects with CONNINFO_ENV instead,
            # which keeps every libpq parameter and host list.
            POSTGRES_DBNAME=params.get("dbname", ""),
            POSTGRES_HOST=params.get("host", ""),
            POSTGRES_PORT=params.get("port", ""),
            POSTGRES_USER=params.get("user", ""),
            POSTGRES_PASSWORD=params.get("password", ""),
            POSTGRES_POOL_SIZE=str(pool_size),
            POSTGRES_MAX_OVERFLOW="4",
            POSTGRES_CONNECT_TIMEOUT="10",
        )
        env[CONNINFO_ENV] = make_conninfo(**params)
        if schema:
            env["POSTGRES_SCHEMA"] = schema
            ensure_pg_schema(url)
        return env
    path = sqlite_path(url)
    if path != ":memory:":
        parent = os.path.dirname(os.path.abspath(path))
        os.makedirs(parent, exist_ok=True)
    env.update(
        PERSISTENCE_MODULE="eventsourcing.sqlite",
        APPLICATION_RECORDER_TOPIC=SQLITE_RECORDER,
        SQLITE_DBNAME=path,
        SQLITE_LOCK_TIMEOUT="30",
    )
    return env


def ensure_pg_schema(url: str) -> None:
    schema = pg_parts(url)["schema"]
    if not schema:
        return
    with psycopg.connect(pg_conninfo(url), autocommit=True) as conn:
        # Two processes starting together: CREATE SCHEMA IF NOT EXISTS can still collide.
        conn.execute("SELECT pg_advisory_lock(hashtext('ledger-schema'))")
        try:
            conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        finally:
            conn.execute("SELECT pg_advisory_unlock(hashtext('ledger-schema'))")
