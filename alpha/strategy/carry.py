"""Expected net carry of a candidate hedge: forecast funding minus fees, slippage and borrow cost.

A hedge earns, per year and per unit of notional (one leg's notional):

* long spot, short perp P: ``forecast(P)`` (shorts receive positive funding);
* long perp L, short perp H (cross-venue spread): ``forecast(H) - forecast(L)``;
* long perp P, synthetic short in a lending market (borrow the asset and sell it):
  ``-forecast(P) - borrow APR`` (worth it when funding is negative).

Costs are taker fees plus slippage estimated from each book's depth at the intended size
(``OrderBook.slippage_rate``), for entry and exit, amortised over the hedge's expected
holding (``Candidate.holding``, from how persistent its funding has been).

Hysteresis sized by cost (``worth_holding``): a new hedge is entered when its expected carry
over the holding pays the round trip and the entry threshold; an open hedge, whose entry is
paid, is kept while its expected carry over the holding loses less than the exit cost.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from enum import StrEnum

from alpha.config.schema import Thresholds
from alpha.domain.actions import HedgeRef
from alpha.domain.funding import SECONDS_PER_YEAR
from alpha.domain.instruments import Instrument, Side
from alpha.domain.market import BookLevel, MarketSnapshot, OrderBook
from alpha.domain.money import ZERO

# Assumed cost of each swap of a synthetic short (selling what is borrowed, buying it back):
# a lending market has no book of its own to estimate slippage from.
SWAP_COST = Decimal("0.001")


class HedgeKind(StrEnum):
    SPOT_PERP = "spot_perp"
    PERP_PERP = "perp_perp"
    SYNTHETIC_SHORT = "synthetic_short"


@dataclass(frozen=True, slots=True)
class TradeLeg:
    """A traded leg of a candidate: ``side`` on ``fuse``'s ``market``; capital = notional / leverage."""

    fuse: str
    market: str
    key: str
    instrument: Instrument
    side: Side
    leverage: Decimal


@dataclass(frozen=True, slots=True)
class BorrowLeg:
    """The synthetic short of a candidate: borrow the asset on lending ``fuse`` and sell it.

    ``collateral_ratio`` is the base-asset collateral to supply per unit of debt value.
    """

    fuse: str
    borrow_apr: Decimal
    collateral_ratio: Decimal


@dataclass(frozen=True, slots=True)
class Candidate:
    """A hedge the strategy could hold: a long leg and a short leg (traded or borrowed)."""

    asset: str
    kind: HedgeKind
    long: TradeLeg
    short: TradeLeg | None
    borrow: BorrowLeg | None
    funding_apr: Decimal  # forecast funding earned, before costs, per unit of notional
    holding: timedelta = timedelta(days=7)  # expected holding, over which costs are amortised

    @property
    def hedge_id(self) -> HedgeRef:
        if self.short is not None:
            return HedgeRef.carry(self.asset, self.long.key, short=self.short.key)
        return HedgeRef.carry(self.asset, self.long.key, borrow_fuse=self.borrow.fuse if self.borrow else None)

    @property
    def legs(self) -> tuple[TradeLeg, ...]:
        return (self.long,) if self.short is None else (self.long, self.short)


@dataclass(frozen=True, slots=True)
class Carry:
    """Expected annual carry of a hedge at one size, per unit of notional."""

    gross_apr: Decimal
    entry_cost: Decimal  # fraction of notional
    exit_cost: Decimal
    cost_apr: Decimal  # costs counted, amortised over the holding period
    net_apr: Decimal


class _Walk:
    """One side of a book as prefix sums, to price a market order in O(log levels).

    Gives exactly ``OrderBook.fill_price``: the same products summed in the same order.
    """

    __slots__ = ("cum_cost", "cum_qty", "prices")

    def __init__(self, levels: tuple[BookLevel, ...]) -> None:
        self.prices = [lvl.price for lvl in levels]
        self.cum_qty = [ZERO]
        self.cum_cost = [ZERO]
        for lvl in levels:
            self.cum_qty.append(self.cum_qty[-1] + lvl.quantity)
            self.cum_cost.append(self.cum_cost[-1] + lvl.quantity * lvl.price)

    def fill_price(self, quantity: Decimal) -> Decimal | None:
        j = bisect_left(self.cum_qty, quantity, 1)
        if j == len(self.cum_qty):
            return None
        k = j - 1
        return (self.cum_cost[k] + (quantity - self.cum_qty[k]) * self.prices[k]) / quantity


class _BookWalks:
    """A book's mid and both sides as prefix sums."""

    __slots__ = ("book", "buy", "mid", "sell")

    def __init__(self, book: OrderBook) -> None:
        self.book = book
        self.mid = book.mid
        self.buy = _Walk(book.asks)
        self.sell = _Walk(book.bids)


# Books seen recently (by identity) as prefix sums; a replay reads the same book many times
# per decision while it sizes hedges.
_WALKS: dict[int, _BookWalks] = {}
_WALKS_MAX = 256


def slippage_rate(book: OrderBook, side: Side, quantity: Decimal) -> Decimal | None:
    """Return ``book.slippage_rate(side, quantity)``, computed from cached prefix sums."""
    if quantity <= 0 or +quantity != quantity:
        # (more digits than the context keeps: the book's own walk rounds step by step)
        return book.slippage_rate(side, quantity)
    walks = _WALKS.get(id(book))
    if walks is None or walks.book is not book:
        if len(_WALKS) >= _WALKS_MAX:
            _WALKS.clear()
        walks = _WALKS[id(book)] = _BookWalks(book)
    mid = walks.mid
    price = (walks.buy if side is Side.BUY else walks.sell).fill_price(quantity)
    if mid is None or price is None or mid <= 0:
        return None
    rate = (price - mid) / mid
    return rate if side is Side.BUY else rate * -1  # exactly ``* side.sign``


def leg_cost(snapshot: MarketSnapshot, side: Side, quantity: Decimal) -> Decimal | None:
    """Return taker fee + slippage (fraction of notional) of a market order, None if the book cannot fill it."""
    if snapshot.book is None:
        return None
    slip = slippage_rate(snapshot.book, side, quantity)
    if slip is None:
        return None
    return snapshot.instrument.taker_fee + max(slip, ZERO)


def years(period: timedelta) -> Decimal:
    """Return ``period`` as a fraction of a year."""
    return Decimal(int(period.total_seconds())) / SECONDS_PER_YEAR


def expected_carry(
    candidate: Candidate,
    notional: Decimal,
    snapshots: dict[str, MarketSnapshot],
    holding_period: timedelta,
    *,
    is_open: bool = False,
) -> Carry | None:
    """Return the expected carry of ``candidate`` at ``notional`` (per leg), None if a book cannot fill it.

    ``snapshots`` maps market keys to their (validated) snapshots.
    """
    if notional <= 0:
        raise ValueError(f"notional must be positive, got {notional}")
    entry = exit_ = ZERO
    for leg in candidate.legs:
        snap = snapshots[leg.key]
        qty = notional / snap.mark
        cost_in = leg_cost(snap, leg.side, qty)
        cost_out = leg_cost(snap, leg.side.opposite, qty)
        if cost_in is None or cost_out is None:
            return None
        entry += cost_in
        exit_ += cost_out
    gross = candidate.funding_apr
    if candidate.borrow is not None:
        entry += SWAP_COST
        exit_ += SWAP_COST
        gross -= candidate.borrow.borrow_apr
    counted = exit_ if is_open else entry + exit_
    cost_apr = counted / years(holding_period)
    return Carry(gross, entry, exit_, cost_apr, gross - cost_apr)


def ranking_score(carry: Carry, holding_period: timedelta, *, is_open: bool) -> Decimal:
    """Return the APR a hedge is ranked by when hedges compete for markets and capital.

    A new hedge ranks by its net APR (entry and exit amortised over the holding period). An
    open hedge has paid its entry and pays its exit whether it is closed now or later, so it
    ranks by its gross APR plus its own exit cost amortised: a challenger displaces it only
    when its gain in carry over the holding period exceeds the round-trip cost of the switch
    (closing the open hedge, opening the challenger) plus the challenger's own eventual exit.
    """
    if is_open:
        return carry.gross_apr + carry.exit_cost / years(holding_period)
    return carry.net_apr


def worth_holding(
    carry: Carry, thresholds: Thresholds, *, is_open: bool, holding: timedelta | None = None, adverse: bool = False
) -> bool:
    """Say whether a new hedge is worth entering, or an open hedge worth keeping (``Thresholds``).

    New: the net APR (the round trip amortised over ``holding``) at least ``entry_min_net_apr``.
    Open: its entry is paid and its exit will be paid whenever it is closed, so it is kept
    while the expected carry over the holding loses less than closing it now costs: gross APR
    plus the exit cost amortised at least ``exit_min_net_apr``. The gap between the two is the
    hysteresis, sized by the costs. ``holding`` defaults to ``thresholds.holding_period``.
    ``adverse``: the funding regime has turned against the hedge (``Signals.funding_regime``):
    the run it was held for has ended, so no holding is left to amortise its exit over and it
    is kept only while its gross APR alone clears ``exit_min_net_apr``.
    """
    y = years(holding if holding is not None else thresholds.holding_period)
    if is_open:
        bonus = ZERO if adverse else carry.exit_cost / y
        return carry.gross_apr + bonus >= thresholds.exit_min_net_apr
    return carry.net_apr >= thresholds.entry_min_net_apr
