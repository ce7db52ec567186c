"""SimLendingMarket: rates from utilisation, interest accrual, health factor, caps, liquidation."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from fuses.base import InsufficientFundsError, RejectedError
from fuses.sim.events import InterestAccrued, LendingLiquidated
from fuses.sim.lending import MARKET, TREASURY, ReserveParams, SimLendingMarket, reserve_params_for
from tests.sim.helpers import T0

D = Decimal


def market(prices: dict[str, Decimal] | None = None, **overrides: ReserveParams) -> tuple[SimLendingMarket, dict[str, Decimal]]:
    box = dict(prices or {"USDC": D(1), "BTC": D("40000")})
    reserves = {"USDC": reserve_params_for("USDC"), "BTC": reserve_params_for("BTC"), **overrides}
    m = SimLendingMarket("lend", reserves, lambda a: box[a], T0)
    m.open_account("a")
    return m, box


def test_rates_follow_the_utilisation_curve() -> None:
    m, _ = market()
    p = m.reserves["USDC"]
    u = D("0.70")
    assert m.utilisation("USDC") == u
    assert m.borrow_rate("USDC") == p.slope1 * u / p.optimal_utilisation
    assert m.supply_rate("USDC") == m.borrow_rate("USDC") * u * (1 - p.reserve_factor)
    m.deposit("a", "BTC", D("500"), T0)
    m.supply("a", "BTC", D("500"))
    m.borrow("a", "USDC", D("14000000"))  # pushes USDC utilisation past the kink
    u2 = m.utilisation("USDC")
    assert u2 > p.optimal_utilisation
    assert m.borrow_rate("USDC") == p.slope1 + p.slope2 * (u2 - p.optimal_utilisation) / (1 - p.optimal_utilisation)


def test_interest_accrues_and_is_conserved() -> None:
    m, _ = market()
    m.deposit("a", "USDC", D("100000"), T0)
    m.supply("a", "USDC", D("100000"))
    m.borrow("a", "BTC", D("1"))
    rate = m.borrow_rate("BTC")
    net_before = {a: m.total_supplied(a) - m.total_borrowed(a) for a in ("USDC", "BTC")}

    events = m.accrue(T0 + timedelta(days=365))

    debt = m.accounts["a"].borrowed["BTC"]
    assert debt == D(1) + (D(1) * rate).quantize(D("1e-8"))
    earned = [e for e in events if isinstance(e, InterestAccrued) and e.side == "supply" and e.asset == "USDC"]
    assert len(earned) == 1 and earned[0].amount > 0
    assert m.accounts[TREASURY].supplied["USDC"] > 0
    # cash in the pool (supplied - borrowed) does not change by accrual: interest owed = interest earned
    assert {a: m.total_supplied(a) - m.total_borrowed(a) for a in ("USDC", "BTC")} == net_before


def test_health_factor_and_available_borrows() -> None:
    m, box = market()
    m.deposit("a", "USDC", D("100000"), T0)
    m.supply("a", "USDC", D("100000"))
    m.borrow("a", "BTC", D("1"))
    h = m.health("a")
    assert h.collateral_value == D("100000") and h.debt_value == D("40000")
    assert h.health_factor == D("100000") * D("0.80") / D("40000")
    assert h.available_borrows == D("100000") * D("0.77") - D("40000")
    with pytest.raises(InsufficientFundsError, match="available borrows"):
        m.borrow("a", "BTC", D("1"))
    with pytest.raises(InsufficientFundsError, match="health factor"):
        m.withdraw("a", "USDC", D("60000"))
    box["BTC"] = D("80001")
    assert m.health("a").health_factor < 1


def test_liquidation_below_one_repays_debt_and_seizes_collateral_with_bonus() -> None:
    m, box = market()
    m.deposit("a", "USDC", D("100000"), T0)
    m.supply("a", "USDC", D("100000"))
    m.borrow("a", "BTC", D("1.9"))
    assert m.check_liquidations(T0) == []
    box["BTC"] = D("43000")  # debt 81,700 > 80,000 x LT: HF 0.979

    events = m.check_liquidations(T0)

    assert len(events) == 1 and isinstance(events[0], LendingLiquidated)
    e = events[0]
    assert e.debt_repaid == D("0.95")  # close factor 50%
    bonus = m.reserves["USDC"].liquidation_bonus
    assert e.collateral_seized == (e.debt_repaid * D("43000") * (1 + bonus)).quantize(D("1e-8"))
    assert m.accounts[MARKET].supplied["USDC"] > 0
    assert m.health("a").health_factor > e.health_factor


def test_caps_liquidity_and_bad_amounts_are_refused() -> None:
    capped = ReserveParams(D("0.73"), D("0.78"), D("0.065"), borrow_cap=D("300.5"), initial_supply=D("1000"), initial_utilisation=D("0.3"))
    m, _ = market(BTC=capped)
    m.deposit("a", "USDC", D("10000000"), T0)
    m.supply("a", "USDC", D("10000000"))
    with pytest.raises(RejectedError, match="borrow cap"):
        m.borrow("a", "BTC", D("1"))
    with pytest.raises(RejectedError, match="available to borrow"):
        m.borrow("a", "USDC", D("100000000"))
    for bad in (D("0"), D("-1"), D("NaN")):
        with pytest.raises(RejectedError):
            m.supply("a", "USDC", bad)
    with pytest.raises(RejectedError, match="no reserve"):
        m.supply("a", "DOGE", D("1"))
    with pytest.raises(InsufficientFundsError):
        m.supply("a", "USDC", D("1"))  # wallet is empty now
    with pytest.raises(ValueError):
        ReserveParams(D("0.9"), D("0.8"), D("0.05"))


def test_repay_more_than_debt_repays_the_debt_only() -> None:
    m, _ = market()
    m.deposit("a", "USDC", D("100000"), T0)
    m.supply("a", "USDC", D("100000"))
    m.borrow("a", "BTC", D("0.5"))
    m.deposit("a", "BTC", D("1"), T0)
    paid = m.repay("a", "BTC", D("2"))
    assert paid == D("0.5") and m.accounts["a"].borrowed["BTC"] == 0
    assert m.accounts["a"].wallet["BTC"] == D("1")
    with pytest.raises(RejectedError, match="owes no"):
        m.repay("a", "BTC", D("1"))


def test_fresh_account_shows_listed_reserves_rates_and_collateral_parameters() -> None:
    reserves = {"USDC": reserve_params_for("USDC"), "BTC": reserve_params_for("BTC")}
    box = {"USDC": D(1), "BTC": D("40000")}
    m = SimLendingMarket("lend", reserves, lambda a: box[a], T0, collateral_asset="USDC", listed=("USDC", "BTC"))
    m.open_account("a")
    snap = m.snapshot("a", T0)
    rows = {lp.asset: lp for lp in snap.lending_positions}
    assert set(rows) == {"USDC", "BTC"}
    assert rows["BTC"].supplied == rows["BTC"].borrowed == 0
    assert rows["BTC"].borrow_apr == m.borrow_rate("BTC") > 0
    assert snap.lending is not None
    # nothing supplied yet: the collateral asset's parameters, so a synthetic short can be sized
    assert snap.lending.liquidation_threshold == reserves["USDC"].liquidation_threshold
    assert snap.lending.ltv == reserves["USDC"].ltv
    assert snap.lending.collateral_value == 0 and snap.lending.available_borrows == 0
    # without a collateral asset the health stays as the contracts report it (zero)
    bare = SimLendingMarket("lend", reserves, lambda a: box[a], T0)
    bare.open_account("a")
    assert bare.snapshot("a", T0).lending.liquidation_threshold == 0  # type: ignore[union-attr]


def test_borrow_interest_carries_its_value_in_the_base_asset() -> None:
    m, box = market()
    m.deposit("a", "USDC", D("100000"), T0)
    m.supply("a", "USDC", D("100000"))
    m.borrow("a", "BTC", D("1"))
    events = m.accrue(T0 + timedelta(days=30))
    owed = [e for e in events if isinstance(e, InterestAccrued) and e.side == "borrow"]
    assert owed and owed[0].asset == "BTC" and owed[0].amount < 0
    assert owed[0].value == owed[0].amount * box["BTC"]
