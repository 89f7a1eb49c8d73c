"""API keys (scoped bearer tokens, stored hashed) and the audit trail of admin actions."""

from __future__ import annotations

import builtins
import hashlib
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from adapters.persistence.db import Database

SCOPES = ("ats:read", "audit:read", "ingest:write", "admin")


def utcnow() -> str:
    return datetime.now(UTC).isoformat()


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Principal:
    key_id: str
    name: str
    scopes: frozenset[str]

    def has(self, *scopes: str) -> bool:
        """True when the key holds any of the scopes (admin holds every scope)."""
        return "admin" in self.scopes or any(s in self.scopes for s in scopes)


class Miss:
    """`ApiKeys.lookup()` has no verdict for the token: verify it."""


MISS = Miss()


class ApiKeys:
    """Keys in the `api_keys` table; verdicts on tokens are kept `cache_seconds` in process.

    So a revoked or expired key stops working at once in the process that revoked it, and
    within `cache_seconds` (5 s) in every other process; a key created elsewhere works within
    the same bound after a refused try.
    """

    CACHE_SECONDS = 5.0
    MAX_CACHED = 10_000

    def __init__(
        self, db: Database, cache_seconds: float = CACHE_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.db = db
        self.cache_seconds = cache_seconds
        self.clock = clock  # seconds, monotonic: when kept verdicts lapse
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _hash(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    def create(
        self, name: str, scopes: list[str], expires_at: datetime | None = None, created_by: str = "cli"
    ) -> tuple[str, str]:
        """Creates a key; returns (key id, token). The token is shown once and stored hashed."""
        unknown = [s for s in scopes if s not in SCOPES]
        if unknown or not scopes:
            raise ValueError(f"scopes must be some of {', '.join(SCOPES)}")
        if expires_at is not None and expires_at.tzinfo is None:
            expires_at = expires_at.replace(tzinfo=UTC)  # a moment without an offset is UTC
        key_id = secrets.token_hex(6)
        token = f"lk_{key_id}_{secrets.token_urlsafe(32)}"
        with self.db.transaction() as tx:
            tx.execute(
                "INSERT INTO api_keys (id, name, scopes, token_hash, created_at, created_by, expires_at) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (
                    key_id,
                    name,
                    " ".join(sorted(set(scopes))),
                    self._hash(token),
                    utcnow(),
                    created_by,
                    expires_at.isoformat() if expires_at else None,
                ),
            )
            self._audit(tx, created_by, "key.create", key_id, {"name": name, "scopes": sorted(set(scopes))})
        return key_id, token

    def revoke(self, key_id: str, actor: str = "cli") -> bool:
        with self.db.transaction() as tx:
            n = tx.execute(
                "UPDATE api_keys SET revoked_at = %s WHERE id = %s AND revoked_at IS NULL", (utcnow(), key_id)
            ).rowcount
            if n:
                self._audit(tx, actor, "key.revoke", key_id, {})
        with self._lock:
            self._cache.clear()
        return bool(n)

    def list(self) -> list[dict[str, Any]]:
        return self.db.query(
            "SELECT id, name, scopes, created_at, created_by, expires_at, revoked_at FROM api_keys ORDER BY created_at"
        )

    def count_active(self) -> int:
        row = self.db.query_one("SELECT count(*) AS n FROM api_keys WHERE revoked_at IS NULL")
        return int(row["n"]) if row else 0

    def lookup(self, token: str) -> Principal | None | Miss:
        """The kept verdict on a token (a dict lookup: no I/O, no lock), or `MISS`: call `verify()`."""
        hit = self._cache.get(token)
        if hit is None or hit[0] <= self.clock():
            return MISS
        return hit[1]

    def verify(self, token: str) -> Principal | None:
        """The key's principal, or None when the token is unknown, expired or revoked (reads the table)."""
        hit = self.lookup(token)
        if not isinstance(hit, Miss):
            return hit
        now = self.clock()
        row = self.db.query_one(
            "SELECT id, name, scopes, expires_at, revoked_at FROM api_keys WHERE token_hash = %s",
            (self._hash(token),),
        )
        principal = None
        until = now + self.cache_seconds
        if row is not None and row["revoked_at"] is None:
            expires = row["expires_at"]
            left = None if expires is None else (_aware(datetime.fromisoformat(expires)) - datetime.now(UTC))
            if left is None or left.total_seconds() > 0:
                principal = Principal(row["id"], row["name"], frozenset(row["scopes"].split()))
                if left is not None:  # never kept past the key's expiry
                    until = min(until, now + left.total_seconds())
        with self._lock:
            if len(self._cache) > self.MAX_CACHED:
                self._cache.clear()
            self._cache[token] = (until, principal)
        return principal

    # ------------------------------------------------------------- audit

    def _audit(self, tx: Any, actor: str, action: str, target: str, detail: dict[str, Any]) -> None:
        tx.execute(
            "INSERT INTO admin_audit (actor, action, target, detail, at) VALUES (%s, %s, %s, %s, %s)",
            (actor, action, target, orjson.dumps(detail).decode(), utcnow()),
        )

    def audit(self, actor: str, action: str, target: str, detail: dict[str, Any]) -> None:
        """Records an admin action (mapping, channel policy, key, rebuild) with who and when."""
        with self.db.transaction() as tx:
            self._audit(tx, actor, action, target, detail)

    def audit_trail(self, limit: int = 100) -> builtins.list[dict[str, Any]]:  # `list` is a method here
        rows = self.db.query("SELECT * FROM admin_audit ORDER BY id DESC LIMIT %s", (limit,))
        for r in rows:
            r["detail"] = orjson.loads(r["detail"])
        return rows
