"""One elected leader among the processes that share a database, for the jobs that must run once.

Some background jobs are periodic passes over the whole database rather than queues whose rows a
worker claims: the sweeper (expired reservations, shortfalls, stuck orders), the ERP feeder (it
follows the event log with one tracking position), the scheduled reconciliation, the Shopify
recovery of missed webhooks, the inbox retention. Run in every worker, each pass would be done as
many times as there are workers. `Leadership` runs them in one process only.

PostgreSQL: the process that holds a session-level advisory lock (`pg_try_advisory_lock`, keyed
by the schema and the leadership's name) on a connection of its own is the leader, and runs its
jobs (`add`) while it holds it. The others are followers: every `interval` seconds each tries the
lock again. The lock belongs to the session, so it is freed the moment the leader's connection
ends: the process stopped (`stop()` unlocks), was killed (the kernel closes its socket), or its
backend was terminated or lost in a failover. A follower then takes over on its next try.

The leader checks its connection every `interval` seconds; when the check fails it stops its jobs
and becomes a follower again. Between the moment a leader's session ends and the moment it
notices, a new leader may already run: for at most `interval` seconds plus one pass, two
processes may run the same job. Every such job is safe to repeat (keyed commands, `ON CONFLICT`
exceptions, a compare-and-set tracking position), so that costs work, never correctness.
The leader's connection keeps TCP alive both ways (`KEEPALIVE`), so a leader whose host vanished
loses its lock within about half a minute rather than after the kernel's two hours.

SQLite: one process owns the database, and it is always the leader.

`ledger_leader{task}` (`/metrics`) is 1 for each job while this process runs it as leader.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Protocol

import psycopg
from psycopg.conninfo import make_conninfo

from adapters.metrics import LEADER
from adapters.persistence.db import Database
from adapters.persistence.urls import pg_params

log = logging.getLogger("ledger.leader")

# libpq defaults for the leader's connection, where the URL does not set them: a bounded connect,
# and TCP keepalives so that a dead server is noticed in about 20 s.
CLIENT_DEFAULTS = {
    "connect_timeout": "5",
    "keepalives": "1",
    "keepalives_idle": "10",
    "keepalives_interval": "5",
    "keepalives_count": "2",
}
# The server side of the same connection: a leader whose host died frees its lock in about 20 s.
KEEPALIVE = ("SET tcp_keepalives_idle = 10", "SET tcp_keepalives_interval = 5", "SET tcp_keepalives_count = 2")


class Job(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...


def lock_name(schema: str, name: str) -> str:
    """The text whose `hashtext` is the advisory lock of leadership `name` in `schema`."""
    return f"ledger-leader:{schema or 'public'}:{name}"


class Leadership:
    """The jobs of this process that run only while it is the elected leader (a `Worker` itself)."""

    def __init__(self, db: Database, name: str = "scheduler", interval: float = 2.0) -> None:
        self.db = db
        self.name = name
        self.interval = interval
        self.jobs: dict[str, Job] = {}
        self.lock_name = lock_name(db.schema if db.dialect == "postgres" else "", name)
        self.terms = 0  # how many times this process became the leader
        self.tries = 0  # how many times it asked for the lock
        self._leading = False
        self._changed = threading.Condition()
        self._conn: psycopg.Connection[Any] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._reason = ""  # the last connection failure logged (each reason once in a row)

    def add(self, job: str, worker: Job) -> Job:
        """Runs `worker` (start/stop) only while this process leads; returns it."""
        self.jobs[job] = worker
        LEADER.labels(job).set(0)
        return worker

    @property
    def leading(self) -> bool:
        return self._leading

    @property
    def backend_pid(self) -> int | None:
        """The PostgreSQL backend holding the lock, while this process leads there."""
        conn = self._conn
        return conn.info.backend_pid if self._leading and conn is not None else None

    def wait(self, leading: bool = True, timeout: float = 30.0) -> bool:
        """Waits until this process leads (or, with `leading=False`, does not); False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: self._leading == leading, timeout)

    # ------------------------------------------------------------------ worker

    def start(self) -> None:
        if self.db.dialect != "postgres":
            self._gain()
            return
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=f"leader-{self.name}", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
            self._thread = None
        self._lose("stopped")
        self._close()

    # ------------------------------------------------------------------ election

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._try()
            except psycopg.Error as e:
                reason = f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"
                if reason != self._reason:
                    log.warning("leader election %s: no database connection (%s)", self.name, reason)
                    self._reason = reason
                self._lose("its database connection was lost")
                self._close()
            except Exception:  # never a dead election thread: log, step down, try again
                log.exception("leader election %s failed", self.name)
                self._lose("its election failed")
                self._close()
            self._stop.wait(self.interval)

    def _try(self) -> None:
        conn = self._conn
        if conn is None or conn.closed:
            conn = self._conn = self._connect()
        if self._leading:
            conn.execute("SELECT 1")  # the session, and with it the lock, is still there
            return
        row = conn.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (self.lock_name,)).fetchone()
        self.tries += 1
        self._reason = ""
        if row is not None and row[0] and not self._stop.is_set():
            self._gain()

    def _connect(self) -> psycopg.Connection[Any]:
        params = pg_params(self.db.url)[0]
        extra = {k: v for k, v in CLIENT_DEFAULTS.items() if k not in params}
        conn = psycopg.connect(make_conninfo(**params, **extra), autocommit=True)
        try:
            for statement in KEEPALIVE:
                conn.execute(statement)
        except psycopg.Error:
            conn.close()
            raise
        return conn

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            try:
                conn.close()  # the session ends, and the lock with it
            except psycopg.Error:
                pass

    def _gain(self) -> None:
        if self._leading:
            return
        self.terms += 1
        log.info("this process leads %s: %s", self.name, ", ".join(self.jobs) or "no jobs")
        for job, worker in self.jobs.items():
            try:
                worker.start()
                LEADER.labels(job).set(1)
            except Exception:
                log.exception("leader job %s did not start", job)
        with self._changed:
            self._leading = True
            self._changed.notify_all()

    def _lose(self, why: str) -> None:
        if not self._leading:
            return
        with self._changed:
            self._leading = False
            self._changed.notify_all()
        if why != "stopped":
            log.warning("this process no longer leads %s: %s", self.name, why)
        for job, worker in reversed(self.jobs.items()):
            LEADER.labels(job).set(0)
            try:
                worker.stop()
            except Exception:
                log.exception("leader job %s did not stop cleanly", job)
        if self._conn is not None and why == "stopped":
            try:
                self._conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (self.lock_name,))
            except psycopg.Error:
                pass  # closing the connection frees it anyway


__all__ = ["Leadership", "lock_name"]
