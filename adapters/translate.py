"""What a translator turns an inbox message into: one outcome type per way a message can go.

- `Apply`: canonical commands (possibly none, with notes), each with the mappings that chose its
  SKU and locations (`MappingUse`, one per leg) and the streams it moves;
- `Park`: it names a code no mapping knows;
- `Wait`: something it needs (a `WaitKey`: a Shopify order, a voided POS sale) has not arrived;
- `Reject`: it can never apply;
- `Duplicate`: its facts are already in the ledger (found without submitting a command).

Translators (`adapters/shopify.py`, `adapters/pos.py`, `adapters/erp.py`) are pure functions of
the stored message, the mappings (through a `Lookup`) and read access to the ledger (`Context`).
They never write; the intake (`adapters/intake.py`) submits the commands and records the outcome.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from adapters.persistence.db import Database, Tx
from ledger.application import History
from ledger.bounds import MAX_ID_LENGTH
from ledger.commands import Command


def ref(*parts: object) -> str:
    """A reference built from parts, shortened with a hash when it would exceed the id bound."""
    text = "/".join(str(p) for p in parts)
    if len(text) <= MAX_ID_LENGTH and text.isprintable():
        return text
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:40]
    return f"{str(parts[0])[:40]}/h:{digest}"


WaitKind = Literal["order", "pos-txn", "refund-txn"]


@dataclass(frozen=True)
class WaitKey:
    """What a waiting message needs: stored as text `order:{id}` or `pos-txn:{store}:{txn}`."""

    kind: WaitKind
    value: str

    @classmethod
    def order(cls, order_id: str) -> WaitKey:
        return cls("order", str(order_id))

    @classmethod
    def pos_txn(cls, store: str, txn_id: str) -> WaitKey:
        return cls("pos-txn", f"{store}:{txn_id}")

    @classmethod
    def refund_txn(cls, transaction_id: str) -> WaitKey:
        """A Shopify refund transaction, known once its refund is recorded."""
        return cls("refund-txn", str(transaction_id))

    @classmethod
    def parse(cls, text: str | None) -> WaitKey | None:
        """The key stored in `inbox.wait_for`; None for no key or one of an unknown kind."""
        kind, sep, value = (text or "").partition(":")
        if not sep or kind not in ("order", "pos-txn", "refund-txn"):
            return None
        return cls(kind, value)  # type: ignore[arg-type]  # checked just above

    def __str__(self) -> str:
        return f"{self.kind}:{self.value}"


@dataclass(frozen=True)
class MappingUse:
    """One mapping a command relied on: the key, its version then (0: unmapped) and the value it chose.

    A transfer has one per leg (`from_location`, `to_location`): a remap of one leg's key corrects
    only the streams whose coordinate that use chose.
    """

    source: str
    kind: str
    external_id: str
    version: int
    value: str | None = None  # the canonical SKU or location it chose (None: not recorded)

    @property
    def key(self) -> str:
        return f"{self.source}/{self.kind}/{self.external_id}"

    def as_cause(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "kind": self.kind,
            "external_id": self.external_id,
            "version": self.version,
            **({"value": self.value} if self.value is not None else {}),
        }


def uses_in_cause(cause: dict[str, Any]) -> list[MappingUse]:
    """The mapping uses an event's cause names: a list of uses, or (events written before) `{kind: key}`."""
    raw = cause.get("mappings") or []
    if isinstance(raw, dict):  # the older form: one key per kind, without the value chosen
        out = []
        for kind, key in raw.items():
            source, _, rest = str(key).partition("/")
            out.append(MappingUse(source, str(kind), rest.partition("/")[2], 0))
        return out
    return [
        MappingUse(
            str(u["source"]), str(u["kind"]), str(u["external_id"]), int(u.get("version", 0)), u.get("value")
        )
        for u in raw
        if isinstance(u, dict) and {"source", "kind", "external_id"} <= u.keys()
    ]


@dataclass
class Item:
    """One command with the mappings that chose its SKU and locations, and the streams it moves."""

    command: Command
    mappings: list[MappingUse] = field(default_factory=list)
    streams: list[tuple[str, str]] = field(default_factory=list)  # (sku, location)


@dataclass
class Apply:
    """Commands to submit (none is fine: the notes say why), and what to do once they are recorded."""

    items: list[Item] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # Runs in the transaction that records the outcome, with each item's result (dict or error).
    after: Callable[[Tx, list[Any]], None] | None = None
    wakes: list[WaitKey] = field(default_factory=list)  # keys this message satisfies once applied

    def add(
        self,
        command: Command,
        mappings: Iterable[MappingUse] = (),
        streams: list[tuple[str, str]] | None = None,
    ) -> None:
        self.items.append(Item(command, list(mappings), list(streams or [])))


@dataclass(frozen=True)
class Park:
    reason: str  # the code no mapping knows


@dataclass(frozen=True)
class Wait:
    key: WaitKey  # what must arrive first


@dataclass(frozen=True)
class Reject:
    reason: str  # why it can never apply


@dataclass(frozen=True)
class Duplicate:
    """Its facts are already in the ledger; waking what waits for them is still due."""

    wakes: tuple[WaitKey, ...] = ()


Translation = Apply | Park | Wait | Reject | Duplicate


@dataclass
class Context:
    """Read access a translation may need: the ledger's state and the adapters' tables."""

    history: History
    db: Database
