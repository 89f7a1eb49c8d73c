"""Turns LEDGER_DATABASE_URL into the eventsourcing library's environment."""

from __future__ import annotations

import os
from urllib.parse import parse_qs, unquote, urlparse

PG_RECORDER = "adapters.persistence.postgres:LedgerPostgresRecorder"
SQLITE_RECORDER = "adapters.persistence.sqlite:LedgerSQLiteRecorder"
TRANSCODER = "adapters.persistence.transcoder:OrjsonTranscoder"


def is_postgres(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


def pg_parts(url: str) -> dict[str, str]:
    u = urlparse(url)
    query = parse_qs(u.query)
    return {
        "host": u.hostname or "127.0.0.1",
        "port": str(u.port or 5432),
        "user": unquote(u.username or "postgres"),
        "password": unquote(u.password or ""),
        "dbname": (u.path or "/postgres").lstrip("/") or "postgres",
        "schema": (query.get("schema") or [""])[0],
    }


def pg_conninfo(url: str) -> str:
    p = pg_parts(url)
    info = f"host={p['host']} port={p['port']} user={p['user']} dbname={p['dbname']}"
    if p["password"]:
        info += f" password={p['password']}"
    return info


def sqlite_path(url: str) -> str:
    path = url[len("sqlite:///") :]
    return path or "./ledger.db"


def ledger_env(url: str, pool_size: int = 4) -> dict[str, str]:
    """The eventsourcing environment for a database URL (postgresql://... or sqlite:///path)."""
    env = {"IS_SNAPSHOTTING_ENABLED": "y", "CREATE_TABLE": "y", "TRANSCODER_TOPIC": TRANSCODER}
    if is_postgres(url):
        p = pg_parts(url)
        env.update(
            PERSISTENCE_MODULE="eventsourcing.postgres",
            APPLICATION_RECORDER_TOPIC=PG_RECORDER,
            POSTGRES_DBNAME=p["dbname"],
            POSTGRES_HOST=p["host"],
            POSTGRES_PORT=p["port"],
            POSTGRES_USER=p["user"],
            POSTGRES_PASSWORD=p["password"],
            POSTGRES_POOL_SIZE=str(pool_size),
            POSTGRES_MAX_OVERFLOW="4",
            POSTGRES_CONNECT_TIMEOUT="10",
        )
        if p["schema"]:
            env["POSTGRES_SCHEMA"] = p["schema"]
            ensure_pg_schema(url)
        return env
    if url.startswith("sqlite:///"):
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
    raise ValueError("database URL must start with postgresql:// or sqlite:///")


def ensure_pg_schema(url: str) -> None:
    import psycopg

    schema = pg_parts(url)["schema"]
    with psycopg.connect(pg_conninfo(url), autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
