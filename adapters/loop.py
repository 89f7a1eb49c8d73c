"""A background worker: calls `step()` in a thread until stopped; idles `poll` seconds when idle."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger("ledger.worker")


class Loop:
    def __init__(self, name: str, step: Callable[[], int], poll: float = 0.5) -> None:
        self.name = name
        self.step = step
        self.poll = poll
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def wake(self) -> None:
        """Asks for a step now instead of after the idle wait."""
        self._wake.set()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                done = self.step()
            except Exception:  # a worker survives a bad step and tries again later
                log.exception("%s step failed", self.name)
                done = 0
            if not done:
                self._wake.wait(self.poll)
                self._wake.clear()
