"""POS batch shapes and references, without a database."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from adapters.pos import PosBatch, external_id
from adapters.translate import ref
from ledger.bounds import check_id


def body(*txns: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"store": "S1", "batch_id": "B1", "sequence": 1, "transactions": list(txns), **extra}


SALE = {
    "txn_id": "T1",
    "type": "sale",
    "occurred_at": "2026-11-20T10:00:00Z",
    "lines": [{"item": "I", "quantity": 1}],
}


def test_a_void_names_the_transaction_it_reverses() -> None:
    PosBatch.model_validate(
        body(SALE, {"txn_id": "T2", "type": "void", "occurred_at": "2026-11-20T10:01:00Z", "void_of": "T1"})
    )
    with pytest.raises(ValidationError):
        PosBatch.model_validate(body({"txn_id": "T2", "type": "void", "occurred_at": "2026-11-20T10:01:00Z"}))
    with pytest.raises(ValidationError):
        PosBatch.model_validate(body({**SALE, "void_of": "T0"}))
    with pytest.raises(ValidationError):
        PosBatch.model_validate(
            body({"txn_id": "T2", "type": "void", "occurred_at": "2026-11-20T10:01:00Z", "void_of": "T2"})
        )


@pytest.mark.parametrize("quantity", [0, -1, 1_000_000_001, 1.5, "2", True, None])
def test_quantities_outside_the_bounds_are_refused(quantity: Any) -> None:
    with pytest.raises(ValidationError):
        PosBatch.model_validate(body({**SALE, "lines": [{"item": "I", "quantity": quantity}]}))


@given(
    st.text(min_size=1, max_size=128).filter(str.isprintable),
    st.text(min_size=1, max_size=128).filter(str.isprintable),
)
def test_batch_keys_never_collide_and_references_stay_within_bounds(store: str, batch_id: str) -> None:
    assert external_id(store, batch_id) != external_id(store + "/", batch_id)
    r = ref("pos", store, batch_id, 0)
    assert check_id(r, "reference") == r
    assert r != ref("pos", store, batch_id, 1)
