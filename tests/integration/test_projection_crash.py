"""The runner killed (SIGKILL) in the middle of a batch and restarted: no event applied twice or skipped."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import uuid

from projection_support import Rig, random_command, random_policy, snapshot

from projections.rebuild import rebuild

CHILD = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {here!r})
    from projection_support import Rig
    rig = Rig({url!r})
    batches = []
    def die(last):
        batches.append(last)
        if len(batches) == 3:  # rows and outbox written, tracking moved, not committed
            os.kill(os.getpid(), signal.SIGKILL)
    rig.projector.before_commit = die
    rig.projector.catch_up()
""")


def test_a_runner_killed_mid_batch_resumes_without_applying_any_event_twice(database_url):
    rnd = random.Random(7)
    rig = Rig(database_url)
    try:
        for ch in ("web", "pos"):
            rig.channels.put(random_policy(rnd, ch), "test")
        orders: list[str] = []
        prefix = uuid.uuid4().hex[:6]
        while rig.projector.head() < 60:
            random_command(rig, rnd, prefix, orders)
        here = os.path.dirname(__file__)
        child = subprocess.run(
            [sys.executable, "-c", CHILD.format(here=here, url=database_url)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert child.returncode == -signal.SIGKILL, child.stderr
        committed = {r["name"]: r["position"] for r in rig.projector.status()}
        assert 0 < min(committed.values()) < rig.projector.head()  # two batches survived, the third did not
        depth_before = rig.db.query_one("SELECT COUNT(*) AS n FROM ledger_outbox")["n"]

        rig.projector.catch_up()  # the restart
        resumed = snapshot(rig.db)
        msgs = rig.db.query("SELECT msg_id FROM ledger_outbox")
        assert len(msgs) == len({m["msg_id"] for m in msgs}) >= depth_before
        for name in ("ats", "orders", "stock"):
            assert rebuild(rig.projector, name)["published"] == 0
        assert snapshot(rig.db) == resumed  # a replay from scratch agrees: nothing twice, nothing skipped
    finally:
        rig.close()
