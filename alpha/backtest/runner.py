"""Replay recorded history through the daemon's own steps over the simulated world.

The replay is the daemon on a simulated clock: the same ``StepRunner`` (pipeline steps, gate,
journal, ``Executor``), the same ``Schedule`` and the same view (``gather_view`` over
``MarketData`` polled from the simulated fuses). Time visits every recorded price update and
settlement, and every time the schedule makes a decision due (``execution.rebalance_lead``
ahead of each market's settlement as the data reports it, and every ``pnl.rebalance_every``).
At each visited instant the world moves there (funding paid at the recorded times, marks
updated, liquidations run); then, as in the daemon's services, a due margin check runs first
(``margin.check_every``) and a due decision second. The passive baseline trades at the first
decision that trades and afterwards only manages margin.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from alpha.backtest.source import MarketTape, RecordedSource
from alpha.config.schema import FuseKind, StrategyConfig
from alpha.core.schedule import Schedule
from alpha.daemon.book import ViewPurpose, gather_view
from alpha.daemon.executor import Executor
from alpha.daemon.journal import Journal
from alpha.daemon.marketdata import MarketData
from alpha.daemon.registry import FuseRegistry
from alpha.daemon.steps import Book, StepRunner, TakenStep
from alpha.domain.actions import Action, CloseHedge, OpenHedge, ResizeLeg
from alpha.domain.clock import SimulatedClock
from alpha.domain.events import Event, InterestAccrued, Liquidated, OrderFilled
from alpha.domain.funding import FundingRate
from alpha.domain.money import ZERO
from alpha.domain.portfolio import PortfolioView, market_key
from alpha.observability.metrics import Metrics
from alpha.risk.exposure import contributions, gross, net_delta
from alpha.risk.gate import RiskState, gate
from fuses.sim import build
from fuses.sim.ratefuse import SimRateFuse
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
    gross_by_asset: dict[str, Decimal] = field(default_factory=dict)  # per asset, as ``gross``
    net_delta_by_asset: dict[str, Decimal] = field(default_factory=dict)  # per asset, as ``net_delta``
    held_by_fuse: dict[str, Decimal] = field(default_factory=dict)  # |value| of what each fuse holds (positions, spot, lending)


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
    # (fuse, market) -> (funding, fees, slippage): what each market earned and cost
    by_market: dict[tuple[str, str], tuple[Decimal, Decimal, Decimal]] = field(default_factory=dict)
    fees: Decimal = ZERO
    slippage: Decimal = ZERO
    lending_income: Decimal = ZERO
    rebalances: int = 0
    decisions: int = 0
    margin_actions: int = 0
    liquidations: int = 0
    liquidation_events: list[Liquidated] = field(default_factory=list)
    fills: list[OrderFilled] = field(default_factory=list)
    # fuse -> lending interest, base-asset value: earned on supply and owed on debt (negative)
    supply_interest: dict[str, Decimal] = field(default_factory=dict)
    borrow_interest: dict[str, Decimal] = field(default_factory=dict)
    refused: int = 0
    rejected_orders: int = 0  # orders the simulated venues refused
    failed_actions: int = 0  # approved actions the executor could not complete
    unwinds: int = 0  # hedge legs that filled unequally and had their excess unwound
    actions: list[tuple[datetime, Action]] = field(default_factory=list)  # decisions' actions approved by the gate, in order
    taken: list[TakenStep] = field(default_factory=list)  # every journalled step (decisions, margin, repairs), in order
    final_view: PortfolioView | None = None  # the book at the end (valuation only: no order books)
    events: int = 0
    steps: int = 0
    wall_seconds: float = 0.0

    @property
    def final_nav(self) -> Decimal:
        return self.samples[-1].nav if self.samples else self.initial_nav


# The funding history a replay starts with: the settlements recorded in this span before its
# start, as a daemon starting then would read them from the venues (settled rates are public),
# so a replay that starts mid-history does not decide on an empty history.
DEFAULT_WARMUP = timedelta(days=90)


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
        poll_every: timedelta | None = None,
        warmup: timedelta = DEFAULT_WARMUP,
    ) -> None:
        self.config = config
        self.tapes = tapes
        self.warmup = warmup
        self.poll_every = poll_every  # the daemon's market data poll to replay (None: data read at every instant)
        self.source = RecordedSource(tapes)
        self.start = start
        self.end = end
        self.passive = passive
        self.opening = list(opening)
        self.sample_every = sample_every
        self.clock = SimulatedClock(start)
        self.world = SimWorld.from_config(config, source=self.source, start=start)
        self.fuses = FuseRegistry(
            {
                f.name: build(f, world=self.world, clock=self.clock)
                for f in config.enabled_fuses
                if f.kind is FuseKind.SIM or (f.kind is FuseKind.LENDING and f.venue == "sim")
            }
        )
        self.rates = {r.name: SimRateFuse(r, self.world, self.clock) for r in config.enabled_rates if r.venue == "sim"}
        self.journal = Journal(":memory:")
        self.metrics = Metrics()
        self.marketdata = MarketData(self.fuses, self.clock, self.metrics)
        self.executor: Executor | None = None
        self.steps: StepRunner | None = None
        self.schedule = Schedule()
        self.next_poll: datetime | None = None
        self.opened = False
        initial = self.world.portfolio_view(start)
        self.result = RunResult("passive" if passive else "strategy", start, end, initial.nav)
        self.world.subscribe(self._on_event)

    def _on_event(self, event: Event) -> None:
        if isinstance(event, OrderFilled) and event.account == event.venue:
            self.result.fills.append(event)
        elif isinstance(event, Liquidated) and event.account == event.venue:
            self.result.liquidation_events.append(event)
        elif isinstance(event, InterestAccrued) and event.account == event.venue:
            into = self.result.borrow_interest if event.amount < 0 else self.result.supply_interest
            into[event.venue] = into.get(event.venue, ZERO) + (event.value if event.value is not None else event.amount)

    async def _view(self, now: datetime, purpose: ViewPurpose) -> PortfolioView:
        """The daemon's view (``gather_view``), with market data refreshed as the daemon does (books when deciding)."""
        if purpose is not ViewPurpose.AFTER:
            await self.marketdata.ensure_fresh(now, books=purpose is ViewPurpose.DECIDE, max_age=self.poll_every)
        return await gather_view(
            now, fuses=self.fuses, marketdata=self.marketdata, config=self.config, vault_cash=self._vault_cash, rates=self.rates
        )

    async def _vault_cash(self) -> Decimal:
        return self.world.vault.get(self.world.base_asset, ZERO)

    async def _setup(self) -> StepRunner:
        await self.marketdata.load_instruments()
        self.executor = Executor(
            self.fuses, self.journal, self.metrics, self.clock, self.config, run_id="bt", instruments=self.marketdata.instruments,
            rate_venues=self.rates,
        )
        steps = StepRunner(
            self.config,
            book=Book(
                view=self._view, risk_state=lambda: RiskState(now=self.clock.now()), blocked=lambda: None,
                stopping=lambda: False, note=lambda _text: None, on_view=lambda _view: None,
            ),
            executor=self.executor, journal=self.journal, metrics=self.metrics, clock=self.clock,
            instruments=self.marketdata.instruments, run_id="bt",
        )
        steps.reset_references(await self._view(self.start, ViewPurpose.MARGIN))
        self._warm_up(steps)
        self.steps = steps
        return steps

    def _warm_up(self, steps: StepRunner) -> None:
        """Record the settlements of ``[start - warmup, start)`` in the decision's funding history (settled, public data only)."""
        since = self.start - self.warmup
        for tape in self.tapes:
            if not tape.is_perp:
                continue
            key = market_key(tape.fuse, tape.market)
            for rec in tape.funding:
                if rec.ts < since:
                    continue
                if rec.ts >= self.start:
                    break
                mark = tape.mark_at(rec.ts) or rec.mark
                if mark is not None and mark > 0:
                    steps.history.record(key, rec.ts, FundingRate(rec.rate, rec.interval, rec.ts + rec.interval), mark)

    async def run(self) -> RunResult:
        """Replay from ``start`` to ``end``."""
        t0 = time.perf_counter()
        cfg = self.config
        steps = await self._setup()
        events = sorted(t for t in set(self.source.event_times(self.start, self.end)) if t <= self.end)
        i = 0
        now = self.start
        next_sample = self.start
        while True:
            if now > self.world.now:
                self.clock.set(now)
                self.world.step_to(now)
            self.result.steps += 1
            if self.poll_every is not None and (self.next_poll is None or now >= self.next_poll):
                await self.marketdata.refresh()  # the daemon's market data service polls on its own cadence
                self.next_poll = now + self.poll_every
            if self.opening:
                await self._open_by_hand(now)
            if self.schedule.margin_due(now):
                self.schedule.margin_checked(now, cfg)
                self.result.margin_actions += len((await steps.margin()).approved)
            settlements = self.marketdata.settlements()
            when, why = self.schedule.next_decision(now, settlements, cfg)
            if when <= now:
                self.schedule.deciding(now, settlements, cfg)
                skipped = False
                if not (self.passive and self.opened):
                    skipped = await self._decide(why)
                # A skipped decision (bad data) is tried again when the data next changes.
                retry = (events[i] if i < len(events) and events[i] > now else now + cfg.margin.check_every) - now
                self.schedule.decided(now, skipped=skipped, retry_after=retry)
            if now >= next_sample or now >= self.end:
                self._sample(now)
                while next_sample <= now:
                    next_sample += self.sample_every
            while i < len(events) and events[i] <= now:
                i += 1
            upcoming = [
                t for t in (events[i] if i < len(events) else None, self._next_due(now), self.next_poll) if t is not None and now < t <= self.end
            ]
            if not upcoming:
                if now < self.end:  # nothing more happens: the last instant is the end itself
                    upcoming = [self.end]
                else:
                    break
            now = min(upcoming)
        self._finish()
        self.result.wall_seconds = time.perf_counter() - t0
        return self.result

    def _next_due(self, now: datetime) -> datetime | None:
        """The next instant after ``now`` the schedule makes a decision due (margin checks follow the data)."""
        when, _ = self.schedule.next_decision(now, self.marketdata.settlements(), self.config)
        return when if when > now else None

    async def _decide(self, trigger: str) -> bool:
        """Take one decision through the step runner; return True if it was skipped."""
        assert self.steps is not None
        record = await self.steps.decide(trigger)
        if record.skipped is not None:
            self.result.refused += 1
            return True
        self.result.decisions += 1
        self.result.refused += len(record.refused)
        self.result.actions += [(record.ts, action) for action in record.actions]
        outcomes = [r for d, r in self.steps.results if d == record.decision_id]
        if any(isinstance(r.action, TRADES) and any(leg.filled > 0 for leg in r.legs) for r in outcomes):
            self.result.rebalances += 1
        after = self.world.portfolio_view(self.clock.now(), books=False)
        # The baseline's hedge is open once any perp position is held after a decision.
        self.opened = self.opened or any(p.size != 0 for a in after.accounts.values() for p in a.positions)
        return False

    async def _open_by_hand(self, now: datetime) -> None:
        """Execute the given opening actions (a hand-made book), through the gate, instead of the first decision."""
        assert self.steps is not None
        actions, self.opening = self.opening, []
        view = await self._view(now, ViewPurpose.DECIDE)
        gated = gate(actions, view, self.config, RiskState(now=now))
        if gated.refused:
            raise RuntimeError(f"opening action refused at {now.isoformat()}: {gated.refused[0].reason}")
        for action in gated.approved:
            assert self.executor is not None
            result = await self.executor.execute(action, "open")
            if not result.completed:
                raise RuntimeError(f"opening action failed at {now.isoformat()}: {result.error or action}")
        self.result.rebalances += 1
        self.opened = True
        self.steps.reset_references(await self._view(self.clock.now(), ViewPurpose.AFTER))

    def _sample(self, now: datetime) -> None:
        view = self.world.portfolio_view(now, books=False)
        ratios = {name: acct.margin.margin_ratio for name, acct in view.accounts.items() if acct.margin is not None}
        held: dict[str, Decimal] = defaultdict(Decimal)
        for asset, fuse, _, qty in contributions(view):
            held[fuse] += abs(qty) * view.price(asset)
        by_asset, delta_by_asset = gross(view), net_delta(view)
        self.result.samples.append(
            Sample(
                ts=now,
                nav=view.nav,
                funding_by_fuse=self._funding_by_fuse(),
                gross=sum(by_asset.values(), ZERO),
                net_delta=sum(delta_by_asset.values(), ZERO),
                margin_ratio=ratios,
                gross_by_asset=by_asset,
                net_delta_by_asset=delta_by_asset,
                held_by_fuse=dict(held),
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
        outcomes = [outcome for _, outcome in self.steps.results] if self.steps is not None else []
        r.taken = list(self.steps.taken) if self.steps is not None else []
        r.final_view = self.world.portfolio_view(self.world.now, books=False)
        r.failed_actions = sum(1 for o in outcomes if not o.completed)
        r.unwinds = sum(1 for o in outcomes if o.unwound > 0)
        r.funding = ledger.total_funding()
        r.fees = ledger.total_fees()
        r.slippage = ledger.total_slippage()
        r.lending_income = ledger.total_interest()
        r.liquidations = sum(ledger.liquidations.values())
        r.funding_by_fuse = self._funding_by_fuse()
        keys = sorted(set(ledger.funding) | set(ledger.fees) | set(ledger.slippage))
        r.by_market = {k: (ledger.funding.get(k, ZERO), ledger.fees.get(k, ZERO), ledger.slippage.get(k, ZERO)) for k in keys}
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


async def replay(
    config: StrategyConfig,
    tapes: list[MarketTape],
    start: datetime,
    end: datetime,
    *,
    passive: bool = False,
    opening: Sequence[Action] = (),
    poll_every: timedelta | None = None,
    warmup: timedelta = DEFAULT_WARMUP,
) -> RunResult:
    """Run one replay (strategy or passive baseline) and return its result.

    ``opening``: actions executed at the start instead of the first decision (with ``passive``,
    a hand-made book held to the end with only margin management). ``poll_every``: replay a
    daemon whose market data service polls on that cadence (margin checks then read marks up
    to a poll old, as the daemon's do); by default every instant reads fresh data. ``warmup``:
    the span of settled funding before ``start`` the decision's history starts with.
    """
    return await Replay(config, tapes, start, end, passive=passive, opening=opening, poll_every=poll_every, warmup=warmup).run()


def run_both(
    config: StrategyConfig, tapes: list[MarketTape], start: datetime, end: datetime
) -> tuple[RunResult, RunResult]:
    """Run the strategy and the passive baseline over the same history."""

    async def go() -> tuple[RunResult, RunResult]:
        strategy = await replay(config, tapes, start, end)
        baseline = await replay(config, tapes, start, end, passive=True)
        return strategy, baseline

    return asyncio.run(go())
