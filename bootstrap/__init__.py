"""Builds the whole service from settings: the one place where everything is wired.

`ledger serve` (through FastAPI's lifespan or `create_app(container=...)`), `ledger worker` and
every CLI command call `bootstrap()`; tests call it too. It returns a `Container` with one typed
field per component, built here and never changed afterwards (the dataclass is frozen).

Adding a component (a store, a queue, a worker):
1. add a typed field to `Container`, under the heading of the layer it comes from;
2. construct it in `bootstrap()` from `settings`, `db`, `ledger` and the components above it,
   and pass it to `Container(...)`;
3. a background job also goes into `workers` (anything with `start()`/`stop()`, see `Worker`;
   `adapters.loop.Loop(name, step, poll)` turns a `step() -> int` into one), and a readiness
   check into `readiness` (name -> a callable answering True when healthy, shown by `/readyz`).
   A job that is a pass over the whole database rather than a queue whose rows it claims goes
   to `leader.add(name, job)` instead: it runs in one process only, the elected leader.
Routes reach a component through `api/deps.py` (`ContainerDep`, or a typed shortcut there).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from adapters import erasure
from adapters.channels import ChannelPolicies
from adapters.config import Settings
from adapters.erp import ErpFeeder, ErpPoster, ErpQueue, HttpErp
from adapters.inbox import Inbox
from adapters.intake import InboxWorker, Intake, Remapper
from adapters.keys import ApiKeys
from adapters.leader import Leadership
from adapters.loop import Loop
from adapters.mappings import SqlMappingStore
from adapters.nats import NatsPublisher
from adapters.outbox import OutboxQueue
from adapters.persistence.db import Database
from adapters.persistence.migrate import migrate
from adapters.persistence.urls import ledger_env
from adapters.reconciliation import schedule
from adapters.reconciliation import wiring as reconciliation
from adapters.reconciliation.engine import Reconciler
from adapters.shopify_push import ShopifySync
from adapters.shopify_push import build as build_shopify_sync
from ledger.ports import LocationDirectory
from ledger.service import Ledger
from projections.cache import AtsCache
from projections.jobs import RebuildJobs
from projections.runner import Projector, Runner
from projections.sweeper import Sweeper

log = logging.getLogger("ledger.bootstrap")


class Worker(Protocol):
    """A background job: `start()` returns at once (the job runs in its own thread), `stop()` waits."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


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


@dataclass(frozen=True, eq=False)
class Container:
    settings: Settings
    db: Database
    ledger: Ledger
    keys: ApiKeys
    channels: ChannelPolicies  # channel policies: the ledger's location directory, the ATS rules
    # read models (projections/)
    projector: Projector
    runner: Runner
    publisher: NatsPublisher  # the outbox relay to NATS
    sweeper: Sweeper
    ats_cache: AtsCache  # the ATS fast path: fed by this process's runner, checked by a poll
    rebuilds: RebuildJobs
    # intake (adapters/): inbox, mappings, translators, the ERP queue
    mappings: SqlMappingStore
    inbox: Inbox
    intake: Intake
    remapper: Remapper
    inbox_worker: InboxWorker
    erp_queue: ErpQueue
    erp_feeder: ErpFeeder
    erp_poster: ErpPoster
    reconciler: Reconciler
    shopify_sync: ShopifySync  # the ATS push to Shopify, the recovery of missed webhooks, the sync status
    leader: Leadership  # the jobs that run in one process only, the elected leader (a worker itself)
    workers: list[Worker]  # started by `start_workers()` in this order, stopped in reverse
    readiness: dict[str, Callable[[], bool | str]]  # name -> ok/degraded/not-configured (or a bool), `/readyz`
    closers: list[Callable[[], None]]  # run first on close (background jobs that are not workers)
    ats_channels: set[str] = field(default_factory=set)  # channels known to have a policy (never deleted)
    _started: list[Worker] = field(default_factory=list)

    def start_workers(self) -> None:
        """Starts the background workers (projection runner, publisher, inbox, ERP, ...)."""
        for worker in self.workers:
            worker.start()
            self._started.append(worker)

    def close(self) -> None:
        for closer in self.closers:
            try:
                closer()
            except Exception:
                log.exception("background job did not stop cleanly")
        for worker in reversed(self._started):
            try:
                worker.stop()
            except Exception:
                log.exception("worker did not stop cleanly")
        self._started.clear()
        self.ledger.close()
        self.db.close()


def bootstrap(settings: Settings | None = None, locations: LocationDirectory | None = None) -> Container:
    """The service built from `settings` (the environment when None); `locations` replaces the
    channel policies as the ledger's location directory (tests)."""
    settings = settings or Settings()
    env = ledger_env(settings.database_url)  # first: it creates the PostgreSQL schema when the URL names one
    db = Database(settings.database_url)
    migrate(db)  # the ledger's own tables, once, under a lock, before anything uses them
    keys = ApiKeys(db)
    # The policies are the ledger's location directory, and each policy version is also a fact in
    # the log: the closure reaches `ledger` when a policy is saved, after both exist.
    channels = ChannelPolicies(db, record=lambda command: ledger.execute(command))
    ledger = Ledger(
        env, locations=locations or channels, checks=settings.order_checks, cache_size=settings.writer_cache_size
    )

    projector = Projector(db, ledger.app, channels, record=ledger.execute)
    runner = Runner(projector, poll_seconds=1.0)
    publisher = NatsPublisher(settings.nats_url, OutboxQueue(db), replicas=settings.nats_stream_replicas)
    sweeper = Sweeper(db, ledger.submit, settings.erp_posting_deadline_seconds)
    ats_cache = AtsCache(db)
    rebuilds = RebuildJobs(projector)
    ledger.writer.on_commit.append(runner.wake)
    runner.on_commit.append(publisher.wake)  # in-process; other processes hear the outbox's NOTIFY
    projector.listeners.append(ats_cache.committed)

    mappings = SqlMappingStore(db)
    inbox = Inbox(db)
    erp_queue = ErpQueue(db)
    intake = Intake(ledger, inbox, mappings)
    erp_poster = ErpPoster(ledger, erp_queue, HttpErp(settings.erp_url) if settings.erp_url else None)
    erp_feeder = ErpFeeder(ledger, erp_queue)
    inbox_worker = InboxWorker(intake)
    reconciler = reconciliation.build(db, ledger.app, settings.reconcile_thresholds)
    scheduled = schedule.scheduled(settings, db, reconciler)  # None unless LEDGER_RECONCILE_SOURCES

    shopify_sync = build_shopify_sync(settings, db, mappings, inbox, inbox_worker.wake)

    # Passes over the whole database run in one process, the elected leader (adapters/leader.py);
    # the queues below them are claimed row by row, so every worker process drains them.
    leader = Leadership(db)
    leader.add("sweeper", sweeper)
    leader.add("erp-feeder", Loop("erp-feeder", erp_feeder.step, 0.5))
    if scheduled is not None:
        leader.add("reconcile", scheduled)
    if settings.inbox_retention_days is not None:
        retention = erasure.Retention(db, settings.inbox_retention_days)
        leader.add("inbox-retention", Loop("inbox-retention", retention.step, 3600.0))
    for recovery in shopify_sync.recoveries:
        leader.add(recovery.name, recovery)

    workers: list[Worker] = [PolicySync(channels), runner, publisher, leader, inbox_worker]
    workers += [Loop("erp-poster", erp_poster.step, 0.5)]
    workers += shopify_sync.workers
    return Container(
        settings=settings,
        db=db,
        ledger=ledger,
        keys=keys,
        channels=channels,
        projector=projector,
        runner=runner,
        publisher=publisher,
        sweeper=sweeper,
        ats_cache=ats_cache,
        rebuilds=rebuilds,
        mappings=mappings,
        inbox=inbox,
        intake=intake,
        remapper=Remapper(intake, keys),
        inbox_worker=inbox_worker,
        erp_queue=erp_queue,
        erp_feeder=erp_feeder,
        erp_poster=erp_poster,
        reconciler=reconciler,
        shopify_sync=shopify_sync,
        leader=leader,
        workers=workers,
        readiness={
            "nats": lambda: publisher.readiness,
            "projections": lambda: runner.healthy,
            "erp": lambda: (
                "not-configured" if erp_poster.gateway is None
                else "degraded" if erp_poster.breaker.state == "open" else "ok"
            ),
        },
        closers=[ats_cache.close, rebuilds.stop],
    )


__all__ = ["Container", "PolicySync", "Worker", "bootstrap"]
