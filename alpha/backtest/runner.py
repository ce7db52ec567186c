"""Replay recorded history through the daemon's own decision path over the simulated world.

At each recorded price update and settlement the world moves to that instant (funding paid at
the recorded times, marks updated, liquidations run). On the rebalance schedule (every
``pnl.rebalance_every``, ``execution.rebalance_lead`` ahead of the settlement grid) the same
steps as ``Daemon.decide_once`` run: observe funding history, ``compute_signals``, ``decide``,
``plan``, ``gate``, then the daemon's ``Executor`` performs the approved actions on simulated
fuses (slicing, depth-model slippage, fees). After every step the daemon's margin policy
(``check_margin``: top up from the vault, deleverage both legs past the line) runs on each
margin account. The passive baseline opens the hedge once (the first decision that trades) and
afterwards only manages margin.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from alpha.backtest.source import MarketTape, RecordedSource
from alpha.config.schema import FuseKind, StrategyConfig
from alpha.daemon.executor import ActionResult, Executor
from alpha.daemon.journal import Journal
from alpha.daemon.monitors import check_margin, pair_reductions, top_up_action
from alpha.domain.actions import Action, CloseHedge, OpenHedge, ResizeLeg
from alpha.domain.clock import SimulatedClock
from alpha.domain.events import Event, Liquidated, OrderFilled
from alpha.domain.money import ZERO
from alpha.domain.portfolio import PortfolioView, market_key
from alpha.observability.metrics import Metrics
from alpha.risk.exposure import gross, net_delta
from alpha.risk.gate import RiskState, gate
from alpha.strategy.decide import decide
from alpha.strategy.planner import plan
from alpha.strategy.signals import FundingHistory, compute_signals
from fuses.sim import build
from fuses.sim.world import SimWorld

TRADES = (OpenHedge, ResizeLeg, CloseHedge)


@dataclass(frozen=True, slots=True)
class Sample:
    """The vault at one instant of the replay."""

    ts: datetime
    nav: Decimal
    funding_by_fuse: dict[str, Decimal]
    gross: Decimal  # gross exposure, base-asset value
    net_delta: Decimal  # net delta, base-asset value
    margin_ratio: dict[str, Decimal]  # maintenance / equity per margin fuse


@dataclass
class RunResult:
    """Everything one replay produced."""

    label: str
    start: datetime
    end: datetime
    initial_nav: Decimal
    samples: list[Sample] = field(default_factory=list)
    funding: Decimal = ZERO
    funding_by_fuse: dict[str, Decimal] = field(default_factory=dict)
    fees: Decimal = ZERO
    slippage: Decimal = ZERO
    lending_income: Decimal = ZERO
    rebalances: int = 0
    decisions: int = 0
    margin_actions: int = 0
    liquidations: int = 0
    liquidation_events: list[Liquidated] = field(default_factory=list)
    fills: list[OrderFilled] = field(default_factory=list)
    refused: int = 0
    rejected_orders: int = 0  # orders the simulated venues refused
    failed_actions: int = 0  # approved actions the executor could not complete
    unwinds: int = 0  # hedge legs that filled unequally and had their excess unwound
    actions: list[tuple[datetime, Action]] = field(default_factory=list)  # approved by the gate, in order
    events: int = 0
    steps: int = 0
    wall_seconds: float = 0.0

    @property
    def final_nav(self) -> Decimal:
        return self.samples[-1].nav if self.samples else self.initial_nav


def decision_times(start: datetime, end: datetime, every: timedelta, lead: timedelta) -> list[datetime]:
    """The start, then every ``every`` on the UTC-midnight grid, ``lead`` ahead of each grid time."""
    times = [start]
    midnight = start.replace(hour=0, minute=0, second=0, microsecond=0)
    t = midnight + every - lead
    while t <= start:
        t += every
    while t <= end:
        times.append(t)
        t += every
    return times


class Replay:
    """One replay of recorded history for a strategy (``passive``: the baseline)."""

    def __init__(
        self,
        config: StrategyConfig,
        tapes: list[MarketTape],
        start: datetime,
        end: datetime,
        *,
        passive: bool = False,
        sample_every: timedelta = timedelta(hours=8),
        opening: Sequence[Action] = (),
    ) -> None:
        self.config = config
        self.source = RecordedSource(tapes)
        self.start = start
        self.end = end
        self.passive = passive
        self.opening = list(opening)
        self.sample_every = sample_every
        self.clock = SimulatedClock(start)
        self.world = SimWorld.from_config(config, source=self.source, start=start)
        self.fuses = {
            f.name: build(f, world=self.world, clock=self.clock)
            for f in config.enabled_fuses
            if f.kind is FuseKind.SIM or (f.kind is FuseKind.LENDING and f.venue == "sim")
        }
        instruments = {
            market_key(name, symbol): inst
            for name, venue in self.world.venues.items()
            for symbol, inst in venue.instruments.items()
        }
        self.instruments = instruments
        self.journal = Journal(":memory:")
        self.metrics = Metrics()
        self.executor = Executor(
            self.fuses, self.journal, self.metrics, self.clock, config, run_id="bt", instruments=instruments
        )
        self.history = FundingHistory()  # the daemon's default bound
        self.reference_equity: dict[str, Decimal] = {}
        self.opened = False
        initial = self.world.portfolio_view(start)
        self.result = RunResult("passive" if passive else "strategy", start, end, initial.nav)
        self.world.subscribe(self._on_event)

    def _on_event(self, event: Event) -> None:
        if isinstance(event, OrderFilled) and event.account == event.venue:
            self.result.fills.append(event)
        elif isinstance(event, Liquidated) and event.account == event.venue:
            self.result.liquidation_events.append(event)

    async def run(self) -> RunResult:
        """Replay from ``start`` to ``end``."""
        t0 = time.perf_counter()
        cfg = self.config
        decisions = decision_times(self.start, self.end, cfg.pnl.rebalance_every, cfg.execution.rebalance_lead)
        times = sorted(set(self.source.event_times(self.start, self.end)) | set(decisions))
        d = 0
        next_sample = self.start
        for t in times:
            if t > self.world.now:
                self.clock.set(t)
                self.world.step_to(t)
            self.result.steps += 1
            if self.opening:
                await self._open_by_hand(t)
            await self._margin(t)
            if d < len(decisions) and decisions[d] <= t:
                while d < len(decisions) and decisions[d] <= t:
                    d += 1
                if not (self.passive and self.opened):
                    await self._decide(t)
            if t >= next_sample or t == times[-1]:
                self._sample(t)
                while next_sample <= t:
                    next_sample += self.sample_every
        self._finish()
        self.result.wall_seconds = time.perf_counter() - t0
        return self.result

    async def _decide(self, now: datetime) -> None:
        view = self.world.portfolio_view(now)
        self.history.observe(view)
        signals = compute_signals(self.history, view, now)
        try:
            target = decide(view, signals, self.config, now)
        except ValueError:
            self.result.refused += 1
            return
        actions = list(plan(target, view))
        gated = gate(actions, view, self.config, RiskState(now=now))
        self.result.decisions += 1
        self.result.refused += len(gated.refused)
        traded = False
        for action in gated.approved:
            self.result.actions.append((now, action))
            outcome = await self.executor.execute(action, f"bt{self.result.decisions:06d}")
            self._count(outcome)
            if isinstance(action, TRADES) and any(leg.filled > 0 for leg in outcome.legs):
                traded = True
        if traded:
            self.result.rebalances += 1
        after = self.world.portfolio_view(self.clock.now(), books=False)
        # The baseline's hedge is open once any perp position is held after a decision.
        self.opened = self.opened or any(p.size != 0 for a in after.accounts.values() for p in a.positions)
        self._reset_reference(after)

    async def _open_by_hand(self, now: datetime) -> None:
        """Execute the given opening actions (a hand-made book) instead of the first decision."""
        actions, self.opening = self.opening, []
        for action in actions:
            result = await self.executor.execute(action, "open")
            if not result.completed:
                raise RuntimeError(f"opening action failed at {now.isoformat()}: {result.error or action}")
        self.result.rebalances += 1
        self.opened = True
        self._reset_reference(self.world.portfolio_view(self.clock.now(), books=False))

    def _count(self, outcome: ActionResult) -> None:
        if not outcome.completed:
            self.result.failed_actions += 1
        if outcome.unwound > 0:
            self.result.unwinds += 1

    def _reset_reference(self, view: PortfolioView) -> None:
        for name, acct in view.accounts.items():
            if acct.margin is not None:
                self.reference_equity[name] = acct.margin.equity

    async def _margin(self, now: datetime) -> None:
        available = self.world.vault.get(self.world.base_asset, ZERO)
        actions: list[Action] = []
        for name, venue in self.world.venues.items():
            health = venue.margin_health(name)
            if health is None:
                continue
            if health.maintenance_margin <= 0:
                self.reference_equity[name] = health.equity
                continue
            check = check_margin(name, health, self.reference_equity.get(name, health.equity), self.config, available)
            if check.deleverage:
                view = self.world.portfolio_view(now)
                actions += pair_reductions(
                    view,
                    self.instruments,
                    select=_on_fuse(name),
                    fraction=Decimal("0.5"),
                    reason=f"deleverage: margin ratio {health.margin_ratio:.3f} >= {self.config.margin.deleverage_ratio}",
                    cash=tuple(self.config.stablecoins),
                )
            top = top_up_action(check, self.config.vault.base_asset)
            if top is not None:
                actions.append(top)
                available -= top.amount
        if not actions:
            return
        for action in actions:
            self._count(await self.executor.execute(action, f"bm{self.result.margin_actions:06d}"))
            self.result.margin_actions += 1
        self._reset_reference(self.world.portfolio_view(self.clock.now(), books=False))

    def _sample(self, now: datetime) -> None:
        view = self.world.portfolio_view(now, books=False)
        cash = tuple(self.config.stablecoins)
        ratios = {name: acct.margin.margin_ratio for name, acct in view.accounts.items() if acct.margin is not None}
        self.result.samples.append(
            Sample(
                ts=now,
                nav=view.nav,
                funding_by_fuse=self._funding_by_fuse(),
                gross=sum(gross(view, cash).values(), ZERO),
                net_delta=sum(net_delta(view, cash).values(), ZERO),
                margin_ratio=ratios,
            )
        )

    def _funding_by_fuse(self) -> dict[str, Decimal]:
        by_fuse: dict[str, Decimal] = defaultdict(Decimal)
        for (fuse, _), amount in self.world.ledger.funding.items():
            by_fuse[fuse] += amount
        return dict(by_fuse)

    def _finish(self) -> None:
        ledger = self.world.ledger
        r = self.result
        r.funding = ledger.total_funding()
        r.fees = ledger.total_fees()
        r.slippage = ledger.total_slippage()
        r.lending_income = ledger.total_interest()
        r.liquidations = sum(ledger.liquidations.values())
        r.funding_by_fuse = self._funding_by_fuse()
        r.events = self.source.count_events(self.start, self.end)
        r.rejected_orders = int(
            sum(
                s.value
                for metric in self.metrics.orders.collect()
                for s in metric.samples
                if s.name.endswith("_total") and s.labels.get("outcome") == "rejected"
            )
        )
        self.journal.close()


def _on_fuse(name: str) -> Callable[[str, str], bool]:
    def select(fuse: str, _market: str) -> bool:
        return fuse == name

    return select


async def replay(
    config: StrategyConfig,
    tapes: list[MarketTape],
    start: datetime,
    end: datetime,
    *,
    passive: bool = False,
    opening: Sequence[Action] = (),
) -> RunResult:
    """Run one replay (strategy or passive baseline) and return its result.

    ``opening``: actions executed at the start instead of the first decision (with ``passive``,
    a hand-made book held to the end with only margin management).
    """
    return await Replay(config, tapes, start, end, passive=passive, opening=opening).run()


def run_both(
    config: StrategyConfig, tapes: list[MarketTape], start: datetime, end: datetime
) -> tuple[RunResult, RunResult]:
    """Run the strategy and the passive baseline over the same history."""

    async def go() -> tuple[RunResult, RunResult]:
        strategy = await replay(config, tapes, start, end)
        baseline = await replay(config, tapes, start, end, passive=True)
        return strategy, baseline

    return asyncio.run(go())
