"""The events the simulated world emits: the domain's venue events (``alpha.domain.events``)."""

from __future__ import annotations

from alpha.domain.events import (
    AccountEvent,
    Converted,
    Deposited,
    Event,
    FundingPaid,
    InterestAccrued,
    LendingLiquidated,
    Liquidated,
    Liquidation,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    Transferred,
    Withdrawn,
)

__all__ = [
    "AccountEvent",
    "Converted",
    "Deposited",
    "Event",
    "FundingPaid",
    "InterestAccrued",
    "LendingLiquidated",
    "Liquidated",
    "Liquidation",
    "OrderAccepted",
    "OrderCanceled",
    "OrderFilled",
    "Transferred",
    "Withdrawn",
]
