"""One decision pipeline: every action alpha takes is decided here, in pure steps, and gated.

The daemon (live, paper, demo), the backtest replay and ``alpha plan`` call these steps and
only gather their inputs and execute their approved actions; none of them builds an action.

* ``decision_step``: signals -> ``decide`` -> ``make_plan`` -> ``pair_resizes`` ->
  ``repairs_first`` -> rate locks (``alpha.strategy.ratelock``) -> ``gate``. Resizes are paired before the gate, so the gate judges what
  will be executed; an asset whose net delta is past ``delta_tolerance`` is repaired before
  any action adds exposure.
* ``margin_step``: repay lending debt below the minimum health factor, top margin up (from
  the idle buffer, then lending withdrawals, then other venues' gains), deleverage both legs
  past the line; top up rate (Boros) zones that lost half their cushion (``rate_top_ups``).
* ``repair_step``: neutralise the drift a hedge whose legs did not all fill left behind.
* ``flatten_step``: close every hedge, both legs together.

Every step returns a ``Step``: what it planned, what the gate approved and refused (the gate
lets risk-reducing actions through while paused), and notes for the operator.

Every step first screens the view's prices (``alpha.risk.prices.PriceGuard``, carried in
``RiskState.prices``): assets are valued again from the accepted marks only, the gate refuses
new exposure on a refused market (``RefusalCode.PRICE_OUTLIER``), and the step returns the
guard to keep (``Step.prices``: last good marks updated from accepted prices only) with the
outliers it found. ``decision_step`` decides without the refused markets: they are left out
of the view and of the strategy's markets before ``decide``, so nothing is sized or funded on
a refused price while the other markets trade, and no capital is moved off the fuse it is on
(its market looks idle only because it was left out); a refused market that holds a position
cannot be left out (the book would be misread), so the decision is skipped, as for stale data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from alpha.config.schema import StrategyConfig
from alpha.config.types import format_duration
from alpha.core.margin import (
    arrives_in_time,
    check_margin,
    deleverage_to_target,
    fund_top_up,
    largest_debt,
    margin_surplus,
    move_collateral,
    repay_action,
    route_time,
    top_up_action,
    withdrawable,
)
from alpha.core.repair import neutralise, pair_reductions, pair_resizes, repairs_first
from alpha.domain.account import MarginHealth
from alpha.domain.actions import VAULT, Action, LockRate, Refusal, TargetBook, Transfer, UnlockRate
from alpha.domain.instruments import Instrument
from alpha.domain.money import ZERO
from alpha.domain.portfolio import PortfolioView, market_key
from alpha.risk.exposure import holdings
from alpha.risk.gate import RiskState, gate
from alpha.risk.prices import PriceGuard, PriceOutlier, PriceScreen, without_outliers
from alpha.strategy.decide import decide
from alpha.strategy.planner import Dropped, make_plan
from alpha.strategy.ratelock import plan_rates, rate_top_ups, rate_unlocks
from alpha.strategy.signals import Signals

LENDING_HEADROOM = Decimal("0.10")  # a repayment restores min_health_factor x 1.10
DELEVERAGE_FRACTION = Decimal("0.5")  # share of a venue's holdings reduced (with their hedges) past the line


class StepKind(StrEnum):
    """Which step decided an action (the journal's ``trigger`` for steps other than decisions)."""

    DECISION = "decision"
    MARGIN = "margin"
    REPAIR = "neutralise"
    FLATTEN = "flatten"


@dataclass(frozen=True, slots=True)
class Step:
    """What one pure step decided: the actions it planned and what the gate made of them.

    ``skipped``: the step refused its input (bad market data) and planned nothing.
    ``deleveraged``: fuses whose margin passed the deleverage line (margin step).
    """

    kind: StepKind
    planned: tuple[Action, ...] = ()
    approved: tuple[Action, ...] = ()
    refused: tuple[Refusal, ...] = ()
    notes: tuple[str, ...] = ()
    target: TargetBook | None = None
    dropped: tuple[Dropped, ...] = ()
    skipped: str | None = None
    deleveraged: tuple[str, ...] = field(default_factory=tuple)
    outliers: tuple[PriceOutlier, ...] = ()  # markets whose prices the screen refused
    prices: PriceGuard | None = None  # the guard to keep for the next step (None: the step did not screen)


def _screened(view: PortfolioView, config: StrategyConfig, state: RiskState) -> tuple[PortfolioView, RiskState, PriceScreen]:
    """Screen ``view``'s prices: the view valued on accepted marks and the state the gate judges with."""
    screen = state.prices.screen_view(view, config.risk)
    sane = without_outliers(view, screen, config.stablecoins)
    return sane, replace(state, prices=screen.guard, price_outliers=screen.outliers), screen


def _gated(
    kind: StepKind,
    planned: Sequence[Action],
    view: PortfolioView,
    config: StrategyConfig,
    state: RiskState,
    *,
    notes: Iterable[str] = (),
    target: TargetBook | None = None,
    dropped: Sequence[Dropped] = (),
    deleveraged: Iterable[str] = (),
) -> Step:
    """Gate ``planned`` with the screened ``state`` and say what the step decided."""
    result = gate(planned, view, config, state)
    outliers = state.price_outliers
    return Step(
        kind, tuple(planned), result.approved, result.refused, (*_outlier_notes(outliers), *notes), target, tuple(dropped), None,
        tuple(deleveraged), outliers, state.prices,
    )


def _outlier_notes(outliers: Sequence[PriceOutlier]) -> list[str]:
    return [f"price refused: {o}; no new exposure on {o.key}" for o in outliers]


def decision_step(
    view: PortfolioView, signals: Signals, config: StrategyConfig, state: RiskState, now: datetime, *, reference: bool = False
) -> Step:
    """Decide the target book, plan the actions that reach it (resizes paired, repairs first), gate them.

    Bad input (a ``BadMarketData`` or any ``ValueError`` from ``decide``) is refused: the
    step plans nothing and says why in ``skipped``; nothing is traded on it. Markets whose
    prices the screen refused are left out of what ``decide`` sees (see the module docstring).
    ``reference`` runs the plain (unpruned) decision, which decides the same (benchmarks, tests).
    """
    view, state, screen = _screened(view, config, state)
    refused = screen.markets
    held = sorted(k for k in (market_key(f, m) for (f, m), q in holdings(view).items() if q != 0) if k in refused)
    if held:
        why = "; ".join(str(o) for o in screen.outliers if o.key in held)
        return Step(StepKind.DECISION, skipped=f"refused: price outlier on a market a position is held in: {why}", outliers=screen.outliers, prices=screen.guard)
    try:
        target = decide(_without_markets(view, refused), signals, _config_without(config, refused), now, reference=reference)
    except ValueError as exc:
        return Step(StepKind.DECISION, skipped=f"refused: {exc}", outliers=screen.outliers, prices=screen.guard)
    result = make_plan(target, view)
    planned, kept = _capital_kept(result.actions, screen)
    planned = pair_resizes(planned, view)
    instruments = {key: snap.instrument for key, snap in view.markets.items()}
    planned = repairs_first(planned, view, instruments, config.delta_tolerance)
    notes = [f"capital stays on {fuse} while a price there is refused" for fuse in kept]
    rates = plan_rates(view, signals, config, target, now)
    if rates.actions:  # unlocks first (they reduce risk), locks after the hedges whose short legs they lock
        planned = [*(a for a in rates.actions if isinstance(a, UnlockRate)), *planned, *(a for a in rates.actions if isinstance(a, LockRate))]
    notes += rates.notes
    return _gated(StepKind.DECISION, planned, view, config, state, notes=notes, target=target, dropped=result.dropped)


def _capital_kept(actions: Sequence[Action], screen: PriceScreen) -> tuple[list[Action], list[str]]:
    """Drop the transfers out of a fuse with a refused market: capital is not moved on account of a bad print.

    Leaving the market out of the decision makes the fuse look idle; pulling its capital back
    would be a decision made on the refused price. Money into the fuse (other markets) still goes.
    """
    frozen = {o.fuse for o in screen.outliers}
    if not frozen:
        return list(actions), []
    out = [a for a in actions if not (isinstance(a, Transfer) and a.source in frozen)]
    kept = sorted({a.source for a in actions if isinstance(a, Transfer) and a.source in frozen})
    return out, kept


def margin_step(
    view: PortfolioView,
    config: StrategyConfig,
    instruments: Mapping[str, Instrument],
    reference_equity: Mapping[str, Decimal],
    state: RiskState,
) -> Step:
    """Check every lending and margin account once and decide what the margin policy asks.

    Lending accounts come first: below ``margin.min_health_factor`` the largest debt is
    repaid (``repay_action``); a healthy lending account offers what it can release
    (``withdrawable``). Then each margin account against its reference equity
    (``reference_equity``, the equity after the last rebalance or top-up): a top-up the idle
    buffer cannot cover is funded by lending withdrawals first, then by the gains of other
    margin venues (``move_collateral``), first from those whose move is credited within
    ``margin.move_deadline`` (``arrives_in_time``: the whitelist's ``arrives_within``, at once
    inside a venue or the simulation); when a slower move is needed, the venue is first
    deleveraged back to ``margin.target_ratio`` (``deleverage_to_target``), since it cannot
    wait for the money. Past the deleverage line the venue's holdings are halved together
    with their hedges.
    """
    view, state, _ = _screened(view, config, state)
    policy = config.margin
    base = config.vault.base_asset
    available = view.vault_cash
    actions: list[Action] = []
    notes: list[str] = []
    deleveraged: list[str] = []
    sources: dict[str, Decimal] = {}
    for name, acct in view.accounts.items():
        health = acct.lending
        if health is None:
            continue
        hf = health.health_factor
        if health.debt_value > 0 and hf < policy.min_health_factor:
            notes.append(f"health factor {hf:.3f} on {name} below {policy.min_health_factor}: repaying")
            repay = repay_action(name, acct, policy.min_health_factor, view.prices, LENDING_HEADROOM)
            if repay is None:
                asset = largest_debt(acct, view.prices)
                notes.append(f"cannot repay on {name}: no {asset} in its wallet to repay the debt with")
            else:
                actions.append(repay)
                if repay.asset == base:
                    available -= repay.amount
            continue
        sources[name] = withdrawable(acct, base, policy.min_health_factor)
    margins: dict[str, MarginHealth] = {
        name: acct.margin for name, acct in view.accounts.items() if acct.margin is not None and acct.margin.maintenance_margin > 0
    }

    def reference(name: str, m: MarginHealth) -> Decimal:
        return reference_equity.get(name, m.equity)

    def deleverage(name: str, fraction: Decimal, reason: str) -> None:
        """Reduce ``name``'s holdings by ``fraction`` together with their hedges."""
        reductions = pair_reductions(view, instruments, select=_on_fuse(name), fraction=fraction, reason=reason)
        deleveraged.extend([name] * len(reductions))
        actions.extend(reductions)

    # What winning venues may give to losing ones (a venue that needs a top-up gives nothing).
    surpluses = {
        name: margin_surplus(m, reference(name, m), config) for name, m in margins.items() if m.margin_ratio < policy.deleverage_ratio
    }
    for name, m in margins.items():
        others = sum((v for k, v in surpluses.items() if k != name), ZERO)
        check = check_margin(name, m, reference(name, m), config, available + sum(sources.values(), ZERO) + others)
        if check.top_up > 0:
            surpluses.pop(name, None)
        if check.deleverage:
            notes.append(f"margin ratio {m.margin_ratio:.3f} on {name} past deleverage line: reducing both legs")
            deleverage(name, DELEVERAGE_FRACTION, f"deleverage: margin ratio {m.margin_ratio:.3f} >= {policy.deleverage_ratio}")
        top = top_up_action(check, base)
        if top is None:
            continue
        withdrawals = fund_top_up(top, available, sources)
        if withdrawals:
            notes.append(f"idle buffer short for the top-up of {name}: withdrawing from {', '.join(w.fuse for w in withdrawals)}")
        for w in withdrawals:  # withdrawn to the lending fuse's wallet, then into the vault
            actions += [w, Transfer(w.fuse, VAULT, w.asset, w.amount, f"withdrawn for the margin top-up of {name}")]
        available += sum((w.amount for w in withdrawals), ZERO)
        # Venues whose move arrives within the deadline are drawn first; a late one still goes,
        # but the venue is brought back to its target ratio now, by deleveraging, unless it is
        # there already or is being deleveraged anyway.
        prompt = {k: v for k, v in surpluses.items() if arrives_in_time(config, k, name, base)}
        moves = move_collateral(top, top.amount - max(available, ZERO), prompt)
        late_sources = {k: v for k, v in surpluses.items() if k not in prompt}
        late = move_collateral(top, top.amount - max(available, ZERO) - sum((t.amount for t in moves), ZERO), late_sources)
        surpluses.update(prompt)
        surpluses.update(late_sources)
        if moves:
            notes.append(f"moving collateral to {name} from {', '.join(t.source for t in moves)}")
        if late:
            routes = ", ".join(f"{t.source} ({_route_words(route_time(config, t.source, name, base))})" for t in late)
            notes.append(f"moving collateral to {name} from {routes}: later than margin.move_deadline {format_duration(policy.move_deadline)}")
            share = ZERO if check.deleverage else deleverage_to_target(m, policy.target_ratio)
            if share > 0:
                notes.append(f"deleveraging {name} by {share * 100:.0f}% first: its margin ratio {m.margin_ratio:.3f} cannot wait for the move")
                deleverage(name, share, f"deleverage: collateral for a margin ratio of {m.margin_ratio:.3f} arrives after the move deadline")
        moves += late
        actions.extend(moves)
        available += sum((t.amount for t in moves), ZERO)
        actions.append(top)
        available -= top.amount
    rate_tops = rate_top_ups(view, config)
    notes += [t.reason for t in rate_tops]
    actions += rate_tops
    return _gated(StepKind.MARGIN, actions, view, config, state, notes=notes, deleveraged=deleveraged)


def repair_step(
    view: PortfolioView,
    config: StrategyConfig,
    instruments: Mapping[str, Instrument],
    state: RiskState,
    *,
    prefer: Iterable[tuple[str, str]] = (),
) -> Step:
    """Neutralise every asset whose net delta is past ``delta_tolerance`` (markets in ``prefer`` first)."""
    view, state, _ = _screened(view, config, state)
    fixes = neutralise(view, instruments, config.delta_tolerance, prefer=frozenset(prefer))
    notes = [f"legs left the book unhedged; neutralising with {len(fixes)} trade(s)"] if fixes else []
    return _gated(StepKind.REPAIR, fixes, view, config, state, notes=notes)


def flatten_step(view: PortfolioView, config: StrategyConfig, instruments: Mapping[str, Instrument], state: RiskState) -> Step:
    """Close every hedge, both legs together, and buy back every YU that locked their funding (the operator's flatten)."""
    view, state, _ = _screened(view, config, state)
    closes: list[Action] = list(pair_reductions(
        view, instruments, select=lambda _f, _m: True, fraction=Decimal(1), reason="operator flatten"
    ))
    unlocks, notes = rate_unlocks(view, {}, view.ts)
    return _gated(StepKind.FLATTEN, [*unlocks, *closes], view, config, state, notes=notes)


def _without_markets(view: PortfolioView, refused: frozenset[str]) -> PortfolioView:
    """``view`` without the refused markets (none of them holds a position)."""
    if not refused:
        return view
    return replace(view, markets={k: s for k, s in view.markets.items() if k not in refused})


def _config_without(config: StrategyConfig, refused: frozenset[str]) -> StrategyConfig:
    """``config`` whose fuses no longer list the refused markets: the strategy does not consider them."""
    if not refused:
        return config
    fuses = tuple(
        f.model_copy(update={"markets": tuple(m for m in f.markets if market_key(f.name, m) not in refused)}) for f in config.fuses
    )
    return config.model_copy(update={"fuses": fuses})


def _route_words(t: timedelta | None) -> str:
    return "arrival time not known" if t is None else f"arrives within {format_duration(t)}"


def _on_fuse(name: str) -> Callable[[str, str], bool]:
    def select(fuse: str, _market: str) -> bool:
        return fuse == name

    return select
