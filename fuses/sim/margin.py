"""Initial and maintenance margin tiered by position notional (tables as data).

The tier type and its arithmetic live in ``alpha.domain.margin`` (the core sizes margin with
the same tiers through ``Instrument.margin_tiers``); this module holds the simulated venues'
tables. Maintenance margin is charged marginally, tier by tier, so it is continuous in
notional. Initial margin is notional / leverage, with leverage capped by the tier the
notional falls in.
"""

from __future__ import annotations

from decimal import Decimal

from alpha.domain.margin import MarginTier, MarginTiers

__all__ = ["MARGIN_TIERS", "MarginTier", "MarginTiers", "tiers_for"]


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

