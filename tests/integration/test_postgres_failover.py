"""The PostgreSQL primary is killed under keyed write load and its synchronous standby promoted.

The fault: a private primary (`wal_level=replica`, `synchronous_standby_names='*'`, so a commit
returns only once the standby has it) and a streaming standby cloned with `pg_basebackup -R`. The
ledger's HTTP service runs as its own process with the multi-host URI a failover manager prints,
`postgresql://root@127.0.0.1:P1,127.0.0.1:P2/ledger?target_session_attrs=read-write`. Threads post
receipts, each with its own `Idempotency-Key`. The primary is killed (`pg_ctl stop -m immediate`),
then the standby promoted (`pg_ctl promote`), as pg_auto_failover's monitor would. The promise:

- every answer is a 2xx or a 503 (never a 500, never a dropped connection);
- every acknowledged receipt is stored on the new primary;
- writes are acknowledged again after the promotion, by the same process (no restart);
- no key is blocked afterwards: each key sent again with its body answers 2xx, and the stock is
  the sum of each receipt once.

The standby's own configuration sets `synchronous_standby_names = ''`: once promoted it has no
standby of its own, and a synchronous primary without one would wait for ever (a failover manager
turns synchronous replication off the same way when the last standby is gone).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from private_servers import free_port, wait_for
from test_postgres_restart import PrivatePostgres, pg_bin_dir

from adapters.config import Settings
from adapters.persistence.urls import ledger_env
from bootstrap import bootstrap
from ledger import commands as c
from ledger.service import Ledger

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[2]
PLACES = [(f"SKU-F{i % 4}", f"LOC-{i // 4}") for i in range(12)]
THREADS = 6


class Primary(PrivatePostgres):
    """A private primary that waits for one synchronous standby before a commit returns."""

    def init(self) -> None:
        super().init()
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write("wal_level = replica\nmax_wal_senders = 5\nwal_keep_size = '256MB'\n")

    def require_sync_standby(self) -> None:
        """`synchronous_standby_names = '*'` once the standby runs (before, a commit would wait)."""
        with psycopg.connect(
            host="127.0.0.1", port=self.port, user="root", dbname="postgres", autocommit=True
        ) as conn:
            conn.execute("ALTER SYSTEM SET synchronous_standby_names = '*'")
            conn.execute("SELECT pg_reload_conf()")

    def replicas(self) -> list[tuple[str, str]]:
        with psycopg.connect(
            host="127.0.0.1", port=self.port, user="root", dbname="postgres", connect_timeout=2
        ) as conn:
            return [
                (str(a), str(b)) for a, b in conn.execute("SELECT state, sync_state FROM pg_stat_replication")
            ]


class Standby(PrivatePostgres):
    """A streaming standby of `primary`, cloned with `pg_basebackup -R` (primary_conninfo written)."""

    def clone(self, primary: Primary) -> None:
        self._run(
            "pg_basebackup", "-h", "127.0.0.1", "-p", str(primary.port), "-U", "root",
            "-D", str(self.data), "-R", "-X", "stream", "-c", "fast",
        )  # fmt: skip
        with open(self.data / "postgresql.conf", "a") as conf:  # later lines win over the primary's
            conf.write(
                f"\nport = {self.port}\n"
                f"unix_socket_directories = '{self.dir}'\n"
                "hot_standby = on\n"
                "synchronous_standby_names = ''\n"
            )

    def promote(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-w", "-t", "60", "promote")

    def writable(self) -> bool:
        try:
            with psycopg.connect(
                host="127.0.0.1", port=self.port, user="root", dbname=self.dbname, connect_timeout=2
            ) as conn:
                row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
                return row is not None and not row[0]
        except psycopg.OperationalError:
            return False


class Service:
    """`uvicorn api.app:create_app --factory` in its own process, this checkout's code."""

    def __init__(self, database_url: str, log: Path) -> None:
        self.port = free_port()
        self.log = log
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "LEDGER_DATABASE_URL": database_url,
            "LEDGER_RUN_WORKERS": "false",
            "LEDGER_LOG_LEVEL": "WARNING",
        }
        env.pop("LEDGER_NATS_URL", None)
        env.pop("LEDGER_ERP_URL", None)
        self.out = open(log, "wb")  # noqa: SIM115  # closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory",
             "--host", "127.0.0.1", "--port", str(self.port), "--no-access-log"],
            cwd=str(ROOT), env=env, stdout=self.out, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.base = f"http://127.0.0.1:{self.port}"

    def up(self) -> bool:
        assert self.proc.poll() is None, f"the service exited:\n{self.log_tail()}"
        try:
            return httpx.get(f"{self.base}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.out.close()


@pytest.fixture
def pair() -> Iterator[tuple[Primary, Standby]]:
    bin_dir = pg_bin_dir()
    primary, standby = Primary(bin_dir), Standby(bin_dir)
    try:
        primary.init()
        primary.start()
        primary.create_database()
        standby.clone(primary)
        standby.start()
        primary.require_sync_standby()
        wait_for(
            lambda: ("streaming", "sync") in primary.replicas(), 60, "the standby streams, synchronously"
        )
        yield primary, standby
    finally:
        standby.destroy()
        primary.destroy()


def receipt(ref: str, place: tuple[str, str], qty: int) -> dict[str, Any]:
    return {"sku": place[0], "location": place[1], "quantity": qty, "reference": ref}


def test_the_primary_killed_and_its_standby_promoted_loses_no_acknowledged_write(pair, tmp_path):
    primary, standby = pair
    url = (
        f"postgresql://root@127.0.0.1:{primary.port},127.0.0.1:{standby.port}/{primary.dbname}"
        "?target_session_attrs=read-write&connect_timeout=3"
    )
    setup = bootstrap(Settings(database_url=url))  # tables and an ingest key, through the same URL
    try:
        token = setup.keys.create("failover", ["ingest:write", "audit:read"])[1]
    finally:
        setup.close()
    service = Service(url, tmp_path / "service.log")
    headers = {"Authorization": f"Bearer {token}"}
    # What each key was sent with, and every answer it got: key -> (body, [(phase, status)]).
    sent: dict[str, tuple[dict[str, Any], list[tuple[str, int]]]] = {}
    strays: list[str] = []  # transport errors: the service must always answer
    lock = threading.Lock()
    phase = ["before"]
    promoted_at: list[float] = []
    first_ack_after: list[float] = []
    stop = threading.Event()

    def post(client: httpx.Client, key: str, body: dict[str, Any]) -> int | None:
        try:
            r = client.post(
                "/v1/stock/receipts", json=body, headers={**headers, "Idempotency-Key": key}, timeout=60
            )
        except httpx.HTTPError as e:
            with lock:
                strays.append(f"{key}: {type(e).__name__}: {e}")
            return None
        if r.status_code == 503:
            assert r.headers.get("retry-after"), r.text
        return r.status_code

    def writer(n: int) -> None:
        with httpx.Client(base_url=service.base) as client:
            i = 0
            while not stop.is_set():
                i += 1
                key = f"fo-{n}-{i}-{uuid.uuid4().hex[:6]}"
                body = receipt(key, PLACES[(n * 5 + i) % len(PLACES)], 1 + (n + i) % 4)
                at = phase[0]
                status = post(client, key, body)
                if status is None:
                    continue
                with lock:
                    sent[key] = (body, [(at, status)])
                    if at == "after" and 200 <= status < 300 and not first_ack_after:
                        first_ack_after.append(time.monotonic())
                if status == 503:
                    stop.wait(0.05)  # a client backing off (Retry-After), not spinning

    def acked(at: str) -> int:
        with lock:
            return sum(1 for _, answers in sent.values() for p, s in answers if p == at and 200 <= s < 300)

    threads = [threading.Thread(target=writer, args=(n,), daemon=True) for n in range(THREADS)]
    try:
        wait_for(service.up, 60, "the service answers")
        for t in threads:
            t.start()
        wait_for(lambda: acked("before") >= 150, 120, "receipts acknowledged before the kill")
        phase[0] = "down"
        primary.crash()
        # Writes refused while no host is writable (the standby is read-only until promoted).
        wait_for(
            lambda: sum(s == 503 for _, a in sent.values() for p, s in a if p == "down") >= THREADS,
            60,
            "writes answered 503 while no host is writable",
        )
        standby.promote()
        promoted_at.append(time.monotonic())
        phase[0] = "after"
        wait_for(lambda: acked("after") >= 150, 120, "receipts acknowledged after the promotion")
        stop.set()
        for t in threads:
            t.join(90)
        assert not any(t.is_alive() for t in threads), "a writer hangs"
        assert not strays, strays[:5]

        statuses = {s for _, answers in sent.values() for _, s in answers}
        assert statuses <= {201, 503}, f"answers other than 2xx or 503: {statuses}"
        acknowledged = {k for k, (_, a) in sent.items() if any(200 <= s < 300 for _, s in a)}

        # Every acknowledged receipt is on the new primary (the old one stays dead).
        assert standby.writable() and primary.log_text()
        keys = {k: c.ReceiveStock(**b).key for k, (b, _) in sent.items()}
        on_new = f"postgresql://root@127.0.0.1:{standby.port}/{standby.dbname}"
        with Ledger(ledger_env(on_new)) as fresh:
            stored = set(fresh.app.recorder.select_commands(list(keys.values())))
        lost = [k for k in acknowledged if keys[k] not in stored]
        assert not lost, f"acknowledged but not on the new primary: {lost[:10]}"

        # No key is blocked: each key again, with its body, answers 2xx (its first answer, or the
        # receipt done now for one that was refused), never 409 "in progress".
        with httpx.Client(base_url=service.base) as client:
            for key, (body, answers) in sent.items():
                status = post(client, key, body)
                assert status is not None and 200 <= status < 300, (key, status, answers)
            expected = {p: 0 for p in PLACES}
            for body, _ in sent.values():
                expected[(body["sku"], body["location"])] += body["quantity"]
            for sku, loc in PLACES:
                r = client.get(f"/v1/stock/{sku}/{loc}", headers=headers)
                assert r.status_code == 200, r.text
                assert r.json()["on_hand"] == expected[(sku, loc)], (sku, loc)
        assert not strays, strays[:5]
    finally:
        stop.set()
        for t in threads:
            t.join(90)
        service.stop()
    assert "not properly shut down" not in standby.log_text()  # the standby was promoted, not crashed
    resumed = first_ack_after[0] - promoted_at[0]
    down = sum(1 for _, a in sent.values() for p, s in a if p != "before" and s == 503)
    print(
        f"\n{len(sent)} keyed receipts: {len(acknowledged)} acknowledged before the re-send, {down} answered "
        f"503 around the failover; first write acknowledged {resumed:.2f} s after the promotion"
    )
