"""Run the pipeline's steps on a book: gather the view, decide (pure), journal, execute.

``StepRunner`` is the one shell around ``alpha.core.pipeline``: the daemon's services and
the backtest replay both drive it, so a backtest executes exactly the steps the daemon would.
It builds no action: every action comes out of a pipeline step, approved by the gate.

Before each decision and margin check it asks the venues again about orders of unknown
outcome (``Executor.retry_unresolved``) and passes the markets still unresolved to the gate
(``RiskState.blocked_markets``), which refuses trading there and only there. Against
simulated venues (the backtest) every order is answered, so both are no-ops there.

It keeps the price guard between steps (``RiskState.prices``): each step screens its view
and returns the guard to keep, whose last good marks only accepted prices update; every
refused price counts in ``alpha_risk_price_outliers_total`` and is journalled with its decision.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

import structlog

from alpha.config.schema import StrategyConfig
from alpha.core.pipeline import Step, decision_step, flatten_step, margin_step, repair_step
from alpha.daemon.book import ViewPurpose
from alpha.daemon.executor import ActionResult, Executor
from alpha.daemon.journal import Journal
from alpha.daemon.notices import Notice, NoticeEvent, notices_of_action
from alpha.daemon.portfolio import JOURNAL_ONLY
from alpha.daemon.vault import is_allocation
from alpha.domain.actions import Action, CloseHedge, OpenHedge, ResizeLeg, Transfer, action_rows
from alpha.domain.clock import Clock
from alpha.domain.instruments import Instrument
from alpha.domain.portfolio import PortfolioView
from alpha.observability.logging import get_logger
from alpha.observability.metrics import Metrics
from alpha.risk.gate import RiskState
from alpha.risk.prices import PriceGuard
from alpha.strategy.signals import FundingHistory, compute_signals
from fuses.base import TransientError

log = get_logger("alpha.daemon")


@dataclass
class DecisionRecord:
    """What one decision did (for tests and the status table)."""

    decision_id: str
    trigger: str
    ts: datetime
    actions: list[Action]
    refused: list[tuple[Action, str]]
    completed: int
    skipped: str | None = None


@dataclass(frozen=True, slots=True)
class TakenStep:
    """One step as it was journalled: its decision id, instant, trigger and the step itself."""

    decision_id: str
    ts: datetime
    trigger: str
    step: Step


@dataclass
class Book:
    """What the shell around the steps provides: how to see the book, the state the gate reads, and where to report."""

    view: Callable[[datetime, ViewPurpose], Awaitable[PortfolioView]]
    risk_state: Callable[[], RiskState]
    blocked: Callable[[], str | None]  # why no decision may be taken now (kill switch, pause), or None
    stopping: Callable[[], bool]
    note: Callable[[str], None]
    on_view: Callable[[PortfolioView], None]  # a fresh view after actions (metrics)
    notice: Callable[[Notice], None] = lambda _: None  # the daemon's notices (alpha.daemon.notices); none in a backtest


class StepRunner:
    """Take decisions and margin checks one at a time: view -> pure step -> journal -> execute."""

    def __init__(
        self,
        config: StrategyConfig,
        *,
        book: Book,
        executor: Executor,
        journal: Journal,
        metrics: Metrics,
        clock: Clock,
        instruments: Mapping[str, Instrument],
        run_id: str,
    ) -> None:
        self.config = config
        self.book = book
        self.executor = executor
        self.journal = journal
        self.metrics = metrics
        self.clock = clock
        self.instruments = instruments
        self.run_id = run_id
        self.history = FundingHistory()
        self.reference_equity: dict[str, Decimal] = {}
        self.decisions: list[DecisionRecord] = []
        self.taken: list[TakenStep] = []  # every journalled step, in order
        self.results: list[tuple[str, ActionResult]] = []  # every executed action's outcome, with its decision id
        self.executing = 0  # steps being executed (their own fills move positions)
        self._seq = 0
        self.skipped_in_a_row = 0  # decisions skipped since the last one taken: only the first of a run is logged
        self._last_margin_refused: list[list[dict[str, Any]]] = []
        self.prices = PriceGuard()  # last good marks, kept from step to step
        self._outliers: frozenset[str] = frozenset()  # what the last screen refused (logged when it changes)

    def next_decision_id(self) -> str:
        self._seq += 1
        return f"{self.run_id}{self._seq:05d}"

    def reset_references(self, view: PortfolioView, fuses: set[str] | None = None) -> None:
        """Take each margin account's equity (of ``fuses``, default all) as its reference equity."""
        for name, acct in view.accounts.items():
            if acct.margin is not None and (fuses is None or name in fuses):
                self.reference_equity[name] = acct.margin.equity

    def risk_state(self) -> RiskState:
        """The state the gate reads: the book's switches and the markets an unresolved order blocks."""
        markets, fuses = self.executor.blocked()
        return replace(self.book.risk_state(), blocked_markets=markets, blocked_fuses=fuses, prices=self.prices)

    def _screened(self, step: Step) -> Step:
        """Keep the guard ``step`` returns; count and (when they change) log the prices it refused."""
        if step.prices is None:
            return step
        self.prices = step.prices
        for o in step.outliers:
            self.metrics.price_outliers.labels(fuse=o.fuse, market=o.market, check=o.check.value).inc()
        keys = frozenset(str(o) for o in step.outliers)
        if keys != self._outliers:
            if step.outliers:
                log.warning("prices refused: no new exposure on these markets", outliers=sorted(keys))
            else:
                log.info("every price accepted again")
            self._outliers = keys
        return step

    async def resolve_unknown(self) -> list[tuple[str, str]]:
        """Ask the venues again about orders of unknown outcome (``Executor.retry_unresolved``); note what is resolved."""
        resolved = await self.executor.retry_unresolved()
        if resolved:
            self.book.note(f"resolved {len(resolved)} order(s) of unknown outcome: {resolved}")
        return resolved

    # -- the steps -------------------------------------------------------------------------

    async def margin(self) -> Step:
        """Run the margin step once on a fresh view; execute what the gate approved."""
        await self.resolve_unknown()
        view = await self.book.view(self.clock.now(), ViewPurpose.MARGIN)
        now = view.ts
        for name, acct in view.accounts.items():  # no maintenance: nothing at risk, equity is the reference
            if acct.margin is not None and acct.margin.maintenance_margin <= 0:
                self.reference_equity[name] = acct.margin.equity
        step = self._screened(margin_step(view, self.config, self.instruments, self.reference_equity, self.risk_state()))
        for text in step.notes:
            self.book.note(text)
        for fuse in step.deleveraged:
            self.metrics.deleverages.labels(fuse=fuse).inc()
            self.book.notice(Notice(NoticeEvent.DELEVERAGE, now, f"deleveraging both legs on {fuse}: its margin ratio reached the threshold", {"fuse": fuse}))
        if not step.planned:
            return step
        refused = [[*action_rows(r.action), {"reason": r.reason}] for r in step.refused]
        if not step.approved and refused == self._last_margin_refused:
            return step  # the same refusals as last check (kill switch engaged): journalled once, not every check
        self._last_margin_refused = refused
        decision_id = self.next_decision_id()
        self._journal_step(decision_id, now, step.kind.value, step)
        if step.approved:
            await self.execute(decision_id, step.approved, step.kind.value)
            after = await self._after()
            if after is not None:
                self.reset_references(after, {f for a in step.approved for f in _fuses_of(a)})
                self.book.on_view(after)
        return step

    async def decide(self, trigger: str) -> DecisionRecord:
        """Take one decision: view -> signals -> decision step -> execute; journal it."""
        await self.resolve_unknown()
        now = self.clock.now()
        decision_id = self.next_decision_id()
        structlog.contextvars.bind_contextvars(decision_id=decision_id)
        try:
            blocked = self.book.blocked()
            if blocked is not None:
                return self._skipped(decision_id, trigger, now, blocked)
            t0 = time.perf_counter()
            try:
                view = await self.book.view(now, ViewPurpose.DECIDE)
            except TransientError as exc:
                if not self.skipped_in_a_row:
                    log.warning("decision skipped: a venue is unavailable", error=repr(exc))
                return self._skipped(decision_id, trigger, now, f"venue unavailable: {exc}")
            now = view.ts  # the decision is as of its view (a live clock moves while the venues answer)
            self.history.observe(view)
            signals = compute_signals(self.history, view, now)
            step = self._screened(decision_step(view, signals, self.config, self.risk_state(), now))
            if step.skipped is not None:
                if not self.skipped_in_a_row:
                    log.warning("decision refused bad input; trading waits for good data", error=step.skipped)
                return self._skipped(decision_id, trigger, now, step.skipped)
            if self.skipped_in_a_row:
                log.info("deciding again", skipped_before=self.skipped_in_a_row)
                self.skipped_in_a_row = 0
            self.metrics.decision_latency.observe(time.perf_counter() - t0)
            self.metrics.decisions.labels(trigger=trigger).inc()
            assert step.target is not None
            self._journal_step(decision_id, now, trigger, step, nav=view.nav, target_nav=step.target.nav)
            completed = await self.execute(decision_id, step.approved, trigger)
            rec = DecisionRecord(decision_id, trigger, now, list(step.approved), [(r.action, r.reason) for r in step.refused], completed)
            self.decisions.append(rec)
            after = await self._after()
            if after is not None:
                self.reset_references(after)
                self.book.on_view(after)
            return rec
        finally:
            structlog.contextvars.unbind_contextvars("decision_id")

    async def flatten(self) -> tuple[Step, int]:
        """Close every hedge (both legs together) through the flatten step; return it and how many completed."""
        now = self.clock.now()
        view = await self.book.view(now, ViewPurpose.MARGIN)
        step = self._screened(flatten_step(view, self.config, self.instruments, self.risk_state()))
        decision_id = self.next_decision_id()
        self._journal_step(decision_id, now, "flatten", step)
        done = await self.execute(decision_id, step.approved, "flatten")
        return step, done

    async def execute(self, decision_id: str, actions: Sequence[Action], why: str, *, repair_after: bool = True) -> int:
        """Execute approved ``actions`` in order; after a failed hedge leg, run the repair step."""
        self.executor.begin(decision_id, actions)
        self.executing += 1
        try:
            return await self._execute(decision_id, actions, why, repair_after=repair_after)
        finally:
            self.executing -= 1
            if repair_after:  # the outermost call: the decision is done
                self.executor.end(decision_id)

    async def _execute(self, decision_id: str, actions: Sequence[Action], why: str, *, repair_after: bool) -> int:
        completed = 0
        touched: set[tuple[str, str]] = set()
        failed = False
        for action in actions:
            if self.book.stopping():
                log.info("stopping: remaining actions of the decision not started", decision_id=decision_id)
                break
            result = await self.executor.execute(action, decision_id)
            self.results.append((decision_id, result))
            touched |= {(p.leg.fuse, p.leg.market) for p in result.legs if p.filled > 0}
            kind = type(action).__name__
            for notice in notices_of_action(
                action, ts=self.clock.now(), decision_id=decision_id, why=why, completed=result.completed, error=result.error,
                unhedged=self.executor.unhedged, describe=_describe,
            ):
                self.book.notice(notice)
            if result.completed:
                completed += 1
                if is_allocation(action, self.executor.ctx.fuses):  # live: recorded in the journal, no money moved
                    self.book.note(f"{JOURNAL_ONLY} ({why}): {_describe(action)}; no money moved, it stays on the venue")
                else:
                    self.book.note(f"{kind} done ({why}): {_describe(action)}")
            else:
                failed = True
                self.book.note(f"{kind} incomplete ({why}): {_describe(action)}: {result.error or 'not filled'}")
        if failed and repair_after and touched:
            try:
                view = await self.book.view(self.clock.now(), ViewPurpose.MARGIN)
            except TransientError as exc:
                # A venue went away as the step executed: the book cannot be seen, so it is not
                # repaired blind; the risk monitor pauses on the unreadable accounts and the
                # repair is planned once the venue answers.
                self.book.note(f"legs left the book unhedged but a venue is unavailable ({exc}); the repair waits for it")
                return completed
            step = self._screened(repair_step(view, self.config, self.instruments, self.risk_state(), prefer=touched))
            for text in step.notes:
                self.book.note(text)
            if step.planned:
                self._journal_step(decision_id, self.clock.now(), step.kind.value, step)
                await self.execute(decision_id, step.approved, step.kind.value, repair_after=False)
        return completed

    async def _after(self) -> PortfolioView | None:
        """The book after a step executed, or None when a venue became unavailable meanwhile.

        The step is journalled already; the references and gauges wait for the next view.
        """
        try:
            return await self.book.view(self.clock.now(), ViewPurpose.AFTER)
        except TransientError as exc:
            log.warning("book unreadable after a step; references and metrics wait for the next view", error=repr(exc))
            return None

    # -- journal ---------------------------------------------------------------------------

    def _journal_step(self, decision_id: str, now: datetime, trigger: str, step: Step, **extra: Any) -> None:
        self.taken.append(TakenStep(decision_id, now, trigger, step))
        for refusal in step.refused:
            self.metrics.actions_refused.labels(reason=refusal.code.value).inc()
        if step.outliers:
            extra["price_outliers"] = [str(o) for o in step.outliers]
        self.journal.append(
            "decision", now, decision_id=decision_id, trigger=trigger,
            actions=[row for a in step.approved for row in action_rows(a)],
            refused=[{"rows": action_rows(r.action), "code": r.code.value, "reason": r.reason} for r in step.refused],
            **extra,
        )

    def _skipped(self, decision_id: str, trigger: str, now: datetime, why: str) -> DecisionRecord:
        self.journal.append("decision", now, decision_id=decision_id, trigger=trigger, skipped=why)
        self.skipped_in_a_row += 1
        rec = DecisionRecord(decision_id, trigger, now, [], [], 0, skipped=why)
        self.decisions.append(rec)
        return rec


def _fuses_of(action: Action) -> set[str]:
    """The fuses an action moves money or positions on."""
    if isinstance(action, Transfer):
        return {action.source, action.destination}
    if isinstance(action, OpenHedge | CloseHedge):
        return {leg.fuse for leg in action.legs}
    if isinstance(action, ResizeLeg):
        return {action.leg.fuse}
    return {action.fuse}


def _describe(action: Action) -> str:
    rows = action_rows(action)
    if isinstance(action, Transfer):
        return f"{action.source} -> {action.destination} {action.amount} {action.asset}"
    return "; ".join(f"{r['fuse']} {r.get('market') or r.get('asset')} {r.get('side')} {r['quantity']}" for r in rows)
