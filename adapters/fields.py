"""Pydantic field types for everything that arrives from outside (HTTP bodies, POS and ERP
documents): the contract's bounds, declared once.

An identifier is 1 to 128 printable characters with no control characters; a quantity is a
whole number from 1 to 1,000,000,000 (strict: `"5"` is not a quantity).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field

from ledger.bounds import MAX_ID_LENGTH, MAX_QUANTITY


def _printable(value: str) -> str:
    if not value.isprintable():
        raise ValueError("must be printable characters with no control characters")
    return value


def _nonzero(value: int) -> int:
    if value == 0:
        raise ValueError("must not be zero")
    return value


# The pattern tells clients (and schemathesis) the rule; `isprintable` is the exact check.
Id = Annotated[
    str,
    Field(min_length=1, max_length=MAX_ID_LENGTH, pattern=r"^[^\x00-\x1f\x7f-\x9f]+$"),
    AfterValidator(_printable),
]
Quantity = Annotated[int, Field(ge=1, le=MAX_QUANTITY, strict=True)]
Delta = Annotated[int, Field(ge=-MAX_QUANTITY, le=MAX_QUANTITY, strict=True), AfterValidator(_nonzero)]
