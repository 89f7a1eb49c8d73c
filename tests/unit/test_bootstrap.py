"""The one bootstrap: every component a typed field, built once, and workers with one protocol."""

from __future__ import annotations

import dataclasses

import pytest

from adapters.config import Settings
from bootstrap import Container, bootstrap


def test_the_container_is_built_once_and_never_changed_afterwards(sqlite_url: str):
    container = bootstrap(Settings(database_url=sqlite_url))
    try:
        with pytest.raises(dataclasses.FrozenInstanceError):
            container.inbox = container.inbox  # type: ignore[misc]  # frozen, on purpose
        components = {f.name for f in dataclasses.fields(Container)}
        assert {"ledger", "channels", "projector", "inbox", "mappings", "reconciler"} <= components
        assert all(getattr(container, f.name) is not None for f in dataclasses.fields(Container))
    finally:
        container.close()


def test_every_worker_starts_and_stops_through_the_same_protocol(sqlite_url: str):
    container = bootstrap(Settings(database_url=sqlite_url))
    try:
        assert container.runner in container.workers and container.inbox_worker in container.workers
        for worker in container.workers:
            assert callable(worker.start) and callable(worker.stop)
        assert set(container.readiness) >= {"nats", "projections", "erp"}
        assert container.readiness["erp"]() == "not-configured"  # no LEDGER_ERP_URL
    finally:
        container.close()
