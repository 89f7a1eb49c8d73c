"""What a translator turns an inbox message into: canonical commands, or a reason to park, wait or reject.

Translators (`adapters/shopify.py`, `adapters/pos.py`, `adapters/erp.py`) are pure functions of
the stored message, the mappings (through a `Lookup`) and read access to the ledger (`Context`).
They never write; the intake (`adapters/intake.py`) submits the commands and records the outcome.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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


@dataclass
class Item:
    """One command with the mapping keys that chose its SKU and location, and the streams it moves."""

    command: Command
    mappings: dict[str, str] = field(default_factory=dict)  # kind -> mapping key
    streams: list[tuple[str, str]] = field(default_factory=list)  # (sku, location)


@dataclass
class Translation:
    items: list[Item] = field(default_factory=list)
    park: str | None = None  # a code no mapping knows
    wait_for: str | None = None  # a key such as "order:123" that must arrive first
    reject: str | None = None  # can never apply
    duplicate: bool = False  # its facts are already in the ledger (found without a command)
    notes: list[str] = field(default_factory=list)
    # Runs in the transaction that records the outcome, with each item's result (dict or error).
    after: Callable[[Tx, list[Any]], None] | None = None
    wakes: list[str] = field(default_factory=list)  # wait keys this message satisfies once applied

    def add(
        self,
        command: Command,
        mappings: dict[str, str] | None = None,
        streams: list[tuple[str, str]] | None = None,
    ) -> None:
        self.items.append(Item(command, dict(mappings or {}), list(streams or [])))


@dataclass
class Context:
    """Read access a translation may need: the ledger's state and the adapters' tables."""

    history: History
    db: Database
