"""The depth model: a simulated order book around the mark, and walking it.

The book has ``levels`` levels per side spread evenly from half the spread to ``depth_bps``
from mid, each holding an equal share of ``depth_notional`` (quote notional per side). It is
regenerated around the mark at every price update (liquidity refills at once), so a market
order's cost depends only on its size and the current mark: bigger orders walk further and pay
a worse average price.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_UP, Decimal

from alpha.domain.instruments import Instrument, Side
from alpha.domain.market import BookLevel, OrderBook
from alpha.domain.money import ZERO

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
    # The arithmetic of floor_to_step / ceil_to_step, inlined (a replay
    # builds a book for every market at every decision); tick and lot step are positive.
    tick = instrument.tick_size
    lot = instrument.lot_step
    levels = model.levels
    half = mid * model.spread_bps * BPS / 2
    far = max(mid * model.depth_bps * BPS, half)
    width = far - half
    per_level = model.depth_notional / levels
    bids: list[BookLevel] = []
    asks: list[BookLevel] = []
    last_bid = last_ask = None
    for i in range(levels):
        offset = half if levels == 1 else half + width * i / (levels - 1)
        bid = ((mid - offset) / tick).to_integral_value(rounding=ROUND_DOWN) * tick
        ask = ((mid + offset) / tick).to_integral_value(rounding=ROUND_UP) * tick
        if last_bid is not None and bid >= last_bid:
            bid = last_bid - tick
        if last_ask is not None and ask <= last_ask:
            ask = last_ask + tick
        if bid == ask:
            bid -= tick
        if bid <= 0:
            break  # no room below a mark this close to zero: the book has fewer bid levels
        bid_qty = (per_level / bid / lot).to_integral_value(rounding=ROUND_DOWN) * lot
        ask_qty = (per_level / ask / lot).to_integral_value(rounding=ROUND_DOWN) * lot
        bids.append(BookLevel(bid, bid_qty if bid_qty > 0 else lot))
        asks.append(BookLevel(ask, ask_qty if ask_qty > 0 else lot))
        last_bid, last_ask = bid, ask
    return OrderBook(bids=tuple(bids), asks=tuple(asks))


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
