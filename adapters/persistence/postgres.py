"""PostgreSQL event store for the ledger: the library's recorder plus the command log.

The command log (each idempotent command's first outcome) is written by the same statement as
the batch's events (`insert_events`), so both commit in one transaction or not at all.
"""

from __future__ import annotations

import functools
import inspect
import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar
from uuid import UUID

import orjson
import psycopg
from eventsourcing.persistence import (
    AggregateRecorder,
    ApplicationRecorder,
    InterfaceError,
    OperationalError,
    StoredEvent,
)
from eventsourcing.postgres import (
    PostgresAggregateRecorder,
    PostgresApplicationRecorder,
    PostgresDatastore,
    PostgresFactory,
)
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row
from psycopg.sql import SQL, Identifier

from adapters.persistence import reconnect
from adapters.persistence.urls import CONNINFO_ENV, lock_key

T = TypeVar("T")

RECONNECT_ATTEMPTS = 10  # tries of one statement whose connection failed
RECONNECT_WAIT = 0.2  # seconds between two tries
RECONNECT_BUDGET = 5.0  # seconds after the first try, after which no other try is started
_monotonic, _sleep = time.monotonic, time.sleep  # the retry's clock (a test moves its own)


def reconnecting(func: Callable[..., T]) -> Callable[..., T]:
    """A pooled connection that died with a server restart fails its first use, so a statement
    is tried again (up to RECONNECT_ATTEMPTS times, RECONNECT_WAIT apart), as the library's own
    recorder methods do, but no try starts RECONNECT_BUDGET seconds after the first.

    The library's decorator has no such bound. With the server down each try waits the pool's
    whole timeout for a connection (10 s), so ten tries held a write for 100 s before its 503:
    clients gave up first, and the answer never came. Bounded, a write the database cannot take
    is answered 503 within one pool timeout and a budget."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        started = _monotonic()
        attempt = 1
        while True:
            try:
                return func(*args, **kwargs)
            except (InterfaceError, OperationalError):
                pause = RECONNECT_WAIT * random.uniform(0.95, 1.05)
                if attempt >= RECONNECT_ATTEMPTS or _monotonic() + pause - started >= RECONNECT_BUDGET:
                    raise
                attempt += 1
                _sleep(pause)

    return wrapper


class LedgerPostgresAggregateRecorder(PostgresAggregateRecorder):
    """The snapshot store's recorder: the library's, with the bounded retry. A cold aggregate is
    loaded through it first, so with its unbounded retry one load held the writer (and every
    caller queued behind it) for ten pool timeouts, 100 s, while the server was down."""

    insert_events = reconnecting(inspect.unwrap(PostgresAggregateRecorder.insert_events))
    select_events = reconnecting(inspect.unwrap(PostgresAggregateRecorder.select_events))


class LedgerPostgresFactory(PostgresFactory):
    """The library's factory, whose pool connects with the whole libpq conninfo of
    LEDGER_DATABASE_URL (`urls.ledger_env` puts it in the environment), so host lists and
    parameters such as `target_session_attrs` or `sslmode` hold for the event store too."""

    aggregate_recorder_class = LedgerPostgresAggregateRecorder

    def __init__(self, env: Any) -> None:
        super().__init__(env)
        self._conninfo = self.env.get(CONNINFO_ENV) or ""
        if self._conninfo:  # the pool is not open yet: its connections will use these parameters
            params: dict[str, Any] = dict(conninfo_to_dict(self._conninfo))
            self.datastore.pool.kwargs = {**params, "row_factory": dict_row}

    @contextmanager
    def _ddl_lock(self) -> Iterator[None]:
        """The library's DDL, one process at a time (the start-up DDL lock of the schema, as the
        migrations take it): two processes starting together would both create the same types
        and functions, and one would fail ("tuple concurrently updated", duplicate pg_type)."""
        if not self._conninfo or not self.env_create_table():
            yield
            return
        with psycopg.connect(self._conninfo, autocommit=True) as conn:
            conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (lock_key(self.datastore.schema),))
            yield  # released with the session

    def aggregate_recorder(self, purpose: str = "events") -> AggregateRecorder:
        with self._ddl_lock():
            return super().aggregate_recorder(purpose)

    def application_recorder(self) -> ApplicationRecorder:
        with self._ddl_lock():
            return super().application_recorder()


class LedgerPostgresRecorder(PostgresApplicationRecorder):
    # The library's own statements, with its unbounded retry replaced by the bounded one.
    select_events = reconnecting(inspect.unwrap(PostgresApplicationRecorder.select_events))
    select_notifications = reconnecting(inspect.unwrap(PostgresApplicationRecorder.select_notifications))
    max_notification_id = reconnecting(inspect.unwrap(PostgresApplicationRecorder.max_notification_id))

    def __init__(self, datastore: PostgresDatastore, *, events_table_name: str = "stored_events") -> None:
        reconnect.install()  # the datastore's pool reconnects at least every 2 s after an outage
        super().__init__(datastore, events_table_name=events_table_name)
        self.commands_table = events_table_name.replace("_events", "") + "_commands"
        schema = Identifier(self.datastore.schema)
        table = Identifier(self.commands_table)
        events = Identifier(self.events_table_name)
        self.sql_create_statements.append(
            SQL(
                "CREATE TABLE IF NOT EXISTS {schema}.{table} ("
                "key text PRIMARY KEY, fingerprint text NOT NULL, outcome bytea NOT NULL, "
                "recorded_at timestamptz NOT NULL DEFAULT now())"
            ).format(schema=schema, table=table)
        )
        self._select_commands = SQL(
            "SELECT key, fingerprint, outcome FROM {schema}.{table} WHERE key = ANY(%b::text[])"
        ).format(schema=schema, table=table)
        self._has_keys_starting = SQL(
            "SELECT EXISTS (SELECT 1 FROM {schema}.{table} k, unnest(%s::text[]) p "
            "WHERE left(k.key, length(p)) = p) AS found"
        ).format(schema=schema, table=table)
        self._select_stream = SQL(
            "SELECT notification_id, originator_id, originator_version, topic, state FROM {schema}.{events} "
            "WHERE originator_id = %s AND notification_id > %s ORDER BY originator_version LIMIT %s"
        ).format(schema=schema, events=events)
        # One statement appends a batch: a function that takes the table lock, notifies, and
        # inserts the command rows and the events, in the statement's own transaction
        # (the pool's connections are in autocommit). The arrays travel in binary (`%b`):
        # psycopg dumps text arrays with a regular expression per element, the hottest write cost.
        self.append_function = self.events_table_name + "_append"
        lock_timeout = (
            f"SET LOCAL lock_timeout = '{self.datastore.lock_timeout}s';"
            if self.datastore.lock_timeout
            else ""
        )
        self.sql_create_statements.append(
            SQL(
                "CREATE OR REPLACE FUNCTION {schema}.{function}("
                "keys text[], fingerprints text[], outcomes bytea[], "
                "ids uuid[], versions bigint[], topics text[], states bytea[]) "
                "RETURNS SETOF bigint LANGUAGE plpgsql AS $BODY$ BEGIN "
                "IF cardinality(ids) > 0 THEN "
                + lock_timeout
                + " LOCK TABLE {schema}.{events} IN EXCLUSIVE MODE; NOTIFY {channel}; END IF; "
                "INSERT INTO {schema}.{table} (key, fingerprint, outcome) "
                "SELECT * FROM unnest(keys, fingerprints, outcomes); "
                "RETURN QUERY INSERT INTO {schema}.{events} (originator_id, originator_version, topic, state) "
                "SELECT * FROM unnest(ids, versions, topics, states) RETURNING notification_id; "
                "END; $BODY$"
            ).format(
                schema=schema,
                function=Identifier(self.append_function),
                events=events,
                table=table,
                channel=Identifier(self.channel_name),
            )
        )
        self._append = SQL(
            "SELECT n FROM {schema}.{function}(%b::text[], %b::text[], %b::bytea[], "
            "%b::uuid[], %b::bigint[], %b::text[], %b::bytea[]) AS n"
        ).format(schema=schema, function=Identifier(self.append_function))
        # One round trip before deciding a batch: which keys are recorded, which streams exist.
        self._lookup = SQL(
            "SELECT key, fingerprint, outcome, NULL::uuid AS id FROM {schema}.{table} WHERE key = ANY(%b::text[]) "
            "UNION ALL SELECT NULL, NULL, NULL, originator_id FROM {schema}.{events} "
            "WHERE originator_id = ANY(%b::uuid[]) AND originator_version = 1"
        ).format(schema=schema, table=table, events=events)
        self._version_at = SQL(
            "SELECT max(originator_version) AS v FROM {schema}.{events} "
            "WHERE originator_id = %s AND notification_id <= %s"
        ).format(schema=schema, events=events)

    @reconnecting
    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        """Stores a batch's events and its command rows (`commands=[(key, fingerprint, outcome)]`)
        in one statement: one round trip, one transaction. Returns the events' positions.

        As the library's insert: the table lock keeps positions in commit order, and a taken
        (stream, version) or command key raises IntegrityError with nothing stored.
        """
        if kwargs.get("tracking") is not None:
            raise NotImplementedError("the ledger's event store records no tracking")
        rows = kwargs.get("commands") or ()
        if not stored_events and not rows:
            return None
        params = (
            [r[0] for r in rows],
            [r[1] for r in rows],
            [orjson.dumps(r[2]) for r in rows],
            [e.originator_id for e in stored_events],
            [e.originator_version for e in stored_events],
            [e.topic for e in stored_events],
            [e.state for e in stored_events],
        )
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._append, params, prepare=True)
            return [r["n"] for r in curs.fetchall()]

    @reconnecting
    def lookup(
        self, keys: Sequence[str], ids: Sequence[UUID]
    ) -> tuple[dict[str, tuple[str, Any]], set[UUID]]:
        """`select_commands(keys)`, and which of the streams `ids` exist, in one round trip."""
        if not keys and not ids:
            return {}, set()
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._lookup, (list(keys), list(ids)), prepare=True)
            known: dict[str, tuple[str, Any]] = {}
            existing: set[UUID] = set()
            for r in curs.fetchall():
                if r["id"] is None:
                    known[r["key"]] = (r["fingerprint"], orjson.loads(r["outcome"]))
                else:
                    existing.add(r["id"])
            return known, existing

    @reconnecting
    def has_keys_starting(self, prefixes: Sequence[str]) -> bool:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._has_keys_starting, (list(prefixes),))
            row = curs.fetchone()
            return bool(row and row["found"])

    @reconnecting
    def select_commands(self, keys: Iterable[str]) -> dict[str, tuple[str, Any]]:
        keys = list(keys)
        if not keys:
            return {}
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._select_commands, (keys,), prepare=True)
            return {r["key"]: (r["fingerprint"], orjson.loads(r["outcome"])) for r in curs.fetchall()}

    @reconnecting
    def select_stream(
        self, originator_id: UUID, after_position: int | None, limit: int
    ) -> list[tuple[int, StoredEvent]]:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._select_stream, (originator_id, after_position or 0, limit), prepare=True)
            return [
                (
                    r["notification_id"],
                    StoredEvent(r["originator_id"], r["originator_version"], r["topic"], bytes(r["state"])),
                )
                for r in curs.fetchall()
            ]

    @reconnecting
    def version_at_position(self, originator_id: UUID, position: int) -> int | None:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._version_at, (originator_id, position), prepare=True)
            row = curs.fetchone()
            return None if row is None else row["v"]

    def max_position(self) -> int:
        return self.max_notification_id() or 0
