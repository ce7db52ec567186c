"""SimFuse and SimLendingFuse: the Fuse/LendingFuse protocols over the simulated world."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

import fuses.sim
from alpha.domain.account import OrderRequest, OrderStatus
from alpha.domain.clock import SimulatedClock
from alpha.domain.instruments import Side
from alpha.observability.metrics import Metrics
from fuses.base import (
    Fuse,
    InsufficientFundsError,
    LendingFuse,
    OrderNotFoundError,
    RejectedError,
    TransientError,
    UnknownOutcomeError,
)
from fuses.sim.fuse import SimFuse, SimLendingFuse
from fuses.sim.world import SimWorld
from tests.sim.helpers import T0, demo_config, limit_order


@pytest.fixture
def setup() -> tuple[SimWorld, SimulatedClock, dict[str, object]]:
    config = demo_config()
    world = SimWorld.from_config(config)
    clock = SimulatedClock(T0)
    metrics = Metrics()
    built = {f.name: fuses.sim.build(f, world=world, clock=clock, metrics=metrics) for f in config.enabled_fuses}
    return world, clock, built


def test_build_gives_protocol_fuses(setup: tuple[SimWorld, SimulatedClock, dict[str, object]]) -> None:
    _, _, built = setup
    assert isinstance(built["perp-cex"], SimFuse) and isinstance(built["perp-cex"], Fuse)
    assert isinstance(built["lending"], SimLendingFuse) and isinstance(built["lending"], LendingFuse)


async def test_market_data_and_order_lifecycle(setup: tuple[SimWorld, SimulatedClock, dict[str, object]]) -> None:
    world, _clock, built = setup
    fuse = built["perp-dex"]
    assert isinstance(fuse, SimFuse)
    await fuse.start()
    await fuse.transfer("USDC", Decimal("50000"), "vault", "perp-dex")

    instruments = await fuse.instruments()
    funding = await fuse.funding_rates()
    marks = await fuse.marks()
    book = await fuse.order_book("BTC/USDC:USDC", depth=5)
    filled = await fuse.submit(OrderRequest("a1", "BTC/USDC:USDC", Side.SELL, Decimal("0.5")))
    resting = await fuse.submit(limit_order("BTC/USDC:USDC", Side.BUY, "0.1", str(marks["BTC/USDC:USDC"] * Decimal("0.8")).split(".")[0]))
    canceled = await fuse.cancel("BTC/USDC:USDC", resting.client_id)
    status = await fuse.order_status("BTC/USDC:USDC", "a1")
    account = await fuse.account()

    assert {i.symbol for i in instruments} == {"BTC/USDC:USDC", "ETH/USDC:USDC"}
    assert funding["BTC/USDC:USDC"].interval == timedelta(hours=1)
    assert len(book.bids) == 5 and book.bids[0].price < marks["BTC/USDC:USDC"] < book.asks[0].price
    assert filled.status is OrderStatus.FILLED and status.filled == Decimal("0.5")
    assert resting.status is OrderStatus.NEW and canceled.status is OrderStatus.CANCELED
    assert account.position("BTC/USDC:USDC").size == Decimal("-0.5")  # type: ignore[union-attr]
    assert world.vault["USDC"] == Decimal("950000")
    with pytest.raises(OrderNotFoundError):
        await fuse.order_status("BTC/USDC:USDC", "never-sent")
    with pytest.raises(OrderNotFoundError):
        await fuse.order_status("ETH/USDC:USDC", "a1")
    with pytest.raises(RejectedError, match="not allowed"):
        await fuse.submit(OrderRequest("a2", "SOL/USDC:USDC", Side.BUY, Decimal("1")))


async def test_fuse_steps_the_world_with_its_clock(setup: tuple[SimWorld, SimulatedClock, dict[str, object]]) -> None:
    world, clock, built = setup
    fuse = built["perp-cex"]
    assert isinstance(fuse, SimFuse)
    clock.advance(timedelta(hours=9))
    funding = await fuse.funding_rates()
    assert world.now == T0 + timedelta(hours=9)
    assert funding["ETH/USDC:USDC"].next_settlement == T0 + timedelta(hours=16)


async def test_faults_unknown_outcome_partial_fill_and_transient(setup: tuple[SimWorld, SimulatedClock, dict[str, object]]) -> None:
    _, clock, built = setup
    fuse = built["perp-cex"]
    assert isinstance(fuse, SimFuse)
    await fuse.transfer("USDC", Decimal("100000"), "vault", "futures")

    fuse.faults.unknown_outcome = 1
    with pytest.raises(UnknownOutcomeError) as info:
        await fuse.submit(OrderRequest("u1", "ETH/USDC:USDC", Side.SELL, Decimal("1")))
    assert info.value.client_id == "u1"
    resolved = await fuse.order_status("ETH/USDC:USDC", "u1")
    assert resolved.status is OrderStatus.FILLED  # accepted despite the timeout

    fuse.faults.fill_cap = Decimal("0.3")
    partial = await fuse.submit(OrderRequest("p1", "ETH/USDC:USDC", Side.SELL, Decimal("1")))
    assert partial.filled == Decimal("0.3") and partial.status is OrderStatus.EXPIRED
    fuse.faults.fill_cap = None

    fuse.faults.fail_before_send.append(TransientError("simulated 503", venue="perp-cex"))
    with pytest.raises(TransientError):
        await fuse.submit(OrderRequest("t1", "ETH/USDC:USDC", Side.SELL, Decimal("1")))
    with pytest.raises(OrderNotFoundError):
        await fuse.order_status("ETH/USDC:USDC", "t1")

    fuse.faults.latency = timedelta(seconds=30)
    import asyncio

    task = asyncio.create_task(fuse.marks())
    await asyncio.sleep(0)
    assert not task.done()
    clock.advance(timedelta(seconds=30))
    assert "ETH/USDC:USDC" in await task


async def test_leverage_above_the_fuse_cap_is_refused(setup: tuple[SimWorld, SimulatedClock, dict[str, object]]) -> None:
    _, _, built = setup
    fuse = built["perp-cex"]
    assert isinstance(fuse, SimFuse)
    await fuse.set_leverage("BTC/USDC:USDC", Decimal("2"))
    with pytest.raises(RejectedError, match="max_leverage"):
        await fuse.set_leverage("BTC/USDC:USDC", Decimal("5"))


async def test_lending_fuse_supply_borrow_repay_withdraw(setup: tuple[SimWorld, SimulatedClock, dict[str, object]]) -> None:
    world, clock, built = setup
    lending = built["lending"]
    assert isinstance(lending, SimLendingFuse)

    await lending.supply("USDC", Decimal("100000"))
    await lending.borrow("BTC", Decimal("1"))
    health = await lending.health()
    rates = await lending.reserve_rates()
    clock.advance(timedelta(days=30))
    account = await lending.account()

    assert world.vault["USDC"] == Decimal("900000")
    assert health.debt_value == Decimal("1") * world.prices["BTC"] or health.debt_value > 0
    assert health.health_factor > 1
    assert set(rates) == {"USDC"} and rates["USDC"][1] > rates["USDC"][0] > 0
    usdc = next(p for p in account.lending_positions if p.asset == "USDC")
    btc = next(p for p in account.lending_positions if p.asset == "BTC")
    assert usdc.supplied > Decimal("100000")  # interest earned
    assert btc.borrowed > Decimal("1")  # interest owed
    with pytest.raises(InsufficientFundsError):
        await lending.borrow("BTC", Decimal("100"))
    await lending.repay("BTC", Decimal("1"))
    with pytest.raises(RejectedError):
        await lending.supply("USDC", Decimal("-1"))
    await lending.withdraw("USDC", Decimal("50000"))
    assert world.vault["USDC"] == Decimal("950000")


async def test_metrics_count_requests_orders_and_errors_by_kind() -> None:
    config = demo_config()
    world = SimWorld.from_config(config)
    clock = SimulatedClock(T0)
    metrics = Metrics()
    fuse = fuses.sim.build(config.fuse("perp-cex"), world=world, clock=clock, metrics=metrics)
    assert isinstance(fuse, SimFuse)
    await fuse.transfer("USDC", Decimal("10000"), "vault", "perp-cex")
    await fuse.submit(OrderRequest("m1", "ETH/USDC:USDC", Side.BUY, Decimal("1")))
    with pytest.raises(RejectedError):
        await fuse.submit(OrderRequest("m1", "ETH/USDC:USDC", Side.BUY, Decimal("1")))
    reg = metrics.registry
    assert reg.get_sample_value("alpha_venue_requests_total", {"fuse": "perp-cex"}) == 3
    assert reg.get_sample_value("alpha_execution_orders_total", {"fuse": "perp-cex", "outcome": "filled"}) == 1
    assert reg.get_sample_value("alpha_venue_request_errors_total", {"fuse": "perp-cex", "kind": "rejected"}) == 1
