"""After a PostgreSQL outage, pools try to reconnect at least every MAX_DELAY seconds.

psycopg_pool's own backoff doubles without a bound (1, 2, 4 ... 64 s): after an 80 s outage the
ledger kept failing for ~40 s more with the server back. See adapters/persistence/reconnect.py.
"""

from __future__ import annotations

import psycopg_pool.pool
import psycopg_pool.pool_async

from adapters.persistence import reconnect


def test_the_ledgers_pools_use_the_bounded_backoff():
    reconnect.install()
    assert reconnect.installed(), "psycopg_pool no longer instantiates AttemptWithBackoff by that name"
    assert psycopg_pool.pool.AttemptWithBackoff is reconnect.BoundedBackoff
    assert psycopg_pool.pool_async.AttemptWithBackoff is reconnect.BoundedBackoff
    reconnect.install()  # twice changes nothing
    assert reconnect.installed()


def test_the_delay_between_attempts_grows_as_before_but_stops_at_the_bound():
    attempt = reconnect.BoundedBackoff(timeout=300.0)
    delays = []
    for step in range(20):
        attempt.update_delay(now=float(step))
        delays.append(attempt.delay)
    assert 0.9 <= delays[0] <= 1.1  # psycopg_pool's first delay, with its jitter
    assert delays[1] == min(2 * delays[0], reconnect.MAX_DELAY)
    assert max(delays) <= reconnect.MAX_DELAY
    assert delays[-1] == reconnect.MAX_DELAY  # it still retries, every MAX_DELAY seconds


def test_a_reconnection_still_gives_up_at_the_pools_reconnect_timeout():
    attempt = reconnect.BoundedBackoff(timeout=5.0)
    attempt.update_delay(now=0.0)
    assert not attempt.time_to_give_up(now=4.0)
    assert attempt.time_to_give_up(now=5.0)
