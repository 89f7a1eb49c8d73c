"""Private servers for the fault tests: a PostgreSQL server and a NATS JetStream cluster on free
ports, and waits on conditions.

Nothing here touches the shared servers (PostgreSQL on 5432, NATS on 4222). Every server is a
child process of the test, with its own store directory, and is killed in the test's `finally`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nats
import psycopg
import pytest

NATS_SERVER = Path("/usr/sbin/nats-server")
PG_ROOT = Path("/usr/lib/postgresql")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(cond: Callable[[], object], timeout: float = 60.0, what: str = "condition") -> None:
    """Polls `cond` until it is true; fails with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"{what}: not met within {timeout:.0f} s"
        time.sleep(0.05)


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


class NatsNode:
    """One nats-server of a cluster: client port, route port, JetStream store of its own."""

    def __init__(self, name: str, store: Path) -> None:
        self.name = name
        self.port = free_port()
        self.route_port = free_port()
        self.store = store
        self.log = store.parent / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, routes: list[int]) -> None:
        self.store.mkdir(parents=True, exist_ok=True)
        args = [
            str(NATS_SERVER),
            "-js",
            "-a", "127.0.0.1",
            "-p", str(self.port),
            "-sd", str(self.store),
            "-n", self.name,
            "--cluster_name", "ledger-test",
            "--cluster", f"nats://127.0.0.1:{self.route_port}",
            "--routes", ",".join(f"nats://127.0.0.1:{p}" for p in routes),
            "-l", str(self.log),
        ]  # fmt: skip
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def kill(self) -> None:
        """SIGKILL: no lame-duck mode, no goodbye to the clients or the other nodes."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class NatsCluster:
    """Three JetStream nodes routed to each other (cluster `ledger-test`)."""

    def __init__(self, root: Path, size: int = 3) -> None:
        if not NATS_SERVER.is_file():
            pytest.fail(f"there is no nats-server at {NATS_SERVER} to run the private cluster with")
        self.nodes = [NatsNode(f"n{i + 1}", root / f"n{i + 1}") for i in range(size)]

    def start(self) -> None:
        for node in self.nodes:
            node.start([n.route_port for n in self.nodes if n is not node])
        for node in self.nodes:
            wait_for(lambda n=node: port_open(n.port), 30, f"nats-server {node.name} listening")
        # JetStream answers once the meta group has a leader and every node knows it.
        for node in self.nodes:
            wait_for(lambda n=node: jetstream_ready(n.url), 90, f"JetStream on {node.name}")

    def node_at(self, url: str | None) -> NatsNode:
        for node in self.nodes:
            if url is not None and url.rstrip("/").endswith(f":{node.port}"):
                return node
        raise AssertionError(f"{url} is none of the cluster's nodes")

    def survivor(self) -> NatsNode:
        return next(n for n in self.nodes if n.running)

    def stop(self) -> None:
        for node in self.nodes:
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                node.kill()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def jetstream_ready(url: str) -> bool:
    async def check() -> bool:
        nc = await nats.connect(url, connect_timeout=2, allow_reconnect=False)
        try:
            await nc.jetstream(timeout=2).account_info()
            return True
        finally:
            await nc.close()

    try:
        return bool(run(check()))
    except Exception:
        return False


def stream_info(url: str, stream: str) -> Any:
    async def info() -> Any:
        nc = await nats.connect(url, connect_timeout=2, allow_reconnect=False)
        try:
            return await nc.jetstream(timeout=5).stream_info(stream)
        finally:
            await nc.close()

    return run(info())


def stream_leader(url: str, stream: str) -> str | None:
    try:
        info = stream_info(url, stream)
    except Exception:
        return None
    return info.cluster.leader if info.cluster is not None else None


def step_down(url: str, stream: str) -> None:
    """Asks the stream's leader to step down: the other replicas elect a new one."""

    async def ask() -> None:
        nc = await nats.connect(url, connect_timeout=2, allow_reconnect=False)
        try:
            await nc.request(f"$JS.API.STREAM.LEADER.STEPDOWN.{stream}", b"", timeout=5)
        finally:
            await nc.close()

    with contextlib.suppress(Exception):  # judged by the leader it leads to
        run(ask())


def stored_messages(url: str, stream: str) -> list[Any]:
    """Every message the stream holds, read by sequence through its leader (no consumer to place:
    creating one on an R3 stream with a node down waits on that node)."""

    async def read() -> list[Any]:
        nc = await nats.connect(url, connect_timeout=2, allow_reconnect=False)
        try:
            js = nc.jetstream(timeout=10)
            state = (await js.stream_info(stream)).state
            out = []
            for seq in range(state.first_seq, state.last_seq + 1):
                out.append(await js.get_msg(stream, seq))
            return out
        finally:
            await nc.close()

    return list(run(read()))


# ------------------------------------------------------------------ PostgreSQL


def pg_bin_dir() -> Path:
    """The newest installed PostgreSQL's binaries; the test fails (never skips) without them."""
    versions = []
    if PG_ROOT.is_dir():
        for d in PG_ROOT.iterdir():
            if (d / "bin" / "initdb").is_file() and (d / "bin" / "pg_ctl").is_file():
                try:
                    versions.append((float(d.name), d / "bin"))
                except ValueError:
                    continue
    if not versions:
        pytest.fail(f"no PostgreSQL server binaries (initdb, pg_ctl) under {PG_ROOT}/<version>/bin")
    return max(versions)[1]


class PrivatePostgres:
    """A throw-away PostgreSQL server run as the `postgres` user, reachable as root (trust)."""

    def __init__(self, bin_dir: Path) -> None:
        try:
            self.owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.fail("there is no `postgres` system user to run the private PostgreSQL server as")
        self.bin = bin_dir
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="ledger-pgfault-"))
        os.chown(self.dir, self.owner.pw_uid, self.owner.pw_gid)
        os.chmod(self.dir, 0o700)
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self.dbname = "ledger"

    @property
    def url(self) -> str:
        return f"postgresql://root@127.0.0.1:{self.port}/{self.dbname}"

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Runs one of the server's binaries as `postgres` (initdb and postgres refuse root)."""
        cmd = ["runuser", "-u", "postgres", "--", str(self.bin / args[0]), *args[1:]]
        proc = subprocess.run(cmd, cwd=self.dir, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}\n{self.log_tail()}"
            )
        return proc

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def init(self) -> None:
        self._run(
            "initdb", "-D", str(self.data), "-A", "trust", "-U", "root", "-E", "UTF8", "--no-instructions"
        )
        # Settings in the config file, so a start after a crash and `pg_ctl restart` keep them.
        # fsync and synchronous_commit stay at their defaults (on): durability is what is tested.
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(
                f"\nport = {self.port}\n"
                "listen_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.dir}'\n"
                "fsync = on\n"
                "synchronous_commit = on\n"
            )

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start")
        self.wait_ready()

    def crash(self) -> None:
        """Every server process killed at once, no checkpoint: WAL recovery at the next start."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def restart(self) -> None:
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-m", "fast", "-w", "-t", "60", "restart"
        )
        self.wait_ready()

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(
                    host="127.0.0.1", port=self.port, user="root", dbname="postgres", connect_timeout=2
                ) as conn:
                    conn.execute("select 1")
                return
            except psycopg.OperationalError as e:
                if time.monotonic() > deadline:
                    raise AssertionError(f"the private PostgreSQL does not accept connections: {e}") from e
                time.sleep(0.05)

    def create_database(self) -> None:
        with psycopg.connect(
            host="127.0.0.1", port=self.port, user="root", dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{self.dbname}"')

    def destroy(self) -> None:
        """Stops the server whatever state it is in, then removes its directory."""
        pid_file = self.data / "postmaster.pid"
        if pid_file.exists():
            with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):  # best effort
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", timeout=30)
        if pid_file.exists():  # pg_ctl could not stop it: kill the postmaster we started
            with contextlib.suppress(OSError, ValueError, IndexError):
                os.kill(int(pid_file.read_text().splitlines()[0]), signal.SIGKILL)
        shutil.rmtree(self.dir, ignore_errors=True)


def schema_url(server: PrivatePostgres) -> str:
    """A schema of its own per test on the private server."""
    return f"{server.url}?schema=t_{uuid.uuid4().hex[:12]}"
