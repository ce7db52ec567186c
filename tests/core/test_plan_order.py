"""The order of a decision's actions: repairs before new exposure, a reversed hedge closed then opened."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from strategy_builders import NOW, config, fresh_view, perp_account, spot_account

from alpha.core.pipeline import decision_step
from alpha.core.repair import pair_resizes, repairs_first
from alpha.domain.actions import Action, CloseHedge, HedgeRef, Leg, OpenHedge, ResizeLeg, Transfer
from alpha.domain.instruments import Side
from alpha.domain.portfolio import PortfolioView
from alpha.risk.gate import RiskState
from alpha.strategy.signals import FundingHistory, compute_signals

D = Decimal
RUNNING = RiskState(now=NOW)
PERP = "BTC/USDC:USDC"


def _with(view: PortfolioView, spend: Decimal, **accounts: object) -> PortfolioView:
    return replace(view, vault_cash=view.vault_cash - spend, accounts={**view.accounts, **accounts})


def _decide(view: PortfolioView) -> tuple[Action, ...]:
    history = FundingHistory()
    history.observe(view)
    step = decision_step(view, compute_signals(history, view, NOW), config(), RUNNING, NOW)
    assert step.skipped is None and not step.refused, step.refused
    return step.approved


def _reduce_only_orders_fit(view: PortfolioView, actions: tuple[Action, ...]) -> list[str]:
    """Walk ``actions`` over the view's perp positions; return every reduce-only order larger than its position."""
    positions = {(name, p.market): p.size for name, acct in view.accounts.items() for p in acct.positions}
    problems = []
    for action in actions:
        legs = action.legs if isinstance(action, OpenHedge | CloseHedge) else (action.leg,) if isinstance(action, ResizeLeg) else ()
        for leg in legs:
            key = (leg.fuse, leg.market)
            size = positions.get(key, D(0))
            if isinstance(action, CloseHedge) and leg.market == PERP and (size * leg.side.sign >= 0 or leg.quantity > abs(size)):
                problems.append(f"reduce-only {leg.side.value} {leg.quantity} on {leg.fuse} holding {size}")
            positions[key] = size + leg.quantity * leg.side.sign
    return problems


def test_a_residual_is_repaired_before_new_paired_slices_add_exposure() -> None:
    # 1.0 BTC long on spot against 0.6 short on perp-cex: 0.4 BTC one-sided, and the decision grows the hedge.
    view = _with(
        fresh_view(rates={"perp-cex:BTC": "0.0006"}), D("80000"),
        spot=spot_account(D(0), {"BTC": D("1.0")}), **{"perp-cex": perp_account("perp-cex", D("40000"), {"BTC": D("-0.6")})},
    )

    approved = _decide(view)

    kinds = [type(a) for a in approved]
    repair = next(i for i, a in enumerate(approved) if isinstance(a, ResizeLeg))
    grow = kinds.index(OpenHedge)
    fix = approved[repair]
    assert isinstance(fix, ResizeLeg) and (fix.leg.fuse, fix.leg.side, fix.leg.quantity) == ("perp-cex", Side.SELL, D("0.4"))
    assert repair < grow, f"the 0.4 BTC residual is closed before the new pair: {kinds}"
    assert max(i for i, k in enumerate(kinds) if k is Transfer) < repair, "the capital that funds the repair moves first"


def test_a_drifting_asset_the_plan_does_not_trade_is_neutralised_before_anything_else() -> None:
    view = _with(
        fresh_view(), D("80000"),
        spot=spot_account(D(0), {"BTC": D("1.0")}), **{"perp-cex": perp_account("perp-cex", D("40000"), {"BTC": D("-0.6")})},
    )
    instruments = {key: snap.instrument for key, snap in view.markets.items()}
    eth = OpenHedge(
        HedgeRef.named("eth"), "ETH", (Leg("spot", "ETH/USDC", Side.BUY, D(1)), Leg("perp-cex", "ETH/USDC:USDC", Side.SELL, D(1))), "grow"
    )
    plan: list[Action] = [Transfer("vault", "spot", "USDC", D(2000), "fund"), eth]

    out = repairs_first(plan, view, instruments, D("0.02"))

    first = out[0]
    assert isinstance(first, ResizeLeg) and first.asset == "BTC" and first.leg.quantity == D("0.4")
    assert first.leg.side is Side.SELL and first.leg.fuse == "spot", "the heavy side is taken off"
    assert out[1:] == plan


def test_a_neutral_book_keeps_its_plan_order() -> None:
    view = _with(
        fresh_view(), D("80000"),
        spot=spot_account(D(0), {"BTC": D("1.0")}), **{"perp-cex": perp_account("perp-cex", D("40000"), {"BTC": D("-1.0")})},
    )
    instruments = {key: snap.instrument for key, snap in view.markets.items()}
    grow = OpenHedge(HedgeRef.named("h"), "BTC", (Leg("spot", "BTC/USDC", Side.BUY, D(1)), Leg("perp-cex", PERP, Side.SELL, D(1))), "g")
    lone = ResizeLeg(HedgeRef.named("h"), "BTC", Leg("perp-cex", PERP, Side.SELL, D("0.2")), "g")
    plan: list[Action] = [grow, lone]

    assert repairs_first(plan, view, instruments, D("0.02")) == plan


def test_a_hedge_reversed_between_the_same_two_markets_is_a_close_then_an_open() -> None:
    # Short perp-cex / long perp-dex, 12 BTC; perp-cex now pays longs: the decision reverses to ~10.6 BTC each way.
    view = _with(
        fresh_view(rates={"perp-cex:BTC": "-0.0006", "perp-dex:BTC": "0.0001"}), D("200000"),
        **{
            "perp-cex": perp_account("perp-cex", D("100000"), {"BTC": D(-12)}),
            "perp-dex": perp_account("perp-dex", D("100000"), {"BTC": D(12)}),
        },
    )

    approved = _decide(view)

    hedges = [a for a in approved if isinstance(a, OpenHedge | CloseHedge | ResizeLeg)]
    assert [type(a) for a in hedges] == [CloseHedge, OpenHedge], hedges
    close, opened = hedges
    assert isinstance(close, CloseHedge) and isinstance(opened, OpenHedge)
    assert {(leg.fuse, leg.side, leg.quantity) for leg in close.legs} == {("perp-cex", Side.BUY, D(12)), ("perp-dex", Side.SELL, D(12))}
    assert {(leg.fuse, leg.side) for leg in opened.legs} == {("perp-cex", Side.BUY), ("perp-dex", Side.SELL)}
    assert D(0) < opened.legs[0].quantity == opened.legs[1].quantity < D(12), "smaller than the old hedge: the case that failed"
    assert _reduce_only_orders_fit(view, approved) == []


def test_pairing_judges_each_resize_against_the_positions_the_actions_before_it_leave() -> None:
    h = HedgeRef.named("flip")
    view = _with(
        fresh_view(), D(0),
        **{"perp-cex": perp_account("perp-cex", D("100000"), {"BTC": D(-3)}), "perp-dex": perp_account("perp-dex", D("100000"), {"BTC": D(3)})},
    )
    plan: list[Action] = [
        ResizeLeg(h, "BTC", Leg("perp-cex", PERP, Side.BUY, D(3)), "close"),
        ResizeLeg(h, "BTC", Leg("perp-dex", PERP, Side.SELL, D(3)), "close"),
        ResizeLeg(h, "BTC", Leg("perp-cex", PERP, Side.BUY, D(2)), "open the other way"),
        ResizeLeg(h, "BTC", Leg("perp-dex", PERP, Side.SELL, D(2)), "open the other way"),
    ]

    out = pair_resizes(plan, view)

    assert [type(a) for a in out] == [CloseHedge, OpenHedge]
    assert [leg.quantity for a in out if isinstance(a, OpenHedge | CloseHedge) for leg in a.legs] == [D(3), D(3), D(2), D(2)]
    assert _reduce_only_orders_fit(view, tuple(out)) == []
