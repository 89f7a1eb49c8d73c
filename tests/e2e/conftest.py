"""Fixtures of the HTTP tests: an app over a real database and one key per scope (see e2e_api)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from e2e_api import Api, make_api


@pytest.fixture
def api(sqlite_url: str) -> Iterator[Api]:
    yield from make_api(sqlite_url)


@pytest.fixture
def any_api(database_url: str) -> Iterator[Api]:
    """The same app once on SQLite and once on PostgreSQL."""
    yield from make_api(database_url)
