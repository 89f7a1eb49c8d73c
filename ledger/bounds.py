"""The documented bounds of every identifier and quantity (see CONTRACT.md, "Bounds")."""

from __future__ import annotations

import re
import uuid
from functools import lru_cache

from ledger.errors import InvalidCommandError

MAX_QUANTITY = 1_000_000_000
MAX_ID_LENGTH = 128
NAMESPACE = uuid.UUID("6f1b1d2e-4c55-4b8e-9a43-9d5f3c1e7a20")


def check_id(value: object, field: str) -> str:
    """An identifier is 1 to 128 printable characters with no control characters."""
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_ID_LENGTH or not value.isprintable():
        raise InvalidCommandError(f"{field} must be 1 to {MAX_ID_LENGTH} printable characters", field=field)
    return value


def check_quantity(value: object, field: str = "quantity") -> int:
    """A quantity is a whole number from 1 to MAX_QUANTITY."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_QUANTITY:
        raise InvalidCommandError(f"{field} must be a whole number from 1 to {MAX_QUANTITY}", field=field)
    return value


def check_delta(value: object, field: str = "delta") -> int:
    """A signed change: a non-zero whole number whose size is within MAX_QUANTITY."""
    if isinstance(value, bool) or not isinstance(value, int) or value == 0 or abs(value) > MAX_QUANTITY:
        raise InvalidCommandError(
            f"{field} must be a non-zero whole number within ±{MAX_QUANTITY}", field=field
        )
    return value


# uuid5 hashes with SHA-1 (~3 µs); a command looks its streams up several times on the write
# path (prefetch, decide, answer), so the ids of recently seen SKU-locations and orders are kept.
@lru_cache(maxsize=1 << 18)
def stock_id(sku: str, location: str) -> uuid.UUID:
    """The SKU-location aggregate's id, derived from its canonical SKU and location."""
    return uuid.uuid5(NAMESPACE, f"sku-location\x1f{sku}\x1f{location}")


@lru_cache(maxsize=1 << 18)
def order_id(order: str) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, f"order\x1f{order}")


def reservation_id(order_id: str, line_id: str) -> str:
    """The reservation of one order line: `order/line`, with `%` and `/` escaped in each part.

    Ids without those characters read as plain `order/line`; escaping keeps two different lines
    (order `a/b` line `c`, order `a` line `b/c`) from ever sharing a reservation.
    """
    return f"{escape_part(order_id)}/{escape_part(line_id)}"


HOLD_PREFIX = "hold/"


def hold_reservation_id(hold: str, line_id: str) -> str:
    """The reservation of one line of a hold (`POST /v1/reservations`): `hold/{hold}/{line}`,
    each part escaped like `reservation_id`. Two unescaped `/` tell it from an order line's
    reservation (one `/`), so a hold and an order of the same id never share a reservation."""
    return f"{HOLD_PREFIX}{escape_part(hold)}/{escape_part(line_id)}"


def parse_hold_reservation_id(rid: str) -> tuple[str, str] | None:
    """The (hold id, line id) of a reservation id made by `hold_reservation_id`, or None."""
    if not rid.startswith(HOLD_PREFIX):
        return None
    hold, sep, line = rid[len(HOLD_PREFIX) :].partition("/")
    if not sep or "/" in line:
        return None
    return unescape_part(hold), unescape_part(line)


@lru_cache(maxsize=1 << 14)
def hold_id(hold: str) -> uuid.UUID:
    """The hold aggregate's id, derived from its reservation id."""
    return uuid.uuid5(NAMESPACE, f"hold\x1f{hold}")


def escape_part(part: str) -> str:
    """`%` and `/` escaped, so the part can be joined with `/` and split again (`unescape_part`)."""
    return part.replace("%", "%25").replace("/", "%2F")


def parse_reservation_id(rid: str) -> tuple[str, str] | None:
    """The (order id, line id) of a reservation id made by `reservation_id`, or None."""
    order, sep, line = rid.partition("/")
    if not sep or "/" in line:
        return None
    return unescape_part(order), unescape_part(line)


def unescape_part(part: str) -> str:
    """The inverse of `escape_part`."""
    return re.sub(r"%(25|2F)", lambda m: "%" if m.group(1) == "25" else "/", part)
