"""Versioned migrations: applied once, under a lock, so processes starting together on an empty
database all start; every table the ledger uses exists before the first request."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg
import pytest
from pgschema import drop_pg_schema, fresh_pg_url

from adapters.persistence.db import Database
from adapters.persistence.migrate import migrate
from adapters.persistence.urls import ensure_pg_schema, pg_conninfo, pg_parts

ROOT = Path(__file__).resolve().parents[2]

# Each process waits for the go file, then runs the whole start-up (migrations, the event store's
# tables, the read models' tables) on the same fresh schema.
START = """
import os, sys, time
from bootstrap import bootstrap
from adapters.config import Settings
go = sys.argv[2]
while not os.path.exists(go):
    time.sleep(0.005)
c = bootstrap(Settings(database_url=sys.argv[1]))
c.close()
print("started")
"""

MIGRATIONS = [
    "0001.baseline",
    "0002.idempotency-owner",
    "0003.erp-leases",
    "0004.shopify-push",
    "0005.personal-data",
    "0006.exception-changes",
    "0007.erp-uncertain",
    "0008.incoming-days",
]
LEDGER_TABLES = {
    "api_keys",
    "admin_audit",
    "channel_policies",
    "projection_tracking",
    "projection_corrections",
    "ledger_outbox",
    "ledger_exceptions",
    "mappings",
    "mapping_history",
    "inbox",
    "inbox_uses",
    "shopify_observations",
    "pos_sequences",
    "pos_transactions",
    "erp_queue",
    "erp_tracking",
    "reconciliations",
    "idempotency_keys",
    "shopify_writes",
    "shopify_push_position",
    "shopify_targets",
    "shopify_sync",
    "ledger_exception_clock",
}


def pg_tables(url: str) -> set[str]:
    with psycopg.connect(pg_conninfo(url)) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
            (pg_parts(url)["schema"],),
        ).fetchall()
    return {r[0] for r in rows}


@pytest.mark.postgres
def test_four_processes_starting_together_on_an_empty_schema_all_start() -> None:
    url = fresh_pg_url()  # nothing in it, not even the schema
    go = Path(tempfile.mkdtemp(prefix="ledger-migrate-")) / "go"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", START, url, str(go)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    try:
        go.touch()
        results = [p.communicate(timeout=240) for p in procs]
        for p, (out, err) in zip(procs, results, strict=True):
            assert p.returncode == 0 and out.strip().endswith("started"), err
        assert LEDGER_TABLES <= pg_tables(url)
        db = Database(url)
        try:
            assert migrate(db) == []  # applied once: nothing left to apply
            applied = db.query("SELECT migration_id FROM _yoyo_migration ORDER BY migration_id")
            assert [r["migration_id"] for r in applied] == MIGRATIONS
        finally:
            db.close()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        drop_pg_schema(url)


@pytest.mark.postgres
def test_threads_migrating_the_same_fresh_schema_together_all_succeed() -> None:
    from concurrent.futures import ThreadPoolExecutor

    url = fresh_pg_url()
    ensure_pg_schema(url)
    dbs = [Database(url) for _ in range(4)]
    try:
        with ThreadPoolExecutor(4) as pool:
            done = list(pool.map(migrate, dbs))
        assert sorted(len(d) for d in done) == [
            0,
            0,
            0,
            len(MIGRATIONS),
        ]  # one applied both, the others found them
        assert LEDGER_TABLES <= pg_tables(url)
    finally:
        for db in dbs:
            db.close()
        drop_pg_schema(url)


def test_sqlite_is_migrated_once_and_a_database_made_before_migrations_keeps_its_rows(tmp_path) -> None:
    url = f"sqlite:///{tmp_path}/old.db"
    db = Database(url)
    try:
        # As the create_tables functions left it: a table with a row, and no migration recorded.
        db.execute(
            "CREATE TABLE IF NOT EXISTS idempotency_keys (scope TEXT NOT NULL, key TEXT NOT NULL, "
            "fingerprint TEXT NOT NULL, claimed_at DOUBLE PRECISION NOT NULL, status INTEGER, "
            "headers TEXT, body BLOB, completed_at TEXT, PRIMARY KEY (scope, key))"
        )
        db.execute(
            "INSERT INTO idempotency_keys (scope, key, fingerprint, claimed_at) VALUES ('s', 'k', 'f', 1)"
        )
        assert migrate(db) == MIGRATIONS
        assert migrate(db) == []
        assert db.query("SELECT key, owner FROM idempotency_keys") == [{"key": "k", "owner": None}]
        tables = {r["name"] for r in db.query("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert LEDGER_TABLES <= tables
    finally:
        db.close()


@pytest.mark.postgres
def test_the_first_32_concurrent_keyed_writes_on_a_fresh_database_all_answer_201() -> None:
    from concurrent.futures import ThreadPoolExecutor

    import httpx
    from live_server import serving

    from adapters.config import Settings
    from bootstrap import bootstrap

    url = fresh_pg_url()
    container = bootstrap(Settings(database_url=url, run_workers=False))
    token = container.keys.create("first", ["ingest:write"])[1]
    try:
        with serving(container) as base, httpx.Client(
            base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60
        ) as client:
            def one(i: int) -> int:
                body = {"sku": f"S{i % 4}", "location": "L", "quantity": 1, "reference": f"first-{i}"}
                return client.post("/v1/stock/receipts", json=body, headers={"Idempotency-Key": f"k{i}"}).status_code

            with ThreadPoolExecutor(32) as pool:
                assert list(pool.map(one, range(32))) == [201] * 32
    finally:
        container.close()
        drop_pg_schema(url)
