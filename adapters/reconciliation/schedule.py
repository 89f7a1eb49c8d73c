"""Scheduled reconciliation: every `LEDGER_RECONCILE_INTERVAL_SECONDS`, each source named in
`LEDGER_RECONCILE_SOURCES` (`shopify`, `erp`) is pulled through its `InventorySnapshotSource`
and reconciled. Registered as a worker only when sources are configured."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from adapters.loop import Loop
from adapters.persistence.db import Database
from adapters.reconciliation.engine import Reconciler
from adapters.reconciliation.ports import InventorySnapshotSource
from adapters.reconciliation.sources import HttpErpInventory, ShopifyApiLevels, ShopifyObservedLevels

log = logging.getLogger("ledger.reconcile")


class ScheduledReconciliation:
    def __init__(
        self,
        reconciler: Reconciler,
        sources: Sequence[InventorySnapshotSource],
        interval: float,
    ) -> None:
        self.reconciler = reconciler
        self.sources = list(sources)
        self.last: dict[str, dict[str, Any]] = {}  # source -> summary of its last run (or error)
        self._loop = Loop("reconcile", self._step, poll=interval)

    def run_once(self) -> dict[str, dict[str, Any]]:
        for src in self.sources:
            try:
                snap = src.snapshot()
                if snap is None:
                    self.last[src.source] = {"status": "no snapshot"}
                    continue
                report = self.reconciler.reconcile(snap)
                self.last[src.source] = {
                    "status": "ok",
                    "id": report["id"],
                    "compared": report["compared"],
                    "mismatches": len(report["mismatches"]),
                }
            except Exception as e:  # one failing source never stops the others
                log.warning("scheduled reconciliation of %s failed: %s", src.source, type(e).__name__)
                self.last[src.source] = {"status": "failed", "error": str(e)[:200]}
        return self.last

    def start(self) -> None:
        self._loop.start()

    def stop(self) -> None:
        self._loop.stop()

    def _step(self) -> int:
        self.run_once()
        return 0  # then wait an interval


def scheduled(settings: Any, db: Database, reconciler: Reconciler) -> ScheduledReconciliation | None:
    # `settings` is `adapters.config.Settings` (not imported: config imports the thresholds from here)
    """The scheduled job when `LEDGER_RECONCILE_SOURCES` names sources, else None."""
    names = [s.strip() for s in (settings.reconcile_sources or "").split(",") if s.strip()]
    sources: list[InventorySnapshotSource] = []
    for name in names:
        if name == "shopify" and settings.shopify_tokens:  # Shopify's own levels, through its API
            from adapters.shopify_admin import AdminClient

            clients = [
                AdminClient(shop, token, settings.shopify_admin_url, settings.shopify_api_version)
                for shop, token in sorted(settings.shopify_tokens.items())
            ]
            sources.append(ShopifyApiLevels(db, clients))
        elif name == "shopify":
            sources.append(ShopifyObservedLevels(db))
        elif name == "erp" and settings.erp_url:
            sources.append(HttpErpInventory(settings.erp_url))
        else:
            raise ValueError(
                f"LEDGER_RECONCILE_SOURCES: cannot pull {name!r} (shopify, or erp with LEDGER_ERP_URL)"
            )
    if not sources:
        return None
    return ScheduledReconciliation(reconciler, sources, settings.reconcile_interval_seconds)
