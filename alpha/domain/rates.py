"""Interest-rate swaps on a perp venue's funding rate (Pendle Boros): markets, quotes, positions, the arithmetic.

A Boros market trades **Yield Units** (YU) of one underlying funding rate (e.g. Binance
BTCUSDT) until a maturity. A YU position has a signed ``size`` in the market's base asset
(the asset its collateral, sizes and PnL are counted in, e.g. BTC):

* **long** (``size > 0``): pays the fixed rate agreed at the trade, receives the floating rate;
* **short** (``size < 0``): receives the fixed rate, pays the floating rate.

The accounting follows the Boros lite paper (sdk-boros-public, documentation/lite-paper.md):

* at the trade the fixed leg is realised **upfront** into collateral:
  ``-size x fixed_apr x years_to_maturity`` (``upfront``);
* at each payment (the underlying venue's funding settlement, every ``payment_period``) the
  floating leg is paid into collateral: ``size x rate`` where ``rate`` is the settled funding
  rate of that period, not annualised (``payment``);
* the position is valued at the market's mark rate (a TWAP of trades):
  ``size x mark_apr x years_left`` (``unrealised``); at maturity it is worth nothing more.

So a short YU held from the trade to maturity earns ``|size| x (fixed_apr x T - sum of the
settled rates)``: the implied APR minus the realised funding, times notional (in base units)
and time. A farmer short the perp (receiving floating funding) who shorts the same size of YU
pays that floating and receives the fixed: the hedge earns a known rate.

Margin (lite paper, "Important terms"): initial margin ``|size| x years_left x max(im_factor x
|mark_apr|, im_floor)``, maintenance the same with ``mm_factor`` and ``mm_floor``; health is
(collateral + unrealised) / maintenance. Amounts are in the base asset, exact Decimals.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from typing import Protocol

from alpha.domain.funding import SECONDS_PER_YEAR
from alpha.domain.instruments import Side
from alpha.domain.money import ZERO


def years_between(start: datetime, end: datetime) -> Decimal:
    """``end - start`` as a fraction of a (365-day) year, never negative."""
    seconds = max(int((end - start).total_seconds()), 0)
    return Decimal(seconds) / SECONDS_PER_YEAR


def upfront(size: Decimal, fixed_apr: Decimal, years: Decimal) -> Decimal:
    """What a trade of signed ``size`` YU at ``fixed_apr`` with ``years`` to maturity realises into collateral at once."""
    return -size * fixed_apr * years


def payment(size: Decimal, rate: Decimal) -> Decimal:
    """What a position of signed ``size`` YU receives at one settlement of the floating ``rate`` (per period)."""
    return size * rate


def unrealised(size: Decimal, mark_apr: Decimal, years_left: Decimal) -> Decimal:
    """The value of a position of signed ``size`` YU at ``mark_apr`` with ``years_left`` to maturity."""
    return size * mark_apr * years_left


@dataclass(frozen=True, slots=True)
class RateMarket:
    """One Boros market: a funding rate traded to a maturity, with its book's steps and margin factors."""

    fuse: str
    market: str  # the venue's market id, e.g. "BINANCE-BTCUSDT-26DEC2026"
    asset: str  # base asset of sizes, collateral and PnL
    underlying: str  # market key (fuse:market) of the perp whose funding is the floating leg
    maturity: datetime
    payment_period: timedelta  # the underlying's settlement interval (extConfig.paymentPeriod)
    tick_apr: Decimal  # implied-APR step of the order book
    size_step: Decimal
    min_size: Decimal
    taker_fee_apr: Decimal = Decimal("0.001")  # fee as an APR on |size| x years to maturity
    im_factor: Decimal = Decimal("0.5")
    im_floor: Decimal = Decimal("0.05")
    mm_factor: Decimal = Decimal("0.25")
    mm_floor: Decimal = Decimal("0.025")
    max_leverage: Decimal = Decimal("10")

    def years_left(self, now: datetime) -> Decimal:
        return years_between(now, self.maturity)

    def initial_margin(self, size: Decimal, mark_apr: Decimal, now: datetime) -> Decimal:
        return abs(size) * self.years_left(now) * max(self.im_factor * abs(mark_apr), self.im_floor)

    def maintenance_margin(self, size: Decimal, mark_apr: Decimal, now: datetime) -> Decimal:
        return abs(size) * self.years_left(now) * max(self.mm_factor * abs(mark_apr), self.mm_floor)

    def fee(self, size: Decimal, now: datetime) -> Decimal:
        """The taker fee of a trade of ``size`` now, in the base asset."""
        return abs(size) * self.years_left(now) * self.taker_fee_apr

    def matured(self, now: datetime) -> bool:
        return now >= self.maturity


@dataclass(frozen=True, slots=True)
class RateLevel:
    apr: Decimal
    size: Decimal


@dataclass(frozen=True, slots=True)
class RateQuote:
    """A market's mark rate and order book (implied APRs, best first on each side) at ``ts``."""

    market: str
    ts: datetime
    mark_apr: Decimal
    bids: tuple[RateLevel, ...]  # long YU orders resting (they pay these fixed rates), highest first
    asks: tuple[RateLevel, ...]  # short YU orders resting (they receive these), lowest first

    def fill_apr(self, side: Side, size: Decimal) -> Decimal | None:
        """The average fixed APR a market order of ``size`` gets (SELL: short YU, hits bids), None if the book is too thin."""
        levels = self.bids if side is Side.SELL else self.asks
        left, paid = size, ZERO
        for level in levels:
            take = min(left, level.size)
            paid += take * level.apr
            left -= take
            if left <= 0:
                return paid / size
        return None


@dataclass(frozen=True, slots=True)
class YuPosition:
    """A YU position as the venue reports it (``size`` signed: + long pays fixed, - short receives fixed)."""

    fuse: str
    market: str
    size: Decimal
    fixed_apr: Decimal  # the average fixed rate of the trades that built it (for the reader; already realised)
    mark_apr: Decimal
    unrealised: Decimal


@dataclass(frozen=True, slots=True)
class RateAccount:
    """A Boros trading zone (one collateral asset): collateral, positions and margin."""

    fuse: str
    asset: str
    collateral: Decimal  # cash, after upfront fixed legs, payments and fees (may be negative)
    positions: tuple[YuPosition, ...]
    initial_margin: Decimal
    maintenance_margin: Decimal

    @property
    def equity(self) -> Decimal:
        return self.collateral + sum((p.unrealised for p in self.positions), ZERO)

    @property
    def health(self) -> Decimal:
        """Equity / maintenance (liquidatable below 1); infinite without positions."""
        if self.maintenance_margin <= 0:
            return Decimal("Infinity")
        return self.equity / self.maintenance_margin


@dataclass(frozen=True, slots=True)
class RateFill:
    """What a swap order got: the filled size (signed like the position change), its average fixed APR and fee."""

    market: str
    size: Decimal
    fixed_apr: Decimal
    fee: Decimal
    client_id: str


class RateVenue(Protocol):
    """What the daemon asks of a rate-swap fuse (the simulated Boros market and the Boros API fuse alike).

    ``swap`` is a market order limited by ``limit_apr`` (SELL, a short YU, fills only at or
    above it; BUY at or below), idempotent by ``client_id`` (a repeated id returns the first
    fill and trades nothing). Collateral moves between the vault and the trading zone of
    ``asset`` through ``deposit`` and ``withdraw``.
    """

    name: str

    async def rate_markets(self) -> list[RateMarket]: ...

    async def rate_quote(self, market: str) -> RateQuote: ...

    async def rate_account(self, asset: str) -> RateAccount: ...

    async def swap(self, market: str, side: Side, size: Decimal, limit_apr: Decimal, *, client_id: str) -> RateFill: ...

    async def deposit(self, asset: str, amount: Decimal) -> None: ...

    async def withdraw(self, asset: str, amount: Decimal) -> None: ...


@dataclass(frozen=True, slots=True)
class RateBook:
    """What the rate-swap fuses show at one instant: their markets and quotes (by ``fuse:market``) and zones (by fuse).

    Part of the ``PortfolioView`` (empty without a rate fuse): the rate-lock decision reads the
    markets and quotes, the gate the zones' margin, NAV the zones' equity.
    """

    markets: Mapping[str, RateMarket] = field(default_factory=dict)
    quotes: Mapping[str, RateQuote] = field(default_factory=dict)
    accounts: Mapping[str, RateAccount] = field(default_factory=dict)

    def position(self, key: str) -> YuPosition | None:
        """The YU position held on market ``key`` (``fuse:market``), if any."""
        market = self.markets.get(key)
        acct = self.accounts.get(market.fuse) if market is not None else None
        if market is None or acct is None:
            return None
        return next((p for p in acct.positions if p.market == market.market and p.size != 0), None)

    def on_underlying(self, underlying: str) -> list[RateMarket]:
        """The markets whose floating leg is the funding of perp ``underlying``, nearest maturity first."""
        return sorted((m for m in self.markets.values() if m.underlying == underlying), key=lambda m: (m.maturity, m.fuse, m.market))


def rate_key(market: RateMarket) -> str:
    """Key of a rate market in a ``RateBook``: ``"<fuse>:<market>"``."""
    return f"{market.fuse}:{market.market}"


def round_size(size: Decimal, step: Decimal) -> Decimal:
    """``size`` rounded down (toward zero) to a multiple of ``step``."""
    return (size / step).to_integral_value(rounding=ROUND_DOWN) * step
