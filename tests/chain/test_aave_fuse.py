"""The Aave lending fuse against real Aave v3 contracts: every figure is checked against raw reads."""

from __future__ import annotations

from decimal import Decimal

import pytest

from alpha.domain.account import LendingHealth
from fuses.aave import ALL, AaveLendingFuse, build
from fuses.base import LendingFuse
from tests.chain.conftest import Chain

pytestmark = pytest.mark.chain

RAY = Decimal(10) ** 27
USD = Decimal(10) ** 8


async def test_build_returns_a_lending_fuse_on_the_configured_market(fuse: AaveLendingFuse, chain: Chain) -> None:
    assert isinstance(fuse, LendingFuse)
    assert fuse.pool_address == chain.market.pool
    assert {a: r.address for a, r in fuse.reserves.items()} == {s: t.address for s, t in chain.market.tokens.items()}
    assert {a: r.decimals for a, r in fuse.reserves.items()} == {"USDC": 6, "WETH": 18, "WBTC": 8}
    assert callable(build)


async def test_supply_and_withdraw_move_exactly_the_amounts_the_contracts_report(fuse: AaveLendingFuse, chain: Chain) -> None:
    usdc = chain.token("USDC")
    a_usdc, _, _ = chain.reserve_tokens("USDC")
    wallet_before = usdc.functions.balanceOf(fuse.address).call()

    await fuse.supply("USDC", Decimal("10000.5"))

    assert a_usdc.functions.balanceOf(fuse.address).call() == 10_000_500_000
    assert usdc.functions.balanceOf(fuse.address).call() == wallet_before - 10_000_500_000
    # the approval was exact and fully used: nothing left for the pool to pull later
    assert usdc.functions.allowance(fuse.address, chain.market.pool).call() == 0

    await fuse.withdraw("USDC", Decimal("4000.25"))

    raw = a_usdc.functions.balanceOf(fuse.address).call()
    assert raw == 6_000_250_000
    snapshot = await fuse.account()
    usdc_position = next(p for p in snapshot.lending_positions if p.asset == "USDC")
    assert usdc_position.supplied == Decimal(raw) / 10**6
    assert usdc_position.borrowed == 0
    assert snapshot.balance("USDC").total == Decimal(usdc.functions.balanceOf(fuse.address).call()) / 10**6

    await fuse.withdraw("USDC", ALL)
    assert a_usdc.functions.balanceOf(fuse.address).call() == 0


async def test_borrow_and_repay_match_the_debt_tokens_and_account_data(fuse: AaveLendingFuse, chain: Chain) -> None:
    _, _, v_usdc = chain.reserve_tokens("USDC")
    await fuse.supply("WETH", Decimal("10"))

    await fuse.borrow("USDC", Decimal("12000"))

    health = await fuse.health()
    raw = chain.pool.functions.getUserAccountData(fuse.address).call()
    assert health == LendingHealth(
        collateral_value=Decimal(raw[0]) / USD,
        debt_value=Decimal(raw[1]) / USD,
        available_borrows=Decimal(raw[2]) / USD,
        ltv=Decimal(raw[4]) / 10_000,
        liquidation_threshold=Decimal(raw[3]) / 10_000,
        health_factor=Decimal(raw[5]) / Decimal(10) ** 18,
    )
    assert health.collateral_value == Decimal(30000)
    assert health.ltv == Decimal("0.8") and health.liquidation_threshold == Decimal("0.825")
    assert Decimal("2.06") < health.health_factor < Decimal("2.07")  # 30000 x 0.825 / 12000 = 2.0625
    snapshot = await fuse.account()
    usdc = next(p for p in snapshot.lending_positions if p.asset == "USDC")
    assert usdc.borrowed == Decimal(v_usdc.functions.balanceOf(fuse.address).call()) / 10**6
    assert usdc.borrowed >= Decimal(12000)
    assert snapshot.lending == await fuse.health()

    await fuse.repay("USDC", Decimal("2000"))
    assert Decimal(v_usdc.functions.balanceOf(fuse.address).call()) / 10**6 < Decimal("10000.01")

    await fuse.repay("USDC", ALL)

    assert v_usdc.functions.balanceOf(fuse.address).call() == 0
    after = await fuse.health()
    assert after.debt_value == 0 and after.health_factor == Decimal("Infinity")


async def test_reserve_data_matches_the_pool_and_the_data_provider(fuse: AaveLendingFuse, chain: Chain, admin) -> None:  # type: ignore[no-untyped-def]
    configurator = admin.contract(chain.market.pool_configurator, _abi("PoolConfigurator"))
    usdc_address = chain.market.tokens["USDC"].address
    await admin.send_call(configurator, "setSupplyCap", [usdc_address, 5_000_000], label="setSupplyCap")
    await admin.send_call(configurator, "setBorrowCap", [usdc_address, 1_500_000], label="setBorrowCap")
    await fuse.supply("WBTC", Decimal("10"))
    await fuse.borrow("USDC", Decimal("300000"))  # utilisation makes both rates non-zero

    data = await fuse.reserve_data("USDC")
    rates = await fuse.reserve_rates()

    raw = chain.pool.functions.getReserveData(usdc_address).call()
    assert data.supply_apr == Decimal(raw[2]) / RAY and data.supply_apr > 0
    assert data.variable_borrow_apr == Decimal(raw[4]) / RAY and data.variable_borrow_apr > data.supply_apr
    assert rates["USDC"] == (data.supply_apr, data.variable_borrow_apr)
    assert (data.supply_cap, data.borrow_cap) == (Decimal(5_000_000), Decimal(1_500_000))
    assert (data.ltv, data.liquidation_threshold, data.liquidation_bonus) == (Decimal("0.8"), Decimal("0.85"), Decimal("1.05"))
    assert data.reserve_factor == Decimal("0.1")
    assert data.emode_category == 0
    assert data.collateral_enabled and data.borrowing_enabled and data.active
    assert not data.frozen and not data.paused
    assert data.price == Decimal(1)
    a_usdc, _, v_usdc = chain.reserve_tokens("USDC")
    assert data.total_supplied == Decimal(a_usdc.functions.totalSupply().call()) / 10**6
    assert data.total_variable_debt == Decimal(v_usdc.functions.totalSupply().call()) / 10**6


def _abi(name: str) -> list[dict[str, object]]:
    from fuses.aave.market import abi

    return abi(name)
