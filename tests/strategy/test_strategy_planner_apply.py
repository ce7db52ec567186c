"""Planner: rounding, minimums, ordering, closes; apply: ideal fills conserve value."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from strategy_builders import NOW, PRICES, fresh_view, lending_account, perp_account, spot_account

from alpha.domain.actions import (
    CloseHedge,
    FuseAllocation,
    HedgeRef,
    Leg,
    OpenHedge,
    ResizeLeg,
    TargetBook,
    TargetPosition,
    Transfer,
)
from alpha.domain.apply import apply
from alpha.domain.instruments import Side
from alpha.risk.gate import RiskState, gate
from alpha.strategy.decide import decide
from alpha.strategy.planner import make_plan, plan
from alpha.strategy.signals import FundingHistory, compute_signals
from fuses.sim.world import SimWorld
from tests.sim.helpers import StablecoinPriced, usdt_vault

D = Decimal
BTC = PRICES["BTC"]


def _book(q: str, spot_cap: str = "400000", perp_cap: str = "250000") -> TargetBook:
    qty = D(q)
    return TargetBook(
        nav=D("1000000"),
        positions=(TargetPosition("spot", "BTC/USDC", "BTC", qty, HedgeRef.named("h"), "carry"),
                   TargetPosition("perp-cex", "BTC/USDC:USDC", "BTC", -qty, HedgeRef.named("h"), "carry")),
        allocations=(FuseAllocation("spot", qty * BTC, D(spot_cap), D(1), D(1)),
                     FuseAllocation("perp-cex", qty * BTC / 3, D(perp_cap), D(3), D(3))),
    )


def test_open_rounds_to_lot_step_and_funds_fuses_first() -> None:
    actions = plan(_book("1.23456"), fresh_view())
    kinds = [type(a) for a in actions]
    assert kinds == [Transfer, Transfer, OpenHedge]
    open_ = actions[-1]
    assert isinstance(open_, OpenHedge)
    assert [leg.quantity for leg in open_.legs] == [D("1.234"), D("1.234")]
    assert [leg.side for leg in open_.legs] == [Side.BUY, Side.SELL]


def test_order_below_minimum_notional_is_dropped_with_both_legs_and_a_reason() -> None:
    q = D("0.004")  # 8 USDC of ETH < min notional 10
    book = TargetBook(D("1000000"), (TargetPosition("spot", "ETH/USDC", "ETH", q, HedgeRef.named("e"), "carry"),
                                     TargetPosition("perp-cex", "ETH/USDC:USDC", "ETH", -q, HedgeRef.named("e"), "carry")), ())
    result = make_plan(book, fresh_view())
    assert not any(isinstance(a, OpenHedge) for a in result.actions)
    reasons = [d.reason for d in result.dropped]
    assert any("below minimum 10" in r for r in reasons)
    assert {(d.fuse, d.market) for d in result.dropped} == {("spot", "ETH/USDC"), ("perp-cex", "ETH/USDC:USDC")}


def test_closing_a_hedge_sells_spot_buys_back_perp_and_returns_capital() -> None:
    view = replace(fresh_view(), vault_cash=D("900000"), accounts={
        "spot": spot_account(D(0), {"BTC": D("1")}), "perp-cex": perp_account("perp-cex", D("20000"), {"BTC": D("-1")}),
        "lending": lending_account()})
    actions = plan(_book("0", "0", "0"), view)
    close = actions[0]
    assert isinstance(close, CloseHedge)
    assert {(leg.fuse, leg.side, leg.quantity) for leg in close.legs} == {
        ("spot", Side.SELL, D("1")), ("perp-cex", Side.BUY, D("1"))}
    back = [a for a in actions if isinstance(a, Transfer)]
    # The margin venue keeps back the closing order's fee (estimated at twice the taker fee).
    closing_fee = 2 * D("1") * BTC * D("0.0005")
    assert {(t.source, t.amount) for t in back} == {("spot", BTC), ("perp-cex", D("20000") - closing_fee)}
    after = apply(view, actions)
    assert after.vault_cash == view.nav - closing_fee and after.nav == view.nav


def test_resize_reduces_before_transfers_and_flips_in_two_orders() -> None:
    view = replace(fresh_view(), vault_cash=D("900000"), accounts={
        "spot": spot_account(D(0), {"BTC": D("2")}), "perp-cex": perp_account("perp-cex", D("30000"), {"BTC": D("-2")}),
        "lending": lending_account()})
    actions = plan(_book("1"), view)
    assert isinstance(actions[0], ResizeLeg) and isinstance(actions[1], ResizeLeg)
    assert all(a.leg.quantity == 1 for a in actions[:2] if isinstance(a, ResizeLeg))
    flip = TargetBook(D(1), (TargetPosition("perp-cex", "BTC/USDC:USDC", "BTC", D("1"), HedgeRef.named("x")),), ())
    orders = [a for a in plan(flip, view) if isinstance(a, ResizeLeg)]
    assert [(o.leg.side, o.leg.quantity) for o in orders] == [(Side.BUY, D("2")), (Side.BUY, D("1"))]


def test_apply_perp_trades_keep_equity_and_track_average_entry() -> None:
    view = replace(fresh_view(), accounts={"perp-cex": perp_account("perp-cex", D("50000"))}, vault_cash=D(0))
    moved = replace(view, markets={**view.markets, "perp-cex:BTC/USDC:USDC": replace(
        view.markets["perp-cex:BTC/USDC:USDC"], mark=D("41000"))})
    after = apply(view, [OpenHedge(HedgeRef.named("h"), "BTC", (Leg("perp-cex", "BTC/USDC:USDC", Side.SELL, D("1")),
                                               Leg("perp-cex", "ETH/USDC:USDC", Side.BUY, D("20"))), "t")])
    after = apply(replace(after, markets=moved.markets), [ResizeLeg(HedgeRef.named("h"), "BTC", Leg("perp-cex", "BTC/USDC:USDC", Side.SELL, D("1")), "t")])
    pos = after.accounts["perp-cex"].position("BTC/USDC:USDC")
    assert pos is not None and pos.size == -2 and pos.entry_price == D("40500")
    assert after.accounts["perp-cex"].margin is not None
    assert after.fuse_equity("perp-cex") == D("50000")
    assert after.ts == NOW


def test_a_perp_venue_settling_in_a_dearer_coin_is_funded_with_its_margin_in_that_coin() -> None:
    # A USDT vault, perps settling in USDC, USDC worth 1.015 USDT (within the depeg threshold).
    config = usdt_vault("market", 'thresholds: {entry_min_net_apr: "-1", exit_min_net_apr: "-1"}\n')
    world = SimWorld.from_config(config, source=StablecoinPriced(config, {"USDC": D("1.015")}))
    view = world.portfolio_view()
    history = FundingHistory()
    history.observe(view)

    actions = make_plan(decide(view, compute_signals(history, view, view.ts), config, view.ts), view).actions
    after = apply(view, actions)

    assert gate(actions, view, config, RiskState()).refused == ()
    for fuse in ("perp-cex", "perp-dex"):
        acct = after.accounts[fuse]
        assert acct.positions and acct.margin is not None
        initial = D(0)
        for p in acct.positions:
            snap = after.market(fuse, p.market)
            assert snap is not None
            initial += snap.instrument.initial_margin(abs(p.size) * snap.mark, config.fuse(fuse).max_leverage)
        # The venue counts margin in USDC: what arrived there covers the initial margin of its legs.
        assert acct.balance("USDC").total == acct.margin.equity >= initial
        assert after.nav == view.nav
