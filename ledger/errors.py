"""Domain errors. Each carries a stable `code` that the HTTP layer maps to a problem type."""

from __future__ import annotations


class LedgerError(Exception):
    """Base class of every error the domain raises on purpose."""

    code = "ledger-error"

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidCommandError(LedgerError):
    """A command breaks a bound (quantity, identifier) before any state is read."""

    code = "validation-error"


class InsufficientStockError(LedgerError):
    """A reservation, sale, transfer or adjustment would take more than is available."""

    code = "insufficient-stock"

    @classmethod
    def short(
        cls, verb: str, quantity: int, sku: str, location: str, available: int, prep: str = "at"
    ) -> InsufficientStockError:
        """`cannot {verb} {quantity} of {sku} {prep} {location}: {available} available`."""
        return cls(
            f"cannot {verb} {quantity} of {sku} {prep} {location}: {available} available",
            sku=sku,
            location=location,
            requested=quantity,
            available=available,
        )


class ReservationError(LedgerError):
    """A release or sale names more than the reservation holds, or no reservation at all."""

    code = "reservation-conflict"


class OrderNotFoundError(LedgerError):
    code = "order-not-found"


class HoldNotFoundError(LedgerError):
    """No hold (`POST /v1/reservations`) under that reservation id."""

    code = "reservation-not-found"


class StockNotFoundError(LedgerError):
    code = "stock-not-found"


class OrderConflictError(LedgerError):
    """An order id captured again with other lines, or an order step that its state forbids."""

    code = "order-conflict"


class IdempotencyConflictError(LedgerError):
    """The same idempotency key arrived with another request."""

    code = "idempotency-key-reused"


class VersionConflictError(LedgerError):
    """A compare-and-set (If-Match) named another version than the current one."""

    code = "version-conflict"


class CorrectionError(LedgerError):
    """A correction names a movement that does not exist or was already corrected."""

    code = "correction-conflict"
