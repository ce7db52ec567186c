"""Health-factor arithmetic of lending accounts (pure: values in, values out).

Aave's health factor is ``HF = collateral x liquidation threshold / debt``; the product
``collateral x threshold`` is ``HF x debt``, exactly as the contract reports it. Repaying ``r``
of debt (in the market's base currency) gives ``HF' = HF x debt / (debt - r)``, so reaching a
target ``T`` needs ``r = debt x (1 - HF / T)``.
"""

from __future__ import annotations

from decimal import Decimal

from alpha.domain.account import LendingHealth

ZERO = Decimal(0)
DEFAULT_HEADROOM = Decimal("0.10")


def repay_to_restore(
    health: LendingHealth, min_health_factor: Decimal, *, headroom: Decimal = DEFAULT_HEADROOM
) -> Decimal:
    """Return the debt value (base currency) to repay so the health factor is back above the minimum.

    Nothing (0) while ``health.health_factor >= min_health_factor``. Otherwise the repayment
    restores ``min_health_factor x (1 + headroom)``, so that the next small price move does not
    trigger another repayment at once. Never more than the whole debt.
    """
    if min_health_factor <= 0:
        raise ValueError(f"min_health_factor must be positive, got {min_health_factor}")
    if headroom < 0:
        raise ValueError(f"headroom must not be negative, got {headroom}")
    if health.debt_value <= 0 or health.health_factor >= min_health_factor:
        return ZERO
    target = min_health_factor * (1 + headroom)
    weighted_collateral = health.health_factor * health.debt_value
    repay = health.debt_value - weighted_collateral / target
    return min(max(repay, ZERO), health.debt_value)


def health_after_repay(health: LendingHealth, repay_value: Decimal) -> Decimal:
    """Return the health factor after repaying ``repay_value`` (base currency) of debt."""
    remaining = health.debt_value - repay_value
    if remaining <= 0:
        return Decimal("Infinity")
    return health.health_factor * health.debt_value / remaining
