"""Registers the read-model workers in a container: projection runner, outbox relay, sweeper.

Called once by `adapters.bootstrap.bootstrap()`. `ledger serve` starts these workers in its
process; `ledger worker` starts them alone.
"""

from __future__ import annotations

import logging
from typing import Any

from adapters.channels import ChannelPolicies
from adapters.nats import NatsPublisher
from projections.cache import AtsCache
from projections.jobs import RebuildJobs
from projections.outbox import OutboxQueue
from projections.runner import Projector, Runner
from projections.sweeper import Sweeper

log = logging.getLogger("ledger.projections")


class PolicySync:
    """A worker that, on start, records in the log any policy version only the table has."""

    def __init__(self, channels: ChannelPolicies) -> None:
        self.channels = channels

    def start(self) -> None:
        try:
            self.channels.sync()
        except Exception:  # the next start, or the next rebuild of `ats`, tries again
            log.exception("recording channel policies in the ledger failed")

    def stop(self) -> None:
        pass


def install(container: Any, poll_seconds: float = 1.0) -> None:
    extras = container.extras
    channels: ChannelPolicies = extras.get("channels") or ChannelPolicies(container.db)
    extras["channels"] = channels
    channels.record = container.ledger.execute  # each policy version is also a fact in the log
    projector = Projector(container.db, container.ledger.app, channels, record=container.ledger.execute)
    runner = Runner(projector, poll_seconds=poll_seconds)
    publisher = NatsPublisher(container.settings.nats_url, OutboxQueue(container.db))
    sweeper = Sweeper(container.db, container.ledger.submit, container.settings.erp_posting_deadline_seconds)
    container.ledger.writer.on_commit.append(runner.wake)
    runner.on_commit.append(publisher.wake)  # in-process; other processes hear the outbox's NOTIFY
    cache = AtsCache(container.db)  # the ATS fast path: fed by this process's runner, checked by a poll
    projector.listeners.append(cache.committed)
    container.closers.append(cache.close)
    extras["ats_cache"] = cache
    extras["projector"] = projector
    extras["rebuilds"] = RebuildJobs(projector)
    container.closers.append(extras["rebuilds"].stop)
    extras["runner"] = runner
    extras["publisher"] = publisher
    extras["sweeper"] = sweeper
    extras.setdefault("workers", []).extend([PolicySync(channels), runner, publisher, sweeper])
    readiness = extras.setdefault("readiness", {})
    readiness["nats"] = lambda: publisher.healthy
    readiness["projections"] = lambda: runner.healthy
