"""Builders shared by the simulator tests: a small venue, a demo-like strategy config."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from alpha.config import load_config_text
from alpha.config.schema import StrategyConfig
from alpha.domain.account import OrderRequest, OrderType, TimeInForce
from alpha.domain.clock import utc
from alpha.domain.instruments import Side
from fuses.sim.book import DepthModel
from fuses.sim.engine import SimExchange
from fuses.sim.markets import make_instrument
from fuses.sim.source import MarketStates
from fuses.sim.synthetic import SyntheticSource

T0: datetime = utc(2024, 1, 1)
PERP = "BTC/USDC:USDC"
SPOT = "BTC/USDC"
ETH_PERP = "ETH/USDC:USDC"


def venue(
    *,
    mark: Decimal = Decimal("40000"),
    eth_mark: Decimal = Decimal("2000"),
    depth: DepthModel | None = None,
    leverage: Decimal = Decimal("10"),
    maker_fee: Decimal = Decimal("0.0002"),
    taker_fee: Decimal = Decimal("0.0005"),
) -> SimExchange:
    """A venue with BTC spot, BTC and ETH linear perps, priced at ``mark``/``eth_mark``."""
    instruments = [
        make_instrument("v", SPOT, mark, maker_fee=maker_fee, taker_fee=taker_fee),
        make_instrument("v", PERP, mark, maker_fee=maker_fee, taker_fee=taker_fee),
        make_instrument("v", ETH_PERP, eth_mark, maker_fee=maker_fee, taker_fee=taker_fee),
    ]
    ex = SimExchange("v", instruments, depth=depth or DepthModel(), default_leverage=leverage)
    ex.update_market(SPOT, mark, T0)
    ex.update_market(PERP, mark, T0)
    ex.update_market(ETH_PERP, eth_mark, T0)
    return ex


_counter = iter(range(1, 10**9))


def market_order(market: str, side: Side, quantity: str | Decimal, **kw: object) -> OrderRequest:
    """A market order with a fresh client id."""
    return OrderRequest(f"c{next(_counter)}", market, side, Decimal(quantity), **kw)  # type: ignore[arg-type]


def limit_order(
    market: str, side: Side, quantity: str | Decimal, price: str | Decimal, tif: TimeInForce = TimeInForce.GTC, **kw: object
) -> OrderRequest:
    return OrderRequest(
        f"c{next(_counter)}", market, side, Decimal(quantity), OrderType.LIMIT, Decimal(price), tif, **kw  # type: ignore[arg-type]
    )


DEMO_LIKE = """
version: 1
mode: demo
vault: {name: t, base_asset: USDC, nav: "1000000"}
assets: [BTC, ETH]
fuses:
  - {name: spot, kind: sim, venue: sim-spot, markets: [BTC/USDC, ETH/USDC], max_share: "0.40", max_leverage: "1",
     sim: {funding_interval: 8h, depth_notional: "5000000"}}
  - {name: perp-cex, kind: sim, venue: sim-cex, markets: [BTC/USDC:USDC, ETH/USDC:USDC], max_share: "0.25", max_leverage: "3",
     sim: {funding_interval: 8h}}
  - {name: perp-dex, kind: sim, venue: sim-dex, markets: [BTC/USDC:USDC, ETH/USDC:USDC], max_share: "0.15", max_leverage: "3",
     sim: {funding_interval: 1h, funding_bias_bps: "0.3", depth_notional: "800000"}}
  - {name: lending, kind: lending, venue: sim, assets: [USDC], max_share: "0.20", max_leverage: "1"}
clock: {start: 2024-01-01T00:00:00Z}
market:
  seed: SEED
  step: 5m
  assets:
    BTC: {price: "42000", volatility: "0.55"}
    ETH: {price: "2300", volatility: "0.70", correlation: "0.85"}
  shocks: SHOCKS
"""


def demo_config(seed: int = 7, shocks: str = "[]") -> StrategyConfig:
    """A demo-like strategy: spot + two perp venues (8h and 1h funding) + sim lending."""
    return load_config_text(DEMO_LIKE.replace("SEED", str(seed)).replace("SHOCKS", shocks), "demo-like.yaml")


def usdt_vault(pricing: str = "par", extra: str = "") -> StrategyConfig:
    """The demo-like strategy with a USDT vault and USDT spot markets: its perp venues settle in USDC.

    ``pricing`` is its ``stablecoin_pricing``; ``extra`` more top-level YAML.
    """
    text = (
        DEMO_LIKE.replace("SEED", "7").replace("SHOCKS", "[]")
        .replace("base_asset: USDC", "base_asset: USDT").replace("[BTC/USDC, ETH/USDC]", "[BTC/USDT, ETH/USDT]")
    )
    return load_config_text(f"{text}stablecoin_pricing: {pricing}\n{extra}", "usdt-vault.yaml")


class StablecoinPriced:
    """The synthetic market, with stablecoins off their peg by fixed prices."""

    def __init__(self, config: StrategyConfig, prices: dict[str, Decimal]) -> None:
        self.inner = SyntheticSource.from_config(config, T0)
        self.prices = prices

    def advance(self, now: datetime) -> MarketStates:
        return self.inner.advance(now)

    def index_prices(self) -> dict[str, Decimal]:
        return {**self.inner.index_prices(), **self.prices}
