"""A PostgreSQL outage met by the inbox translator: the message stays due, it is not rejected.

(Keyed HTTP write load through an outage is test_postgres_outage_under_load, with the service in
a process of its own.) The database is a private server (see private_servers), crashed and
started again."""

from __future__ import annotations

import orjson
import pytest
from private_servers import PrivatePostgres, schema_url

from adapters.config import Settings
from adapters.mappings import Lookup
from adapters.persistence.db import OUTAGE_ERRORS
from adapters.persistence.urls import ensure_pg_schema
from adapters.translate import Park
from bootstrap import bootstrap

pytestmark = pytest.mark.postgres


def test_a_message_translated_while_the_database_is_down_stays_due_and_is_not_rejected(
    private_pg: PrivatePostgres,
) -> None:
    """A translator's mapping lookup that meets the outage fails the step (the inbox row stays due
    for the next one); it does not reject the message as untranslatable."""
    url = schema_url(private_pg)
    ensure_pg_schema(url)
    container = bootstrap(Settings(database_url=url, run_workers=False))
    sale = {"txn_id": "T1", "type": "sale", "occurred_at": "2026-11-20T10:00:00Z",
            "lines": [{"item": "I1", "quantity": 1}]}
    body = orjson.dumps({"store": "S1", "batch_id": "B1", "sequence": 1, "transactions": [sale]})
    row = {"id": 1, "source": "pos", "external_id": '["S1", "B1"]', "kind": "batch", "body": body}
    try:
        private_pg.crash()
        try:
            with pytest.raises(OUTAGE_ERRORS):
                container.intake.translate(row, Lookup(container.mappings, "pos"))
        finally:
            private_pg.start()
        back = container.intake.translate(row, Lookup(container.mappings, "pos"))
        assert isinstance(back, Park)  # the store is not mapped: parked, as without the outage
    finally:
        container.close()
