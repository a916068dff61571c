"""Money in one place: amounts are ``Decimal`` in cents, rounded half up (as payers and
CMS fee schedules round), never float."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

CENTS = Decimal("0.01")
ZERO = Decimal("0.00")


def money(value: Decimal) -> Decimal:
    """``value`` to the cent, half up."""
    return value.quantize(CENTS, rounding=ROUND_HALF_UP)
