"""Margin-health arithmetic for lending accounts (pure: values in, values out).

``repay_to_restore`` and ``health_after_repay`` live in ``alpha.domain.health`` (the core's
margin step sizes repayments with them too); this module adds the token-unit conversion.

Aave's health factor is ``HF = collateral x liquidation threshold / debt``; the product
``collateral x threshold`` is ``HF x debt``, exactly as the contract reports it. Repaying ``r``
of debt (in the market's base currency) gives ``HF' = HF x debt / (debt - r)``, so reaching a
target ``T`` needs ``r = debt x (1 - HF / T)``.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal

from alpha.domain.health import DEFAULT_HEADROOM, health_after_repay, repay_to_restore

__all__ = ["DEFAULT_HEADROOM", "health_after_repay", "repay_to_restore", "to_asset_amount"]


def to_asset_amount(value: Decimal, price: Decimal, decimals: int) -> Decimal:
    """Convert a base-currency value to an asset amount at ``price``, rounded up to the token's decimals."""
    if price <= 0:
        raise ValueError(f"price must be positive, got {price}")
    quantum = Decimal(1).scaleb(-decimals)
    return (value / price).quantize(quantum, rounding=ROUND_CEILING)
