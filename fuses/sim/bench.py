"""Print how fast the simulator runs: ``python -m fuses.sim.bench``.

Figures (printed, never asserted): synthetic-market grid steps per second; world stops per
second over the demo strategy's markets with open hedges (each stop = price update of every
market, settlements due, lending accrual, liquidation checks); market orders per second through
``SimExchange.submit``.
"""

from __future__ import annotations

import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from alpha.config import load_config
from alpha.domain.account import OrderRequest
from alpha.domain.instruments import Side
from fuses.sim.synthetic import SyntheticSource
from fuses.sim.world import SimWorld

DEMO = Path(__file__).resolve().parents[2] / "config" / "demo.yaml"


def main() -> None:
    """Run the three measurements on config/demo.yaml and print them."""
    config = load_config(DEMO)
    start = config.clock.start
    assert start is not None

    source = SyntheticSource.from_config(config, start)
    days = 90
    t0 = time.perf_counter()
    source.advance(start + timedelta(days=days))
    elapsed = time.perf_counter() - t0
    steps = days * 24 * 12
    print(f"synthetic market: {steps} steps of 5m ({len(source.markets)} markets) in {elapsed:.2f}s = {steps / elapsed:,.0f} steps/s")

    world = SimWorld.from_config(config)
    world.transfer("USDC", Decimal("200000"), "vault", "spot")
    world.transfer("USDC", Decimal("100000"), "vault", "perp-cex")
    world.transfer("USDC", Decimal("100000"), "vault", "perp-dex")
    world.venues["spot"].submit("spot", OrderRequest("b1", "BTC/USDC", Side.BUY, Decimal("3")), world.now)
    world.venues["perp-cex"].submit("perp-cex", OrderRequest("s1", "BTC/USDC:USDC", Side.SELL, Decimal("2")), world.now)
    world.venues["perp-dex"].submit("perp-dex", OrderRequest("s2", "BTC/USDC:USDC", Side.SELL, Decimal("1")), world.now)
    stops = 0
    t0 = time.perf_counter()
    now = world.now
    for _ in range(30 * 24 * 12):
        now += timedelta(minutes=5)
        world.step_to(now)
        stops += 1
    elapsed = time.perf_counter() - t0
    print(
        f"world: {stops} stops (30 days at 5m, {world.ledger.settlements} settlements) in {elapsed:.2f}s = "
        f"{stops / elapsed:,.0f} stops/s"
    )

    venue = world.venues["perp-cex"]
    world.transfer("USDC", Decimal("500000"), "vault", "perp-cex")
    n = 5000
    t0 = time.perf_counter()
    for i in range(n):
        side = Side.BUY if i % 2 else Side.SELL
        venue.submit("perp-cex", OrderRequest(f"o{i}", "ETH/USDC:USDC", side, Decimal("1")), world.now)
    elapsed = time.perf_counter() - t0
    print(f"orders: {n} market orders in {elapsed:.2f}s = {n / elapsed:,.0f} orders/s")


if __name__ == "__main__":
    main()
