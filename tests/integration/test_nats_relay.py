"""The outbox relay: NATS stopped while events flow and started again; every message arrives once."""

from __future__ import annotations

import asyncio
import random
import socket
import subprocess
import time
import uuid

import nats
from nats.aio.msg import Msg
from projection_support import Rig, random_command, random_policy

from adapters.nats import STREAM, NatsPublisher
from adapters.outbox import OutboxQueue, depth

NATS_SERVER = "/usr/sbin/nats-server"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_nats(port: int, store: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [NATS_SERVER, "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", store],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise AssertionError("nats-server did not start")


def wait_for(cond, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


class RecordingOutbox(OutboxQueue):
    """The real outbox, remembering which messages the relay removed after an ack."""

    def __init__(self, db) -> None:  # type: ignore[no-untyped-def]  # a test double
        super().__init__(db)
        self.acked: list[str] = []

    def remove(self, ids: list[int]) -> None:
        rows = {r["id"]: r["msg_id"] for r in self.pending(100_000)}
        self.acked += [rows[i] for i in ids]
        super().remove(ids)


def stream_messages(url: str) -> list[Msg]:
    """Every message the stream holds, each acknowledged."""

    async def read() -> list[Msg]:
        nc = await nats.connect(url)
        try:
            sub = await nc.jetstream().pull_subscribe("ledger.>", stream=STREAM)
            out: list[Msg] = []
            while True:
                try:
                    msgs = await sub.fetch(500, timeout=1)
                except (nats.errors.TimeoutError, TimeoutError):  # nats-py raises either under load
                    return out
                for m in msgs:
                    out.append(m)
                    await m.ack()
        finally:
            await nc.close()

    return asyncio.run(read())


def test_nats_down_while_events_flow_loses_nothing_and_duplicates_nothing(pg_url, tmp_path):
    rnd = random.Random(3)
    port = free_port()
    url = f"nats://127.0.0.1:{port}"
    server = start_nats(port, str(tmp_path / "js"))
    rig = Rig(pg_url)
    box = RecordingOutbox(rig.db)
    relay = NatsPublisher(url, box, window=16, poll_seconds=0.05)
    try:
        for ch in ("web", "pos"):
            rig.channels.put(random_policy(rnd, ch), "test")
        relay.start()
        prefix, orders = uuid.uuid4().hex[:6], []
        for _ in range(30):
            random_command(rig, rnd, prefix, orders)
            rig.projector.step()
        wait_for(lambda: depth(rig.db) == 0 and relay.connected)

        server.terminate()  # NATS goes away while events keep flowing
        server.wait(10)
        for _ in range(30):
            random_command(rig, rnd, prefix, orders)
            rig.projector.catch_up()
        wait_for(lambda: not relay.connected)
        waiting = depth(rig.db)
        assert waiting > 0  # kept in the outbox

        server = start_nats(port, str(tmp_path / "js"))  # back, with its stored stream
        wait_for(lambda: depth(rig.db) == 0, timeout=60)
        ids = [m.headers["Nats-Msg-Id"] for m in stream_messages(url)]
        assert len(ids) == len(set(ids))  # none twice
        assert set(ids) == set(box.acked)  # every acknowledged outbox row is in the stream
        assert len(box.acked) == len(set(box.acked))
        assert any(m.startswith("ats:") for m in ids) and any(m.startswith("order:") for m in ids)
    finally:
        relay.stop()
        rig.close()
        server.terminate()
        server.wait(10)


def test_a_process_that_does_not_relay_is_ready_without_nats(sqlite_url):
    """`ledger serve --no-workers`: the relay is not started, so NATS down does not make it unready."""
    rig = Rig(sqlite_url)
    try:
        publisher = NatsPublisher(f"nats://127.0.0.1:{free_port()}", OutboxQueue(rig.db))
        assert publisher.healthy  # configured, not started
        publisher.start()
        try:
            assert not publisher.healthy  # relaying, and nothing listens on that port
        finally:
            publisher.stop()
        assert publisher.healthy
    finally:
        rig.close()
