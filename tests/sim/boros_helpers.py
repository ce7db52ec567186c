"""A small strategy with a simulated Boros market on a perp whose funding follows a scripted path (tests of the rate lock)."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from alpha.config import load_config_text
from alpha.config.schema import StrategyConfig
from alpha.domain.clock import SimulatedClock
from alpha.domain.funding import next_settlement_after
from alpha.domain.instruments import Side
from fuses.sim.ratefuse import SimRateFuse
from fuses.sim.source import MarketState, MarketStates
from fuses.sim.world import SimWorld
from tests.sim.helpers import PERP, T0, market_order

D = Decimal
INTERVAL = timedelta(hours=8)
MATURITY = T0 + timedelta(days=3)  # nine settlements: 8h, 16h, ..., 72h (the last at maturity)
PATH = [D(x) for x in ("0.0001", "0.00005", "-0.0002", "0.00015", "0.0001", "0.00005", "-0.0001", "0.0001", "0.00005", "0.0005", "0.0003")]
BTC = D("40000")

CONFIG = """
version: 1
mode: backtest
vault: {name: t, base_asset: USDC, nav: "1000000"}
assets: [BTC]
fuses:
  - {name: spot, kind: sim, venue: sim-spot, markets: [BTC/USDC], max_share: "0.40", max_leverage: "1"}
  - {name: perp-cex, kind: sim, venue: sim-cex, markets: [BTC/USDC:USDC], max_share: "0.40", max_leverage: "3",
     sim: {funding_interval: 8h}}
thresholds: {lock_min_edge_apr: "0.01"}
rates:
  - name: boros
    max_share: "0.10"
    markets:
      - {market: SIM-BTC-04JAN2024, underlying: "perp-cex:BTC/USDC:USDC", maturity: 2024-01-04T00:00:00Z, size_step: "0.01"}
    sim: {seed: 3, premium_apr: "0.02", noise_apr: "0.004", levels: 5, level_size: "1", IMPLIED}
clock: {start: 2024-01-01T00:00:00Z}
"""


class ScriptedFunding:
    """BTC at a constant price; the perp pays ``PATH[k - 1]`` at its k-th 8h settlement after T0."""

    def advance(self, now: datetime) -> MarketStates:
        nxt = next_settlement_after(now, INTERVAL)
        rate = PATH[int((nxt - T0) / INTERVAL) - 1]
        return {
            "spot": {"BTC/USDC": MarketState(BTC, BTC)},
            "perp-cex": {"BTC/USDC:USDC": MarketState(BTC, BTC, rate, nxt, INTERVAL)},
        }


def boros_config(implied: str = "") -> StrategyConfig:
    return load_config_text(CONFIG.replace(", IMPLIED", implied))


def boros_world(implied: str = "") -> tuple[SimWorld, SimRateFuse, SimulatedClock]:
    config = boros_config(implied)
    world = SimWorld.from_config(config, source=ScriptedFunding(), start=T0)
    clock = SimulatedClock(T0)
    return world, SimRateFuse(config.rates[0], world, clock), clock


def open_short(world: SimWorld, quantity: str, margin: str = "50000") -> None:
    """Fund perp-cex from the vault and sell ``quantity`` BTC perp on it (the carry's short leg, unhedged here)."""
    world.transfer("USDC", Decimal(margin), "vault", "perp-cex")
    world.venues["perp-cex"].submit("perp-cex", market_order(PERP, Side.SELL, quantity), world.now)
    world.flush()
