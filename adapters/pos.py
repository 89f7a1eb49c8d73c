"""POS batches: shape, sequence gaps, and translation into canonical commands.

A batch is `{store, batch_id, sequence, transactions: [{txn_id, type, occurred_at, lines, void_of?}]}`.
`store` and each line's `item` are POS codes, mapped through `pos/location` and `pos/sku`.

- `sale`: sold at the store with no reservation (`SellDirect(record_shortfall=True)`: the till
  sold it, so the fact is kept even when the ledger saw no free unit).
- `return`: restocked at the store (`ReturnToStock`).
- `void`: names the transaction it reverses in `void_of` (same store) and carries no lines of its
  own; each line of that transaction is moved back (a voided sale restocks, a voided return is
  sold again). The reversal's reference is derived from the original, so voiding the same
  transaction twice reverses it once. A void whose transaction has not arrived waits for it.

Batches are de-duplicated by `(store, batch_id)`. Sequence numbers run per store; every number
between the lowest and highest seen that has not arrived is an open `pos-sequence-gap`
exception (key `store:sequence`) until its batch arrives.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, model_validator

from adapters.exceptions import close_exception, open_exception
from adapters.fields import Id, Quantity
from adapters.mappings import Lookup
from adapters.persistence.db import Tx
from adapters.translate import Apply, Context, Park, Translation, Wait, WaitKey, ref
from ledger import commands as c

MAX_GAP_EXCEPTIONS = 1000


Code = Id  # a POS/ERP code: the contract's identifier bounds


class PosLine(BaseModel):
    model_config = ConfigDict(extra="forbid")
    item: Code = Field(description="The POS item code (mapped through `pos/sku`).")
    quantity: Quantity = Field(description="Units sold or returned.")


class PosTransaction(BaseModel):
    model_config = ConfigDict(extra="forbid")
    txn_id: Code = Field(description="The transaction's id, unique within the store.")
    type: Literal["sale", "return", "void"] = Field(
        description="`sale` lowers on hand at the store, `return` adds back, `void` reverses `void_of`."
    )
    occurred_at: datetime = Field(description="When it happened at the till (RFC 3339).")
    lines: list[PosLine] = Field(default_factory=list, max_length=1000, description="The items (none for a void).")
    void_of: Code | None = Field(None, description="The transaction a void reverses.")

    @model_validator(mode="after")
    def _void_names_its_transaction(self) -> PosTransaction:
        if self.type == "void":
            if self.void_of is None:
                raise ValueError("a void names the transaction it reverses in void_of")
            if self.void_of == self.txn_id:
                raise ValueError("a void cannot void itself")
        else:
            if self.void_of is not None:
                raise ValueError("only a void names void_of")
            if not self.lines:
                raise ValueError("a sale or return needs at least one line")
        return self


class PosBatch(BaseModel):
    """A store's batch of till transactions; the same `(store, batch_id)` again changes nothing."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "store": "S001",
                    "batch_id": "B-2026-11-20-1",
                    "sequence": 42,
                    "transactions": [
                        {"txn_id": "T1", "type": "sale", "occurred_at": "2026-11-20T10:00:00Z",
                         "lines": [{"item": "ITEM-1", "quantity": 2}]},
                        {"txn_id": "T2", "type": "void", "occurred_at": "2026-11-20T10:05:00Z", "void_of": "T1"},
                    ],
                }
            ]
        },
    )
    store: Code = Field(description="The POS store code (mapped through `pos/location`).")
    batch_id: Code = Field(description="The batch's id within the store.")
    sequence: Annotated[int, Field(ge=1, le=2**62, strict=True)] = Field(
        description="The store's batch number: a missing one is a `pos-sequence-gap` exception until it arrives."
    )
    transactions: list[PosTransaction] = Field(min_length=1, max_length=10_000, description="The transactions.")

    @model_validator(mode="after")
    def _unique_transactions(self) -> PosBatch:
        ids = [t.txn_id for t in self.transactions]
        if len(ids) != len(set(ids)):
            raise ValueError("txn_id must be unique within a batch")
        return self


class SequenceConflict(Exception):
    """The store's sequence number already belongs to another batch."""


def external_id(store: str, batch_id: str) -> str:
    return orjson.dumps([store, batch_id]).decode()


def on_stored(batch: PosBatch) -> Any:
    """The hook run in the transaction that stores a new batch: sequences, gaps, transactions."""

    def hook(tx: Tx, inbox_id: int) -> None:
        if tx.dialect == "postgres":  # one batch of a store at a time: its gaps are decided in order
            tx.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"pos-store:{batch.store}",))
        taken = tx.execute(
            "SELECT batch_id FROM pos_sequences WHERE store = %s AND sequence = %s",
            (batch.store, batch.sequence),
        ).fetchone()
        if taken is not None:
            raise SequenceConflict(
                f"sequence {batch.sequence} of store {batch.store} is batch {taken['batch_id']}"
            )
        tx.execute(
            "INSERT INTO pos_sequences (store, sequence, batch_id, inbox_id) VALUES (%s, %s, %s, %s)",
            (batch.store, batch.sequence, batch.batch_id, inbox_id),
        )
        _track_gaps(tx, batch.store, batch.sequence)
        for t in batch.transactions:
            if t.type == "void":
                continue
            tx.execute(
                "INSERT INTO pos_transactions (store, txn_id, type, lines, inbox_id) VALUES (%s, "
                "%s, %s, %s, %s) "
                "ON CONFLICT (store, txn_id) DO NOTHING",
                (
                    batch.store,
                    t.txn_id,
                    t.type,
                    orjson.dumps([x.model_dump() for x in t.lines]).decode(),
                    inbox_id,
                ),
            )
            # A void that arrived before this transaction can apply now.
            tx.execute(
                "UPDATE inbox SET status = 'received' WHERE status = 'waiting' AND wait_for = %s",
                (str(WaitKey.pos_txn(batch.store, t.txn_id)),),
            )

    return hook


def _track_gaps(tx: Tx, store: str, sequence: int) -> None:
    close_exception(tx, "pos-sequence-gap", f"{store}:{sequence}", {"filled": True})
    bounds = tx.execute(
        "SELECT min(sequence) AS lo, max(sequence) AS hi, count(*) AS n FROM pos_sequences WHERE store = %s",
        (store,),
    ).fetchone()
    lo, hi = int(bounds["lo"]), int(bounds["hi"])  # type: ignore[index]  # an aggregate: one row
    if hi - lo + 1 == int(bounds["n"]):  # type: ignore[index]  # an aggregate: one row
        return
    # Only the numbers this batch newly exposed can be new gaps: those just below it.
    below = tx.execute(
        "SELECT max(sequence) AS prev FROM pos_sequences WHERE store = %s AND sequence < %s",
        (store, sequence),
    ).fetchone()
    prev = below["prev"] if below else None
    if prev is None:
        return
    for missing in range(int(prev) + 1, min(sequence, int(prev) + 1 + MAX_GAP_EXCEPTIONS)):
        open_exception(
            tx,
            "pos-sequence-gap",
            f"{store}:{missing}",
            {"store": store, "sequence": missing, "seen_up_to": sequence},
        )


def translate(row: dict[str, Any], payload: Any, lookup: Lookup, ctx: Context) -> Translation:
    batch = PosBatch.model_validate(payload)
    t = Apply()
    location = lookup.get("location", batch.store)
    if location is None:
        return Park(f"unknown store {batch.store}")
    loc_use = lookup.use("location", batch.store, location)
    for txn in batch.transactions:
        if txn.type == "void":
            original = ctx.db.query_one(
                "SELECT type, lines FROM pos_transactions WHERE store = %s AND txn_id = %s",
                (batch.store, txn.void_of),
            )
            if original is None:
                return Wait(WaitKey.pos_txn(batch.store, str(txn.void_of)))
            kind = "return" if original["type"] == "sale" else "sale"
            lines = [PosLine.model_validate(x) for x in orjson.loads(original["lines"])]
            reference = ("pos-void", batch.store, txn.void_of)
        else:
            kind, lines, reference = txn.type, txn.lines, ("pos", batch.store, txn.txn_id)
        for i, line in enumerate(lines):
            sku = lookup.get("sku", line.item)
            if sku is None:
                return Park(f"unknown item {line.item}")
            keys = [loc_use, lookup.use("sku", line.item, sku)]
            r = ref(*reference, i)
            if kind == "sale":
                cmd: c.Command = c.SellDirect(
                    sku=sku, location=location, quantity=line.quantity, reference=r, record_shortfall=True
                )
            else:
                cmd = c.ReturnToStock(
                    sku=sku, location=location, quantity=line.quantity, disposition="restock", reference=r
                )
            t.add(cmd, keys, [(sku, location)])
    return t
