"""Wake-ups of the outbox relay: it publishes because it was told rows were committed, not because it polled.

Every relay here polls once an hour, so a message published within the test's patience was
published by a wake-up: PostgreSQL NOTIFY from another process, or the projection runner's
in-process call (SQLite, where there is no NOTIFY). No timing is asserted.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import uuid

from pgschema import drop_pg_schema, fresh_pg_url
from projection_support import Rig
from test_nats_relay import free_port, start_nats, stream_messages, wait_for

from adapters import outbox
from adapters.channels import ChannelPolicy
from adapters.nats import NatsPublisher
from adapters.persistence.db import Database
from adapters.persistence.migrate import migrate
from adapters.persistence.urls import ledger_env
from ledger import commands as c
from projections.runner import Runner

HOUR = 3600.0


def stream_subjects(url: str) -> list[str]:
    return [m.subject for m in stream_messages(url)]


def test_enqueue_many_keeps_order_and_counts_per_transaction(database_url):
    ledger_env(database_url)  # creates the schema
    db = Database(database_url)
    try:
        migrate(db)
        msgs = [(f"ledger.test.m{i}", {"position": i}, f"m:{i}") for i in (5, 1, 4, 2, 3)]
        with db.transaction() as tx:
            outbox.enqueue_many(tx, msgs[:3])
            outbox.enqueue(tx, *msgs[3])
            outbox.enqueue_many(tx, [msgs[4], msgs[0]])  # a msg_id seen before is ignored
            assert outbox.enqueued(tx) == 6  # messages handed over, duplicates included
        with db.transaction() as tx:
            assert outbox.enqueued(tx) == 0  # a new transaction starts from nothing
        rows = outbox.pending(db, 10)
        assert [r["subject"] for r in rows] == [s for s, _, _ in msgs]
        outbox.remove(db, [rows[0]["id"], rows[3]["id"]])
        assert [r["msg_id"] for r in outbox.pending(db, 10)] == ["m:1", "m:4", "m:3"]
    finally:
        db.close()


def test_watch_wakes_on_commit_only_and_only_for_its_schema(pg_url):
    other_url = fresh_pg_url()
    ledger_env(pg_url)
    ledger_env(other_url)  # creates the other schema
    db, other = Database(pg_url), Database(other_url)
    woken = threading.Event()
    box = outbox.OutboxQueue(db)
    try:
        for d in (db, other):
            migrate(d)
        unwatch = box.watch(woken.set)
        try:
            wait_for(lambda: box.listening and woken.is_set())  # the wake after LISTEN
            woken.clear()

            try:
                with db.transaction() as tx:
                    outbox.enqueue(tx, "ledger.test.a", {"position": 1}, "a:1")
                    raise RuntimeError("roll back")
            except RuntimeError:
                pass
            with other.transaction() as tx:  # another schema of the same database
                outbox.enqueue(tx, "ledger.test.b", {"position": 2}, "b:2")
            with db.transaction() as tx:  # a sentinel in this schema, enqueued by nobody
                tx.execute("SELECT pg_notify(%s, %s)", (outbox.CHANNEL, "sentinel-" + uuid.uuid4().hex))
            assert not woken.wait(1.0)  # neither the rollback nor the other schema woke it

            with db.transaction() as tx:
                outbox.enqueue(tx, "ledger.test.c", {"position": 3}, "c:3")
                outbox.enqueue(tx, "ledger.test.d", {"position": 4}, "d:4")
                assert not woken.is_set()  # not before the commit
            wait_for(woken.is_set)
        finally:
            unwatch()
        assert not box.listening
    finally:
        db.close()
        other.close()
        drop_pg_schema(other_url)


ENQUEUE = """
import sys
from adapters.persistence.db import Database
from adapters import outbox

db = Database(sys.argv[1])
with db.transaction() as tx:
    outbox.enqueue(tx, "ledger.exceptions.elsewhere", {"position": 7, "kind": "elsewhere"}, sys.argv[2])
db.close()
"""


def test_a_relay_is_woken_by_a_commit_in_another_process(pg_url, tmp_path):
    port = free_port()
    url = f"nats://127.0.0.1:{port}"
    server = start_nats(port, str(tmp_path / "js"))
    ledger_env(pg_url)
    db = Database(pg_url)
    migrate(db)
    box = outbox.OutboxQueue(db)
    relay = NatsPublisher(url, box, poll_seconds=HOUR)
    try:
        relay.start()
        wait_for(lambda: relay.connected and box.listening)
        msg_id = "elsewhere:" + uuid.uuid4().hex
        subprocess.run([sys.executable, "-c", ENQUEUE, pg_url, msg_id], check=True, timeout=60)
        wait_for(lambda: relay.published == 1 and outbox.depth(db) == 0)
        assert stream_subjects(url) == ["ledger.exceptions.elsewhere"]
    finally:
        relay.stop()
        db.close()
        server.terminate()
        server.wait(10)


def test_the_runner_wakes_its_relay_in_process_on_sqlite(sqlite_url, tmp_path):
    """SQLite has no NOTIFY: the runner calls the relay after a step that committed messages."""
    port = free_port()
    url = f"nats://127.0.0.1:{port}"
    server = start_nats(port, str(tmp_path / "js"))
    rig = Rig(sqlite_url)
    box = outbox.OutboxQueue(rig.db)
    relay = NatsPublisher(url, box, poll_seconds=HOUR)
    runner = Runner(rig.projector, poll_seconds=HOUR)
    calls: list[int] = []
    runner.on_commit += [relay.wake, lambda: calls.append(rig.projector.messages)]
    rig.ledger.writer.on_commit.append(runner.wake)
    try:
        rig.channels.put(ChannelPolicy(channel="web", locations=("W1",)), "test")
        rig.projector.catch_up()
        relay.start()
        runner.start()
        wait_for(lambda: relay.connected)
        assert box.watch(lambda: None) is not None and not box.listening  # nothing to LISTEN to on SQLite
        rig.ledger.execute(c.ReceiveStock(sku="wake-1", location="W1", quantity=3, reference="wake-ref-1"))
        wait_for(lambda: outbox.depth(rig.db) == 0 and relay.published > 0)
        assert calls and all(n > 0 for n in calls)  # called only after steps that enqueued
        assert "ledger.ats.web.wake-1" in stream_subjects(url)
    finally:
        runner.stop()
        relay.stop()
        rig.close()
        server.terminate()
        server.wait(10)
