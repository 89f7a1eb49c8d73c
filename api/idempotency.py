"""`Idempotency-Key` for every POST: the first answer is kept durably and given again.

A key belongs to its caller (a hash of the Authorization header), so two clients never share
one. The request's fingerprint is a hash of method, path, query, If-Match and body:

- a new key: the request runs; its answer (status, body, the headers that matter) is stored,
  unless it is a 5xx, 401, 403 or 429, which a retry should be allowed to redo;
- the same key and fingerprint again: the stored answer, with `Idempotent-Replayed: true`;
  nothing runs, so nothing is appended;
- the same key with another fingerprint: 422 `idempotency-key-reused`;
- the same key while its first request still runs: 409 `idempotency-key-in-progress` with
  `Retry-After` (a claim older than `STALE_SECONDS` is taken over, after a crash).

Keys are kept for `KEEP_SECONDS` (24 hours); after that the same key is new again. The domain's
natural keys (a receipt's reference, an order id, a shipment id) still hold for ever.

It runs inside `BodyGuard`, which has already buffered the body. The Shopify webhook route is
left out: it de-duplicates on Shopify's own webhook id.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from adapters.persistence.db import Database
from api.middleware import replaying
from api.problems import problem_response

HEADER = b"idempotency-key"
KEPT_HEADERS = {"content-type", "etag", "location", "retry-after"}
NOT_KEPT = {401, 403, 429}
STALE_SECONDS = 60.0
SKIPPED_PATHS = ("/v1/webhooks/shopify",)
MAX_KEY_LENGTH = 255
KEEP_SECONDS = 24 * 3600
PURGE_EVERY = 1000  # claims between two purges of expired keys


class IdempotencyStore:
    """The `idempotency_keys` table: one row per (caller, key), claimed first, completed after."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._ready = False
        self._claims = 0

    def create_tables(self) -> None:
        self.db.script(
            [
                "CREATE TABLE IF NOT EXISTS idempotency_keys (scope TEXT NOT NULL, key TEXT NOT NULL, "
                "fingerprint TEXT NOT NULL, claimed_at DOUBLE PRECISION NOT NULL, status INTEGER, "
                f"headers TEXT, body {self.db.blob}, completed_at TEXT, PRIMARY KEY (scope, key))"
            ]
        )
        self._ready = True

    def claim(self, scope: str, key: str, fingerprint: str) -> dict[str, Any] | None:
        """Claims the key (None) or returns the row that already holds it."""
        if not self._ready:
            self.create_tables()
        self._claims += 1
        if self._claims % PURGE_EVERY == 0:
            self.purge()
        now = time.time()
        with self.db.transaction() as tx:
            n = tx.execute(
                "INSERT INTO idempotency_keys (scope, key, fingerprint, claimed_at) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (scope, key) DO NOTHING",
                (scope, key, fingerprint, now),
            ).rowcount
            if n == 1:
                return None
            row = tx.execute(
                "SELECT fingerprint, claimed_at, status, headers, body FROM idempotency_keys "
                "WHERE scope = %s AND key = %s",
                (scope, key),
            ).fetchone()
            if row is None:
                return {"status": None, "fingerprint": fingerprint, "claimed_at": now}
            if (
                row["status"] is None
                and row["fingerprint"] == fingerprint
                and now - row["claimed_at"] > STALE_SECONDS
            ):
                taken = tx.execute(
                    "UPDATE idempotency_keys SET claimed_at = %s WHERE scope = %s AND key = %s "
                    "AND status IS NULL AND claimed_at = %s",
                    (now, scope, key, row["claimed_at"]),
                ).rowcount
                if taken == 1:
                    return None
            return row

    def complete(self, scope: str, key: str, status: int, headers: dict[str, str], body: bytes) -> None:
        self.db.execute(
            "UPDATE idempotency_keys SET status = %s, headers = %s, body = %s, completed_at = %s "
            "WHERE scope = %s AND key = %s",
            (
                status,
                orjson.dumps(headers).decode(),
                body,
                time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                scope,
                key,
            ),
        )

    def purge(self, older_than: float = KEEP_SECONDS) -> int:
        """Forgets keys claimed longer ago than `older_than` seconds (24 hours by default, like Stripe)."""
        return self.db.execute(
            "DELETE FROM idempotency_keys WHERE claimed_at < %s", (time.time() - older_than,)
        )

    def release(self, scope: str, key: str) -> None:
        self.db.execute(
            "DELETE FROM idempotency_keys WHERE scope = %s AND key = %s AND status IS NULL", (scope, key)
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
        row = await run_in_threadpool(store.claim, caller, key, fp)
        if row is not None:
            await self._answer_from(row, fp, scope, receive, send)
            return

        status = 500
        kept: dict[str, str] = {}
        chunks_out: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                for k, v in message.get("headers", ()):
                    name = k.decode("latin-1").lower()
                    if name in KEPT_HEADERS:
                        kept[name] = v.decode("latin-1")
            elif message["type"] == "http.response.body":
                chunks_out.append(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, inner_receive, capture)
        except BaseException:
            await run_in_threadpool(store.release, caller, key)
            raise
        if status >= 500 or status in NOT_KEPT:
            await run_in_threadpool(store.release, caller, key)
        else:
            await run_in_threadpool(store.complete, caller, key, status, kept, b"".join(chunks_out))

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
