"""Document lines: a receipt, adjustment, transfer or count is keyed by its document and the line
(`(reference, sku, location)`), and rows an older ledger keyed by the document alone still answer
a repeat of their line after the upgrade."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from psycopg import sql

from adapters.persistence.urls import ledger_env, pg_parts
from ledger import commands as c
from ledger.errors import IdempotencyConflictError
from ledger.service import Ledger


def events(ledger: Ledger) -> int:
    return ledger.app.recorder.max_position()  # type: ignore[attr-defined, no-any-return]  # the ledger's recorders add it


def rekey(ledger: Ledger, url: str, new: str, old: str) -> None:
    """Moves a command row to the key an older ledger recorded it under (as the upgrade finds it)."""
    recorder: Any = ledger.app.recorder
    table = recorder.commands_table
    if url.startswith("sqlite"):
        with recorder.datastore.transaction(commit=True) as cur:
            cur.execute(f"UPDATE {table} SET key = ? WHERE key = ?", (old, new))
            cur.execute(f"SELECT count(*) AS n FROM {table} WHERE key = ?", (old,))
            assert cur.fetchone()["n"] == 1
        return
    stmt = sql.SQL("UPDATE {}.{} SET key = %s WHERE key = %s").format(
        sql.Identifier(pg_parts(url)["schema"]), sql.Identifier(table)
    )
    with recorder.datastore.get_connection() as conn:
        assert conn.execute(stmt, (old, new)).rowcount == 1


def test_one_document_is_received_line_by_line_and_a_repeat_of_any_line_appends_nothing(database_url: str) -> None:
    with Ledger(ledger_env(database_url)) as ledger:
        ledger.receive("A", "W1", 5, "PO-1")
        ledger.receive("B", "W1", 3, "PO-1")  # line 2, another SKU
        ledger.receive("A", "W2", 2, "PO-1")  # line 3, another location
        n = events(ledger)
        again = ledger.receive("B", "W1", 3, "PO-1")
        assert again["duplicate"] and again["on_hand"] == 3 and events(ledger) == n
        with pytest.raises(IdempotencyConflictError):
            ledger.receive("B", "W1", 4, "PO-1")  # the same line with another body
        ledger.adjust("A", "W1", -1, "damaged", "DMG-1")
        ledger.adjust("B", "W1", -1, "damaged", "DMG-1")
        ledger.transfer("A", "W1", "W2", 1, "TR-1")
        ledger.transfer("B", "W1", "W2", 1, "TR-1")
        n = events(ledger)
        assert ledger.transfer("B", "W1", "W2", 1, "TR-1")["duplicate"]
        assert ledger.adjust("A", "W1", -1, "damaged", "DMG-1")["duplicate"]
        assert events(ledger) == n
        assert [ledger.history.stock("A", w).on_hand for w in ("W1", "W2")] == [3, 3]
        assert [ledger.history.stock("B", w).on_hand for w in ("W1", "W2")] == [1, 1]


def test_ids_holding_the_key_separators_never_share_a_key() -> None:
    def key(ref: str, sku: str, loc: str) -> str | None:
        return c.ReceiveStock(sku=sku, location=loc, quantity=1, reference=ref).key

    assert key("a/b", "c", "d") != key("a", "b/c", "d") != key("a", "b", "c/d")
    assert key("a:b", "c", "d") != key("a", "b:c", "d")
    assert key("a%2Fb", "c", "d") != key("a/b", "c", "d")
    # No line key can be a legacy key: the prefixes differ.
    assert not any(key("x", "y", "z").startswith(p) for p in c.LEGACY_KEY_PREFIXES)  # type: ignore[union-attr]  # keyed


@pytest.mark.parametrize(
    "command",
    [
        c.ReceiveStock(sku="A", location="W1", quantity=5, reference="PO-9"),
        c.TransferStock(sku="A", from_location="W1", to_location="W2", quantity=1, reference="TR-9"),
        c.AdjustStock(sku="A", location="W1", delta=2, reason="found", reference="ADJ-9"),
    ],
    ids=lambda cmd: type(cmd).__name__,
)
def test_a_line_stored_under_the_legacy_key_is_still_recognised(database_url: str, command: c.Command) -> None:
    env = ledger_env(database_url)
    with Ledger(env) as ledger:
        if not isinstance(command, c.ReceiveStock):
            ledger.receive("A", "W1", 10, "stock")
        first = ledger.execute(command)
        assert command.key and command.legacy_key
        rekey(ledger, database_url, command.key, command.legacy_key)
    # A new process (as after the upgrade) finds the legacy row and answers the repeat from it.
    with Ledger(env) as ledger:
        n = events(ledger)
        again = ledger.execute(command)
        assert again == {**first, "duplicate": True} and events(ledger) == n
        with pytest.raises(IdempotencyConflictError):
            ledger.execute(replace(command, **{_amount(command): 3}))
        assert events(ledger) == n
        # Another line of the same document is a new line, not a conflict with the legacy row.
        other = replace(command, sku="B")
        if not isinstance(command, c.ReceiveStock):
            ledger.receive("B", "W1", 10, "stock")
        assert "duplicate" not in ledger.execute(other)
        assert "duplicate" in ledger.execute(other)


def _amount(cmd: c.Command) -> str:
    return "delta" if isinstance(cmd, c.AdjustStock) else "quantity"
