"""The simulated Boros market: a locked leg earns (implied APR - realised funding) x notional x time, exactly.

A scripted source pays a known funding path on the underlying perp every 8h; the Boros zone
is traded through ``SimRateFuse`` (the ``RateVenue`` the daemon uses) and stepped by the world.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from alpha.config import ConfigError, load_config_text
from alpha.domain.instruments import Side
from alpha.domain.rates import RateVenue, payment, upfront, years_between
from fuses.base import InsufficientFundsError, RejectedError
from tests.sim.boros_helpers import BTC, CONFIG, MATURITY, PATH, boros_world
from tests.sim.helpers import T0

D = Decimal
_world = boros_world


def _q(amount: Decimal) -> Decimal:
    """``amount`` to 1e-18 of its asset: the 28-digit context rounds sums of years-fractions in their last digits."""
    return amount.quantize(D("1e-18"))


def _settled(k: int) -> Decimal:
    """The sum of the first ``k`` settled rates."""
    return sum(PATH[:k], D(0))


async def test_a_locked_leg_earns_implied_minus_realised_funding_through_settlements_and_maturity() -> None:
    world, fuse, clock = _world()
    venue: RateVenue = fuse  # the fuse is what the daemon asks
    await venue.deposit("BTC", D("1"))
    quote = await venue.rate_quote("SIM-BTC-04JAN2024")
    expected_apr = quote.fill_apr(Side.SELL, D("2"))
    assert expected_apr is not None

    fill = await venue.swap("SIM-BTC-04JAN2024", Side.SELL, D("2"), D("0"), client_id="lock-1")

    years = years_between(T0, MATURITY)
    assert fill.size == D("-2") and fill.fixed_apr == expected_apr
    fee = world.rates["boros"].markets["SIM-BTC-04JAN2024"].fee(D("2"), T0)
    assert fill.fee == fee == D("2") * years * D("0.001")
    # After four settlements: the fixed leg realised upfront, four floating payments, the fee.
    clock.advance(timedelta(hours=33))
    acct = await venue.rate_account("BTC")
    assert _q(acct.collateral) == _q(D("1") + upfront(D("-2"), fill.fixed_apr, years) - fee + payment(D("-2"), _settled(4)))
    assert acct.positions[0].size == D("-2") and acct.health > 1
    # Through maturity (the ninth settlement is at maturity; the tenth, after it, is not paid).
    clock.advance(MATURITY + timedelta(hours=9) - clock.now())
    acct = await venue.rate_account("BTC")
    pnl = acct.collateral - D("1")
    assert acct.positions == () and world.rates["boros"].ledger.settlements == 9
    assert _q(pnl) == _q((fill.fixed_apr * years - _settled(9)) * D("2") - fee)  # (implied - realised) x notional x time
    assert (pnl * BTC).quantize(D("0.01")) == (((fill.fixed_apr * years - _settled(9)) * 2 - fee) * BTC).quantize(D("0.01"))
    assert pnl > 0  # the implied APR beat this path


async def test_a_repeated_client_id_returns_the_first_fill_and_trades_nothing() -> None:
    world, fuse, _ = _world()
    await fuse.deposit("BTC", D("1"))
    first = await fuse.swap("SIM-BTC-04JAN2024", Side.SELL, D("1.5"), D("0"), client_id="same")
    collateral = world.rates["boros"].collateral

    again = await fuse.swap("SIM-BTC-04JAN2024", Side.SELL, D("1.5"), D("0"), client_id="same")

    assert again == first and world.rates["boros"].collateral == collateral
    assert (await fuse.rate_account("BTC")).positions[0].size == D("-1.5")


async def test_the_limit_apr_stops_the_fill_and_the_size_step_is_kept() -> None:
    _, fuse, _ = _world()
    await fuse.deposit("BTC", D("1"))
    quote = await fuse.rate_quote("SIM-BTC-04JAN2024")

    fill = await fuse.swap("SIM-BTC-04JAN2024", Side.SELL, D("3"), quote.bids[1].apr, client_id="limited")

    assert fill.size == D("-2")  # two levels of 1 at or above the limit
    with pytest.raises(RejectedError):
        await fuse.swap("SIM-BTC-04JAN2024", Side.SELL, D("0.0005"), D("0"), client_id="dust")


async def test_a_swap_without_initial_margin_is_refused_and_changes_nothing() -> None:
    world, fuse, _ = _world()
    await fuse.deposit("BTC", D("0.001"))

    with pytest.raises(InsufficientFundsError):
        await fuse.swap("SIM-BTC-04JAN2024", Side.SELL, D("3"), D("0"), client_id="too-big")

    assert world.rates["boros"].collateral == D("0.001") and world.rates["boros"].held == {}


async def test_a_zone_below_maintenance_is_liquidated_with_an_incentive() -> None:
    world, fuse, clock = _world()
    boros = world.rates["boros"]
    market = boros.markets["SIM-BTC-04JAN2024"]
    quote = await fuse.rate_quote(market.market)
    im = market.initial_margin(D("5"), quote.mark_apr, T0)
    await fuse.deposit("BTC", im * D("1.02") + market.fee(D("5"), T0))
    await fuse.swap(market.market, Side.SELL, D("5"), D("0"), client_id="thin")
    assert boros.held[market.market].size == D("-5")
    # Funding far above the implied rate: the short YU pays it at every settlement.
    saved = list(PATH)
    PATH[:] = [D("0.01")] * len(PATH)
    try:
        clock.advance(timedelta(hours=17))
        acct = await fuse.rate_account("BTC")
    finally:
        PATH[:] = saved
    assert boros.ledger.liquidations == 1 and acct.positions == ()
    assert boros.ledger.incentives > 0


async def test_the_mark_is_deterministic_in_the_seed_and_read_from_a_file_when_given(tmp_path: Path) -> None:
    _, fa, _ = _world()
    _, fb, _ = _world()
    assert await fa.rate_quote("SIM-BTC-04JAN2024") == await fb.rate_quote("SIM-BTC-04JAN2024")
    csv = tmp_path / "implied.csv"
    csv.write_text("ts,market,implied_apr\n2023-12-31T00:00:00Z,SIM-BTC-04JAN2024,0.123456\n2024-01-01T12:00:00Z,SIM-BTC-04JAN2024,0.2\n")

    _, fuse, clock = _world(f", implied_apr_file: {csv}")

    assert (await fuse.rate_quote("SIM-BTC-04JAN2024")).mark_apr == D("0.1235")  # rounded to the 0.0001 tick
    clock.advance(timedelta(hours=13))
    quote = await fuse.rate_quote("SIM-BTC-04JAN2024")
    assert quote.mark_apr == D("0.2") and quote.bids[0].apr == D("0.1998") and quote.asks[0].apr == D("0.2002")


def test_the_view_values_the_zone_in_nav_and_the_config_checks_the_underlying() -> None:
    world, _, _ = _world()
    world.rate_deposit("boros", D("0.5"))

    view = world.portfolio_view(T0)

    assert view.rate_equity("boros") == D("0.5") * BTC
    assert view.nav == D("1000000")  # bought at the index: the vault's cash became collateral
    with pytest.raises(ConfigError, match="not a perp market of an enabled fuse"):
        load_config_text(CONFIG.replace(", IMPLIED", "").replace('underlying: "perp-cex:BTC/USDC:USDC"', 'underlying: "spot:BTC/USDC"'))


def test_one_rate_fuse_holds_one_asset() -> None:
    text = CONFIG.replace(", IMPLIED", "").replace("markets: [BTC/USDC:USDC]", "markets: [BTC/USDC:USDC, ETH/USDC:USDC]").replace(
        "      - {market: SIM-BTC-04JAN2024",
        '      - {market: SIM-ETH-04JAN2024, underlying: "perp-cex:ETH/USDC:USDC", maturity: 2024-01-04T00:00:00Z}\n      - {market: SIM-BTC-04JAN2024',
    )

    with pytest.raises(ConfigError, match="one trading zone holds one asset"):
        load_config_text(text)
