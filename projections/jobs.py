"""Rebuild jobs started from the API or the console: one at a time per read model, in the
background, and joined before the service closes its databases."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime
from typing import Any

from projections.rebuild import NAMES, rebuild


class RebuildRunningError(Exception):
    """A rebuild of that read model is already running."""


class UnknownProjectionError(Exception):
    """No read model has that name."""


class RebuildJobs:
    def __init__(self, projector: Any) -> None:
        self.projector = projector
        self._jobs: dict[str, dict[str, Any]] = {}
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def start(self, name: str, by: str) -> dict[str, Any]:
        """Starts a rebuild of `name`; returns the job (a copy)."""
        if name not in NAMES:
            raise UnknownProjectionError(name)
        with self._lock:
            if any(j["name"] == name and j["state"] == "running" for j in self._jobs.values()):
                raise RebuildRunningError(name)
            job = {
                "id": uuid.uuid4().hex[:12],
                "name": name,
                "state": "running",
                "started_at": datetime.now(UTC).isoformat(),
                "started_by": by,
            }
            self._jobs[job["id"]] = job
            thread = threading.Thread(target=self._run, args=(job,), name=f"rebuild-{name}", daemon=True)
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
            thread.start()
            return dict(job)

    def _run(self, job: dict[str, Any]) -> None:
        try:
            job["result"] = rebuild(self.projector, job["name"], by=job["started_by"])
            job["state"] = "done"
        except Exception as e:  # the job reports it; nothing half-built is visible (the swap is atomic)
            job["state"], job["error"] = "failed", type(e).__name__
        job["finished_at"] = datetime.now(UTC).isoformat()

    def recent(self, n: int = 20) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(j) for j in list(self._jobs.values())[-n:]]

    def stop(self, timeout: float = 120.0) -> None:
        """Waits for running rebuilds, so nothing reads a database that is being closed."""
        for thread in list(self._threads):
            thread.join(timeout=timeout)
