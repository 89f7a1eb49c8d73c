"""Real messages read back from JetStream satisfy the AsyncAPI document's schemas."""

from __future__ import annotations

import random
import uuid

import jsonschema
import orjson
from projection_support import Rig, random_command, random_policy
from test_nats_relay import free_port, start_nats, stream_messages, wait_for

from adapters.nats import NatsPublisher
from adapters.outbox import OutboxQueue, depth
from api.asyncapi import document, schema_for


def test_every_published_message_matches_its_asyncapi_schema(pg_url, tmp_path):
    rnd = random.Random(11)
    port = free_port()
    url = f"nats://127.0.0.1:{port}"
    server = start_nats(port, str(tmp_path / "js"))
    rig = Rig(pg_url)
    relay = NatsPublisher(url, OutboxQueue(rig.db), poll_seconds=0.05)
    try:
        rig.channels.put(random_policy(rnd, "web"), "test")
        relay.start()
        prefix, orders = uuid.uuid4().hex[:6], []
        for _ in range(40):
            random_command(rig, rnd, prefix, orders)
            rig.projector.step()
        wait_for(lambda: depth(rig.db) == 0 and relay.connected)
        messages = stream_messages(url)
        seen = set()
        for m in messages:
            schema = schema_for(m.subject)
            assert schema is not None, f"{m.subject} is not described in /asyncapi.json"
            jsonschema.validate(orjson.loads(m.data), schema)
            assert m.headers and m.headers["Nats-Msg-Id"]
            seen.add(m.subject.split(".")[1])
        assert {"ats", "orders"} <= seen
        assert document()["components"]["schemas"]  # the served document holds the schemas used above
    finally:
        relay.stop()
        rig.close()
        server.terminate()
        server.wait(10)
