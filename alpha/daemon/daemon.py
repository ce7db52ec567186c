"""The daemon: services around the pure core, one decision at a time.

Services (each supervised, see ``alpha.daemon.supervisor``):

* ``marketdata``: polls funding, marks and books (``alpha.daemon.marketdata``).
* ``risk``: after each refresh, builds the portfolio view, exports exposure/NAV metrics,
  pauses on stale data, and triggers a rebalance when net delta drifts past tolerance.
* ``margin``: on ``margin.check_every``, tops up margin from the vault or deleverages both
  legs together (``alpha.daemon.monitors``).
* ``scheduler``: rebalances ``execution.rebalance_lead`` before each market's funding
  settlement (as the venue reports it), every ``pnl.rebalance_every``, and on triggers
  (drift, signal, config change, operator).
* ``config``: reloads the strategy file on change or SIGHUP; applies it only if valid.
* mode-specific drivers from the wiring (demo: the simulated world's clock).

Start-up is recovery: fuses start, instruments and market data load, every order the
journal does not know the outcome of is resolved by client id, and only then is the daemon
ready to trade.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import structlog

from alpha.config import ConfigError, load_config
from alpha.config.schema import StrategyConfig
from alpha.daemon.executor import Executor
from alpha.daemon.http import Health, Servers, control_app, default_token_file, metrics_app, resolve_token
from alpha.daemon.instrumented import precreate_series
from alpha.daemon.journal import Journal
from alpha.daemon.marketdata import MarketData
from alpha.daemon.monitors import (
    check_margin,
    fund_top_up,
    largest_debt,
    margin_surplus,
    move_collateral,
    neutralise,
    pair_reductions,
    repay_action,
    top_up_action,
    withdrawable,
)
from alpha.daemon.pairing import pair_resizes
from alpha.daemon.supervisor import RestartBudgetExceeded, RestartPolicy, ServiceFn, Supervisor
from alpha.domain.account import MarginHealth
from alpha.domain.actions import Action, Transfer, action_rows
from alpha.domain.clock import Clock, LiveClock
from alpha.domain.money import ZERO
from alpha.domain.portfolio import PortfolioView
from alpha.observability.logging import get_logger
from alpha.observability.metrics import Metrics, f
from alpha.risk.exposure import asset_of, delta_ratio, fuse_gross, fuse_leverage, holdings, net_delta
from fuses.base import FuseError, TransientError

log = get_logger("alpha.daemon")

DRIFT_MIN_INTERVAL = timedelta(hours=1)
LENDING_HEADROOM = Decimal("0.10")  # a repayment restores min_health_factor x 1.10


@dataclass
class Wiring:
    """What a mode provides: fuses, where vault cash is read, extra services, and clean-up."""

    mode: str
    fuses: dict[str, Any]
    vault_cash: Callable[[], Awaitable[Decimal]]
    services: list[tuple[str, Callable[[Daemon], ServiceFn]]] = field(default_factory=list)
    close: Callable[[], Awaitable[None]] | None = None
    prepare: Callable[[], Awaitable[None]] | None = None  # async set-up before the fuses start (paper)
    attach: Callable[[Daemon], None] | None = None  # called once the journal is open, before anything else (live)
    world: Any = None
    poll_every: timedelta = timedelta(seconds=10)


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


class Daemon:
    """One running vault: owns the fuses, journal, metrics, monitors and the decision loop."""

    def __init__(
        self,
        config: StrategyConfig,
        clock: Clock,
        wiring: Wiring,
        *,
        metrics: Metrics | None = None,
        config_path: Path | None = None,
        real_clock: Clock | None = None,
        restart_policy: RestartPolicy | None = None,
        serve_http: bool = True,
        metrics_address: str | None = None,
        control_address: str | None = None,
        crash_service: str | None = None,
    ) -> None:
        self.config = config
        self.crash_service = crash_service
        self.clock = clock
        self.real_clock = real_clock or LiveClock()
        self.wiring = wiring
        self.fuses = wiring.fuses
        self.metrics = metrics or Metrics()
        self.config_path = config_path
        self.serve_http = serve_http
        self.metrics_address = metrics_address or config.metrics.address
        self.control_address = control_address or config.control.address
        self.run_id = secrets.token_hex(3)
        self.journal: Journal | None = None
        self.marketdata = MarketData(self.fuses, clock, self.metrics)
        self.supervisor = Supervisor(self.real_clock, self.metrics, restart_policy)
        self.executor: Executor | None = None
        self.servers = Servers()
        self.paused: dict[str, str] = {}
        self.kill_switch = False
        self.ready = False
        self.started_fuses: list[str] = []
        self.decisions: list[DecisionRecord] = []
        self.events: deque[str] = deque(maxlen=12)
        self.last_view: PortfolioView | None = None
        self.reference_equity: dict[str, Decimal] = {}
        self.start_nav: Decimal | None = None
        self.wake = asyncio.Event()
        self.triggers: deque[str] = deque()
        self.done_settlements: set[tuple[str, datetime]] = set()
        self.last_decision_at: datetime | None = None
        self.retry_at: datetime | None = None  # after a skipped decision, when the schedule tries again
        self.risk_wake = asyncio.Event()  # wakes the risk monitor before its next poll (a position changed)
        self._executing = 0  # decisions being executed (their own fills move positions)
        self.last_drift_at: datetime | None = None
        self.liquidations = 0
        self.funding: Any = None  # live: the FundingCollector (alpha.daemon.funding) once its service is made
        self._seq = 0
        self._history: Any = None
        self._config_mtime: float | None = None
        self.exit_code = 0

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Recover: open the journal, start fuses, load market data, reconcile; then serve."""
        cfg = self.config
        self.journal = Journal(cfg.journal.path)
        if self.wiring.attach is not None:
            self.wiring.attach(self)
        self.metrics.build_info.info({"mode": self.wiring.mode, "run_id": self.run_id})
        self.metrics.idle_buffer_target.set(f(cfg.idle_buffer))
        self.metrics.delta_tolerance.set(f(cfg.delta_tolerance))
        self.metrics.max_data_age.set(cfg.risk.max_data_age.total_seconds())
        self.metrics.margin_deleverage_ratio.set(f(cfg.margin.deleverage_ratio))
        self.metrics.min_health_factor.set(f(cfg.margin.min_health_factor))
        self.metrics.kill_switch.set(0)
        self.metrics.ready.set(0)
        if self.serve_http:
            await self.servers.start("metrics", metrics_app(self.metrics, Health(self.alive, self.readiness)), self.metrics_address)
        if self.wiring.prepare is not None:
            await self.wiring.prepare()
        for name, fuse in self.fuses.items():
            await fuse.start()
            self.started_fuses.append(name)
        await self.marketdata.load_instruments()
        precreate_series(self.metrics, cfg.enabled_fuses, self.marketdata.instruments)
        for _, label in (*REFUSAL_LABELS, ("", "other")):
            self.metrics.actions_refused.labels(reason=label)
        self.executor = Executor(
            self.fuses, self.journal, self.metrics, self.clock, cfg, run_id=self.run_id, instruments=self.marketdata.instruments,
            order_feeds=self.marketdata.streams,
        )
        await self.marketdata.refresh()
        resolved = await self.executor.reconcile()
        resolved += await self.executor.reconcile_lending()
        now = self.clock.now()
        self.journal.append("start", now, run_id=self.run_id, mode=self.wiring.mode, reconciled=resolved)
        if resolved:
            self.note(f"reconciled {len(resolved)} order(s) or lending step(s) left unfinished: {resolved}")
        view = await self.view(now)
        self.start_nav = self._start_nav(view)
        self.export_view(view)
        for name, acct in view.accounts.items():
            if acct.margin is not None:
                self.reference_equity[name] = acct.margin.equity
        self.ready = not self.executor.unresolved
        self.metrics.ready.set(1 if self.ready else 0)
        if self.serve_http:
            token, where = resolve_token(cfg.control.token, default_token_file(cfg.journal.path))
            await self.servers.start("control", control_app(self, token), self.control_address, loopback_only=True)
            log.info("control endpoint token", source=where)
        services = self._services()
        if self.crash_service is not None:
            services = _inject_crash(services, self.crash_service)
        for name, make in services:
            self.supervisor.add(name, make)
        precreate_series(self.metrics, (), services=self.supervisor.running)

    def _start_nav(self, view: PortfolioView) -> Decimal:
        assert self.journal is not None
        for rec in self.journal.records("start_nav"):
            return rec.amount or view.nav
        self.journal.append("start_nav", view.ts, amount=view.nav)
        return view.nav

    def _services(self) -> list[tuple[str, ServiceFn]]:
        services: list[tuple[str, ServiceFn]] = [(name, make(self)) for name, make in self.wiring.services]
        services += [
            ("marketdata", lambda stop: self.marketdata.run(stop, self.wiring.poll_every)),
            ("risk", self._risk_service),
            ("margin", self._margin_service),
            ("scheduler", self._scheduler_service),
        ]
        if self.config_path is not None:
            services.append(("config", self._config_service))
        return services

    def request_stop(self) -> None:
        """Stop taking decisions; in-flight legs finish or unwind; services end."""
        if not self.supervisor.stop.is_set():
            log.info("stopping: no new decisions; finishing in-flight legs")
        self.supervisor.stop.set()
        if self.executor is not None:
            self.executor.stop.set()
        self.wake.set()

    async def run(self, *, install_signals: bool = True) -> int:
        """Start, run every service until stopped, shut down; return the process exit code."""
        loop = asyncio.get_running_loop()
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.request_stop)
            loop.add_signal_handler(signal.SIGHUP, lambda: self.trigger("config"))
        try:
            await self.start()
            main = asyncio.create_task(self.supervisor.run(), name="supervisor")
            stopped = asyncio.create_task(self.supervisor.stop.wait())
            await asyncio.wait({main, stopped}, return_when=asyncio.FIRST_COMPLETED)
            bound = self.config.execution.shutdown_bound.total_seconds()
            try:
                await asyncio.wait_for(asyncio.shield(main), timeout=bound)
            except TimeoutError:
                log.error("services did not stop within the shutdown bound; cancelling", bound_seconds=bound)
                main.cancel()
                with contextlib.suppress(asyncio.CancelledError, RestartBudgetExceeded):
                    await main
            except RestartBudgetExceeded as exc:
                log.error("giving up: restart budget exceeded", service=exc.service, error=str(exc))
                self.exit_code = 1
            except Exception as exc:  # the supervisor itself failed (not a service): never silent, never exit 0
                log.exception("supervisor failed", error=repr(exc))
                self.exit_code = 1
            stopped.cancel()
        finally:
            await self.shutdown()
            if install_signals:
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                    loop.remove_signal_handler(sig)
        return self.exit_code

    async def shutdown(self) -> None:
        """Close fuses (reverse order), stop servers, flush and close the journal."""
        bound = self.config.execution.shutdown_bound.total_seconds()
        for name in reversed(self.started_fuses):
            try:
                await asyncio.wait_for(self.fuses[name].close(), bound)
            except Exception as exc:
                log.error("fuse failed to close", fuse=name, error=repr(exc))
        self.started_fuses.clear()
        # Whatever fails here, the journal below is still flushed and closed.
        for what, close in (("wiring", self.wiring.close), ("servers", self.servers.stop)):
            if close is None:
                continue
            try:
                await asyncio.wait_for(close(), bound)
            except Exception as exc:
                log.error("clean-up step failed", step=what, error=repr(exc))
        if self.journal is not None:
            self.journal.append("stop", self.clock.now(), run_id=self.run_id, exit_code=self.exit_code)
            self.journal.close()
        log.info("stopped", exit_code=self.exit_code)

    # -- health ----------------------------------------------------------------------------

    def alive(self) -> bool:
        """Process up and every service running."""
        return self.supervisor.healthy

    def readiness(self) -> tuple[bool, str]:
        """Reconciled, no unresolved orders, data fresh."""
        if not self.ready:
            return False, "start-up reconciliation not finished"
        if self.executor is not None and self.executor.unresolved:
            return False, f"{len(self.executor.unresolved)} order(s) of unknown outcome"
        age = self.marketdata.oldest_age(self.clock.now())
        if age is None or age > self.config.risk.max_data_age:
            return False, "market data is stale"
        return True, "ok"

    # -- view and metrics ------------------------------------------------------------------

    async def view(self, now: datetime) -> PortfolioView:
        """Build the portfolio view from every fuse's account and the latest market data."""
        accounts = {name: await fuse.account() for name, fuse in self.fuses.items()}
        prices = self.marketdata.prices(self.config.vault.base_asset, self.config.stablecoins)
        await self._oracle_prices(accounts, prices)
        return PortfolioView(
            ts=now,
            base_asset=self.config.vault.base_asset,
            vault_cash=await self.wiring.vault_cash(),
            accounts=accounts,
            markets=dict(self.marketdata.snapshots),
            prices=prices,
        )

    async def _oracle_prices(self, accounts: dict[str, Any], prices: dict[str, Decimal]) -> None:
        """Price what a lending account holds and no market prices (e.g. WETH) from the fuse's own oracle."""
        for name, acct in accounts.items():
            if acct.lending is None:
                continue
            held = {b.asset for b in acct.balances if b.total != 0} | {lp.asset for lp in acct.lending_positions}
            missing = held - set(prices) - {self.config.vault.base_asset}
            oracle = getattr(self.fuses[name], "price", None)
            if missing and oracle is not None:
                for asset in sorted(missing):
                    prices[asset] = Decimal(await oracle(asset))

    def export_view(self, view: PortfolioView) -> None:
        """Export NAV, idle, capital, exposure, delta, margin and PnL metrics from ``view``."""
        m, cfg = self.metrics, self.config
        self.last_view = view
        nav = view.nav
        m.sim_time.set(view.ts.timestamp())
        m.nav.set(f(nav))
        m.idle.set(f(view.vault_cash))
        m.idle_ratio.set(f(view.vault_cash / nav) if nav > 0 else 0.0)
        for fc in cfg.fuses:
            m.fuse_capital.labels(fuse=fc.name).set(f(view.fuse_equity(fc.name)))
            m.fuse_cap.labels(fuse=fc.name).set(f(fc.max_share * nav))
        cash = tuple(cfg.stablecoins)
        m.position.clear()
        for (fuse, market), qty in holdings(view, cash).items():
            asset = asset_of(view, fuse, market)
            m.position.labels(fuse=fuse, market=market, asset=asset).set(f(qty * view.price(asset)))
        for fuse, gross in fuse_gross(view, cash).items():
            m.venue_gross.labels(fuse=fuse).set(f(gross))
        for fuse, lev in fuse_leverage(view, cash).items():
            m.venue_leverage.labels(fuse=fuse).set(f(lev) if lev.is_finite() else 0.0)
        deltas = net_delta(view, cash)
        ratios = delta_ratio(view, cash)
        for asset in cfg.assets:
            d = deltas.get(asset, ZERO)
            m.net_delta.labels(asset=asset).set(f(d))
            r = ratios.get(asset, ZERO)
            m.net_delta_ratio.labels(asset=asset).set(f(r))
            m.gross.labels(asset=asset).set(f(_gross(view, asset, cash)))
        book_apr_num = ZERO
        book_notional = ZERO
        for name, acct in view.accounts.items():
            if acct.margin is not None:
                m.margin_ratio.labels(fuse=name).set(f(min(acct.margin.margin_ratio, Decimal(1000))))
                m.margin_equity.labels(fuse=name).set(f(acct.margin.equity))
            if acct.lending is not None:
                hf = acct.lending.health_factor
                m.health_factor.labels(fuse=name).set(f(hf) if hf.is_finite() else 1e9)
            for lp in acct.lending_positions:
                price = view.price(lp.asset) if lp.asset in view.prices or lp.asset == view.base_asset else Decimal(1)
                m.supplied.labels(fuse=name, asset=lp.asset).set(f(lp.supplied * price))
                m.borrowed.labels(fuse=name, asset=lp.asset).set(f(lp.borrowed * price))
                m.lending_rate.labels(fuse=name, asset=lp.asset, side="supply").set(f(lp.supply_apr))
                m.lending_rate.labels(fuse=name, asset=lp.asset, side="borrow").set(f(lp.borrow_apr))
            for pos in acct.positions:
                if pos.liquidation_price is not None and pos.mark_price > 0:
                    dist = abs(pos.mark_price - pos.liquidation_price) / pos.mark_price
                    m.liquidation_distance.labels(fuse=name, market=pos.market).set(f(dist))
                snap = view.market(name, pos.market)
                if snap is not None and snap.funding is not None and pos.size != 0:
                    book_apr_num += -pos.size * pos.mark_price * snap.funding.annualised
                    book_notional += abs(pos.size) * pos.mark_price
        m.funding_book_apr.set(f(book_apr_num / book_notional) if book_notional > 0 else 0.0)
        self._export_pnl(view)

    def _export_pnl(self, view: PortfolioView) -> None:
        assert self.journal is not None
        t = self.journal.totals
        total = view.nav - (self.start_nav or view.nav)
        price = total - t["funding"] - t["lending"] + t["fees"] + t["slippage"]
        for component, value in (
            ("funding", t["funding"]),
            ("fees", -t["fees"]),
            ("slippage", -t["slippage"]),
            ("lending", t["lending"]),
            ("price", price),
            ("total", total),
        ):
            self.metrics.pnl.labels(component=component).set(f(value))
        if self.start_nav and self.journal is not None:
            first = next(self.journal.records("start_nav"), None)
            if first is not None:
                elapsed = (view.ts - datetime.fromisoformat(first.ts)).total_seconds()
                if elapsed > 3600:
                    self.metrics.net_apr.set(f(total / self.start_nav) * 365 * 86400 / elapsed)

    def note(self, text: str) -> None:
        """Remember an event for the status table (and log it)."""
        stamp = self.clock.now().strftime("%m-%d %H:%M")
        self.events.append(f"{stamp} {text}")
        log.info(text)

    # -- simulated-world events (demo, paper, backtest) -------------------------------------

    def record_events(self, events: list[Any], ours: set[str]) -> None:
        """Journal funding, interest and liquidations of our accounts from the simulated world."""
        if self.journal is None or self.journal.closed:
            return  # a world kept across daemons still calls the one that has stopped
        for ev in events:
            kind = type(ev).__name__
            account = getattr(ev, "account", None)
            if account not in ours:
                continue
            if kind == "FundingPaid":
                self.journal.funding(ev.ts, ev.venue, ev.market, ev.asset, ev.amount, size=ev.size, mark=ev.mark, rate=ev.rate)
                metric = self.metrics.funding_received if ev.amount >= 0 else self.metrics.funding_paid
                metric.labels(fuse=ev.venue, market=ev.market).inc(f(abs(ev.amount)))
            elif kind == "InterestAccrued":
                # PnL is in the base asset: interest on a borrowed coin (e.g. ETH) is journalled at its value.
                value = getattr(ev, "value", None)
                amount = value if value is not None else ev.amount
                self.journal.append("interest", ev.ts, fuse=ev.venue, asset=ev.asset, amount=amount, side=ev.side, units=ev.amount)
            elif kind in ("Liquidated", "LendingLiquidated"):
                self.liquidations += 1
                self.metrics.liquidations.labels(fuse=ev.venue).inc()
                self.journal.append("liquidation", ev.ts, fuse=ev.venue, event=kind)
                self.engage_kill_switch(f"liquidation on {ev.venue}")

    # -- control ---------------------------------------------------------------------------

    def engage_kill_switch(self, reason: str) -> None:
        """Stop all trading until an operator resumes."""
        if not self.kill_switch:
            self.kill_switch = True
            self.metrics.kill_switch.set(1)
            self.note(f"KILL SWITCH engaged: {reason}")

    def set_paused(self, reason: str, on: bool) -> None:
        """Pause or unpause trading for one reason (operator, stale_data, unresolved, flattened)."""
        if on and reason not in self.paused:
            self.paused[reason] = self.clock.now().isoformat()
            self.note(f"paused ({reason})")
        elif not on and reason in self.paused:
            del self.paused[reason]
            self.note(f"unpaused ({reason})")
        self.metrics.paused.labels(reason=reason).set(1 if on else 0)

    def status(self) -> dict[str, Any]:
        """Summarise state for ``alpha status`` and the terminal table."""
        view = self.last_view
        fuses: dict[str, Any] = {}
        positions: list[dict[str, str]] = []
        if view is not None:
            for name, acct in view.accounts.items():
                fuses[name] = {
                    "capital": str(view.fuse_equity(name).quantize(Decimal("0.01"))),
                    "margin_ratio": None if acct.margin is None else str(acct.margin.margin_ratio.quantize(Decimal("0.0001"))),
                }
                for p in acct.positions:
                    if p.size != 0:
                        positions.append({"fuse": name, "market": p.market, "size": str(p.size), "mark": str(p.mark_price)})
                for b in acct.balances:
                    if b.asset not in self.config.stablecoins and b.asset != view.base_asset and b.total != 0:
                        positions.append({"fuse": name, "market": b.asset, "size": str(b.total), "mark": str(view.prices.get(b.asset, ""))})
        totals = self.journal.totals if self.journal is not None else {}
        return {
            "mode": self.wiring.mode,
            "run_id": self.run_id,
            "now": self.clock.now().isoformat(),
            "ready": self.readiness()[0],
            "paused": dict(self.paused),
            "kill_switch": self.kill_switch,
            "nav": None if view is None else str(view.nav.quantize(Decimal("0.01"))),
            "idle": None if view is None else str(view.vault_cash.quantize(Decimal("0.01"))),
            "fuses": fuses,
            "positions": positions,
            "funding_earned": str(totals.get("funding", ZERO).quantize(Decimal("0.01"))),
            "top_ups": str(totals.get("top_ups", ZERO).quantize(Decimal("0.01"))),
            "decisions": len(self.decisions),
            "liquidations": self.liquidations,
            "services": {k: v for k, v in self.supervisor.running.items()},
            "events": list(self.events),
        }

    async def pause(self, reason: str = "operator") -> dict[str, Any]:
        self.set_paused("operator", True)
        return {"paused": dict(self.paused), "reason": reason}

    async def resume(self) -> dict[str, Any]:
        for reason in ("operator", "flattened"):
            self.set_paused(reason, False)
        if self.kill_switch:
            self.kill_switch = False
            self.metrics.kill_switch.set(0)
            self.note("kill switch released by operator")
        return {"paused": dict(self.paused), "kill_switch": self.kill_switch}

    async def flatten(self) -> dict[str, Any]:
        """Pause and close every hedge (both legs together)."""
        self.set_paused("flattened", True)
        view = await self.view(self.clock.now())
        actions = pair_reductions(
            view, self.marketdata.instruments, select=lambda _f, _m: True, fraction=Decimal(1), reason="operator flatten",
            cash=tuple(self.config.stablecoins),
        )
        done = await self._execute("operator", actions, "flatten")
        return {"flatten_actions": len(actions), "completed": done, "paused": dict(self.paused)}

    def trigger(self, reason: str) -> None:
        """Ask the scheduler for a rebalance now (drift, signal, config, operator)."""
        self.triggers.append(reason)
        self.wake.set()

    # -- decisions -------------------------------------------------------------------------

    def _next_decision_id(self) -> str:
        self._seq += 1
        return f"{self.run_id}{self._seq:05d}"

    def trading_blocked(self) -> str | None:
        """Why trading is blocked right now, or None."""
        if self.kill_switch:
            return "kill switch engaged"
        if self.paused:
            return "paused: " + ", ".join(sorted(self.paused))
        if self.executor is not None and self.executor.unresolved:
            return "orders of unknown outcome"
        if not self.ready:
            return "not reconciled"
        return None

    async def decide_once(self, trigger: str) -> DecisionRecord:
        """Take one decision: view -> signals -> decide -> plan -> gate -> execute; journal it."""
        from alpha.risk.gate import gate
        from alpha.strategy.decide import decide
        from alpha.strategy.planner import plan
        from alpha.strategy.signals import FundingHistory, compute_signals

        assert self.journal is not None and self.executor is not None
        now = self.clock.now()
        decision_id = self._next_decision_id()
        structlog.contextvars.bind_contextvars(decision_id=decision_id)
        try:
            blocked = self.trading_blocked()
            if blocked is not None:
                self.journal.append("decision", now, decision_id=decision_id, trigger=trigger, skipped=blocked)
                rec = DecisionRecord(decision_id, trigger, now, [], [], 0, skipped=blocked)
                self.decisions.append(rec)
                return rec
            if self._history is None:
                self._history = FundingHistory()
            t0 = time.perf_counter()
            try:
                view = await self.view(now)
            except TransientError as exc:
                skipped = f"venue unavailable: {exc}"
                self.journal.append("decision", now, decision_id=decision_id, trigger=trigger, skipped=skipped)
                log.warning("decision skipped: a venue is unavailable", error=repr(exc))
                rec = DecisionRecord(decision_id, trigger, now, [], [], 0, skipped=skipped)
                self.decisions.append(rec)
                return rec
            self._history.observe(view)
            signals = compute_signals(self._history, view, now)
            try:
                target = decide(view, signals, self.config, now)
            except ValueError as exc:  # BadMarketData and friends: never trade on it
                self.journal.append("decision", now, decision_id=decision_id, trigger=trigger, skipped=f"refused: {exc}")
                log.warning("decision refused bad input", error=str(exc))
                rec = DecisionRecord(decision_id, trigger, now, [], [], 0, skipped=str(exc))
                self.decisions.append(rec)
                return rec
            actions = list(plan(target, view))
            gated = gate(actions, view, self.config, self._gate_state())
            approved = pair_resizes(gated.approved, view)
            self.metrics.decision_latency.observe(time.perf_counter() - t0)
            self.metrics.decisions.labels(trigger=trigger).inc()
            for refusal in gated.refused:
                self.metrics.actions_refused.labels(reason=_reason_label(refusal.reason)).inc()
            self.journal.append(
                "decision",
                now,
                decision_id=decision_id,
                trigger=trigger,
                nav=view.nav,
                target_nav=target.nav,
                actions=[row for a in approved for row in action_rows(a)],
                refused=[{"rows": action_rows(r.action), "reason": r.reason} for r in gated.refused],
            )
            completed = await self._execute(decision_id, approved, trigger)
            rec = DecisionRecord(
                decision_id, trigger, now, approved, [(r.action, r.reason) for r in gated.refused], completed
            )
            self.decisions.append(rec)
            self.last_decision_at = now
            after = await self.view(self.clock.now())
            for name, acct in after.accounts.items():
                if acct.margin is not None:
                    self.reference_equity[name] = acct.margin.equity
            self.export_view(after)
            return rec
        finally:
            structlog.contextvars.unbind_contextvars("decision_id")

    def _gate_state(self) -> Any:
        from alpha.risk.gate import RiskState

        return RiskState(
            kill_switch=self.kill_switch,
            paused=bool(self.paused),
            pause_reason=", ".join(sorted(self.paused)),
            executor_slices=True,
            now=self.clock.now(),
        )

    async def _execute(self, decision_id: str, actions: Sequence[Action], why: str, *, neutralise_after: bool = True) -> int:
        assert self.executor is not None
        self.executor.begin(decision_id, actions)
        self._executing += 1
        try:
            return await self._execute_approved(decision_id, actions, why, neutralise_after=neutralise_after)
        finally:
            self._executing -= 1
            if neutralise_after:  # the outermost call: the decision is done
                self.executor.end(decision_id)

    def on_account_update(self, fuse: str) -> Callable[[Any], None]:
        """Return the ``on_account`` callback of fuse ``fuse``'s user stream.

        A position that changes while no decision of ours is executing was changed by someone
        else (a hand trade on the same account, a venue's liquidation or auto-deleverage): the
        risk monitor is woken at once to read the accounts and check the hedge, instead of at
        its next poll. Order updates are the executor's (it reads them from the feed).
        """

        def changed(update: Any) -> None:
            if not hasattr(update, "size") or self._executing:  # a PositionUpdate, not caused by us
                return
            log.info("position changed at the venue; checking the hedge", fuse=fuse, market=update.market, size=str(update.size))
            self.risk_wake.set()

        return changed

    async def _execute_approved(self, decision_id: str, actions: Sequence[Action], why: str, *, neutralise_after: bool) -> int:
        assert self.executor is not None
        completed = 0
        touched: set[tuple[str, str]] = set()
        failed = False
        for action in actions:
            if self.supervisor.stop.is_set():
                log.info("stopping: remaining actions of the decision not started", decision_id=decision_id)
                break
            result = await self.executor.execute(action, decision_id)
            touched |= {(p.leg.fuse, p.leg.market) for p in result.legs if p.filled > 0}
            if result.completed:
                completed += 1
            else:
                failed = True
            kind = type(action).__name__
            if result.completed:
                self.note(f"{kind} done ({why}): {_describe(action)}")
            else:
                self.note(f"{kind} incomplete ({why}): {_describe(action)}: {result.error or 'not filled'}")
        if failed and neutralise_after and touched:
            view = await self.view(self.clock.now())
            fixes = neutralise(
                view, self.marketdata.instruments, self.config.delta_tolerance, prefer=touched, cash=tuple(self.config.stablecoins)
            )
            if fixes:
                self.note(f"legs left the book unhedged; neutralising with {len(fixes)} trade(s)")
                self.journal.append(  # type: ignore[union-attr]
                    "decision", self.clock.now(), decision_id=decision_id, trigger="neutralise", actions=[r for a in fixes for r in action_rows(a)]
                )
                await self._execute(decision_id, list(fixes), "neutralise", neutralise_after=False)
        return completed

    # -- services --------------------------------------------------------------------------

    async def _risk_service(self, stop: asyncio.Event) -> None:
        relay = asyncio.create_task(_relay(stop, self.risk_wake))
        try:
            await self._risk_loop(stop)
        finally:
            relay.cancel()

    async def _risk_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.risk_wake.clear()
            now = self.clock.now()
            try:
                view = await self.view(now)
            except TransientError as exc:
                # A venue in maintenance or briefly unreachable: we cannot see the book, so we
                # do not trade on it; the service keeps watching and resumes when reads work.
                self.set_paused("stale_data", True)
                log.warning("accounts unreadable; trading paused until they can be read", error=repr(exc))
                if await self.clock.sleep_until(now + self.wiring.poll_every, stop):
                    return
                continue
            if self._history is not None:
                self._history.observe(view)
            self.export_view(view)
            age = self.marketdata.oldest_age(now)
            self.set_paused("stale_data", age is None or age > self.config.risk.max_data_age)
            ratios = delta_ratio(view, tuple(self.config.stablecoins))
            drifting = [a for a, r in ratios.items() if r > self.config.delta_tolerance]
            if drifting and (self.last_drift_at is None or now - self.last_drift_at >= DRIFT_MIN_INTERVAL):
                self.last_drift_at = now
                self.trigger("drift")
            await self.clock.sleep_until(now + self.wiring.poll_every, self.risk_wake)

    async def margin_check(self) -> list[Action]:
        """Check every margin and lending account once; repay, top up or deleverage as the policy says.

        Lending accounts come first: below ``margin.min_health_factor`` the debt is repaid (by
        the fuse's own ``restore_health`` where it has one, as the Aave fuse does, otherwise by
        a ``Repay`` sized like it). Then each margin account: a top-up the idle buffer cannot
        cover is funded by withdrawing from lending fuses first (never below their minimum
        health factor); past the deleverage line both legs are reduced together.
        """
        now = self.clock.now()
        view = await self.view(now)
        policy = self.config.margin
        base = self.config.vault.base_asset
        available = view.vault_cash
        actions: list[Action] = []
        restores: list[tuple[str, str]] = []
        sources: dict[str, Decimal] = {}
        for name, acct in view.accounts.items():
            health = acct.lending
            if health is None:
                continue
            hf = health.health_factor
            self.metrics.health_factor.labels(fuse=name).set(f(hf) if hf.is_finite() else 1e9)
            if health.debt_value > 0 and hf < policy.min_health_factor:
                self.note(f"health factor {hf:.3f} on {name} below {policy.min_health_factor}: repaying")
                fuse = self.fuses[name]
                asset = largest_debt(acct, view.prices)
                if hasattr(fuse, "restore_health") and asset is not None:
                    restores.append((name, asset))
                    continue
                repay = repay_action(name, acct, policy.min_health_factor, view.prices, LENDING_HEADROOM)
                if repay is not None:
                    actions.append(repay)
                    if repay.asset == base:
                        available -= repay.amount
                continue
            sources[name] = withdrawable(acct, base, policy.min_health_factor)
        margins: dict[str, MarginHealth] = {}
        for name, acct in view.accounts.items():
            if acct.margin is None:
                continue
            m = acct.margin
            self.metrics.margin_ratio.labels(fuse=name).set(f(min(m.margin_ratio, Decimal(1000))))
            self.metrics.margin_equity.labels(fuse=name).set(f(m.equity))
            if m.maintenance_margin <= 0:
                self.reference_equity[name] = m.equity
                continue
            margins[name] = m
        # What winning venues may give to losing ones (a venue that needs a top-up gives nothing).
        surpluses = {
            name: margin_surplus(m, self.reference_equity.get(name, m.equity), self.config)
            for name, m in margins.items()
            if m.margin_ratio < policy.deleverage_ratio
        }
        for name, m in margins.items():
            check = check_margin(
                name,
                m,
                self.reference_equity.get(name, m.equity),
                self.config,
                available + sum(sources.values(), ZERO) + sum((v for k, v in surpluses.items() if k != name), ZERO),
            )
            if check.top_up > 0:
                surpluses.pop(name, None)
            if check.deleverage:
                self.note(f"margin ratio {m.margin_ratio:.3f} on {name} past deleverage line: reducing both legs")
                for reduction in pair_reductions(
                    view, self.marketdata.instruments, select=_on_fuse(name), fraction=Decimal("0.5"),
                    reason=f"deleverage: margin ratio {m.margin_ratio:.3f} >= {policy.deleverage_ratio}",
                    cash=tuple(self.config.stablecoins),
                ):
                    self.metrics.deleverages.labels(fuse=name).inc()
                    actions.append(reduction)
            top = top_up_action(check, base)
            if top is not None:
                withdrawals = fund_top_up(top, available, sources)
                if withdrawals:
                    self.note(f"idle buffer short for the top-up of {name}: withdrawing from {', '.join(w.fuse for w in withdrawals)}")
                actions.extend(withdrawals)
                available += sum((w.amount for w in withdrawals), ZERO)
                moves = move_collateral(top, top.amount - max(available, ZERO), surpluses)
                if moves:
                    self.note(f"moving collateral to {name} from {', '.join(t.source for t in moves)}")
                actions.extend(moves)
                available += sum((t.amount for t in moves), ZERO)
                actions.append(top)
                available -= top.amount
        if (actions or restores) and not self.kill_switch:
            decision_id = self._next_decision_id()
            assert self.journal is not None
            self.journal.append(
                "decision", now, decision_id=decision_id, trigger="margin",
                actions=[r for a in actions for r in action_rows(a)],
                restore_health=[{"fuse": n, "asset": a} for n, a in restores],
            )
            for name, asset in restores:
                await self._restore_health(decision_id, name, asset)
            await self._execute(decision_id, actions, "margin")
            after = await self.view(self.clock.now())
            for done in actions:
                fuse_name = done.source if isinstance(done, Transfer) else str(getattr(done, "fuse", ""))
                margin = after.accounts[fuse_name].margin if fuse_name in after.accounts else None
                if margin is not None:
                    self.reference_equity[fuse_name] = margin.equity
            self.export_view(after)
        return actions

    async def _restore_health(self, decision_id: str, name: str, asset: str) -> None:
        """Let a lending fuse that knows how (Aave) repay its own debt back above the minimum health factor."""
        assert self.journal is not None
        fuse = self.fuses[name]
        try:
            op_id = await fuse.restore_health(self.config.margin.min_health_factor, asset)
        except FuseError as exc:
            self.note(f"repay on {name} failed: {exc!r}")
            return
        if op_id is None:
            return
        after = await fuse.health()
        self.journal.append(
            "lending", self.clock.now(), decision_id=decision_id, fuse=name, asset=asset, operation="repay",
            op_id=str(op_id), reason="restore health factor", health_factor=after.health_factor,
        )
        self.note(f"repaid {asset} debt on {name}: health factor now {after.health_factor:.3f}")

    async def _margin_service(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if self.ready:
                try:
                    await self.margin_check()
                except TransientError as exc:
                    log.warning("margin check skipped: a venue is unavailable", error=repr(exc))
            if await self.clock.sleep_until(self.clock.now() + self.config.margin.check_every, stop):
                return

    def next_scheduled(self, now: datetime) -> tuple[datetime, str]:
        """When the next scheduled rebalance is due, and why (settlement or periodic)."""
        lead = self.config.execution.rebalance_lead
        periodic = self.last_decision_at + self.config.pnl.rebalance_every if self.last_decision_at else now
        if self.retry_at is not None:  # the last attempt was skipped: try again a poll later, never in a loop
            periodic = max(periodic, self.retry_at)
        best: tuple[datetime, str] = (periodic, "schedule")
        for key, settlement in self.marketdata.settlements().items():
            if (key, settlement) in self.done_settlements:
                continue
            when = settlement - lead
            if when < best[0]:
                best = (when, "settlement")
        return best

    async def _scheduler_service(self, stop: asyncio.Event) -> None:
        relay_task = asyncio.create_task(_relay(stop, self.wake))
        try:
            while not stop.is_set():
                now = self.clock.now()
                when, why = self.next_scheduled(now)
                if when > now and not self.triggers:
                    self.wake.clear()
                    # Re-plan at least every poll: refreshed data may announce new settlements.
                    await self.clock.sleep_until(min(when, now + self.wiring.poll_every), self.wake)
                    if stop.is_set():
                        return
                    now = self.clock.now()
                    if self.triggers:
                        why = self.triggers.popleft()
                    elif now < when:
                        continue
                elif self.triggers:
                    why = self.triggers.popleft()
                if why == "config":
                    self.reload_config()
                for key, settlement in self.marketdata.settlements().items():
                    if settlement - self.config.execution.rebalance_lead <= now:
                        self.done_settlements.add((key, settlement))
                record = await self.decide_once(why)
                self.retry_at = now + self.wiring.poll_every if record.skipped else None
                if self.last_decision_at is None:
                    self.last_decision_at = now
        finally:
            relay_task.cancel()

    # -- config ----------------------------------------------------------------------------

    def reload_config(self) -> bool:
        """Reload the strategy file; apply it only if it is valid and keeps the same fuses."""
        if self.config_path is None:
            return False
        try:
            new = load_config(self.config_path)
        except ConfigError as exc:
            self.note(f"config change refused: {exc}")
            return False
        if [f.name for f in new.fuses] != [f.name for f in self.config.fuses] or new.journal != self.config.journal:
            self.note("config change refused: fuses and journal cannot change while running (restart instead)")
            return False
        if new != self.config:
            self.config = new
            if self.executor is not None:
                self.executor.config = new
            self.note("config reloaded")
        return True

    async def _config_service(self, stop: asyncio.Event) -> None:
        assert self.config_path is not None
        with contextlib.suppress(OSError):
            self._config_mtime = self.config_path.stat().st_mtime
        while not stop.is_set():
            if await self.real_clock.sleep_until(self.real_clock.now() + timedelta(seconds=1), stop):
                return
            try:
                mtime = self.config_path.stat().st_mtime
            except OSError:
                continue
            if mtime != self._config_mtime:
                self._config_mtime = mtime
                self.trigger("config")


def _gross(view: PortfolioView, asset: str, cash: tuple[str, ...]) -> Decimal:
    total = ZERO
    for (fuse, market), qty in holdings(view, cash).items():
        if qty > 0 and asset_of(view, fuse, market) == asset:
            total += qty * view.price(asset)
    return total


class StartupError(RuntimeError):
    """The daemon cannot start as asked (reported without a traceback by ``alpha run``)."""


class InjectedCrash(RuntimeError):
    """The crash a test asked for (``crash_service``)."""


def _inject_crash(services: list[tuple[str, ServiceFn]], target: str) -> list[tuple[str, ServiceFn]]:
    names = [n for n, _ in services]
    if target not in names:
        raise StartupError(f"crash_service {target!r} (ALPHA_TEST_CRASH_SERVICE): no such service (services: {', '.join(names)})")
    log.warning("test hook: service will crash at every start", service=target)

    async def crash(stop: asyncio.Event) -> None:
        raise InjectedCrash(f"service {target!r}: crash injected by the test hook")

    return [(n, crash if n == target else fn) for n, fn in services]


def _on_fuse(name: str) -> Callable[[str, str], bool]:
    def select(fuse: str, _market: str) -> bool:
        return fuse == name

    return select


# The risk gate's refusal reasons are sentences with numbers in them; the metric label is one of
# these fixed categories (bounded cardinality, every one exported from start), "other" otherwise.
REFUSAL_LABELS: tuple[tuple[str, str], ...] = (
    ("kill switch", "kill_switch"),
    ("trading paused", "paused"),
    ("stablecoin depeg", "depeg"),
    ("bad market data", "bad_market_data"),
    ("order notional", "order_notional"),
    ("cannot be applied", "cannot_apply"),
    ("gross exposure on venue", "venue_exposure"),
    ("leverage on", "leverage"),
    ("idle ", "idle_buffer"),
    ("the vault holds", "vault_cash"),
    ("fuse ", "unknown_fuse"),
)


def _reason_label(reason: str) -> str:
    """The low-cardinality label of a refusal reason (``REFUSAL_LABELS``)."""
    text = reason.strip().lower()
    for prefix, label in REFUSAL_LABELS:
        if text.startswith(prefix):
            return label
    return "other"


def _describe(action: Action) -> str:
    rows = action_rows(action)
    if isinstance(action, Transfer):
        return f"{action.source} -> {action.destination} {action.amount} {action.asset}"
    return "; ".join(f"{r['fuse']} {r.get('market') or r.get('asset')} {r.get('side')} {r['quantity']}" for r in rows)


async def _relay(stop: asyncio.Event, wake: asyncio.Event) -> None:
    """Set ``wake`` when ``stop`` is set (a service sleeping on ``wake`` then sees the stop)."""
    await stop.wait()
    wake.set()
