"""Where the simulated world gets its prices and funding: the ``MarketSource`` protocol.

A source is advanced in time and answers, for every fuse and market it knows, the
``MarketState`` at that time. The synthetic generator (``fuses.sim.synthetic``) and the
backtest's recorded-history source implement it; the paper-mode source reads real venues.

Contract:

* ``advance(now)`` is called with non-decreasing times; it returns
  ``{fuse_name: {market_symbol: MarketState}}``. Every market the world trades must be present
  (a market missing from one answer keeps its previous state).
* ``MarketState.funding_rate`` is the rate that will be paid at ``next_settlement`` (the first
  settlement strictly after ``now``), per interval, positive when longs pay shorts. Spot markets
  have no funding (``None``). ``MarketState.predicted_rate``, when given, is what the venue
  publishes for that settlement before it happens (a prediction); the world pays
  ``funding_rate`` and shows the prediction (``None``: the venue publishes the rate it pays).
* The world settles funding itself: when time reaches a market's ``next_settlement`` it pays the
  rate last reported for that settlement at the mark observed at the settlement time, then reads
  the next ``next_settlement`` from the source. ``SimWorld.step_to`` therefore calls ``advance``
  exactly at each settlement instant.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class MarketState:
    """Prices and funding of one market at one time.

    ``mark`` is the venue's mark (perps) or last/mid price (spot); ``index`` the underlying's
    index (spot) price; ``funding_interval`` how often the perp pays.
    """

    mark: Decimal
    index: Decimal
    funding_rate: Decimal | None = None
    next_settlement: datetime | None = None
    funding_interval: timedelta | None = None
    predicted_rate: Decimal | None = None

    def __post_init__(self) -> None:
        for name in ("mark", "index"):
            value = getattr(self, name)
            if not isinstance(value, Decimal) or not value.is_finite() or value <= 0:
                raise ValueError(f"market state: {name} price must be a positive finite Decimal, got {value!r}")
        for rate in (self.funding_rate, self.predicted_rate):
            if rate is not None and (not isinstance(rate, Decimal) or not rate.is_finite()):
                raise ValueError(f"market state: funding rate must be a finite Decimal, got {rate!r}")
        if self.next_settlement is not None and self.next_settlement.tzinfo is None:
            raise ValueError("market state: next_settlement must be timezone-aware")


MarketStates = dict[str, dict[str, MarketState]]


@runtime_checkable
class MarketSource(Protocol):
    """Prices and funding per fuse and market, advanced in time."""

    def advance(self, now: datetime) -> MarketStates:
        """Move to ``now`` (never backwards) and return every market's state at that time."""
        ...
