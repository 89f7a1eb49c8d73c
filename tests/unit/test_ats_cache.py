"""The ATS cache serves only values the read model holds at the position it reports."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from adapters.channels import ChannelPolicy
from adapters.config import Settings
from adapters.keys import MISS, ApiKeys
from bootstrap import Container, bootstrap
from ledger import commands as c
from projections.cache import AtsCache
from projections.rebuild import rebuild
from projections.runner import Projector

FOREVER = 3600.0  # the version check never lapses by itself in these tests: each step is explicit


class Clock:
    """A monotonic clock moved by the test: a lapse is checked without a
    wall-clock race (a busy machine could let 0.2 s pass between two lines)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@dataclass
class World:
    container: Container
    cache: AtsCache
    channel: str

    @property
    def projector(self) -> Projector:
        return self.container.projector  # type: ignore[no-any-return]  # the container's

    def receive(self, sku: str, quantity: int, location: str = "W1") -> None:
        ref = uuid.uuid4().hex
        self.container.ledger.execute(
            c.ReceiveStock(sku=sku, location=location, quantity=quantity, reference=ref)
        )

    def head(self) -> int:
        return self.projector.head()

    def table(self, sku: str) -> int:
        row = self.container.db.query_one(
            "SELECT available FROM ats WHERE channel = %s AND sku = %s", (self.channel, sku)
        )
        return 0 if row is None else int(row["available"])


@pytest.fixture
def world(database_url: str) -> Iterator[World]:
    container = bootstrap(Settings(database_url=database_url))
    try:
        cache = AtsCache(container.db, fresh_seconds=FOREVER)
        container.projector.listeners.append(cache.committed)
        channel = "web"
        container.channels.put(ChannelPolicy(channel=channel, locations=("W1",)), actor="test")
        yield World(container, cache, channel)
        cache.close()
    finally:
        container.close()


def test_a_committed_batch_is_served_at_once_with_its_position(world: World) -> None:
    world.receive("A", 5)
    world.projector.catch_up()
    assert world.cache.read(world.channel, ["A"]) == [(5, world.head())]
    world.receive("A", 3)
    world.receive("B", 2)
    world.projector.catch_up()  # the projector hands the changed rows to the cache after its commit
    assert world.cache.get(world.channel, "A") == (8, world.head())
    assert world.cache.get(world.channel, "B") == (2, world.head())
    assert world.table("A") == 8


def test_a_sku_the_channel_never_saw_is_zero_and_kept(world: World) -> None:
    world.receive("A", 5)
    world.projector.catch_up()
    assert world.cache.read(world.channel, ["nope"]) == [(0, world.head())]
    assert world.cache.get(world.channel, "nope") == (0, world.head())


def test_nothing_is_served_once_the_version_check_lapses(world: World) -> None:
    world.receive("A", 5)
    world.projector.catch_up()
    clock = Clock()
    cache = AtsCache(world.container.db, fresh_seconds=0.05, clock=clock)
    try:
        assert cache.read(world.channel, ["A"]) == [(5, world.head())]
        cache.close()  # no poller: nothing checks the version again from here on
        assert cache.get(world.channel, "A") == (5, world.head())
        clock.now += 0.06
        assert cache.get(world.channel, "A") is None  # the caller reads the database again
    finally:
        cache.close()


def test_another_process_runner_is_followed_at_the_next_check(world: World) -> None:
    """SQLite: the check empties the cache. PostgreSQL: it reads the rows changed since the
    cache's version and carries every value to the new one (`AtsCache._changes`)."""
    world.receive("A", 5)
    world.receive("B", 2)
    world.projector.catch_up()
    world.cache.read(world.channel, ["A", "B"])
    world.receive("A", 1)
    other = Projector(world.container.db, world.container.ledger.app, world.container.channels)
    other.catch_up()  # a runner this cache does not hear
    assert world.cache.get(world.channel, "A") == (5, world.head() - 1)  # still truthful: 5 at that position
    world.cache.validate()
    if world.container.db.dialect == "postgres":
        assert world.cache.get(world.channel, "A") == (6, world.head())
        assert world.cache.get(world.channel, "B") == (2, world.head())  # unchanged, at the new version
    else:
        assert world.cache.get(world.channel, "A") is None
    assert world.cache.read(world.channel, ["A"]) == [(6, world.head())]


def test_a_miss_read_at_a_newer_version_waits_for_the_cache_instead_of_emptying_it(pg_url: str) -> None:
    """PostgreSQL: a value read at a newer version than the cache's is answered, kept aside, and
    joins the cache when the check carries it to that version; the cached values stay served."""
    container = bootstrap(Settings(database_url=pg_url))
    cache = AtsCache(container.db, fresh_seconds=FOREVER)
    try:
        container.channels.put(ChannelPolicy(channel="web", locations=("W1",)), actor="test")
        container.ledger.execute(c.ReceiveStock(sku="A", location="W1", quantity=5, reference="a"))
        container.projector.catch_up()
        first = container.projector.head()
        assert cache.read("web", ["A"]) == [(5, first)]
        container.ledger.execute(c.ReceiveStock(sku="B", location="W1", quantity=2, reference="b"))
        container.ledger.execute(c.ReceiveStock(sku="A", location="W1", quantity=1, reference="a2"))
        container.projector.catch_up()  # a runner this cache does not hear
        second = container.projector.head()
        assert cache.read("web", ["B"]) == [(2, second)]  # answered at the newer version
        assert cache.get("web", "A") == (5, first)  # the cache kept its own, truthful at its version
        assert cache.get("web", "B") is None  # not served before the cache reaches that version
        container.ledger.execute(c.ReceiveStock(sku="B", location="W1", quantity=4, reference="b2"))
        container.projector.catch_up()
        third = container.projector.head()
        cache.validate()  # carried over every change since: A's, and B's after it was read
        assert cache.get("web", "A") == (6, third)
        assert cache.get("web", "B") == (6, third)
        assert cache.read("web", ["A", "B"]) == [(6, third), (6, third)]
    finally:
        cache.close()
        container.close()


def test_a_check_after_a_policy_change_or_a_swapped_table_starts_again(pg_url: str) -> None:
    """A policy change may delete rows (no change position shows that) and a rebuild swaps the
    table (its rows keep their old positions): after either, the check empties the cache."""
    container = bootstrap(Settings(database_url=pg_url))
    cache = AtsCache(container.db, fresh_seconds=FOREVER)
    try:
        container.channels.put(ChannelPolicy(channel="web", locations=("W1",)), actor="test")
        container.ledger.execute(c.ReceiveStock(sku="A", location="W1", quantity=5, reference="a"))
        container.ledger.execute(c.ReceiveStock(sku="B", location="W2", quantity=3, reference="b"))
        container.projector.catch_up()
        assert cache.read("web", ["A"]) == [(5, container.projector.head())]
        container.channels.put(ChannelPolicy(channel="web", locations=("W2",)), actor="test")
        container.projector.catch_up()  # A's row is deleted: no location of web knows A now
        cache.validate()
        assert cache.get("web", "A") is None
        assert cache.read("web", ["A", "B"]) == [(0, container.projector.head()), (3, container.projector.head())]
        # A wrong value, corrected by a rebuild whose swap leaves the rows' positions as they were.
        container.db.script(["UPDATE ats SET available = 99 WHERE sku = 'B'"])
        cache.clear()
        assert cache.read("web", ["B"]) == [(99, container.projector.head())]
        # A movement the rebuild folds in its swap: the version's position moves past the cache's.
        container.ledger.execute(c.ReceiveStock(sku="C", location="W2", quantity=1, reference="c"))
        rebuild(container.projector, "ats", by="test")
        cache.validate()  # the table was swapped: not carried over
        assert cache.get("web", "B") is None
        assert cache.read("web", ["B"])[0][0] == 3
    finally:
        cache.close()
        container.close()


def test_our_runner_after_another_one_does_not_stitch_unknown_changes(world: World) -> None:
    world.receive("A", 5)
    world.receive("B", 5)
    world.projector.catch_up()
    world.cache.read(world.channel, ["A", "B"])
    world.receive("B", 1)
    Projector(world.container.db, world.container.ledger.app, world.container.channels).catch_up()
    world.receive("A", 1)
    world.projector.catch_up()  # starts after the other runner's batch: the cache missed B's change
    assert world.cache.get(world.channel, "A") == (6, world.head())
    assert world.cache.get(world.channel, "B") is None
    assert world.cache.read(world.channel, ["B"]) == [(6, world.head())]


def test_a_rebuild_marker_empties_the_cache(world: World) -> None:
    world.receive("A", 5)
    world.receive("B", 4)
    world.projector.catch_up()
    world.cache.read(world.channel, ["A", "B"])
    # A value the live table got wrong (as if by an older build): the rebuild corrects it.
    with world.container.db.transaction() as tx:
        tx.execute("UPDATE ats SET available = 99 WHERE channel = %s AND sku = %s", (world.channel, "B"))
    world.cache.clear()
    world.cache.read(world.channel, ["A", "B"])
    assert world.cache.get(world.channel, "B") == (99, world.head())
    rebuild(world.projector, "ats")  # swaps the table, then appends a marker through the writer
    world.projector.catch_up()
    assert world.cache.get(world.channel, "A") is None  # emptied by the marker
    assert world.cache.get(world.channel, "B") == (4, world.head())  # republished at the marker
    assert world.cache.read(world.channel, ["A"]) == [(5, world.head())]


def test_a_read_older_than_the_cache_is_answered_but_not_kept(world: World) -> None:
    world.receive("A", 5)
    world.projector.catch_up()
    world.cache.read(world.channel, ["A"])
    before = world.head()
    world.receive("A", 1)
    world.projector.catch_up()
    world.cache._fill((before, "0", None), time.monotonic(), {(world.channel, "A"): 5})  # a slow reader's answer
    assert world.cache.get(world.channel, "A") == (6, world.head())


# ------------------------------------------------------------------ keys


def test_a_key_verdict_is_a_lookup_until_it_lapses(sqlite_url: str, clock: Clock) -> None:
    container = bootstrap(Settings(database_url=sqlite_url))
    try:
        keys = ApiKeys(container.db, cache_seconds=0.2, clock=clock)
        _, token = keys.create("reader", ["ats:read"])
        assert keys.lookup(token) is MISS
        principal = keys.verify(token)
        assert principal is not None and keys.lookup(token) == principal
        elsewhere = ApiKeys(container.db)  # another process
        key_id = principal.key_id
        assert elsewhere.revoke(key_id, actor="test")
        clock.now += 0.15
        assert keys.lookup(token) == principal  # kept for at most cache_seconds
        clock.now += 0.1
        assert keys.lookup(token) is MISS and keys.verify(token) is None
        assert keys.lookup(token) is None  # the refusal is kept too
    finally:
        container.close()


def test_a_revoked_key_stops_at_once_in_the_revoking_process(sqlite_url: str) -> None:
    container = bootstrap(Settings(database_url=sqlite_url))
    try:
        keys = container.keys
        key_id, token = keys.create("reader", ["ats:read"])
        assert keys.verify(token) is not None
        keys.revoke(key_id, actor="test")
        assert keys.lookup(token) is MISS and keys.verify(token) is None
    finally:
        container.close()


def test_a_verdict_is_never_kept_past_the_key_expiry(sqlite_url: str, clock: Clock) -> None:
    container = bootstrap(Settings(database_url=sqlite_url))
    try:
        keys = ApiKeys(container.db, cache_seconds=FOREVER, clock=clock)
        _, token = keys.create("brief", ["ats:read"], expires_at=datetime.now(UTC) + timedelta(seconds=60))
        assert keys.verify(token) is not None
        clock.now += 30
        assert keys.lookup(token) is not MISS  # cached: the key has not expired yet
        clock.now += 31  # past the expiry: the verdict lapsed with it, whatever cache_seconds says
        assert keys.lookup(token) is MISS
    finally:
        container.close()
