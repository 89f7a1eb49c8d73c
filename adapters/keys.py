"""API keys (scoped bearer tokens, stored hashed) and the audit trail of admin actions."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
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


class ApiKeys:
    CACHE_SECONDS = 5.0

    def __init__(self, db: Database) -> None:
        self.db = db
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        self._lock = threading.Lock()

    def create_tables(self) -> None:
        self.db.script(
            [
                "CREATE TABLE IF NOT EXISTS api_keys (id TEXT PRIMARY KEY, name TEXT NOT NULL, "
                "scopes TEXT NOT NULL, token_hash TEXT NOT NULL UNIQUE, created_at TEXT NOT NULL, "
                "created_by TEXT, expires_at TEXT, revoked_at TEXT)",
                f"CREATE TABLE IF NOT EXISTS admin_audit (id {self.db.serial}, actor TEXT NOT NULL, "
                "action TEXT NOT NULL, target TEXT NOT NULL, detail TEXT NOT NULL, at TEXT NOT NULL)",
            ]
        )

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
                (key_id, name, " ".join(sorted(set(scopes))), self._hash(token), utcnow(), created_by,
                 expires_at.isoformat() if expires_at else None),
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

    def verify(self, token: str) -> Principal | None:
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(token)
            if hit is not None and hit[0] > now:
                return hit[1]
        row = self.db.query_one(
            "SELECT id, name, scopes, expires_at, revoked_at FROM api_keys WHERE token_hash = %s", (self._hash(token),)
        )
        principal = None
        if row is not None and row["revoked_at"] is None:
            expires = row["expires_at"]
            if expires is None or _aware(datetime.fromisoformat(expires)) > datetime.now(UTC):
                principal = Principal(row["id"], row["name"], frozenset(row["scopes"].split()))
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[token] = (now + self.CACHE_SECONDS, principal)
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

    def audit_trail(self, limit: int = 100) -> list[dict[str, Any]]:
        rows = self.db.query("SELECT * FROM admin_audit ORDER BY id DESC LIMIT %s", (limit,))
        for r in rows:
            r["detail"] = orjson.loads(r["detail"])
        return rows
