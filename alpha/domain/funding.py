"""Funding rates: a rate always carries its interval; one function annualises."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

SECONDS_PER_YEAR = Decimal(365 * 24 * 3600)


def annualise(rate: Decimal, interval: timedelta) -> Decimal:
    """Turn a rate paid once per ``interval`` into a simple (non-compounded) annual rate."""
    seconds = Decimal(int(interval.total_seconds()))
    if seconds <= 0:
        raise ValueError(f"funding interval must be positive, got {interval}")
    return rate * SECONDS_PER_YEAR / seconds


def per_interval(annual_rate: Decimal, interval: timedelta) -> Decimal:
    """Turn a simple annual rate into the rate paid once per ``interval``."""
    seconds = Decimal(int(interval.total_seconds()))
    if seconds <= 0:
        raise ValueError(f"funding interval must be positive, got {interval}")
    return annual_rate * seconds / SECONDS_PER_YEAR


def funding_payment(position_size: Decimal, mark_price: Decimal, rate: Decimal) -> Decimal:
    """Return what a position *receives* at one settlement (negative: it pays).

    Positive ``rate``: longs pay shorts. ``position_size`` is signed, in base units;
    payment = size x mark x rate, paid by the long side.
    """
    return -position_size * mark_price * rate


@dataclass(frozen=True, slots=True)
class FundingRate:
    """The funding rate of one perp: ``rate`` per ``interval``, next paid at ``next_settlement``.

    Positive ``rate``: longs pay shorts.
    """

    rate: Decimal
    interval: timedelta
    next_settlement: datetime

    def __post_init__(self) -> None:
        if not isinstance(self.rate, Decimal) or not self.rate.is_finite():
            raise ValueError(f"funding rate must be a finite Decimal, got {self.rate!r}")
        if self.interval.total_seconds() <= 0:
            raise ValueError(f"funding interval must be positive, got {self.interval}")
        if self.next_settlement.tzinfo is None:
            raise ValueError("next_settlement must be timezone-aware")

    @property
    def annualised(self) -> Decimal:
        return annualise(self.rate, self.interval)

    @property
    def interval_hours(self) -> Decimal:
        return Decimal(int(self.interval.total_seconds())) / 3600


def next_settlement_after(now: datetime, interval: timedelta, anchor_hour: int = 0) -> datetime:
    """Return the first settlement strictly after ``now`` on a grid of ``interval`` from midnight UTC."""
    day = now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(hours=anchor_hour)
    step = interval
    t = day
    while t <= now:
        t += step
    while t - step > now:
        t -= step
    return t


@dataclass(frozen=True, slots=True)
class IntervalChanged:
    """A venue changed a market's funding interval."""

    fuse: str
    market: str
    old: timedelta
    new: timedelta
    at: datetime


class FundingIntervals:
    """Remember each market's funding interval as a venue reports it, and notice changes (``on_change``)."""

    def __init__(self, fuse: str, on_change: Callable[[IntervalChanged], None] | None = None) -> None:
        self.fuse = fuse
        self._known: dict[str, timedelta] = {}
        self.changes: list[IntervalChanged] = []
        self._on_change = on_change

    def get(self, market: str) -> timedelta | None:
        return self._known.get(market)

    def observe(self, market: str, interval: timedelta, now: datetime) -> IntervalChanged | None:
        """Record ``interval`` for ``market``; return the change if it differs from the last one."""
        old = self._known.get(market)
        self._known[market] = interval
        if old is None or old == interval:
            return None
        change = IntervalChanged(self.fuse, market, old, interval, now)
        self.changes.append(change)
        if self._on_change is not None:
            self._on_change(change)
        return change
