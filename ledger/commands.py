"""Canonical commands: what adapters and the API ask the ledger to do.

Each command names its natural idempotency key (`key`): a repeat with the same key and the
same content returns the first outcome and appends nothing; the same key with other content
is refused. `cause` carries correlation and causation ids, the source document and the
mapping version, and is copied onto every event the command produces.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from decimal import Decimal, InvalidOperation
from functools import cached_property
from typing import Any, ClassVar
from urllib.parse import quote

import orjson

from ledger.bounds import check_delta, check_id, check_quantity, reservation_id
from ledger.errors import InvalidCommandError


def check_money(amount: object, currency: object) -> None:
    """An amount is an exact decimal string (never a float), a currency three capital letters."""
    if not isinstance(amount, str):
        raise InvalidCommandError("amount must be a decimal number as text", field="amount")
    try:
        value = Decimal(amount)
    except InvalidOperation:
        raise InvalidCommandError("amount must be a decimal number", field="amount") from None
    if not value.is_finite() or value < 0:
        raise InvalidCommandError("amount must be a finite, non-negative number", field="amount")
    if not isinstance(currency, str) or not (
        len(currency) == 3 and currency.isalpha() and currency.isupper()
    ):
        raise InvalidCommandError("currency must be an ISO 4217 code such as EUR", field="currency")


def check_facts(facts: object) -> None:
    """An order's facts for its checks: `total` with a `currency`, and a `region` (two letters)."""
    if not isinstance(facts, dict) or set(facts) - {"total", "currency", "region"}:
        raise InvalidCommandError("facts holds total, currency and region only", field="facts")
    if "total" in facts:
        check_money(facts["total"], facts.get("currency"))
    region = facts.get("region")
    if region is not None and not (isinstance(region, str) and len(region) == 2 and region.isalpha()):
        raise InvalidCommandError("region is an ISO 3166-1 alpha-2 country code", field="facts")


def check_lines(lines: object, field: str = "lines") -> None:
    """Order lines are a sequence of objects (dicts); their fields are checked by each command."""
    if not isinstance(lines, tuple | list) or not all(isinstance(x, dict) for x in lines):
        raise InvalidCommandError("lines must be a list of objects", field=field)


@dataclass(frozen=True, kw_only=True)
class Command:
    """A request to change the ledger. Subclasses declare their checks and their key:

    - `id_fields`: identifiers (1-128 printable characters); `optional_id_fields` may also be None;
    - `quantity_fields`: quantities (1 to MAX_QUANTITY);
    - `key_format`: the natural idempotency key, formatted from the fields (e.g. `"shipment:{order_id}/{shipment_id}"`);
      `{field:q}` percent-encodes the field (`/`, `:` and `%` included), so a key made of several
      ids is unambiguous (`"receipt-line:{reference:q}/{sku:q}/{location:q}"`);
    - `legacy_key_format`: the key the command had before its key named a document line (rows
      recorded under it still answer a repeat of that line, see `recorded_line`);
    - `check()`: any further rule.
    """

    id_fields: ClassVar[tuple[str, ...]] = ()
    optional_id_fields: ClassVar[tuple[str, ...]] = ()
    quantity_fields: ClassVar[tuple[str, ...]] = ()
    key_format: ClassVar[str | None] = None
    legacy_key_format: ClassVar[str | None] = None
    # Fields added after commands were recorded: left out of the fingerprint while None, so a
    # repeat of a command recorded before a field existed still has its first fingerprint.
    added_fields: ClassVar[tuple[str, ...]] = ()

    cause: dict[str, Any] = field(default_factory=dict, compare=False)

    @cached_property
    def key(self) -> str | None:
        """The natural idempotency key, or None when the command is idempotent by itself."""
        return self._format(self.key_format)

    @cached_property
    def legacy_key(self) -> str | None:
        """The key a ledger before document-line keys recorded this command under, or None."""
        return self._format(self.legacy_key_format)

    def recorded_line(self, outcome: Any) -> bool:
        """Whether a row recorded under `legacy_key` with this outcome was this very line.

        The legacy key named the document only (`receipt:{reference}`); the outcome names the
        SKU-location the line moved, so another line of the same document is told apart.
        """
        get = self.__dict__.get
        return (
            isinstance(outcome, dict)
            and outcome.get("sku") == get("sku")
            and outcome.get("location") == get("location")
        )

    def _format(self, pattern: str | None) -> str | None:
        if pattern is None:
            return None
        return pattern.format(**{f: _KeyPart(getattr(self, f)) for f in self.__dataclass_fields__})

    def fingerprint(self) -> str:
        """SHA-256 of the command's fields but `cause`, with its type: the same bytes as hashing
        `dataclasses.asdict(self)`, without its deep copy (orjson reads the values as they are)."""
        body = {name: getattr(self, name) for name in _fingerprinted(type(self))}
        for name in self.added_fields:
            if body[name] is None:
                del body[name]
        body["type"] = type(self).__name__
        return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()

    def validate(self) -> None:
        """Checks bounds that need no state; raises InvalidCommandError."""
        for name in self.id_fields:
            check_id(getattr(self, name), name)
        for name in self.optional_id_fields:
            if getattr(self, name) is not None:
                check_id(getattr(self, name), name)
        for name in self.quantity_fields:
            check_quantity(getattr(self, name), name)
        self.check()

    def check(self) -> None:
        """Rules beyond the declared identifiers and quantities."""


class _KeyPart:
    """A field's value in a key: `{f}` as it is, `{f:q}` percent-encoded (nothing left unescaped
    but letters, digits and `_.-~`)."""

    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        self.value = value

    def __format__(self, spec: str) -> str:
        if spec == "q":
            return quote(str(self.value), safe="")
        return format(self.value, spec)


_FINGERPRINTED: dict[type, tuple[str, ...]] = {}


def _fingerprinted(cls: type[Command]) -> tuple[str, ...]:
    """The fields a command's fingerprint covers: all but `cause` (computed once per type)."""
    names = _FINGERPRINTED.get(cls)
    if names is None:
        names = _FINGERPRINTED[cls] = tuple(f.name for f in fields(cls) if f.name != "cause")
    return names


# ------------------------------------------------------------------ stock


@dataclass(frozen=True, kw_only=True)
class ReceiveStock(Command):
    """One line of a received document: its key is `(reference, sku, location)`, so one purchase
    order is received line by line, and a repeat of any line appends nothing."""

    id_fields: ClassVar[tuple[str, ...]] = ("sku", "location", "reference")
    key_format: ClassVar[str | None] = "receipt-line:{reference:q}/{sku:q}/{location:q}"
    legacy_key_format: ClassVar[str | None] = "receipt:{reference}"
    quantity_fields: ClassVar[tuple[str, ...]] = ("quantity",)

    sku: str
    location: str
    quantity: int
    reference: str
    expected: bool = False
    if_match: int | None = None


@dataclass(frozen=True, kw_only=True)
class ExpectStock(Command):
    """Units announced (an advance shipping notice line): `incoming` at the location, due at
    `due_at` (None: at once)."""

    id_fields: ClassVar[tuple[str, ...]] = ("sku", "location", "reference")
    key_format: ClassVar[str | None] = "expected-line:{reference:q}/{sku:q}/{location:q}"
    legacy_key_format: ClassVar[str | None] = "expected:{reference}"
    quantity_fields: ClassVar[tuple[str, ...]] = ("quantity",)
    added_fields: ClassVar[tuple[str, ...]] = ("due_at",)

    sku: str
    location: str
    quantity: int
    reference: str
    due_at: datetime | None = None

    def check(self) -> None:
        if self.due_at is not None and (not isinstance(self.due_at, datetime) or self.due_at.tzinfo is None):
            raise InvalidCommandError("due_at must be a moment with a time zone", field="due_at")


@dataclass(frozen=True, kw_only=True)
class AdjustStock(Command):
    id_fields: ClassVar[tuple[str, ...]] = ("sku", "location", "reference", "reason")
    key_format: ClassVar[str | None] = "adjustment-line:{reference:q}/{sku:q}/{location:q}"
    legacy_key_format: ClassVar[str | None] = "adjustment:{reference}"

    sku: str
    location: str
    delta: int
    reason: str
    reference: str
    if_match: int | None = None

    def check(self) -> None:
        check_delta(self.delta)


@dataclass(frozen=True, kw_only=True)
class CountStock(Command):
    """A physical count: `counted` units were on the shelf at `counted_at` (absolute, not a delta).

    The writer turns it into a `StockCounted` against the state it holds: on hand becomes
    `counted` plus the movements recorded after `counted_at` (default: the moment it is decided),
    so a count never races the movements around it (no compare-and-set, no retry). A count older
    than the last applied count of the SKU-location is recorded and moves nothing. A count below
    what is reserved and unavailable is still recorded (the shelf is what it is): the answer
    names the `shortfall`.
    """

    id_fields: ClassVar[tuple[str, ...]] = ("sku", "location", "reference", "reason")
    key_format: ClassVar[str | None] = "count-line:{reference:q}/{sku:q}/{location:q}"
    legacy_key_format: ClassVar[str | None] = "count:{reference}"

    sku: str
    location: str
    counted: int
    reference: str
    reason: str = "cycle-count"
    counted_at: datetime | None = None

    def check(self) -> None:
        if isinstance(self.counted, bool) or not isinstance(self.counted, int):
            raise InvalidCommandError("counted must be a whole number", field="counted")
        if self.counted_at is not None and (
            not isinstance(self.counted_at, datetime) or self.counted_at.tzinfo is None
        ):
            raise InvalidCommandError("counted_at must be a moment with a time zone", field="counted_at")
        if self.counted != 0:
            check_quantity(self.counted, "counted")


@dataclass(frozen=True, kw_only=True)
class TransferStock(Command):
    id_fields: ClassVar[tuple[str, ...]] = ("sku", "reference", "from_location", "to_location")
    key_format: ClassVar[str | None] = "transfer-line:{reference:q}/{sku:q}/{from_location:q}/{to_location:q}"
    legacy_key_format: ClassVar[str | None] = "transfer:{reference}"
    quantity_fields: ClassVar[tuple[str, ...]] = ("quantity",)

    sku: str
    from_location: str
    to_location: str
    quantity: int
    reference: str
    if_match: int | None = None  # compare-and-set on the source's version
    # None: immediate; "dispatched": off on hand at the source, incoming at the destination;
    # "received": the incoming units land on hand at the destination.
    status: str | None = None

    @cached_property
    def key(self) -> str | None:
        base = self._format(self.key_format)
        return base if self.status is None else f"{base}/{self.status}"

    @cached_property
    def legacy_key(self) -> str | None:
        base = f"transfer:{self.reference}"
        return base if self.status is None else f"{base}:{self.status}"

    def recorded_line(self, outcome: Any) -> bool:
        """A legacy row names the line by its outcome: the destination (and the source, unless
        the row is a `received`, whose outcome holds the destination only)."""
        if not isinstance(outcome, dict) or not isinstance(outcome.get("to"), dict):
            return False
        to, src = outcome["to"], outcome.get("from")
        return (
            to.get("sku") == self.sku
            and to.get("location") == self.to_location
            and (not isinstance(src, dict) or src.get("location") == self.from_location)
        )

    def check(self) -> None:
        if self.from_location == self.to_location:
            raise InvalidCommandError("a transfer needs two different locations", field="to_location")
        if self.status not in (None, "dispatched", "received"):
            raise InvalidCommandError("a transfer's status is dispatched or received", field="status")


@dataclass(frozen=True, kw_only=True)
class Reserve(Command):
    """A reservation outside an order capture (a cart or checkout hold), usually with an expiry."""

    id_fields: ClassVar[tuple[str, ...]] = ("sku", "location", "order_id", "line_id")
    quantity_fields: ClassVar[tuple[str, ...]] = ("quantity",)

    sku: str
    location: str
    order_id: str
    line_id: str
    quantity: int
    expires_at: datetime | None = None

    @cached_property
    def key(self) -> str:
        return f"reservation:{reservation_id(self.order_id, self.line_id)}"


@dataclass(frozen=True, kw_only=True)
class ReleaseReservation(Command):
    id_fields: ClassVar[tuple[str, ...]] = ("sku", "location", "reference")
    key_format: ClassVar[str | None] = "release:{reference}"
    quantity_fields: ClassVar[tuple[str, ...]] = ("quantity",)

    sku: str
    location: str
    reservation_id: str
    quantity: int
    reason: str
    reference: str


@dataclass(frozen=True, kw_only=True)
class ReleaseExpired(Command):
    id_fields: ClassVar[tuple[str, ...]] = ("sku", "location")

    sku: str
    location: str
    now: datetime


@dataclass(frozen=True, kw_only=True)
class CoverShortfall(Command):
    """Moves the reservations a physical movement left uncovered at a SKU-location (available below
    zero) to other locations of each order's channel group, as far as they have units."""

    id_fields: ClassVar[tuple[str, ...]] = ("sku", "location")

    sku: str
    location: str


@dataclass(frozen=True, kw_only=True)
class FillBackorders(Command):
    """Reserves units free at a SKU-location for the SKU's backordered lines whose group includes
    it, oldest capture first: for units a movement did not free (a location that now allows
    backorders, a channel whose group gained the location). The sweeper sends it."""

    id_fields: ClassVar[tuple[str, ...]] = ("sku", "location")

    sku: str
    location: str


@dataclass(frozen=True, kw_only=True)
class SellDirect(Command):
    """A store sale with no reservation (a till), or a sale of a named reservation."""

    id_fields: ClassVar[tuple[str, ...]] = ("sku", "location", "reference")
    key_format: ClassVar[str | None] = "sale:{reference}"
    quantity_fields: ClassVar[tuple[str, ...]] = ("quantity",)

    sku: str
    location: str
    quantity: int
    reference: str
    reservation_id: str | None = None
    record_shortfall: bool = False


@dataclass(frozen=True, kw_only=True)
class ReturnToStock(Command):
    """A return with no order in the ledger (a store return at the till)."""

    id_fields: ClassVar[tuple[str, ...]] = ("sku", "location", "reference")
    key_format: ClassVar[str | None] = "store-return:{reference}"
    quantity_fields: ClassVar[tuple[str, ...]] = ("quantity",)

    sku: str
    location: str
    quantity: int
    disposition: str
    reference: str

    def check(self) -> None:
        if self.disposition not in ("restock", "damaged"):
            raise InvalidCommandError("disposition must be restock or damaged", field="disposition")


@dataclass(frozen=True, kw_only=True)
class WriteOffDamaged(Command):
    id_fields: ClassVar[tuple[str, ...]] = ("sku", "location", "reference")
    key_format: ClassVar[str | None] = "write-off:{reference}"
    quantity_fields: ClassVar[tuple[str, ...]] = ("quantity",)

    sku: str
    location: str
    quantity: int
    reference: str


@dataclass(frozen=True, kw_only=True)
class CorrectMovement(Command):
    """Reverses a mis-posted movement and, when `to_sku`/`to_location` are given, re-posts it there.

    Both correction events name the original movement (its SKU-location and stream version).
    """

    id_fields: ClassVar[tuple[str, ...]] = ("sku", "location", "reference", "reason")
    key_format: ClassVar[str | None] = "correction:{reference}"
    optional_id_fields: ClassVar[tuple[str, ...]] = ("to_sku", "to_location")

    sku: str
    location: str
    version: int
    reason: str
    reference: str
    to_sku: str | None = None
    to_location: str | None = None

    def check(self) -> None:
        if isinstance(self.version, bool) or not isinstance(self.version, int) or self.version < 1:
            raise InvalidCommandError("version must be a positive whole number", field="version")


@dataclass(frozen=True, kw_only=True)
class ConfigureBackorders(Command):
    id_fields: ClassVar[tuple[str, ...]] = ("sku", "location")

    sku: str
    location: str
    allowed: bool


@dataclass(frozen=True, kw_only=True)
class ConfigureLocation(Command):
    """A location's policy for every SKU at it, SKUs first seen later included
    (`PUT /v1/locations/{location}`): whether it may reserve beyond what is available."""

    id_fields: ClassVar[tuple[str, ...]] = ("location",)

    location: str
    backorders: bool

    def check(self) -> None:
        if not isinstance(self.backorders, bool):
            raise InvalidCommandError("backorders must be true or false", field="backorders")


# ------------------------------------------------------------------ orders


@dataclass(frozen=True, kw_only=True)
class CaptureOrder(Command):
    """Captures an order and reserves each line, at its named location or in the channel's group.

    With `allow_partial`, lines that cannot be reserved stay unreserved instead of refusing the order.
    It has no `key_format`: the order id itself is the natural key (the aggregate exists or not).
    """

    id_fields: ClassVar[tuple[str, ...]] = ("order_id", "channel")

    order_id: str
    channel: str
    lines: tuple[dict[str, Any], ...]
    external_refs: dict[str, str] = field(default_factory=dict)
    platform_status: dict[str, Any] = field(default_factory=dict)
    allow_partial: bool = False
    expires_at: datetime | None = None
    # what the order's checks may read (`ledger.validation`): total, currency, region
    facts: dict[str, Any] = field(default_factory=dict)
    # a hold (`PlaceHold`) the order takes over, and when the order arrived (a hold past its
    # expiry at that moment is not taken over: the order is late)
    reservation_id: str | None = None
    received_at: datetime | None = None
    optional_id_fields: ClassVar[tuple[str, ...]] = ("reservation_id",)
    added_fields: ClassVar[tuple[str, ...]] = ("reservation_id", "received_at")

    def check(self) -> None:
        check_lines(self.lines)
        if not self.lines:
            raise InvalidCommandError("an order needs at least one line", field="lines")
        check_facts(self.facts)
        check_sourced_lines(self.lines)


def check_sourced_lines(lines: Sequence[dict[str, Any]]) -> None:
    """The lines of an order or a hold: each with its id (once), a SKU, a quantity and maybe a
    location; raises InvalidCommandError."""
    seen = set()
    for line in lines:
        check_id(line.get("line_id"), "line_id"), check_id(line.get("sku"), "sku")
        check_quantity(line.get("quantity"))
        if line.get("location") is not None:
            check_id(line["location"], "location")
        if line["line_id"] in seen:
            raise InvalidCommandError(f"line {line['line_id']} appears twice", field="lines")
        seen.add(line["line_id"])


@dataclass(frozen=True, kw_only=True)
class PlaceHold(Command):
    """Holds units for a checkout until `expires_at` (`POST /v1/reservations`), each line
    allocated across the channel's group like an order line, or at its named location; all lines
    or none. Keyed by the hold's id: the same body again answers as the first time, another
    body under the same id is refused."""

    id_fields: ClassVar[tuple[str, ...]] = ("reservation_id", "channel")
    key_format: ClassVar[str | None] = "hold:{reservation_id:q}"

    reservation_id: str
    channel: str
    lines: tuple[dict[str, Any], ...]
    expires_at: datetime

    def check(self) -> None:
        check_lines(self.lines)
        if not self.lines:
            raise InvalidCommandError("a hold needs at least one line", field="lines")
        if not isinstance(self.expires_at, datetime) or self.expires_at.tzinfo is None:
            raise InvalidCommandError("expires_at must be a moment with its offset", field="expires_at")
        check_sourced_lines(self.lines)


@dataclass(frozen=True, kw_only=True)
class ReleaseHold(Command):
    """Voids a hold (`DELETE /v1/reservations/{id}`): the units it still holds are released.
    A hold already over (released, taken over, expired) is left as it is."""

    id_fields: ClassVar[tuple[str, ...]] = ("reservation_id",)

    reservation_id: str


@dataclass(frozen=True, kw_only=True)
class ReleaseOrder(Command):
    """An operator releases an order its checks held: it goes on to the ERP."""

    id_fields: ClassVar[tuple[str, ...]] = ("order_id", "by")

    order_id: str
    by: str


@dataclass(frozen=True, kw_only=True)
class RemapOrderLine(Command):
    """Moves an open order line captured on a wrong SKU to the right one, after a mapping fix.

    The line's reservation is released on the wrong SKU-location and its open units reserved on
    the right SKU (at the same location first, then the channel's), or left unreserved when none
    are free. `mapping` names the fix (`{key, version}`). A line with shipped units is refused.
    """

    id_fields: ClassVar[tuple[str, ...]] = ("order_id", "line_id", "sku", "reference")
    key_format: ClassVar[str | None] = "line-remap:{reference}"

    order_id: str
    line_id: str
    sku: str
    mapping: dict[str, Any]
    reference: str

    def check(self) -> None:
        if not isinstance(self.mapping, dict):
            raise InvalidCommandError("mapping must be an object", field="mapping")


@dataclass(frozen=True, kw_only=True)
class ShipOrder(Command):
    id_fields: ClassVar[tuple[str, ...]] = ("order_id", "shipment_id")
    key_format: ClassVar[str | None] = "shipment:{order_id}/{shipment_id}"

    order_id: str
    shipment_id: str
    lines: tuple[dict[str, Any], ...]  # {line_id, quantity, location?}

    def check(self) -> None:
        check_lines(self.lines)
        if not self.lines:
            raise InvalidCommandError("a shipment needs at least one line", field="lines")
        for line in self.lines:
            check_id(line.get("line_id"), "line_id")
            check_quantity(line.get("quantity"))
            if line.get("location") is not None:
                check_id(line["location"], "location")


@dataclass(frozen=True, kw_only=True)
class CancelOrder(Command):
    """Cancels the whole order (no `lines`) or the given quantities of some lines."""

    id_fields: ClassVar[tuple[str, ...]] = ("order_id", "reason")

    order_id: str
    reason: str
    lines: tuple[dict[str, Any], ...] | None = None
    reference: str | None = None

    @cached_property
    def key(self) -> str:
        return f"cancellation:{self.order_id}/{self.reference or 'whole'}"

    def check(self) -> None:
        if self.lines is not None:
            check_lines(self.lines)
            if self.reference is None:
                raise InvalidCommandError("a line cancellation needs a reference", field="reference")
            for line in self.lines:
                check_id(line.get("line_id"), "line_id")
                check_quantity(line.get("quantity"))


@dataclass(frozen=True, kw_only=True)
class AmendOrder(Command):
    """Adds units to an order (an edit): more of a line, or new lines, reserved where they can be."""

    id_fields: ClassVar[tuple[str, ...]] = ("order_id", "reference")
    key_format: ClassVar[str | None] = "amend:{order_id}/{reference}"

    order_id: str
    reference: str
    lines: tuple[dict[str, Any], ...]  # {line_id, sku, quantity, location?, stock?}

    def check(self) -> None:
        check_lines(self.lines)
        if not self.lines:
            raise InvalidCommandError("an edit needs at least one line", field="lines")
        for line in self.lines:
            check_id(line.get("line_id"), "line_id")
            check_id(line.get("sku"), "sku")
            check_quantity(line.get("quantity"))


@dataclass(frozen=True, kw_only=True)
class ReturnItems(Command):
    id_fields: ClassVar[tuple[str, ...]] = ("order_id", "return_id")
    key_format: ClassVar[str | None] = "return:{order_id}/{return_id}"

    order_id: str
    return_id: str
    lines: tuple[dict[str, Any], ...]  # {line_id, quantity, disposition, location?}

    def check(self) -> None:
        check_lines(self.lines)
        if not self.lines:
            raise InvalidCommandError("a return needs at least one line", field="lines")
        for line in self.lines:
            check_id(line.get("line_id"), "line_id")
            check_quantity(line.get("quantity"))
            if line.get("disposition") not in ("restock", "damaged"):
                raise InvalidCommandError("disposition must be restock or damaged", field="disposition")
            if line.get("location") is not None:
                check_id(line["location"], "location")


@dataclass(frozen=True, kw_only=True)
class RecordRefund(Command):
    id_fields: ClassVar[tuple[str, ...]] = ("order_id", "refund_id", "currency", "amount")
    key_format: ClassVar[str | None] = "refund:{order_id}/{refund_id}"

    order_id: str
    refund_id: str
    amount: str
    currency: str
    lines: tuple[dict[str, Any], ...] = ()
    transactions: tuple[str, ...] = ()  # the payment transactions that carry the refund

    def check(self) -> None:
        check_lines(self.lines)
        check_money(self.amount, self.currency)
        for t in self.transactions:
            check_id(t, "transactions")


@dataclass(frozen=True, kw_only=True)
class ConfirmRefund(Command):
    """The refund's transactions succeeded (the money moved); its credit memo goes to the ERP."""

    id_fields: ClassVar[tuple[str, ...]] = ("order_id", "refund_id", "transaction")
    key_format: ClassVar[str | None] = "refund-confirmed:{order_id}/{refund_id}"

    order_id: str
    refund_id: str
    amount: str
    currency: str
    transaction: str

    def check(self) -> None:
        check_money(self.amount, self.currency)


@dataclass(frozen=True, kw_only=True)
class RecordRefundTransaction(Command):
    """One payment transaction of a refund succeeded or failed. The refund is confirmed once none
    of its transactions is pending, for the sum of the successful ones; failed when none succeeded.
    A repeat of a transaction's outcome records nothing (no natural key: the order decides)."""

    id_fields: ClassVar[tuple[str, ...]] = ("order_id", "refund_id", "transaction")

    order_id: str
    refund_id: str
    transaction: str
    status: str  # success | failure
    amount: str

    def check(self) -> None:
        if self.status not in ("success", "failure"):
            raise InvalidCommandError("status is success or failure", field="status")
        check_money(self.amount, "XXX")


@dataclass(frozen=True, kw_only=True)
class FailRefund(Command):
    """A refund transaction failed: the money did not move."""

    id_fields: ClassVar[tuple[str, ...]] = ("order_id", "refund_id", "transaction")
    key_format: ClassVar[str | None] = "refund-failed:{order_id}/{refund_id}/{transaction}"

    order_id: str
    refund_id: str
    transaction: str
    error: str

    def check(self) -> None:
        if not isinstance(self.error, str):
            raise InvalidCommandError("error must be text", field="error")


@dataclass(frozen=True, kw_only=True)
class SettleRefund(Command):
    id_fields: ClassVar[tuple[str, ...]] = ("order_id", "refund_id", "settlement_reference")
    key_format: ClassVar[str | None] = "settlement:{order_id}/{refund_id}"

    order_id: str
    refund_id: str
    settlement_reference: str


@dataclass(frozen=True, kw_only=True)
class RecordErpPosting(Command):
    id_fields: ClassVar[tuple[str, ...]] = ("order_id", "document")
    key_format: ClassVar[str | None] = "erp-posted:{order_id}/{document}"
    quantity_fields: ClassVar[tuple[str, ...]] = ("attempts",)

    order_id: str
    document: str
    attempts: int
    erp_reference: str | None = None

    def check(self) -> None:
        if self.erp_reference is not None and not isinstance(self.erp_reference, str):
            raise InvalidCommandError("erp_reference must be text", field="erp_reference")


@dataclass(frozen=True, kw_only=True)
class RecordErpFailure(Command):
    id_fields: ClassVar[tuple[str, ...]] = ("order_id", "document")
    key_format: ClassVar[str | None] = "erp-failed:{order_id}/{document}/{attempt}"
    quantity_fields: ClassVar[tuple[str, ...]] = ("attempt",)

    order_id: str
    document: str
    attempt: int
    error: str
    uncertain: bool = False  # no answer came (a timeout): the ERP may have accepted the document

    def check(self) -> None:
        if not isinstance(self.error, str):
            raise InvalidCommandError("error must be text", field="error")


@dataclass(frozen=True, kw_only=True)
class InvoiceOrder(Command):
    id_fields: ClassVar[tuple[str, ...]] = ("order_id", "invoice_id")

    order_id: str
    invoice_id: str


@dataclass(frozen=True, kw_only=True)
class ObservePlatformStatus(Command):
    id_fields: ClassVar[tuple[str, ...]] = ("order_id",)

    order_id: str
    status: dict[str, Any]

    def check(self) -> None:
        if not isinstance(self.status, dict):
            raise InvalidCommandError("status must be an object", field="status")


@dataclass(frozen=True, kw_only=True)
class AddCorrelationIds(Command):
    id_fields: ClassVar[tuple[str, ...]] = ("order_id",)

    order_id: str
    ids: dict[str, str]

    def check(self) -> None:
        if not isinstance(self.ids, dict):
            raise InvalidCommandError("ids must be an object", field="ids")
        for k, v in self.ids.items():
            check_id(k, "system"), check_id(v, "id")


# -------------------------------------------------------------- read side


@dataclass(frozen=True, kw_only=True)
class ChangeChannelPolicy(Command):
    """Records a channel policy version (validated and stored by the channel adapter) in the log."""

    id_fields: ClassVar[tuple[str, ...]] = ("channel",)
    key_format: ClassVar[str | None] = "channel-policy:{channel}:{version}"
    quantity_fields: ClassVar[tuple[str, ...]] = ("version",)

    channel: str
    version: int
    policy: dict[str, Any]
    changed_by: str

    def check(self) -> None:
        if not isinstance(self.policy, dict):
            raise InvalidCommandError("policy must be an object", field="policy")
        if not isinstance(self.changed_by, str) or len(self.changed_by) > 300:
            raise InvalidCommandError("changed_by must be text", field="changed_by")


@dataclass(frozen=True, kw_only=True)
class RecordRebuild(Command):
    """Marks that a read model's rebuilt tables were swapped in (each rebuild is a new fact)."""

    id_fields: ClassVar[tuple[str, ...]] = ("name",)

    name: str
    position: int
    corrected: int
    by: str

    def check(self) -> None:
        for n, f in ((self.position, "position"), (self.corrected, "corrected")):
            if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                raise InvalidCommandError(f"{f} must be a whole number", field=f)
        if not isinstance(self.by, str) or len(self.by) > 300:
            raise InvalidCommandError("by must be text", field="by")


# The prefixes of every legacy key: the writer looks legacy rows up only while one exists.
LEGACY_KEY_PREFIXES: tuple[str, ...] = tuple(
    sorted(
        {
            cls.legacy_key_format.split("{", 1)[0]
            for cls in Command.__subclasses__()
            if cls.legacy_key_format is not None
        }
    )
)
