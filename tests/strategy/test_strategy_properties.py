"""Property tests: after the planned actions the book is neutral, within caps, leverage and buffer.

Random portfolios (existing hedges, cash spread over fuses), configs (caps, leverage, buffer,
tolerance, thresholds) and markets (prices, funding, lot steps, minimums). Every plan is
applied to the view with the pure ``apply`` helper and checked, and the risk gate must
approve every action of a plan made from fresh data.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from strategy_builders import NOW, PRICES, config, lending_account, markets, perp_account, snapshot, spot_account

from alpha.config.schema import StrategyConfig
from alpha.domain.actions import CloseHedge, OpenHedge, ResizeLeg, TopUpMargin
from alpha.domain.apply import apply
from alpha.domain.instruments import Side
from alpha.domain.portfolio import PortfolioView, market_key
from alpha.risk.exposure import fuse_leverage, gross, net_delta
from alpha.risk.gate import RiskState, gate
from alpha.strategy.decide import decide
from alpha.strategy.planner import make_plan
from alpha.strategy.signals import FundingHistory, compute_signals
from tests.budgets import examples

D = Decimal
EPS = D("1e-9")


def dec(lo: str, hi: str, places: int) -> st.SearchStrategy[Decimal]:
    return st.decimals(D(lo), D(hi), places=places, allow_nan=False, allow_infinity=False)


def build_scenario(
    *,
    shares: tuple[str, str, str, str] = ("0.4", "0.25", "0.15", "0.2"),
    leverage: tuple[str, str, str] = ("1", "3", "3"),
    dex_venue: str = "sim-dex",
    lending: bool = True,
    idle_buffer: str = "0.1",
    delta_tolerance: str = "0.02",
    entry: str = "0.05",
    holding: str = "7d",
    venue_exposure: str = "0.6",
    policy: str = "constant_notional",
    prices: dict[str, Decimal] | None = None,
    rates: dict[str, str] | None = None,
    lot: str = "0.001",
    min_notional: str = "10",
    nav: str = "1000000",
    hedge_share: str = "0",
    spot_cash: str = "0",
) -> tuple[PortfolioView, StrategyConfig]:
    """Return a view holding a neutral spot / perp-cex BTC hedge of ``hedge_share`` x NAV, and its strategy.

    ``leverage`` is the max leverage of spot, perp-cex and perp-dex; ``rates`` maps
    '<fuse>:<asset>' to a funding rate.
    """
    cfg = config(
        idle_buffer=idle_buffer,
        delta_tolerance=delta_tolerance,
        fuses=[
            {"name": "spot", "kind": "sim", "venue": "sim-spot", "markets": ["BTC/USDC", "ETH/USDC"],
             "max_share": shares[0], "max_leverage": leverage[0]},
            {"name": "perp-cex", "kind": "sim", "venue": "sim-cex", "markets": ["BTC/USDC:USDC", "ETH/USDC:USDC"],
             "max_share": shares[1], "max_leverage": leverage[1]},
            {"name": "perp-dex", "kind": "sim", "venue": dex_venue,
             "markets": ["BTC/USDC:USDC", "ETH/USDC:USDC"], "max_share": shares[2], "max_leverage": leverage[2]},
            {"name": "lending", "kind": "lending", "venue": "sim", "assets": ["USDC", "BTC", "ETH"],
             "max_share": shares[3], "max_leverage": "1", "enabled": lending},
        ],
        thresholds={"entry_min_net_apr": entry, "exit_min_net_apr": "0", "holding_period": holding},
        risk={"max_venue_exposure": venue_exposure, "max_data_age": "60s"},
        pnl={"policy": policy},
    )
    prices = prices or PRICES
    mkts = markets(rates or {}, prices)
    for key, snap in list(mkts.items()):
        assert snap.book is not None
        depth = snap.book.depth(Side.BUY) * snap.mark
        rate = None if snap.funding is None else str(snap.funding.rate)
        mkts[key] = snapshot(snap.fuse, snap.market, snap.mark, rate=rate,
                             interval_h=int(snap.funding.interval.total_seconds() // 3600) if snap.funding else 8,
                             depth=depth, lot=lot, min_notional=min_notional)
    # An existing, neutral BTC hedge (spot / perp-cex) of random size, on the lot grid.
    nav_, cash = D(nav), D(spot_cash)
    qty = (nav_ * D(hedge_share) / prices["BTC"]).quantize(D(lot), rounding="ROUND_DOWN")
    if qty * prices["BTC"] < D(min_notional) * 2:
        qty = D(0)
    perp_equity = qty * prices["BTC"] / 2
    accounts = {
        "spot": spot_account(cash, {"BTC": qty}),
        "perp-cex": perp_account("perp-cex", perp_equity + D(100), {"BTC": -qty}, prices),
        "lending": lending_account(),
    }
    vault = nav_ - qty * prices["BTC"] - cash - perp_equity - D(100)
    if vault < 0:
        accounts = {"lending": lending_account()}
        vault = nav_
    view = PortfolioView(ts=NOW, base_asset="USDC", vault_cash=vault, accounts=accounts, markets=mkts,
                         prices={**prices, "USDC": D(1), "USDT": D(1)}, cash=cfg.cash_assets)
    return view, cfg


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[PortfolioView, StrategyConfig]:
    shares = [draw(dec("0.05", "0.5", 2)) for _ in range(4)]
    total = sum(shares)
    if total > 1:
        shares = [(s / total).quantize(D("0.01"), rounding="ROUND_DOWN") for s in shares]
    return build_scenario(
        shares=(str(shares[0]), str(shares[1]), str(shares[2]), str(shares[3])),
        leverage=(draw(st.sampled_from(["1", "0.8"])), str(draw(dec("1", "5", 1))), str(draw(dec("1", "5", 1)))),
        dex_venue=draw(st.sampled_from(["sim-dex", "sim-cex"])),
        lending=draw(st.booleans()),
        idle_buffer=str(draw(dec("0.0", "0.3", 2))),
        delta_tolerance=str(draw(dec("0.001", "0.05", 3))),
        entry=str(draw(dec("0.0", "0.2", 2))),
        holding=draw(st.sampled_from(["3d", "7d", "30d"])),
        venue_exposure=str(draw(dec("0.2", "1", 2))),
        policy=draw(st.sampled_from(["constant_notional", "sentiment_hybrid"])),
        prices={"BTC": draw(dec("5000", "90000", 0)), "ETH": draw(dec("200", "5000", 0))},
        rates={f"{v}:{a}": str(draw(dec("-0.001", "0.001", 6))) for v in ("perp-cex", "perp-dex") for a in ("BTC", "ETH")},
        lot=draw(st.sampled_from(["0.001", "0.01", "0.0001"])),
        min_notional=str(draw(st.sampled_from(["0", "10", "100", "5000"]))),
        nav=str(draw(dec("50000", "20000000", 0))),
        hedge_share=str(draw(dec("0", "0.3", 3))),
        spot_cash=str(draw(dec("0", "1000", 2))),
    )


# Found on a loaded CI run: a hedge over both caps (spot 10,000 against a cap of 2,500; perp-cex
# at leverage 1.96 against 1.0) whose one-minimum-order shrink lands below the minimum notional.
OVER_CAP_BELOW_MINIMUM = build_scenario(
    shares=("0.05", "0.11", "0.07", "0.05"), leverage=("1", "1.0", "1.6"), lending=False,
    idle_buffer="0.00", delta_tolerance="0.001", entry="0.00", holding="3d", venue_exposure="0.20",
    prices={"BTC": D("5000"), "ETH": D("200")},
    rates={"perp-cex:BTC": "0", "perp-dex:BTC": "-0.000079", "perp-cex:ETH": "0", "perp-dex:ETH": "0"},
    min_notional="5000", nav="50000", hedge_share="0.2",
)


@settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
@example(scenario=OVER_CAP_BELOW_MINIMUM)
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
