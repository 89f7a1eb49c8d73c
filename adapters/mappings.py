"""Versioned mappings from outside codes to canonical names: `(source, kind, external_id) -> canonical`.

Sources are `shopify`, `pos` and `erp`; kinds are `sku`, `location` and `channel`. Every change
is a new version, kept with who made it, when, and the old and new value. Versions come from one
sequence over all mappings, so "mapping version N" names one moment of the whole table.

`Lookup` is what a translation uses: it answers from the store and remembers every key it asked
for (found or not), so the inbox knows which messages a later fix of that key affects.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from adapters.persistence.db import Database
from adapters.translate import MappingUse
from ledger.bounds import MAX_ID_LENGTH, check_id

SOURCES = ("shopify", "pos", "erp")
KINDS = ("sku", "location", "channel", "inventory_item")  # inventory_item: Shopify only


def mapping_key(source: str, kind: str, external_id: str) -> str:
    return f"{source}/{kind}/{external_id}"


def check_mapping(source: str, kind: str, external_id: str) -> None:
    """Raises ValueError for an unknown source or kind, or an id outside the bounds."""
    if source not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(SOURCES)}")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}")
    if kind == "inventory_item" and source != "shopify":
        raise ValueError("kind inventory_item exists for source shopify only")
    check_id(external_id, "external_id")


class MappingStore(Protocol):
    """Where outside codes are resolved to canonical names (the role a translation needs)."""

    def get(self, source: str, kind: str, external_id: str) -> tuple[str, int] | None:
        """(canonical, version) or None when the code is not mapped."""
        ...


class SqlMappingStore:
    """Mappings and their history in the ledger database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def get(self, source: str, kind: str, external_id: str) -> tuple[str, int] | None:
        row = self.db.query_one(
            "SELECT canonical, version FROM mappings WHERE source = %s AND kind = %s AND external_id = %s",
            (source, kind, external_id),
        )
        return None if row is None else (row["canonical"], int(row["version"]))

    def get_many(self, source: str, external_ids: Iterable[str]) -> dict[tuple[str, str], tuple[str, int]]:
        """{(kind, external_id): (canonical, version)} of the mapped codes among `external_ids`."""
        ids = sorted(set(external_ids))
        found: dict[tuple[str, str], tuple[str, int]] = {}
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            for r in self.db.query(
                "SELECT kind, external_id, canonical, version FROM mappings WHERE source = %s AND "
                f"external_id IN ({', '.join(['%s'] * len(chunk))})",
                (source, *chunk),
            ):
                found[(r["kind"], r["external_id"])] = (r["canonical"], int(r["version"]))
        return found

    def set(self, source: str, kind: str, external_id: str, canonical: str, actor: str) -> dict[str, Any]:
        """Sets a mapping; a new version unless the value is unchanged. Returns the change."""
        check_mapping(source, kind, external_id)
        check_id(canonical, "canonical")
        now = datetime.now(UTC).isoformat()
        with self.db.transaction() as tx:
            row = tx.execute(
                "SELECT canonical, version FROM mappings WHERE source = %s AND kind = %s AND "
                "external_id = %s",
                (source, kind, external_id),
            ).fetchone()
            old = None if row is None else row["canonical"]
            if row is not None and old == canonical:
                return {
                    "source": source,
                    "kind": kind,
                    "external_id": external_id,
                    "canonical": canonical,
                    "version": int(row["version"]),
                    "old": old,
                    "changed": False,
                }
            version = int(
                tx.execute(
                    "INSERT INTO mapping_history (source, kind, external_id, old, new, actor, at) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING version",
                    (source, kind, external_id, old, canonical, actor, now),
                ).fetchone()["version"]  # type: ignore[index]  # RETURNING answers one row
            )
            tx.execute(
                "INSERT INTO mappings (source, kind, external_id, canonical, version, updated_by, "
                "updated_at) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (source, kind, external_id) DO UPDATE SET "
                "canonical = excluded.canonical, version = excluded.version, updated_by = "
                "excluded.updated_by, "
                "updated_at = excluded.updated_at",
                (source, kind, external_id, canonical, version, actor, now),
            )
        return {
            "source": source,
            "kind": kind,
            "external_id": external_id,
            "canonical": canonical,
            "version": version,
            "old": old,
            "changed": True,
        }

    def by_external_id(self, external_id: str) -> list[dict[str, Any]]:
        """The current mappings of an outside code in any source and kind: source, kind, canonical."""
        return self.db.query(
            "SELECT source, kind, canonical FROM mappings WHERE external_id = %s ORDER BY source, kind",
            (external_id,),
        )

    def changes(self, limit: int = 500) -> list[dict[str, Any]]:
        """The newest versions of every mapping, newest first (who changed what, old and new)."""
        return self.db.query(
            "SELECT version, source, kind, external_id, old, new, actor, at FROM mapping_history "
            "ORDER BY version DESC LIMIT %s",
            (limit,),
        )

    def history(self, source: str, kind: str, external_id: str) -> list[dict[str, Any]]:
        return self.db.query(
            "SELECT version, old, new, actor, at FROM mapping_history "
            "WHERE source = %s AND kind = %s AND external_id = %s ORDER BY version",
            (source, kind, external_id),
        )

    def list(
        self, source: str | None = None, kind: str | None = None, limit: int = 1000
    ) -> list[dict[str, Any]]:
        sql = (
            "SELECT source, kind, external_id, canonical, version, updated_by, updated_at "
            "FROM mappings WHERE 1=1"
        )
        params: list[Any] = []
        if source:
            sql += " AND source = %s"
            params.append(source)
        if kind:
            sql += " AND kind = %s"
            params.append(kind)
        sql += " ORDER BY source, kind, external_id LIMIT %s"
        params.append(limit)
        return self.db.query(sql, params)


class Prefetched:
    """Mappings looked up together for a run of messages (the MappingStore role).

    `prefetch` reads, in one query per source, every code that appears in the messages' bodies
    and headers; a code among them that is not mapped is answered "unmapped" without asking
    again, and any other code goes to the store.
    """

    def __init__(self, store: SqlMappingStore) -> None:
        self.store = store
        self.asked: set[tuple[str, str]] = set()  # (source, external_id)
        self.found: dict[tuple[str, str, str], tuple[str, int]] = {}

    def prefetch(self, source: str, codes: Iterable[str]) -> None:
        new = {c for c in codes if (source, c) not in self.asked}
        if not new:
            return
        for (kind, ext), hit in self.store.get_many(source, new).items():
            self.found[(source, kind, ext)] = hit
        self.asked |= {(source, c) for c in new}

    def get(self, source: str, kind: str, external_id: str) -> tuple[str, int] | None:
        if (source, external_id) in self.asked:
            return self.found.get((source, kind, external_id))
        return self.store.get(source, kind, external_id)


def codes_in(*values: Any, limit: int = 5000) -> set[str]:
    """The strings and whole numbers in JSON values that could be mapped codes (within the id bound)."""
    out: set[str] = set()
    stack = list(values)
    while stack and len(out) < limit:
        v = stack.pop()
        if isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
        elif isinstance(v, bool) or v is None:
            continue
        elif isinstance(v, int | str):
            text = str(v)
            if text and len(text) <= MAX_ID_LENGTH:
                out.add(text)
    return out


@dataclass
class Lookup:
    """Resolves codes for one translation and records each key used, with its version (0: unmapped)."""

    store: MappingStore
    source: str
    uses: dict[str, int] = field(default_factory=dict)

    def get(self, kind: str, external_id: Any) -> str | None:
        if external_id is None or external_id == "":
            return None
        ext = str(external_id)
        try:
            check_id(ext, "external_id")
        except Exception:
            return None
        hit = self.store.get(self.source, kind, ext)
        self.uses[mapping_key(self.source, kind, ext)] = 0 if hit is None else hit[1]
        return None if hit is None else hit[0]

    def use(self, kind: str, external_id: Any, value: str | None) -> MappingUse:
        """The use of `kind/external_id` that chose `value`, with the version `get` found (0: unmapped)."""
        ext = str(external_id)
        return MappingUse(
            self.source, kind, ext, self.uses.get(mapping_key(self.source, kind, ext), 0), value
        )

    @property
    def version(self) -> int:
        """The newest mapping version this translation relied on (0 when none)."""
        return max(self.uses.values(), default=0)
