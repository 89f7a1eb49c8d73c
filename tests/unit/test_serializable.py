"""Group commit is serializable: any concurrent interleaving equals some serial order.

A random list of commands runs concurrently through the writer (several submitting threads, so
batches mix them). The commit order is read back from the event log (each event carries its
command's correlation id). Replaying the accepted commands one by one, in that order, on a fresh
ledger must accept every one of them with the same answer and reach the same final state.
"""

from __future__ import annotations

import tempfile
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.persistence.urls import ledger_env
from ledger import commands as c
from ledger.errors import LedgerError
from ledger.service import Ledger

LOCS = ("L1", "L2")
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)

op = st.one_of(
    st.tuples(st.just("receive"), st.sampled_from(LOCS), st.integers(1, 10)),
    st.tuples(st.just("reserve"), st.sampled_from(LOCS), st.integers(1, 4), st.integers(0, 5), st.booleans()),
    st.tuples(st.just("release"), st.sampled_from(LOCS), st.integers(1, 3), st.integers(0, 5)),
    st.tuples(st.just("adjust"), st.sampled_from(LOCS), st.integers(-4, 4).filter(bool)),
    st.tuples(st.just("transfer"), st.sampled_from(LOCS), st.integers(1, 4)),
    st.tuples(st.just("sell"), st.sampled_from(LOCS), st.integers(1, 3)),
    st.tuples(st.just("expire"), st.sampled_from(LOCS)),
    st.tuples(st.just("order"), st.integers(1, 3), st.integers(1, 3)),
    st.tuples(st.just("repeat"), st.integers(0, 1000)),
)


def build_all(ops: list[tuple[Any, ...]]) -> list[c.Command]:
    """The commands; a `repeat` sends an earlier keyed command again (same key and content, its
    own correlation id), as a client retrying would."""
    cmds: list[c.Command] = []
    for i, o in enumerate(ops):
        keyed = [cmd for cmd in cmds if cmd.key]
        if o[0] == "repeat" and keyed:
            cmds.append(replace(keyed[o[1] % len(keyed)], cause={"correlation_id": f"c{i}"}))
        else:
            cmds.append(build(i, o if o[0] != "repeat" else ("receive", "L1", 1)))
    return cmds


def build(i: int, o: tuple[Any, ...]) -> c.Command:
    cause = {"correlation_id": f"c{i}"}
    kind, loc = o[0], o[1]
    if kind == "receive":
        return c.ReceiveStock(sku="A", location=loc, quantity=o[2], reference=f"r{i}", cause=cause)
    if kind == "reserve":
        expires = NOW - timedelta(minutes=1) if o[4] else NOW + timedelta(hours=1)
        return c.Reserve(
            sku="A",
            location=loc,
            order_id=f"cart{o[3]}",
            line_id=f"{i}",
            quantity=o[2],
            expires_at=expires,
            cause=cause,
        )
    if kind == "release":
        return c.ReleaseReservation(
            sku="A",
            location=loc,
            reservation_id=f"cart{o[3]}/{i - 1}",
            quantity=o[2],
            reason="cancelled",
            reference=f"rel{i}",
            cause=cause,
        )
    if kind == "adjust":
        return c.AdjustStock(
            sku="A", location=loc, delta=o[2], reason="count", reference=f"a{i}", cause=cause
        )
    if kind == "transfer":
        other = LOCS[1 - LOCS.index(loc)]
        return c.TransferStock(
            sku="A", from_location=loc, to_location=other, quantity=o[2], reference=f"t{i}", cause=cause
        )
    if kind == "sell":
        return c.SellDirect(sku="A", location=loc, quantity=o[2], reference=f"s{i}", cause=cause)
    if kind == "expire":
        return c.ReleaseExpired(sku="A", location=loc, now=NOW, cause=cause)
    return c.CaptureOrder(
        order_id=f"o{i}",
        channel="web",
        cause=cause,
        lines=(
            {"line_id": "1", "sku": "A", "quantity": o[1], "location": "L1"},
            {"line_id": "2", "sku": "A", "quantity": o[2], "location": "L2"},
        ),
    )


def run_concurrently(ledger: Ledger, cmds: list[c.Command], threads: int) -> dict[int, Any]:
    outcomes: dict[int, Any] = {}
    lock = threading.Lock()

    def worker(k: int) -> None:
        futures = [(i, ledger.submit(cmds[i])) for i in range(k, len(cmds), threads)]
        for i, f in futures:
            try:
                r: Any = f.result(timeout=60)
            except LedgerError as e:
                r = e
            with lock:
                outcomes[i] = r

    ts = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return outcomes


def commit_order(ledger: Ledger) -> list[int]:
    """A serial order of the accepted commands consistent with every stream's event order.

    Within one batch the log groups events by aggregate, so the order is rebuilt from the
    streams: a command precedes another when it wrote earlier on some shared stream. A cycle
    would mean no serial order explains the log.
    """
    first: dict[int, int] = {}
    streams: dict[Any, list[tuple[int, int]]] = {}
    for n in ledger.app.recorder.select_notifications(start=1, limit=100_000):
        cid = (getattr(ledger.app.mapper.to_domain_event(n), "cause", None) or {}).get("correlation_id")
        if cid:
            i = int(cid[1:])
            first.setdefault(i, n.id)
            streams.setdefault(n.originator_id, []).append((n.originator_version, i))
    after: dict[int, set[int]] = {i: set() for i in first}
    before: dict[int, int] = {i: 0 for i in first}
    for events in streams.values():
        seq = [i for _, i in sorted(events)]
        for a, b in zip(seq, seq[1:], strict=False):
            if a != b and b not in after[a]:
                after[a].add(b)
                before[b] += 1
    ready = sorted((first[i], i) for i in first if before[i] == 0)
    order: list[int] = []
    while ready:
        _, i = ready.pop(0)
        order.append(i)
        for j in after[i]:
            before[j] -= 1
            if before[j] == 0:
                ready.append((first[j], j))
        ready.sort()
    assert len(order) == len(first), "the streams' orders contradict each other: not serializable"
    return order


def state(ledger: Ledger) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for loc in LOCS:
        s = ledger.history.stock("A", loc)
        out[loc] = (
            None if s is None else (s.on_hand, s.reserved, s.unavailable, s.version, dict(s.reservations))
        )
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(op, min_size=8, max_size=60), threads=st.integers(2, 6))
def test_any_interleaving_equals_replaying_the_commit_order_serially(ops, threads):
    cmds = build_all(ops)
    with tempfile.TemporaryDirectory() as d:
        with Ledger(ledger_env(f"sqlite:///{d}/concurrent.db")) as concurrent:
            outcomes = run_concurrently(concurrent, cmds, threads)
            order = commit_order(concurrent)
            final = state(concurrent)
            concurrent.writer.evict()
            assert state(concurrent) == final  # cached state == stored state
        accepted = {i for i, r in outcomes.items() if not isinstance(r, BaseException)}
        assert set(order) <= accepted  # nothing refused left an event behind
        with Ledger(ledger_env(f"sqlite:///{d}/serial.db")) as serial:
            for i in order:
                assert serial.execute(cmds[i]) == outcomes[i], f"command {i} answered differently"
            assert state(serial) == final
        # A command accepted without events changed nothing: nothing had expired, or it repeats a
        # key recorded first by another command, whose answer it gets.
        for i in accepted - set(order):
            if outcomes[i].get("duplicate"):
                first = [j for j in order if cmds[j].key == cmds[i].key]
                assert len(first) == 1 and outcomes[i] == {**outcomes[first[0]], "duplicate": True}
            else:
                assert isinstance(cmds[i], c.ReleaseExpired) and outcomes[i]["released"] == 0


# ---------------------------------------------------------------- stored format


def _mappers() -> tuple[Any, Any]:
    from eventsourcing.persistence import JSONTranscoder, Mapper

    from adapters.persistence.transcoder import OrjsonTranscoder
    from ledger.application import LedgerApplication

    app = LedgerApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    out = []
    for cls in (JSONTranscoder, OrjsonTranscoder):
        t = cls()
        app.register_transcodings(t)
        out.append(Mapper(transcoder=t))
    return out[0], out[1]


@settings(max_examples=30, deadline=None)
@given(ops=st.lists(op, min_size=1, max_size=15))
def test_the_fast_transcoder_reads_and_writes_the_librarys_stored_format(ops):
    from ledger.stock import SkuLocation

    library, fast = _mappers()
    agg = SkuLocation.open("A", "L1", {"correlation_id": "x", "n": 1.5, "nested": {"ids": [1, 2]}})
    agg.receive(50, "r", {}, expected=False)
    for i, cmd in enumerate(build_all(ops)):
        try:
            if isinstance(cmd, c.Reserve):
                agg.reserve(cmd.order_id, cmd.line_id, cmd.quantity, {"i": i}, cmd.expires_at)
            elif isinstance(cmd, c.ReleaseExpired):
                agg.release_expired(NOW, {"i": i})
            elif isinstance(cmd, c.AdjustStock):
                agg.adjust(cmd.delta, "count", f"a{i}", {"i": i})
        except LedgerError:
            pass
    events = list(agg.collect_events()) + [SkuLocation.Snapshot.take(agg)]
    for e in events:
        a, b = library.to_stored_event(e), fast.to_stored_event(e)
        # Both read each other's bytes back to the same event.
        for stored in (a, b):
            x, y = library.to_domain_event(stored), fast.to_domain_event(stored)
            assert type(x) is type(y) and x.__dict__ == y.__dict__ == e.__dict__
        assert orjson_equal(a.state, b.state)


def orjson_equal(a: bytes, b: bytes) -> bool:
    import orjson

    return orjson.loads(a) == orjson.loads(b)
