"""Money in one place: amounts are ``Decimal`` in cents, rounded half up (as payers and
CMS fee schedules round), never float."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

CENTS = Decimal("0.01")
ZERO = Decimal("0.00")


def money(value: Decimal) -> Decimal:
    """``value`` to the cent, half up."""
    return value.quantize(CENTS, rounding=ROUND_HALF_UP)


#: The wire's money type, Avro ``decimal(12, 2)`` in every schema (tests/unit/model checks it):
#: the largest amount an event can carry.
WIRE_PRECISION = 12
MAX_AMOUNT = Decimal(10) ** (WIRE_PRECISION - 2) - CENTS


def on_the_wire(value: Decimal) -> bool:
    """Whether ``value`` fits the wire's money type (an amount beyond it cannot be sent)."""
    return abs(value) <= MAX_AMOUNT
