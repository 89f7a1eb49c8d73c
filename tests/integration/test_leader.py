"""One elected leader among the processes sharing a database: the jobs that must run once run in
one of them, and another takes over when the leader's session ends (terminated, stopped, killed)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from pgschema import drop_pg_schema, fresh_pg_url
from private_servers import free_port, wait_for

from adapters.leader import Leadership
from adapters.loop import Loop
from adapters.persistence.db import Database
from adapters.persistence.urls import pg_conninfo

ROOT = Path(__file__).resolve().parents[2]


class Ran:
    """A job's passes, by the candidate that ran them."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by: dict[str, int] = {}

    def job(self, who: str) -> Loop:
        def step() -> int:
            with self.lock:
                self.by[who] = self.by.get(who, 0) + 1
            return 0

        return Loop(f"job-{who}", step, poll=0.05)

    def count(self, who: str) -> int:
        with self.lock:
            return self.by.get(who, 0)


def candidate(url: str, who: str, ran: Ran) -> Leadership:
    leadership = Leadership(Database(url, pool_size=1), interval=0.1)
    leadership.add("sweeper", ran.job(who))
    return leadership


@pytest.fixture
def pair(pg_url: str) -> Iterator[tuple[Leadership, Leadership, Ran]]:
    ran = Ran()
    a, b = candidate(pg_url, "a", ran), candidate(pg_url, "b", ran)
    try:
        yield a, b, ran
    finally:
        for c in (a, b):
            c.stop()
            c.db.close()


def elected(a: Leadership, b: Leadership) -> tuple[Leadership, Leadership]:
    """(leader, follower) once one of the two leads and the other has asked for the lock since."""
    wait_for(lambda: a.leading or b.leading, 30, "one candidate leads")
    leader, follower = (a, b) if a.leading else (b, a)
    asked = follower.tries
    wait_for(lambda: follower.tries >= asked + 3, 30, "the follower asks for the lock again")
    return leader, follower


def who(c: Leadership, a: Leadership) -> str:
    return "a" if c is a else "b"


def terminate(pid: int, url: str) -> None:
    with psycopg.connect(pg_conninfo(url), autocommit=True) as conn:
        row = conn.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()
        assert row is not None and row[0]


def test_of_two_candidates_only_one_leads_and_runs_the_jobs(pair) -> None:
    a, b, ran = pair
    a.start()
    b.start()
    leader, follower = elected(a, b)
    assert leader.leading and not follower.leading
    assert leader.backend_pid is not None and follower.backend_pid is None
    wait_for(lambda: ran.count(who(leader, a)) >= 3, 30, "the leader runs its job")
    assert ran.count(who(follower, a)) == 0  # the follower never ran it


def test_the_follower_takes_over_when_the_leaders_connection_is_terminated(pair, pg_url: str) -> None:
    a, b, ran = pair
    a.start()
    b.start()
    leader, follower = elected(a, b)
    terminate(leader.backend_pid or 0, pg_url)  # the session ends: PostgreSQL frees the lock
    assert follower.wait(leading=True, timeout=30), "the follower took over"
    assert leader.wait(leading=False, timeout=30), "the old leader noticed it lost the lock"
    assert follower.terms == 1 and leader.terms == 1
    passes = ran.count(who(follower, a))
    wait_for(lambda: ran.count(who(follower, a)) >= passes + 3, 30, "the new leader runs the job")
    # The old leader reconnects and asks again, but the lock is taken: it stays a follower.
    asked = leader.tries
    wait_for(lambda: leader.tries >= asked + 3, 30, "the old leader asks again")
    stopped_at = ran.count(who(leader, a))
    assert not leader.leading and follower.leading
    wait_for(lambda: ran.count(who(follower, a)) >= passes + 6, 30, "the new leader keeps running it")
    assert ran.count(who(leader, a)) == stopped_at  # its job was stopped


def test_the_follower_takes_over_when_the_leader_stops(pair) -> None:
    a, b, ran = pair
    a.start()
    b.start()
    leader, follower = elected(a, b)
    leader.stop()  # unlocks at once
    assert follower.wait(leading=True, timeout=30)
    passes = ran.count(who(follower, a))
    wait_for(lambda: ran.count(who(follower, a)) > passes, 30, "the new leader runs the job")


def test_each_schema_elects_its_own_leader(pg_url: str) -> None:
    other = fresh_pg_url()
    ran = Ran()
    here, there = candidate(pg_url, "a", ran), candidate(other, "b", ran)
    try:
        here.start()
        there.start()
        assert here.wait(timeout=30) and there.wait(timeout=30)
    finally:
        for c in (here, there):
            c.stop()
            c.db.close()
        drop_pg_schema(other)


def test_on_sqlite_the_one_process_leads_at_once(sqlite_url: str) -> None:
    ran = Ran()
    c = candidate(sqlite_url, "a", ran)
    try:
        c.start()
        assert c.leading and c.terms == 1
        wait_for(lambda: ran.count("a") >= 2, 30, "the job runs")
    finally:
        c.stop()
        c.db.close()
    assert not c.leading


def leads(metrics_port: int) -> bool:
    """Whether the `ledger worker` serving metrics on that port says it runs the sweeper as leader."""
    try:
        text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2).text
    except httpx.HTTPError:
        return False
    return re.search(r'^ledger_leader\{task="sweeper"\} 1\.0$', text, re.M) is not None


def test_a_killed_leader_worker_process_is_taken_over(pg_url: str, tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LEDGER_DATABASE_URL": pg_url, "LEDGER_LOG_LEVEL": "WARNING"}
    env.pop("LEDGER_NATS_URL", None)
    env.pop("LEDGER_ERP_URL", None)
    log = open(tmp_path / "worker.log", "wb")  # noqa: SIM115  # closed below
    worker = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "worker", "--metrics-port", str(port)],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    ran = Ran()
    here = candidate(pg_url, "here", ran)
    try:
        wait_for(lambda: worker.poll() is not None or leads(port), 120, "the worker process leads")
        assert worker.poll() is None, (tmp_path / "worker.log").read_text()
        here.start()
        asked = here.tries
        wait_for(lambda: here.tries >= asked + 3, 30, "this candidate asks for the lock")
        assert not here.leading and ran.count("here") == 0
        worker.send_signal(signal.SIGKILL)  # no clean-up: the kernel closes its connections
        worker.wait(30)
        assert here.wait(leading=True, timeout=60), "this candidate took over from the killed worker"
        wait_for(lambda: ran.count("here") >= 1, 30, "the job runs here now")
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(30)
        log.close()
        here.stop()
        here.db.close()
