"""Lookup: answers from a mapping store and remembers every key it was asked, found or not."""

from __future__ import annotations

import pytest

from adapters.mappings import Lookup, MappingStore, check_mapping
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
