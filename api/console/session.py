"""Console sessions: a random id in an HttpOnly, SameSite=Strict cookie; everything else server-side.

Signing in verifies an API key once; the session keeps the key's id, name and scopes and a
per-session CSRF token, never the token itself. Each request re-checks that the key is still
active (not revoked, not expired), so revoking a key ends its console sessions too.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from adapters.keys import ApiKeys, Principal
from adapters.persistence.db import Database

COOKIE = "ledger_console"
TTL_SECONDS = 8 * 3600
TABLE = "console_sessions"


@dataclass(frozen=True)
class Session:
    principal: Principal
    csrf: str

    @property
    def can_act(self) -> bool:
        return "admin" in self.principal.scopes

    def csrf_ok(self, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(token.encode(), self.csrf.encode())


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class Sessions:
    def __init__(self, db: Database, keys: ApiKeys) -> None:
        self.db = db
        self.keys = keys
        self._ready = False
        self._lock = threading.Lock()

    def _tables(self) -> None:
        if self._ready:
            return
        with self._lock:
            if not self._ready:
                self.db.script(
                    [
                        f"CREATE TABLE IF NOT EXISTS {TABLE} (id TEXT PRIMARY KEY, key_id TEXT NOT NULL, "
                        "csrf TEXT NOT NULL, created_at TEXT NOT NULL, expires_at DOUBLE PRECISION NOT NULL)"
                    ]
                )
                self._ready = True

    def sign_in(self, token: str) -> tuple[str, Principal] | None:
        """A new session for a valid key: (session id for the cookie, principal); None otherwise."""
        self._tables()
        principal = self.keys.verify(token)
        if principal is None:
            return None
        session_id = secrets.token_urlsafe(32)
        with self.db.transaction() as tx:
            tx.execute(f"DELETE FROM {TABLE} WHERE expires_at < %s", (time.time(),))
            tx.execute(
                f"INSERT INTO {TABLE} (id, key_id, csrf, created_at, expires_at) VALUES (%s, %s, %s, %s, %s)",
                (
                    _digest(session_id),
                    principal.key_id,
                    secrets.token_urlsafe(32),
                    datetime.now(UTC).isoformat(),
                    time.time() + TTL_SECONDS,
                ),
            )
        return session_id, principal

    def get(self, session_id: str | None) -> Session | None:
        """The session of a cookie value, if it exists, has not expired and its key is still active."""
        if not session_id or len(session_id) > 128:
            return None
        self._tables()
        row = self.db.query_one(
            f"SELECT s.csrf, s.expires_at, k.id, k.name, k.scopes, k.expires_at AS key_expires, k.revoked_at "
            f"FROM {TABLE} s JOIN api_keys k ON k.id = s.key_id WHERE s.id = %s",
            (_digest(session_id),),
        )
        if row is None or float(row["expires_at"]) < time.time() or row["revoked_at"] is not None:
            return None
        expires = row["key_expires"]
        if expires is not None:
            moment = datetime.fromisoformat(expires)
            if (moment if moment.tzinfo else moment.replace(tzinfo=UTC)) <= datetime.now(UTC):
                return None
        principal = Principal(row["id"], row["name"], frozenset(row["scopes"].split()))
        return Session(principal, row["csrf"])

    def sign_out(self, session_id: str | None) -> None:
        if session_id:
            self._tables()
            with self.db.transaction() as tx:
                tx.execute(f"DELETE FROM {TABLE} WHERE id = %s", (_digest(session_id),))
