"""Exact money: every price, quantity, rate and amount is a ``Decimal``.

Conversion from the outside world happens here and only here (ccxt strings, YAML scalars,
JSON numbers). A value that is not finite, or a binary float that is not exactly the decimal
it claims to be, is refused rather than rounded.
"""

from __future__ import annotations

from decimal import ROUND_DOWN, ROUND_HALF_EVEN, ROUND_UP, Decimal, InvalidOperation

ZERO = Decimal(0)
ONE = Decimal(1)


class NotExact(ValueError):
    """A number cannot be represented exactly as the decimal it should be."""


def to_decimal(value: object, *, field: str = "value") -> Decimal:
    """Convert ``value`` to a finite ``Decimal`` or raise ``NotExact``.

    Strings and ints convert exactly. A float is accepted only when its shortest repr
    round-trips to the same binary value *and* has at most 15 significant digits, so that
    ``0.1`` (what the author wrote) is taken as ``Decimal("0.1")`` but a float that came out
    of arithmetic (``0.1 + 0.2``) is refused.
    Errors name the value as ``field`` (empty: unnamed, when the caller says where it is).
    """
    where = f"{field}: " if field else ""
    if isinstance(value, bool):
        raise NotExact(f"{where}expected a number, got a boolean")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, float):
        text = repr(value)
        digits = len(text.lstrip("-").replace(".", "").split("e")[0].split("E")[0].lstrip("0"))
        if digits > 15:
            raise NotExact(
                f"{where}float {text} is not an exact decimal; write it as a string, e.g. '{text[:12]}'"
            )
        result = Decimal(text)
    elif isinstance(value, str):
        try:
            result = Decimal(value.strip())
        except InvalidOperation as exc:
            raise NotExact(f"{where}{value!r} is not a number") from exc
    else:
        raise NotExact(f"{where}expected a number, got {type(value).__name__}")
    if not result.is_finite():
        raise NotExact(f"{where}{value!r} is not finite")
    return result


def floor_to_step(value: Decimal, step: Decimal) -> Decimal:
    """Round ``value`` towards zero to a whole multiple of ``step``."""
    if step <= 0:
        return value
    return (value / step).to_integral_value(rounding=ROUND_DOWN) * step


def ceil_to_step(value: Decimal, step: Decimal) -> Decimal:
    """Round ``value`` away from zero to a whole multiple of ``step``."""
    if step <= 0:
        return value
    return (value / step).to_integral_value(rounding=ROUND_UP) * step


def round_to_step(value: Decimal, step: Decimal) -> Decimal:
    """Round ``value`` to the nearest multiple of ``step`` (banker's rounding on ties)."""
    if step <= 0:
        return value
    return (value / step).to_integral_value(rounding=ROUND_HALF_EVEN) * step


def is_multiple(value: Decimal, step: Decimal) -> bool:
    """Say whether ``value`` is a whole multiple of ``step``."""
    if step <= 0:
        return True
    return (value % step) == 0
