"""Market data as the core sees it: marks, index, funding and order books, with their age."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from alpha.domain.funding import FundingRate
from alpha.domain.instruments import Instrument, Side
from alpha.domain.money import ZERO


class BadMarketData(ValueError):
    """Market data the core refuses to trade on (missing, non-finite, non-positive, stale)."""


@dataclass(frozen=True, slots=True)
class BookLevel:
    price: Decimal
    quantity: Decimal


@dataclass(frozen=True, slots=True)
class OrderBook:
    """Bids (best first, descending) and asks (best first, ascending), quantities in base units."""

    bids: tuple[BookLevel, ...]
    asks: tuple[BookLevel, ...]

    @property
    def mid(self) -> Decimal | None:
        if not self.bids or not self.asks:
            return None
        return (self.bids[0].price + self.asks[0].price) / 2

    def depth(self, side: Side) -> Decimal:
        """Base quantity visible on the side a ``side`` order would take."""
        levels = self.asks if side is Side.BUY else self.bids
        return sum((lvl.quantity for lvl in levels), ZERO)

    def fill_price(self, side: Side, quantity: Decimal) -> Decimal | None:
        """Average price of a market order of ``quantity`` walking the book; None if too deep."""
        levels = self.asks if side is Side.BUY else self.bids
        remaining = quantity
        cost = ZERO
        for lvl in levels:
            take = min(remaining, lvl.quantity)
            cost += take * lvl.price
            remaining -= take
            if remaining <= 0:
                return cost / quantity
        return None

    def slippage_rate(self, side: Side, quantity: Decimal) -> Decimal | None:
        """Fractional cost versus mid of a market order of ``quantity`` (None if not fillable)."""
        mid = self.mid
        price = self.fill_price(side, quantity)
        if mid is None or price is None or mid <= 0:
            return None
        return (price - mid) / mid * side.sign


@dataclass(frozen=True, slots=True)
class MarketSnapshot:
    """The latest data for one market of one fuse, stamped with when it was observed."""

    fuse: str
    instrument: Instrument
    ts: datetime
    mark: Decimal
    index: Decimal | None = None
    funding: FundingRate | None = None
    book: OrderBook | None = None

    @property
    def market(self) -> str:
        return self.instrument.symbol

    def age(self, now: datetime) -> timedelta:
        return now - self.ts

    def validate(self, now: datetime, max_age: timedelta) -> None:
        """Raise ``BadMarketData`` naming the problem if this snapshot must not be traded on."""
        where = f"{self.fuse}:{self.instrument.symbol}"
        for name, value in (("mark", self.mark), ("index", self.index)):
            if value is None:
                if name == "mark":
                    raise BadMarketData(f"{where}: mark price is missing")
                continue
            if not isinstance(value, Decimal) or not value.is_finite():
                raise BadMarketData(f"{where}: {name} price {value!r} is not a finite number")
            if value <= 0:
                raise BadMarketData(f"{where}: {name} price {value} is not positive")
        if self.book is not None:
            for lvl in (*self.book.bids, *self.book.asks):
                if not lvl.price.is_finite() or lvl.price <= 0 or not lvl.quantity.is_finite() or lvl.quantity < 0:
                    raise BadMarketData(f"{where}: book level {lvl.price} x {lvl.quantity} is absurd")
            if self.book.bids and self.book.asks and self.book.bids[0].price > self.book.asks[0].price:
                raise BadMarketData(f"{where}: book is crossed ({self.book.bids[0].price} > {self.book.asks[0].price})")
        age = self.age(now)
        if age > max_age:
            raise BadMarketData(f"{where}: data is {age.total_seconds():.0f}s old (limit {max_age.total_seconds():.0f}s)")
        if age < -timedelta(seconds=5):
            raise BadMarketData(f"{where}: data is stamped in the future ({self.ts.isoformat()})")
