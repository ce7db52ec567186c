"""The pipeline's pure steps: what each decides and what the gate lets through."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

from strategy_builders import (
    BASE,
    CASH,
    NOW,
    PRICES,
    config,
    fresh_view,
    lending_account,
    markets,
    perp_account,
    spot_account,
)

from alpha.core.pipeline import StepKind, decision_step, flatten_step, margin_step, repair_step
from alpha.core.repair import pair_resizes
from alpha.domain.account import AccountSnapshot, Balance, LendingHealth, LendingPosition, MarginHealth
from alpha.domain.actions import CloseHedge, OpenHedge, Repay, ResizeLeg, TopUpMargin, Transfer, Withdraw
from alpha.domain.portfolio import PortfolioView
from alpha.risk.gate import RiskState
from alpha.strategy.signals import FundingHistory, compute_signals

D = Decimal
PAUSED = RiskState(paused=True, pause_reason="stale_data", now=NOW)
RUNNING = RiskState(now=NOW)


def _keys(action: object) -> set[str]:
    """Market keys an action trades (its legs)."""
    legs = getattr(action, "legs", None) or ((action.leg,) if hasattr(action, "leg") else ())
    return {f"{leg.fuse}:{leg.market}" for leg in legs}


def _instruments(view: PortfolioView) -> dict[str, object]:
    return {key: snap.instrument for key, snap in view.markets.items()}


def _hedged(perp_equity: Decimal, *, vault: Decimal, lending: AccountSnapshot | None = None) -> PortfolioView:
    """2 BTC long spot against 2 BTC short on perp-cex (maintenance 1000)."""
    perp = perp_account("perp-cex", perp_equity, {"BTC": D(-2)})
    perp = replace(perp, margin=MarginHealth(perp_equity, D("1000"), D("8000")))
    accounts = {"spot": spot_account(D(0), {"BTC": D(2)}), "perp-cex": perp, "lending": lending or lending_account()}
    return PortfolioView(ts=NOW, base_asset=BASE, vault_cash=vault, accounts=accounts, markets=markets(), prices=dict(PRICES), cash=CASH)


def test_a_top_up_the_idle_buffer_cannot_cover_withdraws_from_lending_and_passes_the_gate_while_paused() -> None:
    lending = lending_account(supplied=D("50000"))
    view = _hedged(D("20000"), vault=D("1000"), lending=lending)  # equity fell from 40,000: a 50% drawdown

    step = margin_step(view, config(), _instruments(view), {"perp-cex": D("40000")}, PAUSED)

    kinds = [type(a) for a in step.approved]
    assert kinds == [Withdraw, Transfer, TopUpMargin], step.refused
    withdraw, back, top = step.approved
    assert isinstance(withdraw, Withdraw) and isinstance(back, Transfer) and isinstance(top, TopUpMargin)
    assert back.source == "lending" and back.destination == "vault" and back.amount == withdraw.amount
    assert top.amount == D("20000") and withdraw.amount == top.amount - D("1000")
    assert step.refused == () and step.kind is StepKind.MARGIN


def test_a_margin_step_under_the_kill_switch_plans_the_top_up_but_the_gate_refuses_it() -> None:
    view = _hedged(D("20000"), vault=D("100000"))

    step = margin_step(view, config(), _instruments(view), {"perp-cex": D("40000")}, RiskState(kill_switch=True, now=NOW))

    assert [type(a) for a in step.planned] == [TopUpMargin]
    assert step.approved == () and "kill switch" in step.refused[0].reason


def test_a_sick_lending_account_is_repaid_from_its_wallet() -> None:
    eth = PRICES["ETH"]
    debt_eth = D("20")  # 40,000 of debt against 50,000 of USDC at threshold 0.80: HF 1.0
    lending = AccountSnapshot(
        "lending", NOW, balances=(Balance("ETH", debt_eth, debt_eth),),
        lending=LendingHealth(D("50000"), debt_eth * eth, D(0), D("0.75"), D("0.80"), D("1.0")),
        lending_positions=(LendingPosition(BASE, D("50000"), D(0)), LendingPosition("ETH", D(0), debt_eth)),
    )
    view = _hedged(D("40000"), vault=D("100000"), lending=lending)

    step = margin_step(view, config(), _instruments(view), {"perp-cex": D("40000")}, RUNNING)

    (repay,) = step.approved
    assert isinstance(repay, Repay) and repay.asset == "ETH" and D(0) < repay.amount <= debt_eth
    assert any("health factor" in n for n in step.notes)


def test_a_decision_pairs_the_planned_resizes_before_the_gate_judges_them() -> None:
    view = fresh_view(rates={"perp-cex:BTC": "0.0006", "perp-cex:ETH": "0.0006"})
    held = _hedged(D("40000"), vault=view.vault_cash - D("120000"))  # a small BTC hedge the decision grows
    view = replace(view, vault_cash=held.vault_cash, accounts={**view.accounts, **held.accounts})
    history = FundingHistory()
    history.observe(view)

    step = decision_step(view, compute_signals(history, view, NOW), config(), RUNNING, NOW)

    assert step.skipped is None and step.target is not None
    assert any(isinstance(a, OpenHedge) for a in step.approved)
    assert pair_resizes(step.planned, view) == list(step.planned)  # nothing left to pair: paired before the gate
    assert set(step.approved) | {r.action for r in step.refused} == set(step.planned)


def test_a_decision_on_stale_market_data_plans_nothing_and_says_why() -> None:
    view = fresh_view()
    key = "perp-cex:BTC/USDC:USDC"
    bad = dict(view.markets)
    bad[key] = replace(bad[key], ts=NOW - timedelta(hours=1))
    view = replace(view, markets=bad)

    step = decision_step(view, compute_signals(FundingHistory(), view, NOW), config(), RUNNING, NOW)

    assert step.skipped is not None and "old" in step.skipped and step.planned == () and step.approved == ()


def test_a_non_finite_mark_leaves_only_its_market_out_of_the_decision() -> None:
    view = fresh_view()
    key = "perp-cex:BTC/USDC:USDC"
    bad = dict(view.markets)
    bad[key] = replace(bad[key], mark=D("NaN"))
    view = replace(view, markets=bad)

    step = decision_step(view, compute_signals(FundingHistory(), view, NOW), config(), RUNNING, NOW)

    assert step.skipped is None and [o.key for o in step.outliers] == [key]
    assert step.approved and all(key not in _keys(a) for a in step.planned)


def test_repair_neutralises_a_one_sided_leg_even_while_paused() -> None:
    view = _hedged(D("40000"), vault=D("100000"))
    spot = spot_account(D(0), {"BTC": D(3)})  # a leg bought 1 BTC too many
    view = replace(view, accounts={**view.accounts, "spot": spot})

    step = repair_step(view, config(), _instruments(view), PAUSED)

    (fix,) = step.approved
    assert isinstance(fix, ResizeLeg) and fix.leg.fuse == "spot" and fix.leg.quantity == D(1)
    assert step.notes


def test_flatten_closes_both_legs_together() -> None:
    view = _hedged(D("40000"), vault=D("100000"))

    step = flatten_step(view, config(), _instruments(view), RiskState(paused=True, pause_reason="flattened", now=NOW))

    (close,) = step.approved
    assert isinstance(close, CloseHedge) and {leg.fuse for leg in close.legs} == {"spot", "perp-cex"}
    assert all(leg.quantity == D(2) for leg in close.legs)
