"""The synthetic market of demo mode: correlated prices with jumps, per-venue marks, funding with regimes.

Model, on a fixed time grid of ``config.market.step`` from ``start`` (so the path depends only on
the seed and the grid, never on how often ``advance`` is called):

* **Regime**: a two-state Markov chain (bull, bear) switching at ``regime_switch_per_year``.
* **Prices**: per asset a GBM with jumps. The Gaussian shock is ``rho x market factor +
  sqrt(1 - rho^2) x idiosyncratic`` (``rho`` = the asset's ``correlation``); the drift is the
  asset's ``drift`` plus half its volatility in a bull regime and minus half in a bear regime
  (regime correlated with price drift); jumps arrive as a Poisson process (``jump_intensity``
  per year) with normal log sizes (``jump_size``). Scripted shocks (``config.market.shocks``)
  gap an asset's price at their time.
* **Funding**: per asset an Ornstein-Uhlenbeck process of the annualised funding whose mean is
  ``bull_mean_apr`` or ``bear_mean_apr`` by regime, reverting at ``reversion_per_day``, with a
  stationary standard deviation of ``volatility_apr``; each perp market adds its own smaller OU
  deviation (venues disagree) and its venue's ``funding_bias_bps`` (bps per 8 hours, scaled to
  the venue's interval). The rate per interval is capped at +/- ``cap_per_interval``.
* **Marks**: the index is the asset price; a perp's mark is the index times (1 + the venue's
  ``basis_bps`` + the premium implied by its funding + 1 bp of venue noise); a spot market's mark
  is the index with half a bp of noise.

Floats (numpy, ``Generator(PCG64(seed))``) are used inside the generator; its output is
``Decimal``, quantised to each instrument's tick (rates to 1e-9).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

import numpy as np

from alpha.config.schema import FuseKind, StrategyConfig, SyntheticMarket
from alpha.domain.funding import next_settlement_after
from alpha.domain.money import round_to_step
from fuses.sim.markets import parse_symbol, precision_for
from fuses.sim.source import MarketState, MarketStates

YEAR_SECONDS = 365 * 24 * 3600
EIGHT_HOURS = 8 * 3600
RATE_QUANTUM = Decimal("0.000000001")
MARK_NOISE_BPS = 1.0
SPOT_NOISE_BPS = 0.5
MARKET_DEVIATION_SHARE = 0.3  # per-market funding deviation, as a share of the asset's funding volatility
REGIME_DRIFT_SHARE = 0.5  # bull/bear drift = +/- this x the asset's volatility


@dataclass(frozen=True, slots=True)
class MarketSpec:
    """One market the generator prices: its fuse, symbol, tick and venue parameters."""

    fuse: str
    symbol: str
    base: str
    is_perp: bool
    tick_size: Decimal
    funding_interval: timedelta = timedelta(hours=8)
    basis_bps: Decimal = Decimal(0)
    funding_bias_bps: Decimal = Decimal(0)


def market_specs(config: StrategyConfig) -> list[MarketSpec]:
    """List the markets of every enabled ``kind: sim`` fuse, with ticks from the precision table."""
    if config.market is None:
        raise ValueError("the strategy file has no 'market' section: the synthetic market needs one")
    specs: list[MarketSpec] = []
    for fuse in config.enabled_fuses:
        if fuse.kind is not FuseKind.SIM:
            continue
        venue = fuse.sim
        for symbol in fuse.markets:
            parsed = parse_symbol(symbol)
            asset = config.market.assets.get(parsed.base)
            if asset is None:
                raise ValueError(f"fuse {fuse.name}: market {symbol}: the synthetic market has no asset {parsed.base}")
            specs.append(
                MarketSpec(
                    fuse=fuse.name,
                    symbol=symbol,
                    base=parsed.base,
                    is_perp=parsed.kind.is_perp,
                    tick_size=precision_for(parsed.base, asset.price).tick_size,
                    funding_interval=venue.funding_interval if venue else timedelta(hours=8),
                    basis_bps=venue.basis_bps if venue else Decimal(0),
                    funding_bias_bps=venue.funding_bias_bps if venue else Decimal(0),
                )
            )
    return specs


class SyntheticSource:
    """A seeded synthetic market implementing ``fuses.sim.source.MarketSource``."""

    def __init__(self, params: SyntheticMarket, markets: list[MarketSpec], start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("the synthetic market's start must be timezone-aware")
        self.params = params
        self.markets = list(markets)
        self.start = start
        self.now = start
        self._step = params.step
        self._dt = params.step.total_seconds() / YEAR_SECONDS
        self._k = 0  # grid index of the current state
        self._rng = np.random.Generator(np.random.PCG64(params.seed))
        self.assets = list(params.assets)
        for spec in self.markets:
            if spec.base not in params.assets:
                raise ValueError(f"market {spec.fuse}:{spec.symbol}: no synthetic parameters for {spec.base}")
        a = params.assets
        self._asset_index = {name: i for i, name in enumerate(self.assets)}
        self._log_price = np.array([math.log(float(a[n].price)) for n in self.assets])
        self._vol = np.array([float(a[n].volatility) for n in self.assets])
        self._drift = np.array([float(a[n].drift) for n in self.assets])
        self._rho = np.array([float(a[n].correlation) for n in self.assets])
        self._jump_rate = np.array([float(a[n].jump_intensity) for n in self.assets])
        self._jump_size = np.array([float(a[n].jump_size) for n in self.assets])
        self._index_tick = {n: precision_for(n, a[n].price).tick_size for n in self.assets}
        f = params.funding
        self._kappa = float(f.reversion_per_day) * 365.0
        self._means = (float(f.bull_mean_apr), float(f.bear_mean_apr))
        self._fvol = float(f.volatility_apr)
        self._cap = float(f.cap_per_interval)
        self._switch = float(f.regime_switch_per_year)
        self.regime = 0 if self._means[0] >= self._means[1] else 1  # start in the bull regime
        self._funding = np.full(len(self.assets), self._means[self.regime])
        self._perp = [i for i, m in enumerate(self.markets) if m.is_perp]
        self._dev = np.zeros(len(self.markets))
        self._market_asset = np.array([self._asset_index[m.base] for m in self.markets], dtype=int)
        self._noise = np.zeros(len(self.markets))
        self._shocks = sorted(((start + s.at, s.asset, float(s.move)) for s in params.shocks), key=lambda x: x[0])
        for _, asset, move in self._shocks:
            if asset not in self._asset_index:
                raise ValueError(f"scripted shock on {asset}: the synthetic market has no such asset")
            if move <= -1:
                raise ValueError(f"scripted shock on {asset}: a move of {move} would make the price non-positive")
        self._shock_pos = 0
        self._apply_shocks(start)

    @classmethod
    def from_config(cls, config: StrategyConfig, start: datetime | None = None) -> SyntheticSource:
        """Build the generator for ``config``'s sim fuses from ``config.market``."""
        if config.market is None:
            raise ValueError("the strategy file has no 'market' section: the synthetic market needs one")
        begin = start or config.clock.start
        if begin is None:
            raise ValueError("give a start time (config.clock.start or start=...)")
        return cls(config.market, market_specs(config), begin)

    # ------------------------------------------------------------------ simulation

    def _apply_shocks(self, upto: datetime) -> None:
        while self._shock_pos < len(self._shocks) and self._shocks[self._shock_pos][0] <= upto:
            _, asset, move = self._shocks[self._shock_pos]
            self._log_price[self._asset_index[asset]] += math.log1p(move)
            self._shock_pos += 1

    def _one_step(self) -> None:
        n = len(self.assets)
        m = len(self.markets)
        rng = self._rng
        dt = self._dt
        normals = rng.standard_normal(1 + 3 * n + 2 * m)
        uniform = rng.random()
        jumps = rng.poisson(self._jump_rate * dt)
        z_market = normals[0]
        z_idio = normals[1 : 1 + n]
        z_jump = normals[1 + n : 1 + 2 * n]
        z_funding = normals[1 + 2 * n : 1 + 3 * n]
        z_dev = normals[1 + 3 * n : 1 + 3 * n + m]
        z_noise = normals[1 + 3 * n + m :]
        if uniform < 1.0 - math.exp(-self._switch * dt):
            self.regime = 1 - self.regime
        regime_sign = 1.0 if self.regime == 0 else -1.0
        eps = self._rho * z_market + np.sqrt(1.0 - self._rho**2) * z_idio
        drift = self._drift + regime_sign * REGIME_DRIFT_SHARE * self._vol
        jump = self._jump_size * np.sqrt(jumps) * z_jump
        self._log_price += (drift - 0.5 * self._vol**2) * dt + self._vol * math.sqrt(dt) * eps + jump
        decay = math.exp(-self._kappa * dt)
        spread = math.sqrt(1.0 - decay * decay)
        mean = self._means[self.regime]
        self._funding = mean + (self._funding - mean) * decay + self._fvol * spread * z_funding
        self._dev = self._dev * decay + MARKET_DEVIATION_SHARE * self._fvol * spread * z_dev
        self._noise = z_noise
        self._k += 1
        self._apply_shocks(self.start + self._k * self._step)

    def advance(self, now: datetime) -> MarketStates:
        """Simulate every grid step up to ``now`` and return each market's state."""
        if now < self.now:
            raise ValueError(f"the synthetic market cannot go back from {self.now} to {now}")
        while self.start + (self._k + 1) * self._step <= now:
            self._one_step()
        self.now = now
        return self.states(now)

    # ------------------------------------------------------------------ output

    def _annual_funding(self, i: int) -> float:
        spec = self.markets[i]
        bias = float(spec.funding_bias_bps) * 1e-4 * YEAR_SECONDS / EIGHT_HOURS
        return float(self._funding[self._market_asset[i]] + self._dev[i]) + bias

    def _rate(self, i: int) -> float:
        interval = self.markets[i].funding_interval.total_seconds()
        rate = self._annual_funding(i) * interval / YEAR_SECONDS
        return max(-self._cap, min(self._cap, rate))

    def index_prices(self) -> dict[str, Decimal]:
        """The current index price of every asset (quantised to its tick)."""
        return {n: _to_decimal(math.exp(self._log_price[i]), self._index_tick[n]) for n, i in self._asset_index.items()}

    def states(self, now: datetime) -> MarketStates:
        """The state of every market at the current grid point, stamped for ``now``."""
        out: MarketStates = {}
        index = self.index_prices()
        for i, spec in enumerate(self.markets):
            price = math.exp(self._log_price[self._market_asset[i]])
            idx = round_to_step(index[spec.base], spec.tick_size)
            if spec.is_perp:
                rate = self._rate(i)
                premium = rate * EIGHT_HOURS / spec.funding_interval.total_seconds()
                factor = 1.0 + float(spec.basis_bps) * 1e-4 + premium + MARK_NOISE_BPS * 1e-4 * self._noise[i]
                out.setdefault(spec.fuse, {})[spec.symbol] = MarketState(
                    mark=_to_decimal(price * factor, spec.tick_size),
                    index=idx,
                    funding_rate=Decimal(f"{rate:.12f}").quantize(RATE_QUANTUM),
                    next_settlement=next_settlement_after(now, spec.funding_interval),
                    funding_interval=spec.funding_interval,
                )
            else:
                factor = 1.0 + SPOT_NOISE_BPS * 1e-4 * self._noise[i]
                out.setdefault(spec.fuse, {})[spec.symbol] = MarketState(
                    mark=_to_decimal(price * factor, spec.tick_size), index=idx
                )
        return out

    @property
    def regime_name(self) -> str:
        return "bull" if self.regime == 0 else "bear"

    def annual_funding(self, fuse: str, symbol: str) -> float:
        """The current annualised funding of one perp market (uncapped, float; for research and tests)."""
        for i, spec in enumerate(self.markets):
            if spec.fuse == fuse and spec.symbol == symbol:
                return self._annual_funding(i)
        raise KeyError(f"{fuse}:{symbol}")


def _to_decimal(value: float, tick: Decimal) -> Decimal:
    """Convert a positive float price to a Decimal on ``tick`` (at least one tick)."""
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"synthetic price {value} is not a positive finite number")
    price = round_to_step(Decimal(repr(float(value))), tick)
    return price if price > 0 else tick
