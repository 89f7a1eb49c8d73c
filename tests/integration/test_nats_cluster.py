"""A three-node NATS JetStream cluster loses the node the relay is connected to, mid-load.

The fault: `LEDGER_NATS_URL` lists a server that is down and one node of a private three-node
cluster; the ledger creates its `LEDGER` stream with three replicas. While commands flow, the node
the relay is connected to — made the stream's leader too, so JetStream has to elect another one —
is killed with SIGKILL and stays down. The promise under test:

- the relay moves to a node it was never told about (one the cluster announced) and carries on
  while the killed node is still down;
- every change arrives exactly once: each outbox row is in the stream once (by `Nats-Msg-Id`),
  no (subject, position) is there twice, and the outbox drains to empty.
"""

from __future__ import annotations

import json
import random
import threading
import uuid

import pytest
from private_servers import (
    NatsCluster,
    free_port,
    step_down,
    stored_messages,
    stream_info,
    stream_leader,
    wait_for,
)
from projection_support import Rig, random_command, random_policy
from test_nats_relay import RecordingOutbox

from adapters.nats import STREAM, NatsPublisher
from adapters.outbox import depth

pytestmark = [pytest.mark.postgres, pytest.mark.nats]


def test_killing_the_relays_node_of_an_r3_cluster_delivers_every_change_once(pg_url, tmp_path):
    cluster = NatsCluster(tmp_path)
    rig: Rig | None = None
    relay: NatsPublisher | None = None
    stop = threading.Event()
    load: threading.Thread | None = None
    try:
        cluster.start()
        first = cluster.nodes[0]
        rig = Rig(pg_url)
        box = RecordingOutbox(rig.db)
        dead = f"nats://127.0.0.1:{free_port()}"  # a listed server that never answers
        relay = NatsPublisher(f"{dead},{first.url}", box, window=32, poll_seconds=0.05, replicas=3)
        rnd = random.Random(16)
        for ch in ("web", "pos"):
            rig.channels.put(random_policy(rnd, ch), "test")
        relay.start()
        wait_for(lambda: relay.connected, 60, "the relay connects through the list")
        assert cluster.node_at(relay.connected_url) is first

        info = stream_info(first.url, STREAM)
        assert info.config.num_replicas == 3  # created by the ledger, with LEDGER_NATS_STREAM_REPLICAS
        # The node the relay is on also leads the stream: its death costs a leader election too.
        for _ in range(30):
            if stream_leader(first.url, STREAM) == first.name:
                break
            step_down(first.url, STREAM)
            wait_for(lambda: stream_leader(first.url, STREAM) is not None, 60, "a stream leader elected")
        assert stream_leader(first.url, STREAM) == first.name

        prefix, orders = uuid.uuid4().hex[:6], []
        errors: list[BaseException] = []

        def produce() -> None:
            try:
                while not stop.is_set():
                    random_command(rig, rnd, prefix, orders)
                    rig.projector.step()
            except BaseException as e:  # reported by the main thread
                errors.append(e)

        load = threading.Thread(target=produce, name="load", daemon=True)
        load.start()
        wait_for(lambda: relay.published >= 150, 120, "messages published before the kill")

        first.kill()  # mid-load; it stays down until the end of the test
        at_kill = relay.published
        wait_for(
            lambda: (
                relay.connected and relay.connected_url is not None and first.url not in relay.connected_url
            ),
            120,
            "the relay reconnects to an announced node",
        )
        moved_to = cluster.node_at(relay.connected_url)
        assert moved_to is not first and moved_to.running
        wait_for(lambda: relay.published >= at_kill + 150, 120, "publishing goes on with the node down")
        stop.set()
        load.join(60)
        assert not load.is_alive() and not errors, errors
        rig.projector.catch_up()
        wait_for(lambda: depth(rig.db) == 0, 120, "the outbox drains with the node down")
        assert not first.running

        messages = stored_messages(moved_to.url, STREAM)
        ids = [m.headers["Nats-Msg-Id"] for m in messages if m.headers]
        assert len(ids) == len(messages)
        assert len(ids) == len(set(ids)), "a message is in the stream twice"
        assert set(ids) == set(box.acked), "an acknowledged outbox row is missing from the stream"
        assert len(box.acked) == len(set(box.acked))
        positions = [(m.subject, json.loads(m.data)["position"]) for m in messages]
        assert len(positions) == len(set(positions)), "a change is in the stream twice"
        assert any(s.startswith("ledger.ats.") for s, _ in positions)
        assert any(s.startswith("ledger.orders.") for s, _ in positions)
        after = stream_info(moved_to.url, STREAM)
        assert after.state.messages == len(ids) and after.cluster.leader != first.name
        print(
            f"\n{len(ids)} messages, {at_kill} before the kill; relay moved {first.name} -> {moved_to.name}; "
            f"leader now {after.cluster.leader}"
        )
    finally:
        stop.set()
        if load is not None:
            load.join(60)
        if relay is not None:
            relay.stop()
        if rig is not None:
            rig.close()
        cluster.stop()
