"""Fixtures shared by the integration tests: a private PostgreSQL server per module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from private_servers import PrivatePostgres, pg_bin_dir


@pytest.fixture(scope="module")
def private_pg() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres(pg_bin_dir())
    try:
        server.init()
        server.start()
        server.create_database()
        yield server
    finally:
        server.destroy()
