"""The depth model: a simulated order book around the mark, and walking it.

The book has ``levels`` levels per side spread evenly from half the spread to ``depth_bps``
from mid, each holding an equal share of ``depth_notional`` (quote notional per side). It is
regenerated around the mark at every price update (liquidity refills at once), so a market
order's cost depends only on its size and the current mark: bigger orders walk further and pay
a worse average price.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from alpha.domain.instruments import Instrument, Side
from alpha.domain.market import BookLevel, OrderBook
from alpha.domain.money import ZERO, ceil_to_step, floor_to_step

BPS = Decimal("0.0001")


@dataclass(frozen=True, slots=True)
class DepthModel:
    """Shape of a simulated book (the ``SimVenue`` parameters)."""

    spread_bps: Decimal = Decimal("1")
    depth_notional: Decimal = Decimal("2000000")
    depth_bps: Decimal = Decimal("50")
    levels: int = 20

    def __post_init__(self) -> None:
        if not self.spread_bps.is_finite() or self.spread_bps < 0:
            raise ValueError(f"spread_bps must be a non-negative number, got {self.spread_bps}")
        if not self.depth_notional.is_finite() or self.depth_notional <= 0:
            raise ValueError(f"depth_notional must be positive, got {self.depth_notional}")
        if not self.depth_bps.is_finite() or self.depth_bps <= 0:
            raise ValueError(f"depth_bps must be positive, got {self.depth_bps}")
        if self.levels < 1:
            raise ValueError(f"levels must be at least 1, got {self.levels}")


def build_book(mid: Decimal, instrument: Instrument, model: DepthModel) -> OrderBook:
    """Return the book around ``mid`` for ``instrument`` under ``model``."""
    if not isinstance(mid, Decimal) or not mid.is_finite() or mid <= 0:
        raise ValueError(f"{instrument.key}: cannot build a book around mid {mid!r}")
    tick = instrument.tick_size
    half = mid * model.spread_bps * BPS / 2
    far = max(mid * model.depth_bps * BPS, half)
    per_level = model.depth_notional / model.levels
    bids: list[BookLevel] = []
    asks: list[BookLevel] = []
    for i in range(model.levels):
        offset = half if model.levels == 1 else half + (far - half) * i / (model.levels - 1)
        bid = floor_to_step(mid - offset, tick)
        ask = ceil_to_step(mid + offset, tick)
        if bids and bid >= bids[-1].price:
            bid = bids[-1].price - tick
        if asks and ask <= asks[-1].price:
            ask = asks[-1].price + tick
        if bid <= 0:
            break
        if bid == ask:
            bid -= tick
        bids.append(BookLevel(bid, _level_quantity(per_level, bid, instrument)))
        asks.append(BookLevel(ask, _level_quantity(per_level, ask, instrument)))
    return OrderBook(bids=tuple(bids), asks=tuple(asks))


def _level_quantity(notional: Decimal, price: Decimal, instrument: Instrument) -> Decimal:
    quantity = floor_to_step(notional / price, instrument.lot_step)
    return quantity if quantity > 0 else instrument.lot_step


def walk(book: OrderBook, side: Side, quantity: Decimal, limit: Decimal | None = None) -> list[tuple[Decimal, Decimal]]:
    """Return the ``(price, quantity)`` executions of taking ``quantity`` from ``book``.

    A ``side`` buy takes asks from the best up; a sell takes bids from the best down. With a
    ``limit`` the walk stops at levels worse than it. The executed total may be less than
    ``quantity`` when the book (or the limit) runs out.
    """
    levels = book.asks if side is Side.BUY else book.bids
    remaining = quantity
    fills: list[tuple[Decimal, Decimal]] = []
    for level in levels:
        if remaining <= 0:
            break
        if limit is not None and (level.price > limit if side is Side.BUY else level.price < limit):
            break
        take = min(remaining, level.quantity)
        if take > 0:
            fills.append((level.price, take))
            remaining -= take
    return fills


def average_price(fills: list[tuple[Decimal, Decimal]]) -> Decimal | None:
    """Volume-weighted average price of ``fills`` (None when empty)."""
    total = sum((q for _, q in fills), ZERO)
    if total <= 0:
        return None
    return sum((p * q for p, q in fills), ZERO) / total
