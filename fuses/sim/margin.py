"""Initial and maintenance margin tiered by position notional (tables as data).

The tier type and its arithmetic live in ``alpha.domain.margin`` (the core sizes margin with
the same tiers through ``Instrument.margin_tiers``); this module holds the simulated venues'
tables. Maintenance margin is charged marginally, tier by tier, so it is continuous in
notional. Initial margin is notional / leverage, with leverage capped by the tier the
notional falls in.
"""

from __future__ import annotations

from decimal import Decimal

from alpha.domain.margin import INFINITE, MarginTier, MarginTiers

__all__ = [
    "INFINITE",
    "MARGIN_TIERS",
    "MarginTier",
    "MarginTiers",
    "initial_margin",
    "maintenance_margin",
    "max_leverage_at",
    "tiers_for",
]


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
    return MarginTiers(tiers).maintenance_margin(notional)


def max_leverage_at(notional: Decimal, tiers: tuple[MarginTier, ...]) -> Decimal:
    """The highest leverage allowed for a position of absolute ``notional``."""
    return MarginTiers(tiers).max_leverage_at(notional)


def initial_margin(notional: Decimal, leverage: Decimal, tiers: tuple[MarginTier, ...]) -> Decimal:
    """Initial margin of an absolute ``notional`` at the chosen ``leverage`` (capped by its tier)."""
    return MarginTiers(tiers).initial_margin(notional, leverage)
