"""The write path's two new pieces.

- `LedgerPostgresRecorder.insert_events`: a batch's events and command rows go in ONE statement
  (a plpgsql function that locks the events table, notifies, inserts the command rows, then the
  events), with the arrays sent as binary parameters.
- `Writer.submit_async` / `Ledger.submit_async`: asyncio callers, answered one loop wake-up per batch.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import uuid
import weakref
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from uuid import UUID

import psycopg
import pytest
from eventsourcing.persistence import IntegrityError, StoredEvent
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

from adapters.persistence.postgres import LedgerPostgresRecorder
from adapters.persistence.urls import ledger_env, pg_conninfo, pg_parts
from ledger import commands as c
from ledger.errors import InsufficientStockError, InvalidCommandError
from ledger.service import Ledger

# Text that text-array literals must quote or escape, or that they would read as something else.
AWKWARD_TEXT = [
    "it's",
    'say "hi"',
    "back\\slash",
    "a,b",
    "{braces}",
    '{"a","b"}',
    "NULL",
    "null",
    "",
    "  padded  ",
    "new\nline\ttab\rreturn",
    "ünïcødé ✓ 𝄞 中文 🙂",
    "\\x00",
    "$BODY$",
]
AWKWARD_BYTES = [
    b"",
    b"\x00",
    b"\x00\x01\x00\x00",
    b"\xff\xfe\xfd",
    b"\\x00",
    b'{"a":"\\u0000"}',
    b"\x80 not utf-8 \xc3\x28",
    bytes(range(256)),
    b"{,}\"'\\",
    bytes(range(256)) * 64,
]


def stored_event(
    stream: UUID, version: int, topic: str = "ledger:Event", state: bytes = b"{}"
) -> StoredEvent:
    return StoredEvent(originator_id=stream, originator_version=version, topic=topic, state=state)


def new_key() -> str:
    return "receipt-line:" + uuid.uuid4().hex


def count_rows(pg_url: str, table: str) -> int:
    schema = pg_parts(pg_url)["schema"]
    with psycopg.connect(pg_conninfo(pg_url), autocommit=True) as conn:
        row = conn.execute(
            sql.SQL("SELECT count(*) FROM {}.{}").format(sql.Identifier(schema), sql.Identifier(table))
        ).fetchone()
        assert row is not None
        return row[0]


@pytest.fixture
def recorder(pg_url) -> Iterator[LedgerPostgresRecorder]:
    with Ledger(ledger_env(pg_url)) as ledger:  # creates the tables and the append function
        recorder = ledger.app.recorder
        assert isinstance(recorder, LedgerPostgresRecorder)
        yield recorder


# ---------------------------------------------------------------- PostgreSQL: one statement per batch


@pytest.mark.postgres
def test_append_returns_one_increasing_position_per_event_in_the_order_given(recorder):
    a, b, d = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    events = [
        stored_event(a, 1),
        stored_event(b, 1),
        stored_event(a, 2),
        stored_event(d, 1),
        stored_event(b, 2),
    ]

    positions = recorder.insert_events(events, commands=[(new_key(), "fp", {"n": 1})])

    assert len(positions) == len(events)
    assert all(p < q for p, q in zip(positions, positions[1:], strict=False))
    # Each returned position is the one the event given at that place was stored at.
    at = {p: e for stream in (a, b, d) for p, e in recorder.select_stream(stream, None, 100)}
    assert [at[p] for p in positions] == events
    later = recorder.insert_events([stored_event(a, 3)])
    assert len(later) == 1 and later[0] > positions[-1]


@pytest.mark.postgres
@pytest.mark.parametrize("clash", ["recorded-before", "twice-in-the-call"])
def test_a_taken_command_key_fails_the_whole_call_and_stores_nothing_of_it(pg_url, recorder, clash):
    a, b = uuid.uuid4(), uuid.uuid4()
    recorded, fresh = new_key(), new_key()
    recorder.insert_events([stored_event(a, 1)], commands=[(recorded, "fp-1", {"on_hand": 1})])
    commands_before = count_rows(pg_url, recorder.commands_table)
    position_before = recorder.max_position()
    taken = recorded if clash == "recorded-before" else fresh

    with pytest.raises(IntegrityError):
        recorder.insert_events(
            [stored_event(b, 1), stored_event(a, 2)],
            commands=[(fresh, "fp-2", {"on_hand": 2}), (taken, "fp-3", {"on_hand": 3})],
        )

    assert recorder.select_commands([recorded, fresh]) == {recorded: ("fp-1", {"on_hand": 1})}
    assert count_rows(pg_url, recorder.commands_table) == commands_before
    assert recorder.select_events(a) == [stored_event(a, 1)]
    assert recorder.select_events(b) == []
    assert recorder.max_position() == position_before
    # The failed call's transaction (and its table lock) is gone: the next append goes through.
    assert len(recorder.insert_events([stored_event(b, 1)], commands=[(fresh, "fp-2", {})])) == 1


@pytest.mark.postgres
@pytest.mark.parametrize("clash", ["stored-before", "twice-in-the-call"])
def test_a_taken_stream_version_fails_the_call_and_its_command_rows_are_not_stored(pg_url, recorder, clash):
    a, b = uuid.uuid4(), uuid.uuid4()
    first = stored_event(a, 1, state=b'{"first":1}')
    recorder.insert_events([first])
    commands_before = count_rows(pg_url, recorder.commands_table)
    position_before = recorder.max_position()
    key = new_key()
    events = (
        [stored_event(b, 1), stored_event(a, 1, state=b'{"second":1}')]
        if clash == "stored-before"
        else [stored_event(b, 1), stored_event(b, 1, state=b'{"again":1}')]
    )

    with pytest.raises(IntegrityError):
        recorder.insert_events(events, commands=[(key, "fp", {"on_hand": 1})])

    assert recorder.select_commands([key]) == {}
    assert count_rows(pg_url, recorder.commands_table) == commands_before
    assert recorder.select_events(a) == [first]
    assert recorder.select_events(b) == []
    assert recorder.max_position() == position_before


@pytest.mark.postgres
def test_command_rows_alone_are_stored_and_return_no_positions(pg_url, recorder):
    rows = [(new_key(), f"fp-{i}", {"on_hand": i, "note": "only a command"}) for i in range(3)]

    positions = recorder.insert_events([], commands=rows)

    assert not positions
    assert recorder.select_commands([k for k, _, _ in rows]) == {k: (fp, out) for k, fp, out in rows}
    assert recorder.max_position() == 0
    assert count_rows(pg_url, recorder.events_table_name) == 0


@pytest.mark.postgres
def test_a_call_with_neither_events_nor_command_rows_stores_nothing(pg_url, recorder):
    assert recorder.insert_events([], commands=[]) is None
    assert recorder.insert_events([]) is None
    assert count_rows(pg_url, recorder.commands_table) == 0
    assert count_rows(pg_url, recorder.events_table_name) == 0


@pytest.mark.postgres
def test_awkward_topics_states_keys_and_outcomes_survive_byte_for_byte(recorder):
    stream = uuid.uuid4()
    n = max(len(AWKWARD_TEXT), len(AWKWARD_BYTES))
    events = [
        stored_event(
            stream, i + 1, AWKWARD_TEXT[i % len(AWKWARD_TEXT)], AWKWARD_BYTES[i % len(AWKWARD_BYTES)]
        )
        for i in range(n)
    ]
    # Keys must be unique: the awkward text alone, and once more behind a quote and a brace.
    keys = AWKWARD_TEXT + ["'{" + t for t in AWKWARD_TEXT]
    rows = [(k, AWKWARD_TEXT[-1 - i % len(AWKWARD_TEXT)], {"k": k, "i": i}) for i, k in enumerate(keys)]

    positions = recorder.insert_events(events, commands=rows)

    assert len(positions) == n
    assert recorder.select_events(stream) == events
    assert [e for _, e in recorder.select_stream(stream, None, 100)] == events
    assert recorder.select_commands(keys) == {k: (fp, out) for k, fp, out in rows}


# Any text PostgreSQL can hold (no NUL, no lone surrogates), any bytes.
pg_text = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=40)


@pytest.mark.postgres
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    events=st.lists(st.tuples(pg_text, st.binary(max_size=300)), min_size=1, max_size=6),
    commands=st.lists(st.tuples(pg_text, pg_text, pg_text), max_size=4),
)
def test_any_text_and_bytes_round_trip_through_the_binary_arrays(recorder, events, commands):
    stream = uuid.uuid4()
    stored = [stored_event(stream, i + 1, topic, state) for i, (topic, state) in enumerate(events)]
    # Keys are unique across examples (one schema serves them all): the drawn text, made unique.
    rows = [(f"{key}\x1f{uuid.uuid4().hex}", fp, {"note": note}) for key, fp, note in commands]

    assert len(recorder.insert_events(stored, commands=rows)) == len(stored)

    assert recorder.select_events(stream) == stored
    assert recorder.select_commands([k for k, _, _ in rows]) == {k: (fp, out) for k, fp, out in rows}


@pytest.mark.postgres
def test_an_append_with_events_notifies_the_recorders_channel(pg_url, recorder):
    with psycopg.connect(pg_conninfo(pg_url), autocommit=True) as listener:
        listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(recorder.channel_name)))

        recorder.insert_events([stored_event(uuid.uuid4(), 1)], commands=[(new_key(), "fp", {})])

        notes = list(listener.notifies(timeout=30, stop_after=1))
    # One or more: the channel is the database's, and a writer left running by another test of
    # this database may notify it in the same moment.
    assert notes and {n.channel for n in notes} == {recorder.channel_name}


@pytest.mark.postgres
def test_concurrent_appends_on_different_streams_succeed_and_each_calls_positions_are_consecutive(recorder):
    calls, events_per_call = 25, 8
    start = threading.Barrier(2)

    def append(worker: int) -> list[list[int]]:
        stream = uuid.uuid4()
        start.wait(timeout=30)
        out = []
        for n in range(calls):
            events = [stored_event(stream, n * events_per_call + v) for v in range(1, events_per_call + 1)]
            out.append(list(recorder.insert_events(events, commands=[(f"w{worker}:{stream}:{n}", "fp", {})])))
        return out

    with ThreadPoolExecutor(2) as pool:
        results = [p for worker in pool.map(append, range(2)) for p in worker]

    assert len(results) == 2 * calls
    for positions in results:  # no other call's event landed inside a call's positions
        assert positions == list(range(positions[0], positions[0] + events_per_call))
    every = [p for positions in results for p in positions]
    assert len(set(every)) == len(every) == 2 * calls * events_per_call


# ---------------------------------------------------------------- asyncio callers: submit_async


async def caller(ledger: Ledger, command: c.Command) -> dict[str, Any]:
    return await ledger.submit_async(command)


def test_two_hundred_coroutines_awaiting_submit_async_each_get_their_outcome(database_url):
    cmds = [c.ReceiveStock(sku="S", location="WH", quantity=1, reference=f"r{i}") for i in range(200)]
    with Ledger(ledger_env(database_url)) as ledger:

        async def main() -> list[dict[str, Any]]:
            return await asyncio.gather(*(caller(ledger, cmd) for cmd in cmds))

        outcomes = asyncio.run(main())

        # Decided in submission order, as `execute` one after the other would have.
        assert [o["on_hand"] for o in outcomes] == list(range(1, 201))
        assert not any(o.get("duplicate") for o in outcomes)
        assert ledger.history.stock("S", "WH").on_hand == 200
        # Each coroutine got the outcome that was recorded for its command.
        repeats = [ledger.submit(cmd) for cmd in cmds]
        assert [f.result(timeout=60) for f in repeats] == [{**o, "duplicate": True} for o in outcomes]


def test_a_refused_command_raises_its_error_in_the_awaiting_coroutine(database_url):
    with Ledger(ledger_env(database_url)) as ledger:
        ledger.receive("S", "WH", 5, "in")

        async def main() -> dict[str, Any]:
            with pytest.raises(InsufficientStockError):
                await ledger.submit_async(
                    c.Reserve(sku="S", location="WH", order_id="o1", line_id="1", quantity=6)
                )
            return await ledger.submit_async(
                c.Reserve(sku="S", location="WH", order_id="o2", line_id="1", quantity=5)
            )

        granted = asyncio.run(main())
        assert granted["reserved"] == 5 and granted["available"] == 0
        assert ledger.history.stock("S", "WH").reserved == 5


def test_an_invalid_command_raises_at_validation_in_the_awaiting_coroutine_not_at_submit(database_url):
    with Ledger(ledger_env(database_url)) as ledger:

        async def main() -> None:
            answer = ledger.submit_async(c.ReceiveStock(sku="S", location="WH", quantity=0, reference="r"))
            with pytest.raises(InvalidCommandError):
                await answer

        asyncio.run(main())
        assert ledger.history.stock("S", "WH") is None


def test_grants_and_refusals_of_one_busy_run_each_reach_their_own_coroutine(database_url):
    with Ledger(ledger_env(database_url)) as ledger:
        ledger.receive("S", "WH", 30, "in")
        cmds = [
            c.Reserve(sku="S", location="WH", order_id=f"o{i}", line_id="1", quantity=1) for i in range(50)
        ]

        async def main() -> list[Any]:
            return await asyncio.gather(*(caller(ledger, cmd) for cmd in cmds), return_exceptions=True)

        results = asyncio.run(main())

        assert all(isinstance(r, dict) for r in results[:30])  # first come, first served
        assert all(isinstance(r, InsufficientStockError) for r in results[30:])
        assert ledger.history.stock("S", "WH").reserved == 30


@pytest.mark.parametrize("cancel", ["the-awaiting-task", "the-future"])
def test_cancelling_an_asyncio_caller_does_not_withdraw_its_command(database_url, cancel):
    cmd = c.ReceiveStock(sku="S", location="WH", quantity=4, reference="cancelled")
    with Ledger(ledger_env(database_url)) as ledger:
        ledger.receive("S", "WH", 1, "warm")
        held, release = threading.Event(), threading.Event()

        def hold(aggregates: list[Any]) -> None:  # the writer waits here, the batch decided, not saved
            held.set()
            release.wait(timeout=30)

        loop_errors: list[dict[str, Any]] = []

        async def main() -> dict[str, Any]:
            asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: loop_errors.append(ctx))
            try:
                if cancel == "the-future":
                    answer = ledger.submit_async(cmd)
                    await asyncio.to_thread(held.wait, 30)
                    assert answer.cancel()
                else:
                    task = asyncio.create_task(caller(ledger, cmd))
                    await asyncio.to_thread(held.wait, 30)
                    assert task.cancel()
                    with pytest.raises(asyncio.CancelledError):
                        await task
            finally:
                ledger.writer.before_save = None
                release.set()
            # Queued behind the cancelled command: answered once that one's answer was handed over.
            return await ledger.submit_async(
                c.ReceiveStock(sku="S", location="WH", quantity=1, reference="after")
            )

        ledger.writer.before_save = hold
        after = asyncio.run(main())

        assert held.is_set()
        assert after["on_hand"] == 1 + 4 + 1
        assert loop_errors == []  # the late answer for the cancelled caller was dropped quietly
        assert ledger.execute(cmd)["duplicate"] is True
        assert ledger.history.stock("S", "WH").on_hand == 6


def test_two_event_loops_in_two_threads_submitting_together_both_get_their_answers(database_url):
    per_loop = 100
    with Ledger(ledger_env(database_url)) as ledger:
        start = threading.Barrier(2)

        def run(name: str) -> list[dict[str, Any]]:
            cmds = [
                c.ReceiveStock(sku="S", location="WH", quantity=1, reference=f"{name}-{i}")
                for i in range(per_loop)
            ]

            async def main() -> list[dict[str, Any]]:
                start.wait(timeout=30)
                return await asyncio.gather(*(caller(ledger, cmd) for cmd in cmds))

            return asyncio.run(main())

        with ThreadPoolExecutor(2) as pool:
            first, second = pool.map(run, ["a", "b"])

        assert len(first) == len(second) == per_loop
        # Both loops' commands went to the same SKU, often in the same batches.
        assert sorted(o["on_hand"] for o in first + second) == list(range(1, 2 * per_loop + 1))
        for outcomes in (first, second):
            on_hand = [o["on_hand"] for o in outcomes]
            assert on_hand == sorted(on_hand)  # each loop's commands in its own submission order
        assert ledger.history.stock("S", "WH").on_hand == 2 * per_loop


def test_a_finished_event_loop_is_not_kept_alive_by_the_writer(sqlite_url):
    with Ledger(ledger_env(sqlite_url)) as ledger:
        loops: list[weakref.ref[asyncio.AbstractEventLoop]] = []

        async def main() -> dict[str, Any]:
            loops.append(weakref.ref(asyncio.get_running_loop()))
            return await ledger.submit_async(
                c.ReceiveStock(sku="S", location="WH", quantity=1, reference="r")
            )

        assert asyncio.run(main())["on_hand"] == 1
        gc.collect()
        assert loops[0]() is None
