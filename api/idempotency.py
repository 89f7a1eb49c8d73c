"""`Idempotency-Key` for every POST: the first answer is kept durably and given again.

A key belongs to its caller (a hash of the Authorization header), so two clients never share
one. The request's fingerprint is a hash of method, path, query, If-Match and body:

- a new key: the request runs; its answer (status, body, the headers that matter) is stored
  and committed before it is sent, unless it is a 5xx, 401, 403 or 429, which a retry should be
  allowed to redo (the claim is then released);
- the same key and fingerprint again: the stored answer, with `Idempotent-Replayed: true`;
  nothing runs, so nothing is appended;
- the same key with another fingerprint: 422 `idempotency-key-reused`;
- the same key while its first request still runs: 409 `idempotency-key-in-progress` with
  `Retry-After` (a claim older than `STALE_SECONDS` is taken over, after a crash).
- the database out of reach: 503 `storage-unavailable` with Retry-After; what the claim held is
  released or stored as soon as the database is back (see `IdempotencyStore`).

Keys are kept for `KEEP_SECONDS` (24 hours); after that the same key is new again. The domain's
natural keys (a receipt's document line, an order id, a shipment id) still hold for ever.

It runs inside `BodyGuard`, which has already buffered the body. The Shopify webhook route is
left out: it de-duplicates on Shopify's own webhook id.
"""

from __future__ import annotations

import hashlib
import itertools
import threading
import time
import uuid
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from adapters.persistence.db import OUTAGE_ERRORS, Database, is_outage
from api.middleware import replaying
from api.problems import problem_response, storage_unavailable

HEADER = b"idempotency-key"
KEPT_HEADERS = {"content-type", "etag", "location", "retry-after"}
NOT_KEPT = {401, 403, 429}
STALE_SECONDS = 60.0
SKIPPED_PATHS = ("/v1/webhooks/shopify",)
MAX_KEY_LENGTH = 255
KEEP_SECONDS = 24 * 3600
PURGE_EVERY = 1000  # claims between two purges of expired keys
MAX_PENDING = 10_000  # writes an outage held back, kept in memory until the database is back
PROCESS = uuid.uuid4().hex[:16]  # this process, in the tokens of its claims
_SEQ = itertools.count()  # the claims of this process
_RUNNING: set[str] = set()  # the tokens of this process's claims whose request still runs


class IdempotencyStore:
    """The `idempotency_keys` table: one row per (caller, key), claimed first, completed after.

    Each claim carries a token (`owner`: this process's id and a counter). A write this store could
    not make because the database was out of reach (a release, an answer, or a claim whose commit
    may have succeeded though its reply was lost) is kept in memory and made before the next claim,
    so a retry after the outage finds its answer, or a free key, at once. A claim of this process
    that no request is running any more is taken over at once; other processes' claims after
    `STALE_SECONDS`.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self._claims = 0
        # (scope, key) -> (token, answer to store, or None to release the claim)
        self._pending: dict[tuple[str, str], tuple[str, tuple[int, dict[str, str], bytes] | None]] = {}
        self._lock = threading.Lock()
        self._settling = threading.Lock()

    def claim(self, scope: str, key: str, fingerprint: str) -> tuple[str | None, dict[str, Any] | None]:
        """(a token, None) when the key is now claimed for this request, else (None, the row holding it)."""
        self.settle()
        self._claims += 1
        if self._claims % PURGE_EVERY == 0:
            self.purge()
        token = f"{PROCESS}:{next(_SEQ)}"
        _RUNNING.add(token)
        try:
            row = self._claim(scope, key, fingerprint, token)
        except BaseException as e:
            _RUNNING.discard(token)
            if is_outage(e):  # the claim may be committed though its reply was lost
                self._later(scope, key, token, None)
            raise
        if row is not None:
            _RUNNING.discard(token)
            return None, row
        return token, None

    def _claim(self, scope: str, key: str, fingerprint: str, token: str) -> dict[str, Any] | None:
        now = time.time()
        with self.db.transaction() as tx:
            n = tx.execute(
                "INSERT INTO idempotency_keys (scope, key, fingerprint, claimed_at, owner) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (scope, key) DO NOTHING",
                (scope, key, fingerprint, now, token),
            ).rowcount
            if n == 1:
                return None
            row = tx.execute(
                "SELECT fingerprint, claimed_at, status, headers, body, owner FROM idempotency_keys "
                "WHERE scope = %s AND key = %s",
                (scope, key),
            ).fetchone()
            if row is None:  # released between the two statements: in progress for a moment more
                return {"status": None, "fingerprint": fingerprint, "claimed_at": now, "owner": None}
            if row["status"] is None and row["fingerprint"] == fingerprint and self._abandoned(row, now):
                taken = tx.execute(
                    "UPDATE idempotency_keys SET claimed_at = %s, owner = %s WHERE scope = %s AND key = %s "
                    "AND status IS NULL AND claimed_at = %s",
                    (now, token, scope, key, row["claimed_at"]),
                ).rowcount
                if taken == 1:
                    return None
            return row

    def _abandoned(self, row: dict[str, Any], now: float) -> bool:
        """A claim nobody runs: older than STALE_SECONDS, or this process's and no request's now."""
        if now - row["claimed_at"] > STALE_SECONDS:
            return True
        owner = row.get("owner") or ""
        return owner.startswith(PROCESS + ":") and owner not in _RUNNING

    def complete(
        self, token: str, scope: str, key: str, status: int, headers: dict[str, str], body: bytes
    ) -> None:
        """Stores the answer (committed when this returns). On an outage the answer is kept to be
        stored later, and the error raised: the answer must not be sent before it is stored."""
        try:
            self._complete(token, scope, key, status, headers, body)
        except BaseException as e:
            if is_outage(e):
                self._later(scope, key, token, (status, headers, body))
            raise
        finally:
            _RUNNING.discard(token)

    def _complete(
        self, token: str, scope: str, key: str, status: int, headers: dict[str, str], body: bytes
    ) -> None:
        self.db.execute(
            "UPDATE idempotency_keys SET status = %s, headers = %s, body = %s, completed_at = %s "
            "WHERE scope = %s AND key = %s AND owner = %s",
            (
                status,
                orjson.dumps(headers).decode(),
                body,
                time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                scope,
                key,
                token,
            ),
        )

    def release(self, token: str, scope: str, key: str) -> None:
        """Frees the claim (never raises for an outage: the release is then made later)."""
        try:
            self._release(token, scope, key)
        except BaseException as e:
            if not is_outage(e):
                raise
            self._later(scope, key, token, None)
        finally:
            _RUNNING.discard(token)

    def _release(self, token: str, scope: str, key: str) -> None:
        self.db.execute(
            "DELETE FROM idempotency_keys WHERE scope = %s AND key = %s AND owner = %s AND status IS NULL",
            (scope, key, token),
        )

    def _later(
        self, scope: str, key: str, token: str, answer: tuple[int, dict[str, str], bytes] | None
    ) -> None:
        with self._lock:
            self._pending[(scope, key)] = (token, answer)
            while len(self._pending) > MAX_PENDING:  # the oldest go stale and are taken over
                del self._pending[next(iter(self._pending))]

    def settle(self) -> None:
        """Makes the writes an outage held back; stops at the first that still fails."""
        if not self._pending or not self._settling.acquire(blocking=False):
            return
        try:
            with self._lock:
                todo = list(self._pending.items())
            for (scope, key), (token, answer) in todo:
                try:
                    if answer is None:
                        self._release(token, scope, key)
                    else:
                        self._complete(token, scope, key, *answer)
                except BaseException as e:
                    if is_outage(e):
                        return
                    raise
                with self._lock:
                    if self._pending.get((scope, key)) == (token, answer):
                        del self._pending[(scope, key)]
        finally:
            self._settling.release()

    def purge(self, older_than: float = KEEP_SECONDS) -> int:
        """Forgets keys claimed longer ago than `older_than` seconds (24 hours by default, like Stripe)."""
        return self.db.execute(
            "DELETE FROM idempotency_keys WHERE claimed_at < %s", (time.time() - older_than,)
        )


def _headers(scope: Scope) -> dict[bytes, bytes]:
    return {k: v for k, v in scope.get("headers", ())}


def _name_route(scope: Scope) -> None:
    """Names the route of an answer given without reaching it, for the access log and metrics."""
    router = getattr(scope.get("app"), "router", None)
    for route in getattr(router, "routes", ()):
        match, _ = route.matches(scope)
        if match == Match.FULL:
            scope["route"] = route
            return


def fingerprint(scope: Scope, body: bytes) -> str:
    h = hashlib.sha256()
    headers = _headers(scope)
    for part in (
        scope.get("method", ""),
        scope.get("path", ""),
        scope.get("query_string", b"").decode("latin-1"),
        headers.get(b"if-match", b"").decode("latin-1"),
    ):
        h.update(part.encode() + b"\n")
    h.update(body)
    return h.hexdigest()


class Idempotency:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._stores: dict[int, IdempotencyStore] = {}

    def _store(self, scope: Scope) -> IdempotencyStore | None:
        container = getattr(getattr(scope.get("app"), "state", None), "container", None)
        if container is None:
            return None
        store = self._stores.get(id(container.db))
        if store is None or store.db is not container.db:
            store = self._stores[id(container.db)] = IdempotencyStore(container.db)
        return store

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope.get("method") != "POST"
            or scope.get("path", "").startswith(SKIPPED_PATHS)
        ):
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        raw = headers.get(HEADER)
        store = self._store(scope)
        if raw is None or store is None:
            await self.app(scope, receive, send)
            return
        key = raw.decode("latin-1")
        path = scope.get("path")
        if not 1 <= len(key) <= MAX_KEY_LENGTH or not key.isprintable() or not key.isascii():
            await problem_response(
                422,
                "validation-error",
                f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable ASCII characters",
                path,
            )(scope, receive, send)
            return
        body = scope.get("state", {}).get("body")
        inner_receive = receive  # BodyGuard in front already replays the body it read
        if body is None:  # no BodyGuard in front: read the body here, then replay it
            chunks = []
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    return
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    break
            body = b"".join(chunks)
            inner_receive = replaying(body, receive)
        caller = hashlib.sha256(headers.get(b"authorization", b"")).hexdigest()
        fp = fingerprint(scope, body)
        try:
            token, row = await run_in_threadpool(store.claim, caller, key, fp)
        except OUTAGE_ERRORS as e:
            if not is_outage(e):
                raise
            await storage_unavailable(path)(scope, receive, send)
            return
        if token is None:
            await self._answer_from(row or {}, fp, scope, receive, send)
            return

        # The answer is held back until it is stored: a retry right after it gets it again.
        start: Message | None = None
        chunks_out: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body":
                chunks_out.append(message.get("body", b""))
            else:
                await send(message)

        try:
            await self.app(scope, inner_receive, capture)
        except BaseException:
            await run_in_threadpool(store.release, token, caller, key)
            raise
        if start is None:  # the app answered nothing
            await run_in_threadpool(store.release, token, caller, key)
            return
        status = int(start["status"])
        body = b"".join(chunks_out)
        if status >= 500 or status in NOT_KEPT:
            await run_in_threadpool(store.release, token, caller, key)
        else:
            kept: dict[str, str] = {}
            for k, v in start.get("headers", ()):
                name = k.decode("latin-1").lower()
                if name in KEPT_HEADERS:
                    kept[name] = v.decode("latin-1")
            try:
                await run_in_threadpool(store.complete, token, caller, key, status, kept, body)
            except OUTAGE_ERRORS as e:
                if not is_outage(e):
                    raise
                # Done but not recorded: the answer is stored when the database is back, and a
                # retry gets it then. Until then the caller is told to retry.
                await storage_unavailable(path)(scope, receive, send)
                return
        await send(start)
        await send({"type": "http.response.body", "body": body, "more_body": False})

    @staticmethod
    async def _answer_from(row: dict[str, Any], fp: str, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path")
        _name_route(scope)
        if row["fingerprint"] != fp:
            response = problem_response(
                422, "idempotency-key-reused", "this Idempotency-Key was used with another request", path
            )
            await response(scope, receive, send)
            return
        if row["status"] is None:
            response = problem_response(
                409,
                "idempotency-key-in-progress",
                "the first request with this Idempotency-Key is still running",
                path,
                headers={"retry-after": "1"},
            )
            await response(scope, receive, send)
            return
        headers = orjson.loads(row["headers"] or "{}")
        body = bytes(row["body"] or b"")
        raw_headers = [(k.encode("latin-1"), str(v).encode("latin-1")) for k, v in headers.items()]
        raw_headers += [(b"content-length", str(len(body)).encode()), (b"idempotent-replayed", b"true")]
        await send({"type": "http.response.start", "status": int(row["status"]), "headers": raw_headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})
