"""The Aave lending fuse against real Aave v3 contracts: every figure is checked against raw reads.

Every test runs on v3.0 and on the current release (``market_chain``, see conftest.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from web3.exceptions import BadFunctionCallOutput

from alpha.domain.account import LendingHealth
from alpha.domain.clock import LiveClock
from alpha.observability.metrics import Metrics
from fuses.aave import ALL, AaveLendingFuse, build
from fuses.base import FatalError, InsufficientFundsError, LendingFuse, RejectedError
from fuses.evm.anvil import dev_key
from fuses.evm.txmanager import TxManager
from tests.chain.conftest import KEY_ENV, USER, Chain, fuse_config

pytestmark = pytest.mark.chain

RAY = Decimal(10) ** 27
USD = Decimal(10) ** 8


@pytest.fixture
def chain(market_chain: Chain) -> Chain:
    return market_chain


async def _started(chain: Chain, monkeypatch: pytest.MonkeyPatch, **overrides: object) -> AaveLendingFuse:
    monkeypatch.setenv(KEY_ENV, dev_key(USER))
    fuse = AaveLendingFuse(fuse_config(chain, **overrides), clock=LiveClock(), metrics=Metrics())
    try:
        await fuse.start()
    except BaseException:
        await fuse.close()
        raise
    return fuse


@pytest.fixture
async def open_fuse(chain: Chain, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[list[AaveLendingFuse]]:
    """Fuses a test starts itself (with its own assets and options); closed after it."""
    started: list[AaveLendingFuse] = []
    yield started
    for fuse in started:
        await fuse.close()


async def test_build_returns_a_lending_fuse_on_the_configured_market(fuse: AaveLendingFuse, chain: Chain) -> None:
    assert isinstance(fuse, LendingFuse)
    assert fuse.pool_address == chain.market.pool
    assert {a: r.address for a, r in fuse.reserves.items()} == {s: chain.market.tokens[s].address for s in ("USDC", "WETH", "WBTC")}
    assert {a: r.decimals for a, r in fuse.reserves.items()} == {"USDC": 6, "WETH": 18, "WBTC": 8}
    assert fuse.emode_layout == ("bitmaps" if chain.current else "reserve-config")
    assert set(fuse.listed) == {t.address for t in chain.market.tokens.values()}
    assert callable(build)


async def test_a_bytes32_symbol_is_read_and_the_reserve_is_usable(
    chain: Chain, monkeypatch: pytest.MonkeyPatch, open_fuse: list[AaveLendingFuse]
) -> None:
    mkr = chain.market.tokens["MKR"].address
    raw = chain.w3.eth.call({"to": mkr, "data": "0x95d89b41"})  # symbol(): a bytes32, not an ABI string
    assert len(raw) == 32 and raw.rstrip(b"\0") == b"MKR"

    fuse = await _started(chain, monkeypatch, assets=("MKR", "USDC"))
    open_fuse.append(fuse)
    await fuse.supply("MKR", Decimal("2"))

    assert fuse.listed[mkr] == "MKR" and fuse.reserves["MKR"].address == mkr
    a_mkr = chain.contract(chain.pool.functions.getReserveData(mkr).call()[8], "AToken")
    assert a_mkr.functions.balanceOf(fuse.address).call() == 2 * 10**18
    position = next(p for p in (await fuse.account()).lending_positions if p.asset == "MKR")
    assert position.supplied == Decimal(2)
    assert (await fuse.health()).collateral_value == Decimal(4000)


async def test_a_symbol_two_reserves_share_is_refused_until_the_config_pins_one(
    chain: Chain, monkeypatch: pytest.MonkeyPatch, open_fuse: list[AaveLendingFuse]
) -> None:
    first, second = chain.market.tokens["DAI"].address, chain.market.tokens["DAI.2"].address

    with pytest.raises(FatalError) as ambiguous:
        await _started(chain, monkeypatch, assets=("DAI",))
    assert ambiguous.value.code == "ambiguous-symbol"
    assert first in str(ambiguous.value) and second in str(ambiguous.value) and "reserve.DAI" in str(ambiguous.value)

    fuse = await _started(chain, monkeypatch, assets=("DAI", "USDC"), options={"reserve.DAI": second.lower(), "poll_interval_s": "0.02"})
    open_fuse.append(fuse)
    await fuse.supply("DAI", Decimal("100"))

    assert fuse.reserves["DAI"].address == second
    a_first = chain.contract(chain.pool.functions.getReserveData(first).call()[8], "AToken")
    a_second = chain.contract(chain.pool.functions.getReserveData(second).call()[8], "AToken")
    assert a_second.functions.balanceOf(fuse.address).call() == 100 * 10**18
    assert a_first.functions.balanceOf(fuse.address).call() == 0
    with pytest.raises(FatalError, match="not in assets"):
        await _started(chain, monkeypatch, assets=("USDC",), options={"reserve.DAI": second})


async def test_emode_membership_is_read_from_the_release_s_own_layout(
    chain: Chain, admin: TxManager, monkeypatch: pytest.MonkeyPatch, open_fuse: list[AaveLendingFuse]
) -> None:
    configurator = admin.contract(chain.market.pool_configurator, chain.abi("PoolConfigurator"))
    usdc = chain.market.tokens["USDC"].address
    if chain.current:  # v3.2+: a category has collateral and borrowable bitmaps
        await admin.send_call(configurator, "setEModeCategory", [1, 9000, 9300, 10200, "stables"], label="emode")
        await admin.send_call(configurator, "setAssetCollateralInEMode", [usdc, 1, True], label="emode")
        await admin.send_call(configurator, "setAssetBorrowableInEMode", [usdc, 1, True], label="emode")
    else:  # v3.0: a reserve belongs to one category, written in its configuration
        await admin.send_call(configurator, "setEModeCategory", [1, 9000, 9300, 10200, "0x" + "00" * 20, "stables"], label="emode")
        await admin.send_call(configurator, "setAssetEModeCategory", [usdc, 1], label="emode")
    fuse = await _started(chain, monkeypatch)  # categories are discovered at start
    open_fuse.append(fuse)

    assert (await fuse.reserve_data("USDC")).emode_categories == (1,)
    assert (await fuse.reserve_data("WETH")).emode_categories == ()
    assert {a: r.emode_categories for a, r in zip(fuse.reserves, await fuse._all_reserve_data(), strict=True)} == {
        "USDC": (1,), "WETH": (), "WBTC": ()
    }
    assert fuse.emode_ids == ((1,) if chain.current else ())
    assert await fuse.emode_category() == 0  # the account has not entered e-mode


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
    configurator = admin.contract(chain.market.pool_configurator, chain.abi("PoolConfigurator"))
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
    assert data.emode_categories == ()
    assert data.collateral_enabled and data.borrowing_enabled and data.active
    assert not data.frozen and not data.paused
    assert data.price == Decimal(1)
    a_usdc, _, v_usdc = chain.reserve_tokens("USDC")
    assert data.total_supplied == Decimal(a_usdc.functions.totalSupply().call()) / 10**6
    assert data.total_variable_debt == Decimal(v_usdc.functions.totalSupply().call()) / 10**6



async def test_a_bytes32_symbol_read_as_a_string_is_a_rejected_error_not_a_web3_one(fuse: AaveLendingFuse, chain: Chain) -> None:
    mkr = fuse.tx.erc20(chain.market.tokens["MKR"].address)  # the standard ABI says symbol() is a string

    with pytest.raises(RejectedError) as refused:
        await fuse.tx.call(mkr.functions.symbol(), label="symbol")

    assert refused.value.code == "bad-output"
    assert isinstance(refused.value.__cause__, BadFunctionCallOutput)


async def test_a_current_release_custom_error_carries_the_v3_0_code(fuse: AaveLendingFuse, chain: Chain) -> None:
    await fuse.supply("WETH", Decimal("1"))  # $3,000 of collateral: LTV 80% ($2,400), threshold 82.5% ($2,475)

    with pytest.raises(InsufficientFundsError) as refused:
        await fuse.borrow("USDC", Decimal("2450"))  # above the LTV, below the threshold

    assert refused.value.code == "36"  # COLLATERAL_CANNOT_COVER_NEW_BORROW on v3.0, CollateralCannotCoverNewBorrow later
    assert ("CollateralCannotCoverNewBorrow" if chain.current else "COLLATERAL_CANNOT_COVER_NEW_BORROW") in str(refused.value)
