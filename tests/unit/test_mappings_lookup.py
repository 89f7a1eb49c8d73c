"""Lookup: answers from a mapping store and remembers every key it was asked, found or not."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from adapters.mappings import Lookup, MappingStore, Prefetched, check_mapping, codes_in
from ledger.errors import InvalidCommandError


class Table(MappingStore):
    def __init__(self) -> None:
        self.rows = {("pos", "sku", "I1"): ("SKU-A", 3), ("pos", "location", "S1"): ("STORE1", 5)}

    def get(self, source: str, kind: str, external_id: str) -> tuple[str, int] | None:
        return self.rows.get((source, kind, external_id))


def test_a_lookup_records_found_and_missing_keys_and_the_newest_version() -> None:
    lookup = Lookup(Table(), "pos")
    assert lookup.get("sku", "I1") == "SKU-A"
    assert lookup.get("location", "S1") == "STORE1"
    assert lookup.get("sku", "NOPE") is None
    assert lookup.get("sku", None) is None and lookup.get("sku", "") is None
    assert lookup.get("sku", "x" * 200) is None  # outside the bounds: never a key
    assert lookup.uses == {"pos/sku/I1": 3, "pos/location/S1": 5, "pos/sku/NOPE": 0}
    assert lookup.version == 5


def test_an_empty_lookup_has_version_zero() -> None:
    assert Lookup(Table(), "erp").version == 0


@pytest.mark.parametrize(
    "args", [("amazon", "sku", "1"), ("pos", "colour", "1"), ("pos", "sku", ""), ("pos", "sku", "a\x00")]
)
def test_unknown_sources_kinds_and_bad_ids_are_refused(args: tuple[str, str, str]) -> None:
    with pytest.raises((ValueError, InvalidCommandError)):
        check_mapping(*args)


class Counting(Table):
    """The table with the `get_many` a run uses, counting the questions it gets."""

    def __init__(self) -> None:
        super().__init__()
        self.single = self.many = 0

    def get(self, source: str, kind: str, external_id: str) -> tuple[str, int] | None:
        self.single += 1
        return super().get(source, kind, external_id)

    def get_many(self, source: str, external_ids: Iterable[str]) -> dict[tuple[str, str], tuple[str, int]]:
        self.many += 1
        ids = set(external_ids)
        return {(k, e): v for (s, k, e), v in self.rows.items() if s == source and e in ids}


def test_a_run_looks_its_codes_up_together_and_answers_like_the_store() -> None:
    body = {"store": "S1", "transactions": [{"lines": [{"item": "I1", "quantity": 2}, {"item": "NOPE"}]}]}
    codes = codes_in(body, {"x-shop": "S1"})
    assert {"S1", "I1", "NOPE", "2"} <= codes and "x" * 200 not in codes_in({"a": "x" * 200})
    store = Counting()
    run = Prefetched(store)  # type: ignore[arg-type]  # the SqlMappingStore role, in memory
    run.prefetch("pos", codes)
    run.prefetch("pos", codes)  # asked already: no second query
    fast, plain = Lookup(run, "pos"), Lookup(Table(), "pos")
    for lookup in (fast, plain):
        assert lookup.get("location", "S1") == "STORE1"
        assert lookup.get("sku", "I1") == "SKU-A" and lookup.get("sku", "NOPE") is None
    assert fast.uses == plain.uses and fast.use("sku", "I1", "SKU-A") == plain.use("sku", "I1", "SKU-A")
    assert (store.many, store.single) == (1, 0)
    assert fast.get("sku", "OTHER") is None and store.single == 1  # not in the run's codes: the store
