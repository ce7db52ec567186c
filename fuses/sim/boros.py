"""A simulated Boros market: YU of a simulated perp's funding, quoted, traded, settled and margined as the lite paper says.

``SimBoros`` is one rate fuse of the simulated world (``StrategyConfig.rates``, ``venue: sim``):
its markets trade the funding of perps of the world's simulated venues, and our account on it
is one trading zone (collateral in the perp's base asset).

* **Quotes**: the mark APR is the underlying's forecast funding (an exponential average of its
  annualised settled funding, ``RateSim.smoothing`` per settlement, started at its first
  published rate) plus ``premium_apr`` plus seeded noise (``noise_apr`` x a normal draw that
  depends only on the seed, the market and the hour: deterministic however the world is
  stepped), rounded to the tick. With ``implied_apr_file`` the mark is the file's last value
  at or before now (the model before its first row). The book has ``levels`` levels of
  ``level_size`` a side, the first ``spread_ticks / 2`` ticks (rounded up) from the mark.
* **Trades** (``swap``): a market order walks the book up to its limit; the fixed leg is
  realised upfront into collateral (``alpha.domain.rates.upfront``), the fee (``RateMarket.fee``)
  charged. A client id seen before returns its first fill and trades nothing.
* **Settlements**: at each settlement of the underlying (the world stops there), every position
  on a market not matured is paid ``size x settled rate`` (``payment``).
* **Maturity**: positions on a market at or past maturity are closed: both legs are realised,
  nothing more is paid or valued.
* **Liquidation**: when equity (collateral + positions at mark) falls below maintenance margin,
  every position is closed at mark and a liquidation incentive (10% of the maintenance margin at
  health 1, rising linearly to 50% at health 0.5) is taken from collateral.
"""

from __future__ import annotations

import csv
import random
from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

from alpha.config.schema import RateFuseConfig, RateSim
from alpha.domain.funding import SECONDS_PER_YEAR
from alpha.domain.instruments import Side
from alpha.domain.money import ZERO
from alpha.domain.rates import (
    RateAccount,
    RateFill,
    RateLevel,
    RateMarket,
    RateQuote,
    YuPosition,
    payment,
    unrealised,
    upfront,
)
from fuses.base import InsufficientFundsError, RejectedError

NOISE_BUCKET = timedelta(hours=1)
INCENTIVE_AT_ONE = Decimal("0.10")
INCENTIVE_AT_HALF = Decimal("0.50")


def load_implied_aprs(path: Path) -> dict[str, list[tuple[datetime, Decimal]]]:
    """Read a CSV of ``ts, market, implied_apr`` (ISO times with a zone) into sorted series by market."""
    out: dict[str, list[tuple[datetime, Decimal]]] = {}
    with path.open(newline="") as handle:
        for n, row in enumerate(csv.DictReader(handle), start=2):
            try:
                ts = datetime.fromisoformat(row["ts"].replace("Z", "+00:00"))
                apr = Decimal(row["implied_apr"])
                market = row["market"]
            except (KeyError, ValueError, ArithmeticError) as exc:
                raise ValueError(f"{path}:{n}: a row needs ts (ISO time), market and implied_apr (a number): {exc}") from None
            if ts.tzinfo is None or not apr.is_finite():
                raise ValueError(f"{path}:{n}: ts needs a timezone and implied_apr must be finite")
            out.setdefault(market, []).append((ts, apr))
    for series in out.values():
        series.sort(key=lambda r: r[0])
    return out


@dataclass
class _Held:
    size: Decimal = ZERO
    fixed_apr: Decimal = ZERO


@dataclass
class ZoneLedger:
    """What the zone was credited and charged, by kind (in its asset)."""

    upfront: Decimal = ZERO
    payments: Decimal = ZERO
    fees: Decimal = ZERO
    incentives: Decimal = ZERO
    closed_at_mark: Decimal = ZERO
    liquidations: int = 0
    settlements: int = 0


@dataclass
class SimBoros:
    """One simulated rate fuse: its markets, their quotes, and our trading zone on it."""

    name: str
    asset: str
    markets: dict[str, RateMarket]
    sim: RateSim
    implied: Mapping[str, list[tuple[datetime, Decimal]]] = field(default_factory=dict)
    collateral: Decimal = ZERO
    held: dict[str, _Held] = field(default_factory=dict)
    fills: dict[str, RateFill] = field(default_factory=dict)
    ledger: ZoneLedger = field(default_factory=ZoneLedger)
    forecasts: dict[str, Decimal] = field(default_factory=dict)  # by underlying: the model's forecast funding APR
    marks: dict[str, Decimal] = field(default_factory=dict)
    now: datetime | None = None

    @classmethod
    def from_config(cls, config: RateFuseConfig, intervals: Mapping[str, timedelta], assets: Mapping[str, str]) -> SimBoros:
        """Build the rate fuse ``config`` describes (``intervals``, ``assets``: each underlying's funding interval and base asset)."""
        markets: dict[str, RateMarket] = {}
        for m in config.markets:
            markets[m.market] = RateMarket(
                config.name, m.market, assets[m.underlying], m.underlying, m.maturity, intervals[m.underlying], m.tick_apr, m.size_step,
                m.min_size, m.taker_fee_apr, m.im_factor, m.im_floor, m.mm_factor, m.mm_floor, config.max_leverage,
            )
        zone = {rm.asset for rm in markets.values()}
        if len(zone) != 1:
            raise ValueError(f"rate fuse {config.name}: its markets' underlyings have base assets {sorted(zone)}; one zone holds one asset")
        implied = load_implied_aprs(Path(config.sim.implied_apr_file)) if config.sim.implied_apr_file is not None else {}
        return cls(config.name, zone.pop(), markets, config.sim, implied)

    # ------------------------------------------------------------------ the world's clock

    def observe(self, underlying: str, rate: Decimal, interval: timedelta) -> None:
        """Start the forecast of ``underlying`` at its first published ``rate`` (per ``interval``)."""
        self.forecasts.setdefault(underlying, _annualised(rate, interval))

    def settle(self, underlying: str, rate: Decimal, interval: timedelta, when: datetime) -> None:
        """Pay the floating leg of every position on ``underlying``'s markets at a settlement of ``rate``; update the forecast."""
        before = self.forecasts.get(underlying, _annualised(rate, interval))
        self.forecasts[underlying] = before + self.sim.smoothing * (_annualised(rate, interval) - before)
        for market in self.markets.values():
            h = self.held.get(market.market)
            if market.underlying != underlying or h is None or h.size == 0 or when > market.maturity:
                continue
            paid = payment(h.size, rate)
            self.collateral += paid
            self.ledger.payments += paid
            self.ledger.settlements += 1

    def advance(self, now: datetime) -> None:
        """Mature what is due, mark every market at ``now``, liquidate the zone below maintenance."""
        self.now = now
        for market in self.markets.values():
            if market.matured(now):
                self.held.pop(market.market, None)  # fixed realised upfront, floating paid: nothing more
            self.marks[market.market] = self._mark(market, now)
        self._liquidate(now)

    def _mark(self, market: RateMarket, now: datetime) -> Decimal:
        series = self.implied.get(market.market)
        if series:
            i = bisect_right([ts for ts, _ in series], now)
            if i > 0:
                return _to_tick(series[i - 1][1], market.tick_apr)
        forecast = self.forecasts.get(market.underlying, ZERO)
        bucket = int((now - market.maturity).total_seconds() // NOISE_BUCKET.total_seconds())
        draw = random.Random(f"{self.sim.seed}:{market.market}:{bucket}").gauss(0.0, 1.0)
        noise = Decimal(str(round(draw, 6))) * self.sim.noise_apr
        return _to_tick(forecast + self.sim.premium_apr + noise, market.tick_apr)

    def _liquidate(self, now: datetime) -> None:
        acct = self.account(now)
        if acct.maintenance_margin <= 0 or acct.equity >= acct.maintenance_margin:
            return
        health = acct.health
        factor = INCENTIVE_AT_ONE + (INCENTIVE_AT_HALF - INCENTIVE_AT_ONE) * min(max((1 - health) / Decimal("0.5"), ZERO), Decimal(1))
        value = sum((p.unrealised for p in acct.positions), ZERO)
        incentive = factor * acct.maintenance_margin
        self.collateral += value - incentive
        self.ledger.closed_at_mark += value
        self.ledger.incentives += incentive
        self.ledger.liquidations += 1
        self.held.clear()

    # ------------------------------------------------------------------ what the fuse answers

    def market(self, market: str) -> RateMarket:
        try:
            return self.markets[market]
        except KeyError:
            raise RejectedError(f"{self.name}: no rate market {market!r}", venue=self.name, code="unknown_market") from None

    def quote(self, market: str, now: datetime) -> RateQuote:
        m = self.market(market)
        mark = self.marks.get(market, ZERO)
        first = (self.sim.spread_ticks + 1) // 2
        step = m.tick_apr
        bids = tuple(RateLevel(mark - (first + i) * step, self.sim.level_size) for i in range(self.sim.levels))
        asks = tuple(RateLevel(mark + (first + i) * step, self.sim.level_size) for i in range(self.sim.levels))
        return RateQuote(market, self.now or now, mark, bids, asks)

    def account(self, now: datetime) -> RateAccount:
        return self._account(self.held, self.collateral, now)

    def _account(self, held: Mapping[str, _Held], collateral: Decimal, now: datetime) -> RateAccount:
        positions: list[YuPosition] = []
        im = mm = ZERO
        for name, h in sorted(held.items()):
            if h.size == 0:
                continue
            m = self.markets[name]
            mark = self.marks.get(name, ZERO)
            positions.append(YuPosition(self.name, name, h.size, h.fixed_apr, mark, unrealised(h.size, mark, m.years_left(now))))
            im += m.initial_margin(h.size, mark, now)
            mm += m.maintenance_margin(h.size, mark, now)
        return RateAccount(self.name, self.asset, collateral, tuple(positions), im, mm)

    def swap(self, market: str, side: Side, size: Decimal, limit_apr: Decimal, client_id: str, now: datetime) -> RateFill:
        """Fill a market order of ``size`` YU up to ``limit_apr`` (see the module docstring); idempotent by ``client_id``."""
        if client_id in self.fills:
            return self.fills[client_id]
        m = self.market(market)
        if m.matured(now):
            raise RejectedError(f"{self.name}: {market} matured at {m.maturity.isoformat()}", venue=self.name, code="matured")
        if not size.is_finite() or size < m.min_size or size % m.size_step != 0:
            raise RejectedError(f"{self.name}: size {size} is not a multiple of {m.size_step} of at least {m.min_size}", venue=self.name, code="bad_size")
        quote = self.quote(market, now)
        levels = quote.bids if side is Side.SELL else quote.asks
        left, paid = size, ZERO
        for level in levels:
            if (side is Side.SELL and level.apr < limit_apr) or (side is Side.BUY and level.apr > limit_apr) or left <= 0:
                break
            take = min(left, level.size)
            paid += take * level.apr
            left -= take
        filled = size - left
        signed = filled * side.sign
        apr = paid / filled if filled > 0 else ZERO
        fee = m.fee(filled, now)
        years = m.years_left(now)
        credit = upfront(signed, apr, years) - fee
        after = self._after(market, signed, apr)
        trial = self._account({**self.held, market: after}, self.collateral + credit, now)
        if filled > 0 and trial.equity < trial.initial_margin and abs(after.size) > abs(self.held.get(market, _Held()).size):
            raise InsufficientFundsError(
                f"{self.name}: collateral {trial.collateral} {self.asset} does not cover the initial margin {trial.initial_margin} after the trade",
                venue=self.name,
            )
        if filled > 0:
            self.collateral += credit
            self.ledger.upfront += upfront(signed, apr, years)
            self.ledger.fees += fee
            self.held[market] = after
        fill = RateFill(market, signed, apr, fee, client_id)
        self.fills[client_id] = fill
        return fill

    def _after(self, market: str, signed: Decimal, apr: Decimal) -> _Held:
        h = self.held.get(market, _Held())
        size = h.size + signed
        if h.size == 0 or (h.size > 0) == (signed > 0):
            fixed = (h.size * h.fixed_apr + signed * apr) / size if size != 0 else ZERO
        else:
            fixed = h.fixed_apr if size != 0 and (size > 0) == (h.size > 0) else apr
        return _Held(size, fixed)

    def deposit(self, amount: Decimal) -> None:
        self.collateral += amount

    def withdraw(self, amount: Decimal, now: datetime) -> None:
        acct = self.account(now)
        if amount > acct.collateral or (acct.positions and acct.equity - amount < acct.initial_margin):
            raise InsufficientFundsError(f"{self.name}: cannot withdraw {amount} {self.asset}: the zone holds {acct.collateral}", venue=self.name)
        self.collateral -= amount


def _annualised(rate: Decimal, interval: timedelta) -> Decimal:
    return rate * SECONDS_PER_YEAR / Decimal(int(interval.total_seconds()))


def _to_tick(apr: Decimal, tick: Decimal) -> Decimal:
    return (apr / tick).quantize(Decimal(1), rounding=ROUND_HALF_EVEN) * tick
