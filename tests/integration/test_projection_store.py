"""A read-model table's rows round-trip through `Store.flush` (binary arrays on PostgreSQL)."""

from __future__ import annotations

from adapters.persistence.db import Database
from projections.store import Store, Table

WIDGETS = Table(
    "store_widgets",
    ("sku", "location"),
    ("count", "weight", "flag", "note", "state"),
    types={"count": "BIGINT", "weight": "DOUBLE PRECISION", "flag": "INTEGER"},
    json=frozenset({"state"}),
)


def _read(db: Database) -> dict[tuple[str, str], dict[str, object]]:
    store = Store([WIDGETS], complete=False)
    with db.transaction() as tx:
        return dict(store.bind(tx).scan(WIDGETS.name))


def test_flushed_rows_read_back_the_same_whatever_their_python_types(database_url):
    db = Database(database_url)
    try:
        if db.dialect == "postgres":
            db.script([f'CREATE SCHEMA IF NOT EXISTS "{db.schema}"'])
        db.script(WIDGETS.ddl())
        rows = {
            ("A", "WH"): {
                "count": 2**40,
                "weight": 1.5,
                "flag": 1,
                "note": 'é ü {quoted, "x"}',
                "state": {"k": [1]},
            },
            ("B", "WH"): {"count": 0, "weight": 3, "flag": 0, "note": None, "state": None},  # an int weight
            ("C", "W,H"): {"count": None, "weight": None, "flag": None, "note": "", "state": []},
        }
        with db.transaction() as tx:
            store = Store([WIDGETS], complete=False).bind(tx)
            for key, row in rows.items():
                store.put(WIDGETS.name, key, row)
            assert store.flush() == 3
        assert _read(db) == rows
        with db.transaction() as tx:  # an upsert updates in place, and a delete removes
            store = Store([WIDGETS], complete=False).bind(tx)
            store.put(WIDGETS.name, ("A", "WH"), {**rows[("A", "WH")], "count": -1, "weight": 2})
            store.delete(WIDGETS.name, ("B", "WH"))
            assert store.flush() == 2
        assert _read(db) == {
            ("A", "WH"): {**rows[("A", "WH")], "count": -1, "weight": 2.0},
            ("C", "W,H"): rows[("C", "W,H")],
        }
    finally:
        db.close()
