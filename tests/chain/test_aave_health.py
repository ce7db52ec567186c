"""Health factor under price moves: the monitor repays before liquidation; without it, a third
account liquidates. Interest over warped time shows in the snapshot and the metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
from decimal import Decimal

import pytest
from web3 import AsyncHTTPProvider, AsyncWeb3

from alpha.domain.account import LendingHealth
from alpha.observability.metrics import Metrics
from fuses.aave import AaveLendingFuse, health_after_repay, repay_to_restore, to_asset_amount
from fuses.aave.market import abi, set_price
from fuses.base import RejectedError
from fuses.evm.txmanager import TxManager
from tests.chain.conftest import Chain

pytestmark = pytest.mark.chain

MIN_HF = Decimal("1.5")


@pytest.fixture
def chain(market_chain: Chain) -> Chain:
    """Every test here runs on v3.0 and on the current release (see conftest.py)."""
    return market_chain


def _health(collateral: str, debt: str, hf: str) -> LendingHealth:
    return LendingHealth(Decimal(collateral), Decimal(debt), Decimal(0), Decimal("0.8"), Decimal("0.825"), Decimal(hf))


def test_repay_to_restore_is_zero_when_healthy_and_restores_the_target_otherwise() -> None:
    assert repay_to_restore(_health("30000", "10000", "2.475"), MIN_HF) == 0
    assert repay_to_restore(_health("30000", "0", "Infinity"), MIN_HF) == 0
    sick = _health("26000", "15000", "1.43")

    repay = repay_to_restore(sick, MIN_HF, headroom=Decimal("0.10"))

    assert health_after_repay(sick, repay) == pytest.approx(Decimal("1.65"))
    assert repay_to_restore(sick, MIN_HF, headroom=Decimal(0)) < repay
    underwater = _health("10000", "15000", "0.2")
    assert repay_to_restore(underwater, MIN_HF) <= underwater.debt_value
    with pytest.raises(ValueError, match="min_health_factor"):
        repay_to_restore(sick, Decimal(0))
    assert to_asset_amount(Decimal("100"), Decimal("3"), 6) == Decimal("33.333334")


async def _move_price(chain: Chain, asset: str, price: str) -> None:
    w3 = AsyncWeb3(AsyncHTTPProvider(chain.url))
    try:
        await set_price(w3, chain.market, asset, Decimal(price))
    finally:
        await w3.provider.disconnect()


async def _monitor(fuse: AaveLendingFuse, stop: asyncio.Event, repaid: list[str]) -> None:
    """The margin-health monitor's loop in miniature: watch the health factor, repay in USDC."""
    while not stop.is_set():
        tx = await fuse.restore_health(MIN_HF, "USDC")
        if tx is not None:
            repaid.append(tx)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.05)


async def _open_weth_backed_usdc_loan(fuse: AaveLendingFuse) -> None:
    await fuse.supply("WETH", Decimal("10"))  # $30,000 at 3000
    await fuse.borrow("USDC", Decimal("15000"))  # HF = 30000 x 0.825 / 15000 = 1.65


async def _liquidate(chain: Chain, liquidator: TxManager, user: str, debt_to_cover: int) -> None:
    usdc = chain.market.tokens["USDC"].address
    pool = liquidator.contract(chain.market.pool, abi("Pool"))
    await liquidator.ensure_allowance(usdc, chain.market.pool, debt_to_cover, label="liquidate")
    await liquidator.send_call(
        pool, "liquidationCall", [chain.market.tokens["WETH"].address, usdc, user, debt_to_cover, False], label="liquidate"
    )


async def test_price_drop_lowers_health_and_the_monitor_repays_before_liquidation(
    fuse: AaveLendingFuse, chain: Chain, liquidator: TxManager, metrics: Metrics
) -> None:
    await _open_weth_backed_usdc_loan(fuse)
    start = await fuse.health()
    stop, repaid = asyncio.Event(), []
    monitor = asyncio.create_task(_monitor(fuse, stop, repaid))
    try:
        for price in ("2600", "2000", "1700"):
            await _move_price(chain, "WETH", price)
            for _ in range(200):
                health = await fuse.health()
                if health.health_factor >= MIN_HF:
                    break
                await asyncio.sleep(0.02)
            assert health.health_factor >= MIN_HF, f"monitor did not restore health at WETH={price}"
            # the liquidator tries and is refused: the position is healthy
            with pytest.raises(RejectedError) as refused:
                await _liquidate(chain, liquidator, fuse.address, 1000 * 10**6)
            assert refused.value.code == "45"
    finally:
        stop.set()
        await monitor
    assert len(repaid) >= 3
    end = await fuse.health()
    assert end.debt_value < start.debt_value
    assert end.collateral_value == Decimal(17000)  # 10 WETH at 1700: nothing was seized
    assert metrics.health_factor.labels("aave")._value.get() == pytest.approx(float(end.health_factor))


async def test_without_the_monitor_a_third_account_liquidates_the_position(
    fuse: AaveLendingFuse, chain: Chain, liquidator: TxManager
) -> None:
    await _open_weth_backed_usdc_loan(fuse)
    a_weth, _, _ = chain.reserve_tokens("WETH")
    collateral_before = a_weth.functions.balanceOf(fuse.address).call()

    await _move_price(chain, "WETH", "1700")  # HF = 17000 x 0.825 / 15000 = 0.935
    health = await fuse.health()
    assert health.health_factor < 1

    await _liquidate(chain, liquidator, fuse.address, 7000 * 10**6)

    after = await fuse.health()
    assert after.debt_value < health.debt_value - Decimal(6999)
    assert a_weth.functions.balanceOf(fuse.address).call() < collateral_before
    assert chain.token("WETH").functions.balanceOf(liquidator.address).call() > 100 * 10**18  # got the seized WETH


async def test_interest_accrues_over_warped_time_in_snapshot_and_metrics(
    fuse: AaveLendingFuse, chain: Chain, metrics: Metrics
) -> None:
    await fuse.supply("WBTC", Decimal("40"))  # $2.4M
    await fuse.borrow("USDC", Decimal("1200000"))
    await fuse.supply("USDC", Decimal("100000"))
    before = await fuse.account()
    usdc_before = next(p for p in before.lending_positions if p.asset == "USDC")
    borrowed_gauge_before = metrics.borrowed.labels("aave", "USDC")._value.get()
    supplied_gauge_before = metrics.supplied.labels("aave", "USDC")._value.get()

    chain.warp(365 * 24 * 3600)
    after = await fuse.account()

    usdc_after = next(p for p in after.lending_positions if p.asset == "USDC")
    growth = usdc_after.borrowed / usdc_before.borrowed - 1
    assert usdc_before.borrow_apr < growth < usdc_before.borrow_apr * Decimal("1.05")  # compounded, about one year
    assert usdc_after.supplied > usdc_before.supplied
    _, _, v_usdc = chain.reserve_tokens("USDC")
    assert usdc_after.borrowed == Decimal(v_usdc.functions.balanceOf(fuse.address).call()) / 10**6
    assert after.lending is not None and before.lending is not None
    assert after.lending.health_factor < before.lending.health_factor
    assert metrics.borrowed.labels("aave", "USDC")._value.get() > borrowed_gauge_before
    assert metrics.supplied.labels("aave", "USDC")._value.get() > supplied_gauge_before
    assert metrics.health_factor.labels("aave")._value.get() == pytest.approx(float(after.lending.health_factor))
