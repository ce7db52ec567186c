"""Property tests: after the planned actions the book is neutral, within caps, leverage and buffer.

Random portfolios (existing hedges, cash spread over fuses), configs (caps, leverage, buffer,
tolerance, thresholds) and markets (prices, funding, lot steps, minimums). Every plan is
applied to the view with the pure ``apply`` helper and checked, and the risk gate must
approve every action of a plan made from fresh data.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategy_builders import NOW, PRICES, config, lending_account, markets, perp_account, snapshot, spot_account

from alpha.domain.actions import CloseHedge, OpenHedge, ResizeLeg, TopUpMargin
from alpha.domain.apply import apply
from alpha.domain.instruments import Side
from alpha.domain.portfolio import PortfolioView, market_key
from alpha.risk.exposure import fuse_leverage, gross, net_delta
from alpha.risk.gate import RiskState, gate
from alpha.strategy.decide import decide
from alpha.strategy.planner import make_plan
from alpha.strategy.signals import FundingHistory, compute_signals

D = Decimal
EPS = D("1e-9")


def dec(lo: str, hi: str, places: int) -> st.SearchStrategy[Decimal]:
    return st.decimals(D(lo), D(hi), places=places, allow_nan=False, allow_infinity=False)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[PortfolioView, object]:
    shares = [draw(dec("0.05", "0.5", 2)) for _ in range(4)]
    total = sum(shares)
    if total > 1:
        shares = [(s / total).quantize(D("0.01"), rounding="ROUND_DOWN") for s in shares]
    cfg = config(
        idle_buffer=str(draw(dec("0.0", "0.3", 2))),
        delta_tolerance=str(draw(dec("0.001", "0.05", 3))),
        fuses=[
            {"name": "spot", "kind": "sim", "venue": "sim-spot", "markets": ["BTC/USDC", "ETH/USDC"],
             "max_share": str(shares[0]), "max_leverage": str(draw(st.sampled_from(["1", "0.8"])))},
            {"name": "perp-cex", "kind": "sim", "venue": "sim-cex", "markets": ["BTC/USDC:USDC", "ETH/USDC:USDC"],
             "max_share": str(shares[1]), "max_leverage": str(draw(dec("1", "5", 1)))},
            {"name": "perp-dex", "kind": "sim", "venue": draw(st.sampled_from(["sim-dex", "sim-cex"])),
             "markets": ["BTC/USDC:USDC", "ETH/USDC:USDC"], "max_share": str(shares[2]),
             "max_leverage": str(draw(dec("1", "5", 1)))},
            {"name": "lending", "kind": "lending", "venue": "sim", "assets": ["USDC", "BTC", "ETH"],
             "max_share": str(shares[3]), "max_leverage": "1", "enabled": draw(st.booleans())},
        ],
        thresholds={"entry_min_net_apr": str(draw(dec("0.0", "0.2", 2))), "exit_min_net_apr": "0",
                    "holding_period": draw(st.sampled_from(["3d", "7d", "30d"]))},
        risk={"max_venue_exposure": str(draw(dec("0.2", "1", 2))), "max_data_age": "60s"},
        pnl={"policy": draw(st.sampled_from(["constant_notional", "sentiment_hybrid"]))},
    )
    prices = {"BTC": draw(dec("5000", "90000", 0)), "ETH": draw(dec("200", "5000", 0))}
    rates = {f"{v}:{a}": str(draw(dec("-0.001", "0.001", 6))) for v in ("perp-cex", "perp-dex") for a in ("BTC", "ETH")}
    mkts = markets(rates, prices)
    lot = draw(st.sampled_from(["0.001", "0.01", "0.0001"]))
    min_notional = str(draw(st.sampled_from(["0", "10", "100", "5000"])))
    for key, snap in list(mkts.items()):
        assert snap.book is not None
        depth = snap.book.depth(Side.BUY) * snap.mark
        rate = None if snap.funding is None else str(snap.funding.rate)
        mkts[key] = snapshot(snap.fuse, snap.market, snap.mark, rate=rate,
                             interval_h=int(snap.funding.interval.total_seconds() // 3600) if snap.funding else 8,
                             depth=depth, lot=lot, min_notional=min_notional)
    nav = draw(dec("50000", "20000000", 0))
    # An existing, neutral BTC hedge (spot / perp-cex) of random size, on the lot grid.
    qty = (nav * draw(dec("0", "0.3", 3)) / prices["BTC"]).quantize(D(lot), rounding="ROUND_DOWN")
    if qty * prices["BTC"] < D(min_notional) * 2:
        qty = D(0)
    perp_equity = qty * prices["BTC"] / 2
    spot_cash = draw(dec("0", "1000", 2))
    accounts = {
        "spot": spot_account(spot_cash, {"BTC": qty}),
        "perp-cex": perp_account("perp-cex", perp_equity + D(100), {"BTC": -qty}, prices),
        "lending": lending_account(),
    }
    vault = nav - qty * prices["BTC"] - spot_cash - perp_equity - D(100)
    if vault < 0:
        accounts = {"lending": lending_account()}
        vault = nav
    view = PortfolioView(ts=NOW, base_asset="USDC", vault_cash=vault, accounts=accounts, markets=mkts,
                         prices={**prices, "USDC": D(1), "USDT": D(1)}, cash=cfg.cash_assets)
    return view, cfg


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_planned_book_is_neutral_within_caps_leverage_and_buffer(scenario: tuple) -> None:
    view, cfg = scenario
    nav = view.nav
    target = decide(view, compute_signals(FundingHistory(), view, NOW), cfg, NOW)
    result = make_plan(target, view)
    after = apply(view, result.actions)

    assert abs(after.nav - nav) <= nav * EPS  # ideal execution moves no value
    nd, gr = net_delta(after), gross(after)
    for asset in cfg.assets:
        assert abs(nd.get(asset, D(0))) <= cfg.delta_tolerance * gr.get(asset, D(0)) + EPS, (asset, nd, gr)
    for f in cfg.fuses:
        cap = f.max_share * nav if f.enabled else D(0)
        assert after.fuse_equity(f.name) <= cap * (1 + EPS) + EPS, (f.name, after.fuse_equity(f.name), cap)
        assert fuse_leverage(after).get(f.name, D(0)) <= f.max_leverage * (1 + EPS), f.name
    if not any(isinstance(a, TopUpMargin) for a in result.actions):
        assert after.vault_cash >= cfg.idle_buffer * nav * (1 - EPS)
    for action in result.actions:
        legs = action.legs if isinstance(action, OpenHedge | CloseHedge) else (action.leg,) if isinstance(action, ResizeLeg) else ()
        for leg in legs:
            snap = view.markets[market_key(leg.fuse, leg.market)]
            assert snap.instrument.order_problems(leg.quantity, snap.mark) == []
    approved = gate(result.actions, view, cfg, RiskState())
    assert approved.refused == ()


def test_a_price_move_on_an_open_hedge_is_topped_up_or_rebalanced_back_within_limits() -> None:
    cfg = config()
    price = PRICES["BTC"]
    qty = D("5")
    perp_equity = qty * price / 3
    view = PortfolioView(
        ts=NOW, base_asset="USDC", vault_cash=D("1000000") - qty * price - perp_equity,
        accounts={"spot": spot_account(D(0), {"BTC": qty}),
                  "perp-cex": perp_account("perp-cex", perp_equity, {"BTC": -qty}), "lending": lending_account()},
        markets=markets({"perp-cex:BTC": "0.0006"}), prices={**PRICES, "USDC": D(1)}, cash=cfg.cash_assets,
    )
    up = D("44000")
    loss = qty * (up - price)
    moved = replace(
        view,
        accounts={**view.accounts, "perp-cex": perp_account("perp-cex", perp_equity - loss, {"BTC": -qty})},
        markets=markets({"perp-cex:BTC": "0.0006"}, {**PRICES, "BTC": up}),
        prices={**view.prices, "BTC": up},
    )
    target = decide(moved, compute_signals(FundingHistory(), moved, NOW), cfg, NOW)
    after = apply(moved, make_plan(target, moved).actions)
    assert fuse_leverage(after)["perp-cex"] <= D(3) * (1 + EPS)
    assert abs(net_delta(after)["BTC"]) <= cfg.delta_tolerance * gross(after)["BTC"]
