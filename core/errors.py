"""The daemon's own error tree.

::

    TraderError               root of everything this project raises on purpose
    ├── ValidationError       bad input (signal, command, order, setting); final, names the field
    ├── InvalidTransition     a status move core/order_model.py forbids: a bug, never retried
    ├── PositionConflict      a second open position on one market; final
    ├── AuditUnavailable      no new risk while the audit trail cannot be kept; retry later
    └── ExchangeError         (core/venue.py) everything a venue can answer

Third-party exceptions never cross a module boundary untranslated: ccxt's are mapped in
``exchanges/ccxt_errors.py``, asyncpg's stay inside ``database/``.
"""

from __future__ import annotations

from decimal import Decimal


class TraderError(Exception):
    """Root of every error this project raises deliberately."""


class ValidationError(TraderError, ValueError):
    """Input that breaks a rule. Retrying the same input is pointless.

    ``field`` names the offending input and ``rule`` says what it must satisfy, so a
    person reading a rejected signal knows what to change.
    """

    def __init__(self, field: str, rule: str, value: object = None) -> None:
        self.field = field
        self.rule = rule
        self.value = value
        shown = "" if value is None else f" (got {_short(value)})"
        super().__init__(f"{field}: {rule}{shown}")


class InvalidTransition(TraderError):
    """An order status move that the state machine does not allow (a programming error)."""

    def __init__(self, client_order_id: str, old: str, new: str) -> None:
        self.client_order_id = client_order_id
        self.old = old
        self.new = new
        super().__init__(f"order {client_order_id}: {old} -> {new} is not an allowed move")


class PositionConflict(TraderError):
    """A position is already open (or opening) on this market; a second one is refused."""


class AuditUnavailable(TraderError):
    """A new entry or order refused because the audit trail cannot be kept (the database
    and the spool's disk both refuse records, or the schema refuses them): nothing was
    sent. Closing, cancelling and protecting still work (core/audit_gate.py)."""

    def __init__(self) -> None:
        super().__init__("audit trail unavailable")


def _short(value: object, limit: int = 60) -> str:
    """Render hostile or huge input safely for an error message.

    Numbers read as a person wrote them (``0.01``, not ``Decimal('0.01')``; ``1000000``,
    not ``1E+6``); anything
    else keeps its ``repr``, so a hostile string stays quoted with its control characters
    escaped and cannot pass for part of the message.
    """
    numeric = isinstance(value, int | float | Decimal) and not isinstance(value, bool)
    try:
        if isinstance(value, Decimal) and value.is_finite():
            text = format(value, "f")  # never 1.00E+6 for a 1000000 someone typed
        else:
            text = str(value) if numeric else repr(value)
    except ValueError:  # an int beyond Python's digit limit for conversion to text
        text = "<a number too long to show>"
    return text if len(text) <= limit else text[: limit - 3] + "..."
