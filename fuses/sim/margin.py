"""Initial and maintenance margin tiered by position notional (tables as data).

Maintenance margin is charged marginally, tier by tier (the same total as the venues'
"rate x notional - cumulative amount" formula), so it is continuous in notional. Initial
margin is notional / leverage, with leverage capped by the tier the notional falls in.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from alpha.domain.money import ZERO

INFINITE = Decimal("Infinity")


@dataclass(frozen=True, slots=True)
class MarginTier:
    """Notional up to ``up_to`` (quote): at most ``max_leverage``, maintenance rate ``maintenance_rate``."""

    up_to: Decimal
    max_leverage: Decimal
    maintenance_rate: Decimal


def _tiers(*rows: tuple[str, str, str]) -> tuple[MarginTier, ...]:
    return tuple(MarginTier(Decimal(a), Decimal(b), Decimal(c)) for a, b, c in rows)


# Shaped after Binance USD-M brackets, coarser. Keyed by base asset; "*" for the rest.
MARGIN_TIERS: dict[str, tuple[MarginTier, ...]] = {
    "BTC": _tiers(
        ("250000", "50", "0.005"),
        ("1000000", "20", "0.01"),
        ("5000000", "10", "0.025"),
        ("20000000", "5", "0.05"),
        ("Infinity", "2", "0.125"),
    ),
    "ETH": _tiers(
        ("250000", "50", "0.005"),
        ("1000000", "20", "0.01"),
        ("5000000", "10", "0.025"),
        ("20000000", "5", "0.05"),
        ("Infinity", "2", "0.125"),
    ),
    "*": _tiers(
        ("50000", "20", "0.01"),
        ("250000", "10", "0.025"),
        ("1000000", "5", "0.05"),
        ("Infinity", "2", "0.125"),
    ),
}


def tiers_for(base: str, table: dict[str, tuple[MarginTier, ...]] | None = None) -> tuple[MarginTier, ...]:
    """Return the tier table of ``base`` (or the default row)."""
    table = MARGIN_TIERS if table is None else table
    return table.get(base, table["*"])


def maintenance_margin(notional: Decimal, tiers: tuple[MarginTier, ...]) -> Decimal:
    """Maintenance margin of an absolute ``notional``, charged tier by tier."""
    notional = abs(notional)
    total = ZERO
    lower = ZERO
    for tier in tiers:
        if notional <= lower:
            break
        portion = min(notional, tier.up_to) - lower
        total += portion * tier.maintenance_rate
        lower = tier.up_to
    return total


def max_leverage_at(notional: Decimal, tiers: tuple[MarginTier, ...]) -> Decimal:
    """The highest leverage allowed for a position of absolute ``notional``."""
    notional = abs(notional)
    for tier in tiers:
        if notional <= tier.up_to:
            return tier.max_leverage
    return tiers[-1].max_leverage


def initial_margin(notional: Decimal, leverage: Decimal, tiers: tuple[MarginTier, ...]) -> Decimal:
    """Initial margin of an absolute ``notional`` at the chosen ``leverage`` (capped by its tier)."""
    notional = abs(notional)
    if notional == 0:
        return ZERO
    return notional / min(leverage, max_leverage_at(notional, tiers))
