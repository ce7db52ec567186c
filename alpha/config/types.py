"""Field types for the strategy file: exact decimals, shares and durations (secret references are in ``schema``)."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, PlainSerializer

from alpha.domain.money import to_decimal

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")
_UNITS = {"ms": Decimal("0.001"), "s": Decimal(1), "m": Decimal(60), "h": Decimal(3600), "d": Decimal(86400), "w": Decimal(604800)}
MAX_DIGITS = 28


def _exact(value: Any) -> Decimal:
    """Read a YAML/JSON scalar as an exact Decimal; refuse what cannot be exact."""
    # The YAML loader keeps numbers as exact decimals; a binary float here came from code or
    # JSON and to_decimal takes it only if its shortest repr is what was meant.
    result = to_decimal(value.replace("_", "") if isinstance(value, str) else value, field="")
    if len(result.as_tuple().digits) > MAX_DIGITS:
        raise ValueError(f"{value} has more than {MAX_DIGITS} significant digits and cannot be held exactly")
    return result


def _non_negative(v: Decimal) -> Decimal:
    if v < 0:
        raise ValueError(f"must not be negative, got {v}")
    return v


def _positive(v: Decimal) -> Decimal:
    if v <= 0:
        raise ValueError(f"must be positive, got {v}")
    return v


def _share(v: Decimal) -> Decimal:
    if v < 0 or v > 1:
        raise ValueError(f"must be a share between 0 and 1 (e.g. '0.10' for 10%), got {v}")
    return v


def _seconds(seconds: Decimal) -> timedelta:
    """A duration of exactly ``seconds`` (to the microsecond), fractions kept: 0.5 is 500 ms."""
    return timedelta(microseconds=int((seconds * 1_000_000).to_integral_value()))


def parse_duration(value: Any) -> timedelta:
    """Read a duration: "30s", "5m", "8h", "7d", "250ms", or a number of seconds (fractions kept)."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | Decimal) and not isinstance(value, bool):
        return _seconds(Decimal(value))
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            return _seconds(Decimal(m.group(1)) * _UNITS[m.group(2)])
    raise ValueError(f"{value!r} is not a duration; write e.g. '30s', '5m', '8h', '7d'")


def _positive_duration(v: timedelta) -> timedelta:
    if v.total_seconds() <= 0:
        raise ValueError("must be a positive duration")
    return v


def format_duration(td: timedelta) -> str:
    """Write a duration the way the strategy file takes it ("8h", "90s", "250ms"); it reads back equal."""
    micro = (td.days * 86400 + td.seconds) * 1_000_000 + td.microseconds
    if micro % 1_000_000:
        return f"{micro // 1000}ms" if micro % 1000 == 0 else f"{Decimal(micro) / 1_000_000}s"
    seconds = micro // 1_000_000
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


_dec_ser = PlainSerializer(lambda d: str(d), return_type=str, when_used="json")
_td_ser = PlainSerializer(format_duration, return_type=str, when_used="json")

Exact = Annotated[Decimal, BeforeValidator(_exact), _dec_ser]
NonNegative = Annotated[Decimal, BeforeValidator(_exact), AfterValidator(_non_negative), _dec_ser]
Positive = Annotated[Decimal, BeforeValidator(_exact), AfterValidator(_positive), _dec_ser]
Share = Annotated[Decimal, BeforeValidator(_exact), AfterValidator(_share), _dec_ser]
Duration = Annotated[timedelta, BeforeValidator(parse_duration), AfterValidator(_positive_duration), _td_ser]
