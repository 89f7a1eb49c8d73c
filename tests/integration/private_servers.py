"""Private servers for the fault tests: a NATS JetStream cluster on free ports, waits on conditions.

Nothing here touches the shared servers (PostgreSQL on 5432, NATS on 4222). Every server is a
child process of the test, with its own store directory, and is killed in the test's `finally`.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nats
import pytest

NATS_SERVER = Path("/usr/sbin/nats-server")


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
