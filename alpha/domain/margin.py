"""Margin a venue charges on a perp position, tiered by notional (the venue's leverage brackets).

Maintenance margin is charged marginally, tier by tier (the same total as the venues'
"rate x notional - cumulative amount" formula), so it is continuous in notional. Initial
margin is notional / leverage, with the leverage capped by the tier the notional falls in.
Without tiers (a venue that publishes none) initial margin is notional / leverage.
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


@dataclass(frozen=True, slots=True)
class MarginTiers:
    """A market's margin brackets, lowest notional first; the last tier is unbounded in practice."""

    tiers: tuple[MarginTier, ...]

    def __post_init__(self) -> None:
        if not self.tiers:
            raise ValueError("margin tiers need at least one tier")
        lower = ZERO
        for tier in self.tiers:
            if not tier.up_to > lower:
                raise ValueError(f"margin tiers must grow in notional: {tier.up_to} after {lower}")
            if not tier.max_leverage.is_finite() or tier.max_leverage <= 0:
                raise ValueError(f"margin tier up to {tier.up_to}: max leverage {tier.max_leverage} must be positive")
            if not tier.maintenance_rate.is_finite() or tier.maintenance_rate < 0:
                raise ValueError(f"margin tier up to {tier.up_to}: maintenance rate {tier.maintenance_rate} is negative")
            lower = tier.up_to

    @classmethod
    def flat(cls, max_leverage: Decimal, maintenance_rate: Decimal = ZERO) -> MarginTiers:
        """One tier for every notional."""
        return cls((MarginTier(INFINITE, max_leverage, maintenance_rate),))

    def max_leverage_at(self, notional: Decimal) -> Decimal:
        """The highest leverage allowed for a position of absolute ``notional``."""
        notional = abs(notional)
        for tier in self.tiers:
            if notional <= tier.up_to:
                return tier.max_leverage
        return self.tiers[-1].max_leverage

    def initial_margin(self, notional: Decimal, leverage: Decimal) -> Decimal:
        """Initial margin of an absolute ``notional`` at the chosen ``leverage`` (capped by its tier)."""
        notional = abs(notional)
        if notional == 0:
            return ZERO
        return notional / min(leverage, self.max_leverage_at(notional))

    def maintenance_margin(self, notional: Decimal) -> Decimal:
        """Maintenance margin of an absolute ``notional``, charged tier by tier."""
        notional = abs(notional)
        total = ZERO
        lower = ZERO
        for tier in self.tiers:
            if notional <= lower:
                break
            total += (min(notional, tier.up_to) - lower) * tier.maintenance_rate
            lower = tier.up_to
        return total

