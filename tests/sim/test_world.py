"""SimWorld: built from a strategy file, stepped in time, viewed as a PortfolioView."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from alpha.domain.instruments import Side
from alpha.domain.portfolio import market_key
from fuses.base import InsufficientFundsError, RejectedError
from fuses.sim.events import FundingPaid, OrderFilled
from fuses.sim.world import SimWorld
from tests.sim.helpers import T0, demo_config, market_order


def test_from_config_puts_all_capital_in_the_vault_and_prices_every_market() -> None:
    world = SimWorld.from_config(demo_config())

    view = world.portfolio_view(T0)

    assert view.vault_cash == Decimal("1000000")
    assert view.nav == Decimal("1000000")
    assert set(view.accounts) == {"spot", "perp-cex", "perp-dex", "lending"}
    assert set(view.markets) == {
        market_key(f, m)
        for f, ms in (("spot", ["BTC/USDC", "ETH/USDC"]), ("perp-cex", ["BTC/USDC:USDC", "ETH/USDC:USDC"]), ("perp-dex", ["BTC/USDC:USDC", "ETH/USDC:USDC"]))
        for m in ms
    }
    perp = view.market("perp-dex", "BTC/USDC:USDC")
    assert perp is not None and perp.funding is not None
    assert perp.funding.interval == timedelta(hours=1)
    assert perp.funding.next_settlement == T0 + timedelta(hours=1)
    assert view.market("perp-cex", "BTC/USDC:USDC").funding.interval == timedelta(hours=8)  # type: ignore[union-attr]
    assert view.market("spot", "BTC/USDC").funding is None  # type: ignore[union-attr]
    assert view.prices["BTC"] == Decimal("42000.0")
    for snap in view.markets.values():
        snap.validate(T0, timedelta(minutes=1))
        assert snap.book is not None and snap.book.bids[0].price < snap.mark < snap.book.asks[0].price


def test_start_defaults_to_clock_start_and_must_exist() -> None:
    config = demo_config()
    world = SimWorld.from_config(config)
    assert world.now == config.clock.start
    bare = config.model_copy(update={"clock": config.clock.model_copy(update={"start": None})})
    with pytest.raises(ValueError, match="start time"):
        SimWorld.from_config(bare)


def test_transfer_trade_and_funding_reach_the_view_and_the_ledger() -> None:
    world = SimWorld.from_config(demo_config())
    world.transfer("USDC", Decimal("100000"), "vault", "perp-cex")
    world.transfer("USDC", Decimal("100000"), "vault", "spot")
    cex = world.venues["perp-cex"]
    spot = world.venues["spot"]

    short = cex.submit("perp-cex", market_order("BTC/USDC:USDC", Side.SELL, "1"), world.now)
    long = spot.submit("spot", market_order("BTC/USDC", Side.BUY, "1"), world.now)
    events = world.step_to(T0 + timedelta(hours=8))

    assert short.filled == Decimal("1") and long.filled == Decimal("1")
    paid = [e for e in events if isinstance(e, FundingPaid) and e.account == "perp-cex"]
    assert len(paid) == 1 and paid[0].ts == T0 + timedelta(hours=8)
    assert paid[0].amount == (Decimal(1) * paid[0].mark * paid[0].rate).quantize(Decimal("0.00000001"))
    assert world.ledger.total_funding("perp-cex") == paid[0].amount
    assert world.ledger.total_fees() > 0
    view = world.portfolio_view(world.now)
    assert view.vault_cash == Decimal("800000")
    assert view.accounts["perp-cex"].position("BTC/USDC:USDC").size == Decimal("-1")  # type: ignore[union-attr]
    assert view.accounts["spot"].balance("BTC").total == Decimal("1")


def test_step_to_stops_at_every_hourly_settlement() -> None:
    world = SimWorld.from_config(demo_config())
    world.transfer("USDC", Decimal("50000"), "vault", "perp-dex")
    world.venues["perp-dex"].submit("perp-dex", market_order("ETH/USDC:USDC", Side.BUY, "2"), world.now)

    events = world.step_to(T0 + timedelta(hours=24))

    times = [e.ts for e in events if isinstance(e, FundingPaid) and e.account == "perp-dex"]
    assert times == [T0 + timedelta(hours=h) for h in range(1, 25)]
    assert world.ledger.settlements == 24


def test_transfers_refuse_bad_amounts_and_overdrafts() -> None:
    world = SimWorld.from_config(demo_config())
    for bad in (Decimal("NaN"), Decimal("0"), Decimal("-5")):
        with pytest.raises(RejectedError):
            world.transfer("USDC", bad, "vault", "spot")
    with pytest.raises(InsufficientFundsError):
        world.transfer("USDC", Decimal("2000000"), "vault", "spot")
    with pytest.raises(RejectedError, match="unknown transfer end"):
        world.transfer("USDC", Decimal("1"), "vault", "nowhere")
    assert world.vault["USDC"] == Decimal("1000000")


def test_subscribers_see_fills() -> None:
    world = SimWorld.from_config(demo_config())
    seen: list[object] = []
    world.subscribe(seen.append)
    world.transfer("USDC", Decimal("10000"), "vault", "perp-cex")
    world.venues["perp-cex"].submit("perp-cex", market_order("BTC/USDC:USDC", Side.BUY, "0.1"), world.now)
    world.step_to(T0 + timedelta(minutes=5))
    assert any(isinstance(e, OrderFilled) for e in seen) or world.ledger.fills == 1
