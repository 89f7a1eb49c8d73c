"""Concurrent deliveries are stored a batch per transaction (`Inbox.stores`), each exactly as
`Inbox.store` would store it alone: once per delivery id, repeats counted, ids in arrival order."""

from __future__ import annotations

import asyncio

import orjson
import psycopg
import pytest

from adapters.config import Settings
from adapters.inbox import Delivery, Status, Stored, fingerprint
from bootstrap import bootstrap


def _delivery(external_id: str, n: int) -> Delivery:
    payload = {"id": n, "line_items": []}
    headers = {"x-shopify-topic": "orders/create"}
    return Delivery("shopify", external_id, "orders/create", orjson.dumps(payload), headers, fingerprint(payload))


def test_concurrent_deliveries_are_stored_once_each_in_few_transactions(database_url: str) -> None:
    c = bootstrap(Settings(database_url=database_url))
    try:
        # 150 delivery ids; every fifth is delivered again, some of them twice, inside the same burst.
        sent = [f"wh-{i}" for i in range(150)]
        sent += [f"wh-{i}" for i in range(0, 150, 5)] + [f"wh-{i}" for i in range(0, 150, 25)]
        before = c.inbox.stores.batches

        async def burst() -> list[Stored]:
            return await asyncio.gather(
                *(c.inbox.stores.submit(_delivery(e, int(e[3:]))) for e in sent)
            )

        answers = asyncio.run(burst())
        by_id: dict[str, list[Stored]] = {}
        for e, a in zip(sent, answers, strict=True):
            by_id.setdefault(e, []).append(a)
        for e, stored in by_id.items():
            assert [s.created for s in stored] == [True] + [False] * (len(stored) - 1), e
            assert len({s.row["id"] for s in stored}) == 1, e
            assert {s.row["status"] for s in stored} == {str(Status.RECEIVED)}
        rows = c.db.query("SELECT external_id, deliveries FROM inbox ORDER BY id")
        # one row per delivery id, in the order they first arrived, each repeat counted
        assert [r["external_id"] for r in rows] == [f"wh-{i}" for i in range(150)]
        assert {r["external_id"]: r["deliveries"] for r in rows} == {e: len(s) for e, s in by_id.items()}
        # The burst went out in a handful of transactions, not one per delivery.
        assert c.inbox.stores.batches - before < 10
        # A later delivery of a stored id, alone, is a repeat too.
        again = asyncio.run(c.inbox.stores.submit(_delivery("wh-7", 7)))
        assert not again.created and again.row["id"] == by_id["wh-7"][0].row["id"]
    finally:
        c.close()


def test_a_delivery_the_database_refuses_fails_alone_and_its_batch_is_stored(pg_url: str) -> None:
    c = bootstrap(Settings(database_url=pg_url))
    try:

        async def burst() -> list[Stored | BaseException]:
            return await asyncio.gather(
                c.inbox.stores.submit(_delivery("good-1", 1)),
                c.inbox.stores.submit(_delivery("bad\x00id", 2)),  # PostgreSQL text holds no NUL
                c.inbox.stores.submit(_delivery("good-2", 3)),
                return_exceptions=True,
            )

        good_1, bad, good_2 = asyncio.run(burst())
        assert isinstance(bad, psycopg.DataError | ValueError)
        assert isinstance(good_1, Stored) and good_1.created
        assert isinstance(good_2, Stored) and good_2.created
        ids = [r["external_id"] for r in c.db.query("SELECT external_id FROM inbox ORDER BY id")]
        assert ids == ["good-1", "good-2"]
    finally:
        c.close()


@pytest.mark.parametrize("repeat", [1, 3])
def test_store_many_answers_as_store_answers(database_url: str, repeat: int) -> None:
    """The same deliveries through `store` one by one and through `store_many` at once."""
    c = bootstrap(Settings(database_url=database_url))
    try:
        deliveries = [_delivery(f"x-{i % 4}", i % 4) for i in range(4 * repeat)]
        many = c.inbox.store_many(deliveries)
        assert [s.created for s in many] == [True] * 4 + [False] * (4 * (repeat - 1))
        alone = c.inbox.store(
            "shopify", "x-0", "orders/create", deliveries[0].body, deliveries[0].headers, deliveries[0].print_
        )
        assert not alone.created and alone.row["id"] == many[0].row["id"]
        assert alone.row["deliveries"] == repeat + 1
    finally:
        c.close()
