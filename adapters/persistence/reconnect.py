"""A bound on how long a PostgreSQL pool waits between reconnection attempts.

psycopg_pool reconnects a pool whose connections broke with a delay that doubles after each
failed attempt (1, 2, 4 ... 64 s, until its `reconnect_timeout`, 5 minutes) and has no upper
bound. After an 80 s outage (a failover, a restart that took long) the next attempt came about
40 s after the server was back, and every command failed meanwhile. Here the delay stops growing
at `MAX_DELAY`, for every pool of the process: the library's event store's pool and the ledger's
own (`adapters/persistence/db.py`). A few connection attempts a second at a server that is down
cost it nothing.

psycopg_pool has no setting for this; the class it instantiates is replaced in its module. If a
psycopg_pool release renames it, `install()` leaves it alone and `installed()` says so (a test
checks it).
"""

from __future__ import annotations

import psycopg_pool.pool as _pool
import psycopg_pool.pool_async as _pool_async
from psycopg_pool.base import AttemptWithBackoff

MAX_DELAY = 2.0  # seconds between two reconnection attempts, at most


class BoundedBackoff(AttemptWithBackoff):
    """psycopg_pool's backoff (1 s, doubling, with jitter), never longer than MAX_DELAY."""

    def update_delay(self, now: float) -> None:
        super().update_delay(now)
        self.delay = min(self.delay, MAX_DELAY)


def install() -> None:
    """Makes every psycopg_pool pool of this process use BoundedBackoff (idempotent)."""
    for module in (_pool, _pool_async):
        if getattr(module, "AttemptWithBackoff", None) is AttemptWithBackoff:
            setattr(module, "AttemptWithBackoff", BoundedBackoff)  # noqa: B010  # a class swapped at run time


def installed() -> bool:
    return all(getattr(m, "AttemptWithBackoff", None) is BoundedBackoff for m in (_pool, _pool_async))
