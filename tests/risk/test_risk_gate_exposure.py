"""Exposure functions and the risk gate: each refusal reason, and what still passes."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

from strategy_builders import NOW, PRICES, config, fresh_view, lending_account, perp_account, spot_account

from alpha.domain.account import LendingPosition
from alpha.domain.actions import CloseHedge, HedgeRef, Leg, OpenHedge, TopUpMargin, Transfer
from alpha.domain.instruments import Side
from alpha.domain.portfolio import PortfolioView
from alpha.risk.exposure import (
    delta_ratio,
    fuse_gross,
    fuse_leverage,
    gross,
    holdings,
    market_exposure,
    net_delta,
    venue_gross,
)
from alpha.risk.gate import RiskState, depegged, gate

D = Decimal
BTC = PRICES["BTC"]


def _hedged() -> PortfolioView:
    qty, perp_equity = D("2"), D("40000")
    view = fresh_view()
    accounts = {
        "spot": spot_account(D("500"), {"BTC": qty}),
        "perp-cex": perp_account("perp-cex", perp_equity, {"BTC": -qty}),
        "lending": replace(lending_account(), lending_positions=(LendingPosition("ETH", D(0), D("3")),)),
    }
    return replace(view, vault_cash=D("800000"), accounts=accounts)


def test_exposure_counts_spot_coins_perps_and_lending_debt() -> None:
    view = _hedged()
    assert holdings(view)[("spot", "BTC/USDC")] == 2
    assert holdings(view)[("perp-cex", "BTC/USDC:USDC")] == -2
    assert net_delta(view) == {"BTC": D(0), "ETH": D("-3") * PRICES["ETH"]}
    assert gross(view) == {"BTC": 2 * BTC, "ETH": D(0)}
    assert market_exposure(view)[("perp-cex", "BTC/USDC:USDC")] == -2 * BTC
    assert fuse_gross(view)["perp-cex"] == 2 * BTC
    assert fuse_leverage(view)["perp-cex"] == 2 * BTC / D("40000")
    assert venue_gross(view, {"spot": "v", "perp-cex": "v"})["v"] == 4 * BTC
    assert delta_ratio(view)["BTC"] == 0 and delta_ratio(view)["ETH"] == D("Infinity")


def test_a_coin_is_cash_exactly_when_the_view_counts_it_as_cash() -> None:
    accounts = {"spot": spot_account(D("500"), {"USDT": D("1000")})}
    usdc_only = replace(fresh_view(cash=frozenset()), accounts=accounts)
    both = replace(fresh_view(cash=frozenset({"USDT"})), accounts=accounts)

    assert usdc_only.cash == {"USDC"}  # the base asset is always cash
    assert holdings(usdc_only) == {("spot", "USDT"): D("1000")}
    assert net_delta(usdc_only) == {"USDT": D("1000")}
    assert both.cash == {"USDC", "USDT"}
    assert holdings(both) == {} and net_delta(both) == {}


def _open(qty: str = "1") -> OpenHedge:
    legs = (Leg("spot", "BTC/USDC", Side.BUY, D(qty)), Leg("perp-cex", "BTC/USDC:USDC", Side.SELL, D(qty)))
    return OpenHedge(HedgeRef.named("h"), "BTC", legs, "test")


def _funded_view() -> PortfolioView:
    view = fresh_view()
    return replace(view, vault_cash=D("800000"), accounts={
        "spot": spot_account(D("100000")), "perp-cex": perp_account("perp-cex", D("100000")),
        "lending": lending_account()})


def test_a_sound_hedge_passes() -> None:
    result = gate([_open()], _funded_view(), config(), RiskState())
    assert result.approved == (_open(),) and result.refused == ()


def test_kill_switch_refuses_everything_and_pause_lets_risk_actions_through() -> None:
    view = _hedged()
    close = CloseHedge(HedgeRef.named("h"), "BTC", (Leg("spot", "BTC/USDC", Side.SELL, D("2")),
                                    Leg("perp-cex", "BTC/USDC:USDC", Side.BUY, D("2"))), "flatten")
    killed = gate([close], view, config(), RiskState(kill_switch=True))
    assert killed.approved == () and "kill switch" in killed.refused[0].reason
    paused = gate([_open(), close], view, config(), RiskState(paused=True, pause_reason="operator"))
    assert paused.approved == (close,)
    assert "paused (operator)" in paused.refused[0].reason


def test_stale_data_is_refused() -> None:
    result = gate([_open()], _funded_view(), config(), RiskState(now=NOW + timedelta(minutes=5)))
    assert "bad market data" in result.refused[0].reason and "old" in result.refused[0].reason


def test_large_orders_refused_only_when_the_executor_does_not_slice() -> None:
    big = _open("4")  # 160k > max_order_notional 150k
    view = replace(_funded_view(), accounts={**_funded_view().accounts, "spot": spot_account(D("200000"))})
    assert gate([big], view, config(), RiskState(executor_slices=True)).refused == ()
    refused = gate([big], view, config(), RiskState(executor_slices=False)).refused
    assert "max_order_notional" in refused[0].reason


def test_leverage_over_a_fuse_maximum_is_refused() -> None:
    view = replace(_funded_view(), accounts={**_funded_view().accounts, "perp-cex": perp_account("perp-cex", D("10000"))})
    refused = gate([_open("1")], view, config(), RiskState()).refused
    assert "leverage on perp-cex" in refused[0].reason


def test_venue_exposure_over_the_limit_is_refused() -> None:
    cfg = config(risk={"max_venue_exposure": "0.05"})
    refused = gate([_open("2")], _funded_view(), cfg, RiskState()).refused
    assert "max_venue_exposure" in refused[0].reason


def test_idle_buffer_is_kept_except_for_a_margin_top_up() -> None:
    view = replace(_funded_view(), vault_cash=D("120000"))  # NAV 320k, buffer 32k
    move = Transfer("vault", "perp-cex", "USDC", D("100000"), "more margin")
    top_up = TopUpMargin("perp-cex", "USDC", D("100000"), "margin drew down")
    result = gate([move], view, config(), RiskState())
    assert "below the buffer" in result.refused[0].reason
    assert gate([top_up], view, config(), RiskState()).approved == (top_up,)


def test_depeg_refuses_new_exposure_but_not_risk_reduction() -> None:
    view = replace(_hedged(), prices={**_hedged().prices, "USDT": D("0.95")})
    assert depegged(view, config()) and "USDT" in depegged(view, config())[0]
    close = CloseHedge(HedgeRef.named("h"), "BTC", (Leg("spot", "BTC/USDC", Side.SELL, D("2")),
                                    Leg("perp-cex", "BTC/USDC:USDC", Side.BUY, D("2"))), "flatten")
    result = gate([_open(), close], view, config(), RiskState())
    assert result.approved == (close,) and "depeg" in result.refused[0].reason


def test_refusals_are_seen_by_later_actions() -> None:
    view = replace(_funded_view(), accounts={**_funded_view().accounts, "perp-cex": perp_account("perp-cex", D(0))})
    fund = Transfer("vault", "perp-cex", "USDC", D("20000"), "margin")
    result = gate([fund, _open("1")], view, config(), RiskState(kill_switch=False, paused=True))
    assert result.approved == () and len(result.refused) == 2
    assert gate([fund, _open("1")], view, config(), RiskState()).approved == (fund, _open("1"))
