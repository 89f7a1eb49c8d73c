"""Builds the whole service from settings: the one place where everything is wired.

FastAPI's lifespan and the CLI both call `bootstrap()`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from adapters.config import Settings
from adapters.keys import ApiKeys
from adapters.persistence.db import Database
from adapters.persistence.migrate import migrate
from adapters.persistence.urls import ledger_env
from ledger.ports import LocationDirectory
from ledger.service import Ledger

log = logging.getLogger("ledger.bootstrap")


@dataclass
class Container:
    settings: Settings
    db: Database
    ledger: Ledger
    keys: ApiKeys
    extras: dict[str, Any] = field(default_factory=dict)
    closers: list[Callable[[], None]] = field(default_factory=list)  # run first on close (background jobs)
    _started: list[Any] = field(default_factory=list)

    def start_workers(self) -> None:
        """Starts background workers (projection runner, publisher, ...) registered in `workers`."""
        for worker in self.extras.get("workers", []):
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
    settings = settings or Settings()
    env = ledger_env(settings.database_url)  # first: it creates the PostgreSQL schema when the URL names one
    db = Database(settings.database_url)
    migrate(db)  # the ledger's own tables, once, under a lock, before anything uses them
    keys = ApiKeys(db)
    from adapters.channels import ChannelPolicies  # channel policies: the ledger's location directory

    channels = ChannelPolicies(db)
    ledger = Ledger(env, locations=locations or channels)
    container = Container(settings=settings, db=db, ledger=ledger, keys=keys, extras={"channels": channels})
    from projections.wiring import install as install_projections  # runner, outbox relay, sweeper

    install_projections(container)
    from adapters.intake import install as install_adapters  # inbox, mappings, Shopify, POS, ERP

    install_adapters(container)
    if settings.reconcile_sources:
        from adapters.reconciliation.schedule import register as register_reconciliation

        register_reconciliation(container)
    return container
