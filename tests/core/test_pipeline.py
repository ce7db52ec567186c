"""The pipeline's pure steps: what each decides and what the gate lets through."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import pytest
from strategy_builders import (
    BASE,
    CASH,
    NOW,
    PRICES,
    book,
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
from alpha.domain.actions import (
    CloseHedge,
    Leg,
    OpenHedge,
    RefusalCode,
    Repay,
    ResizeLeg,
    TopUpMargin,
    Transfer,
    Withdraw,
)
from alpha.domain.instruments import Side
from alpha.domain.portfolio import PortfolioView
from alpha.risk.gate import RiskState, gate
from alpha.risk.prices import PriceCheck
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


# -- price sanity --------------------------------------------------------------------------

CEX_BTC = "perp-cex:BTC/USDC:USDC"
CARRY = {"perp-cex:BTC": "0.0006", "perp-cex:ETH": "0.0006"}  # perp-cex pays most: the hedges want its short legs


def _decide(view: PortfolioView, state: RiskState = RUNNING):
    return decision_step(view, compute_signals(FundingHistory(), view, NOW), config(), state, NOW)


def _with_mark(view: PortfolioView, key: str, mark: Decimal, *, index: Decimal | None = None) -> PortfolioView:
    """``view`` whose market ``key`` prints ``mark`` (its index stays unless given); asset prices as the shell derives them."""
    snap = view.markets[key]
    bad = replace(snap, mark=mark, index=snap.index if index is None else index, book=snap.book if mark > D("1e12") else book(mark))
    markets = {**view.markets, key: bad}
    btc = sorted(s.mark for s in markets.values() if s.instrument.base == "BTC")
    return replace(view, markets=markets, prices={**view.prices, "BTC": btc[len(btc) // 2]})


def test_without_outliers_the_carry_decision_shorts_btc_on_perp_cex() -> None:
    step = _decide(fresh_view(rates=CARRY))

    assert step.outliers == () and any(CEX_BTC in _keys(a) for a in step.approved)


@pytest.mark.parametrize(
    ("mark", "index", "check"),
    [(D("1e30"), None, PriceCheck.VALUE), (PRICES["BTC"] * 10, None, PriceCheck.INDEX), (PRICES["BTC"] * 10, PRICES["BTC"] * 10, PriceCheck.VENUES)],
    ids=["1e30", "10x-its-index", "10x-the-other-venues"],
)
def test_an_outlying_mark_is_refused_nothing_is_sized_on_it_and_the_other_markets_trade(
    mark: Decimal, index: Decimal | None, check: PriceCheck
) -> None:
    view = _with_mark(fresh_view(rates=CARRY), CEX_BTC, mark, index=index)

    step = _decide(view)

    assert [(o.key, o.check) for o in step.outliers] == [(CEX_BTC, check)]
    assert step.skipped is None and step.target is not None
    assert all(CEX_BTC not in _keys(a) for a in step.planned), "nothing planned on the refused market"
    assert all(f"{p.fuse}:{p.market}" != CEX_BTC for p in step.target.positions)
    assert any(isinstance(a, OpenHedge) and a.asset == "ETH" for a in step.approved), "ETH still trades"
    nav = view.vault_cash  # all capital in the vault: NAV does not depend on any mark
    assert sum((a.capital for a in step.target.allocations), D(0)) <= nav
    assert all(a.capital <= a.cap for a in step.target.allocations), "allocations are sized on sane prices"
    moved = sum((a.amount for a in step.approved if isinstance(a, Transfer) and a.source == "vault"), D(0))
    assert moved <= nav * D("0.9")
    assert any("price refused" in n for n in step.notes)
    assert step.prices is not None and CEX_BTC not in step.prices.last_good, "a refused mark is not a last good value"

    gated = gate(
        [OpenHedge("btc", "BTC", (Leg("spot", "BTC/USDC", Side.BUY, D(1)), Leg("perp-cex", "BTC/USDC:USDC", Side.SELL, D(1))), "t")],
        view, config(), replace(RUNNING, price_outliers=step.outliers),
    )
    assert [(r.code, CEX_BTC in r.reason) for r in gated.refused] == [(RefusalCode.PRICE_OUTLIER, True)]


def test_an_outlier_on_a_held_market_skips_the_decision_and_risk_reducing_steps_still_pass() -> None:
    view = _with_mark(_hedged(D("40000"), vault=D("100000")), CEX_BTC, PRICES["BTC"] * 10)

    step = _decide(view)
    flat = flatten_step(view, config(), _instruments(view), RUNNING)

    assert step.skipped is not None and "price outlier" in step.skipped and CEX_BTC in step.skipped
    assert step.planned == () and [o.key for o in step.outliers] == [CEX_BTC]
    assert [type(a) for a in flat.approved] == [CloseHedge] and flat.refused == ()
    assert [o.key for o in flat.outliers] == [CEX_BTC]


def test_the_guard_a_step_returns_judges_the_next_jump() -> None:
    view = fresh_view(rates=CARRY)
    first = _decide(view)
    later = replace(view, ts=NOW + timedelta(minutes=1), markets={k: replace(s, ts=NOW + timedelta(minutes=1)) for k, s in view.markets.items()})
    jumped = _with_mark(later, "perp-dex:BTC/USDC:USDC", PRICES["BTC"] * D("1.6"), index=PRICES["BTC"] * D("1.6"))
    assert first.prices is not None

    fresh = _decide(jumped)  # no history: the other venues refuse it
    remembered = _decide(jumped, replace(RUNNING, prices=first.prices))

    assert [o.check for o in fresh.outliers] == [PriceCheck.VENUES]
    assert [o.check for o in remembered.outliers] == [PriceCheck.JUMP]
