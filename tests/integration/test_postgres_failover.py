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

import time
from collections.abc import Iterator

import psycopg
import pytest
from keyed_load import KeyedLoad, Service, ingest_token
from private_servers import PrivatePostgres, pg_bin_dir, wait_for

pytestmark = pytest.mark.postgres


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


def test_the_primary_killed_and_its_standby_promoted_loses_no_acknowledged_write(pair, tmp_path):
    primary, standby = pair
    url = (
        f"postgresql://root@127.0.0.1:{primary.port},127.0.0.1:{standby.port}/{primary.dbname}"
        "?target_session_attrs=read-write&connect_timeout=3"
    )
    service = Service(url, tmp_path / "service.log")
    load = KeyedLoad(service, ingest_token(url))
    try:
        load.start()
        load.wait(lambda: load.count("before") >= 150, 120, "receipts acknowledged before the kill")
        load.phase = "down"
        primary.crash()
        # Writes refused while no host is writable (the standby is read-only until promoted).
        load.wait(lambda: load.count("down", ok=False) >= 1, 120, "503s while no host is writable")
        standby.promote()
        promoted_at = time.monotonic()
        load.phase = "after"
        load.wait(lambda: load.count("after") >= 150, 120, "receipts acknowledged after the promotion")
        load.stop()
        assert standby.writable()
        # Every acknowledged receipt is on the new primary (the old one stays dead).
        figures = load.check(f"postgresql://root@127.0.0.1:{standby.port}/{standby.dbname}")
    finally:
        load.stop()
        service.stop()
    assert "not properly shut down" not in standby.log_text()  # the standby was promoted, not crashed
    assert load.resumed_at is not None
    print(
        f"\n{figures['sent']} keyed receipts: {figures['acknowledged']} acknowledged at first, "
        f"{figures['refused']} answered 503 around the failover; first write acknowledged "
        f"{load.resumed_at - promoted_at:.2f} s after the promotion"
    )
