"""The daemon: services around the pure core, one decision at a time.

Services (each supervised, see ``alpha.daemon.supervisor``):

* ``marketdata``: polls funding, marks and books (``alpha.daemon.marketdata``).
* ``risk``: after each refresh, builds the portfolio view, exports exposure/NAV metrics,
  pauses on stale data, and triggers a rebalance when net delta drifts past tolerance.
* ``margin``: on ``margin.check_every``, runs the pipeline's margin step (repay lending debt,
  top up margin, deleverage both legs together; ``alpha.core.pipeline.margin_step``).
* ``scheduler``: rebalances ``execution.rebalance_lead`` before each market's funding
  settlement (as the venue reports it), every ``pnl.rebalance_every``, and on triggers
  (drift, signal, config change, operator).
* ``config``: reloads the strategy file on change or SIGHUP; applies it only if valid.
* mode-specific drivers from the wiring (demo: the simulated world's clock).

Every action comes out of a pure step of ``alpha.core.pipeline`` and passes the risk gate;
the services only gather inputs and execute (``alpha.daemon.steps.StepRunner``, which the
backtest replay drives too). The services themselves live in ``alpha.daemon.services``.

Start-up is recovery: fuses start, instruments and market data load, every order the
journal does not know the outcome of is resolved by client id, and only then is the daemon
ready to trade. An order nobody can resolve (its venue is down) blocks only its market, and
is asked about again before every step and on the risk monitor's poll, never only at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from alpha.config import ConfigError, load_config
from alpha.config.schema import StrategyConfig
from alpha.core.schedule import Schedule
from alpha.daemon import services as svc
from alpha.daemon.book import ViewPurpose, gather_view
from alpha.daemon.executor import Executor
from alpha.daemon.export import ViewExporter
from alpha.daemon.http import ControlError, Health, Servers, control_app, default_token_file, metrics_app, resolve_token
from alpha.daemon.instrumented import precreate_series
from alpha.daemon.journal import Journal
from alpha.daemon.lifecycle import (
    EXIT_CRASH,
    EXIT_FATAL,
    StartupError,
    StartupInterrupted,
    StopBudget,
    Watchdog,
    foreign_orders,
    instance_id,
    retry_transient,
)
from alpha.daemon.marketdata import MarketData
from alpha.daemon.notices import Notice, NoticeEvent, Notifier, NotifyError
from alpha.daemon.portfolio import allocation_summary, pnl_summary, snapshot_dict
from alpha.daemon.registry import FuseRegistry
from alpha.daemon.steps import Book, DecisionRecord, StepRunner
from alpha.daemon.supervisor import RestartBudgetExceeded, RestartPolicy, ServiceFn, Supervisor
from alpha.daemon.vault import journal_allocations, nav_mismatch
from alpha.domain.actions import Action, RefusalCode
from alpha.domain.clock import Clock, LiveClock
from alpha.domain.events import AccountEvent, Event, FundingPaid, InterestAccrued, Liquidation
from alpha.domain.money import ZERO
from alpha.domain.portfolio import PortfolioView
from alpha.domain.rates import RateVenue
from alpha.observability.logging import get_logger
from alpha.observability.metrics import Metrics, f
from alpha.risk.gate import RiskState, VaultCap
from alpha.risk.perp_power import perp_power_report
from fuses.base import FuseError

__all__ = ["Daemon", "DecisionRecord", "StartupError", "Wiring"]

log = get_logger("alpha.daemon")



@dataclass
class Wiring:
    """What a mode provides: fuses, where vault cash is read, extra services, and clean-up."""

    mode: str
    fuses: FuseRegistry
    vault_cash: Callable[[], Awaitable[Decimal]]
    services: list[tuple[str, Callable[[Daemon], ServiceFn]]] = field(default_factory=list)
    close: Callable[[], Awaitable[None]] | None = None
    prepare: Callable[[], Awaitable[None]] | None = None  # async set-up before the fuses start (paper)
    attach: Callable[[Daemon], None] | None = None  # called once the journal is open, before anything else (live)
    world: Any = None
    rates: Mapping[str, RateVenue] = field(default_factory=dict)  # rate-swap fuses (Boros), by name
    poll_every: timedelta = timedelta(seconds=10)
    # Real time a skipped decision waits at least before the next try (an accelerated clock: a poll
    # of simulated time can be a few real milliseconds, and stale data must pause, not spin).
    skip_retry_floor: timedelta = timedelta(0)


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
        run_id: str | None = None,
        journal_override: Path | None = None,
    ) -> None:
        self.config = config
        self.journal_override = journal_override  # ``alpha run --journal``: kept when the file is reloaded
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
        self.run_id = run_id or secrets.token_hex(3)
        self.instance = ""  # the journal's instance id, the prefix of our client order ids (set by ``start``)
        self.journal: Journal | None = None
        self.marketdata = MarketData(self.fuses, clock, self.metrics)
        self.marketdata.on_interval_change = self.note
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
        self.schedule = Schedule()
        self.stepping = asyncio.Lock()  # one step (decision, margin check, flatten) executes at a time
        self.steps: StepRunner | None = None
        self.exporter: ViewExporter | None = None
        self.risk_wake = asyncio.Event()  # wakes the risk monitor before its next poll (a position changed)
        self.last_drift_at: datetime | None = None
        self.liquidations = 0
        self.funding: Any = None  # live: the FundingCollector (alpha.daemon.funding) once its service is made
        self.exit_code = 0
        self.watchdog: Watchdog | None = None  # armed by the first stop request (``run(watchdog=True)``)
        self.notices = Notifier(config.notify, self.metrics, [], source=config.vault.name)  # sends nothing until ``start`` reads the URLs
        self._stop_at: float | None = None  # real (monotonic) time of the first stop request

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Recover: open the journal, start fuses, load market data, reconcile; then serve.

        The HTTP ports are bound before the journal is opened (a port in use is a
        ``StartupError`` that leaves the journal untouched). A venue that answers a start-up
        request transiently (429, 5xx, timeout, maintenance) is asked again with backoff until
        it answers or the daemon is stopped (``alpha.daemon.lifecycle.retry_transient``); a
        fatal answer (bad keys, an unknown market) is a ``StartupError``.
        """
        cfg = self.config
        if self.serve_http:
            try:
                self.servers.reserve("metrics", self.metrics_address)
                self.servers.reserve("control", self.control_address, loopback_only=True)
            except ControlError as exc:
                raise StartupError(str(exc)) from exc
        try:
            self.notices = Notifier.from_config(cfg.notify, self.metrics, source=f"{cfg.vault.name} ({self.wiring.mode})")
        except NotifyError as exc:
            raise StartupError(str(exc)) from exc
        self.notices.start()
        self.journal = Journal(cfg.journal.path)
        self.instance = instance_id(r.data for r in self.journal.records("start"))
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
            await self._retry(self.wiring.prepare, "reading market data", "the market data sources")
        for name, fuse in self.fuses.items():
            await self._retry(fuse.start, "starting", name)
            self.started_fuses.append(name)
        await self._retry(self.marketdata.load_instruments, "loading instruments", "the fuses")
        precreate_series(self.metrics, cfg.enabled_fuses, self.marketdata.instruments)
        for code in RefusalCode:
            self.metrics.actions_refused.labels(reason=code.value)
        self.executor = Executor(
            self.fuses, self.journal, self.metrics, self.clock, cfg, run_id=self.run_id, instruments=self.marketdata.instruments,
            order_feeds=self.marketdata.streams, instance=self.instance, rate_venues=self.wiring.rates,
        )
        self.exporter = ViewExporter(cfg, self.metrics, self.journal)
        self.steps = StepRunner(
            cfg,
            book=Book(
                view=self.view, risk_state=self.risk_state, blocked=self.trading_blocked,
                stopping=self.supervisor.stop.is_set, note=self.note, on_view=self.export_view, notice=self.notices.notify,
            ),
            executor=self.executor, journal=self.journal, metrics=self.metrics, clock=self.clock,
            instruments=self.marketdata.instruments, run_id=self.run_id,
        )
        self.steps.reference_equity = self.reference_equity
        self.steps.decisions = self.decisions
        await self.marketdata.refresh()
        resolved = await self.executor.reconcile()
        resolved += await self.executor.reconcile_lending()
        now = self.clock.now()
        self.journal.append("start", now, run_id=self.run_id, mode=self.wiring.mode, reconciled=resolved, instance=self.instance)
        if resolved:
            self.note(f"reconciled {len(resolved)} order(s) or lending step(s) left unfinished: {resolved}")
        view = await self._retry(lambda: self.view(now), "reading the accounts", "the fuses")
        await self._flag_foreign_orders(view)
        self.start_nav = self.exporter.start_nav = self._start_nav(view)
        mismatch = nav_mismatch(cfg.vault.nav, view.nav, cfg.vault.base_asset)
        if mismatch is not None:
            log.warning("configured NAV and the venues' equity disagree", configured=str(cfg.vault.nav), venues=str(view.nav))
            self.note(mismatch)
        self.export_view(view)
        self.steps.reset_references(view)
        # Reconciled: what the venues could not answer for stays unresolved, blocking only its
        # market (the gate's ``unresolved_order``) while the step runner and the risk monitor ask again.
        self.ready = True
        self.metrics.ready.set(1)
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

    async def _retry(self, step: Callable[[], Awaitable[Any]], what: str, venue: str) -> Any:
        return await retry_transient(step, what=what, venue=venue, clock=self.real_clock, stop=self.supervisor.stop)

    async def _flag_foreign_orders(self, view: PortfolioView) -> None:
        """Warn about open orders on our accounts that this journal's instance did not send (a second daemon?).

        A fuse that can list every open order (``OpenOrders``) is asked; otherwise the open
        orders its account snapshot carries are checked.
        """
        assert self.journal is not None
        known = set(self.journal.client_ids())
        listing = {name: lister for name in self.fuses if (lister := self.fuses.open_orders(name)) is not None}
        found = foreign_orders({n: a for n, a in view.accounts.items() if n not in listing}, self.instance, known)
        for name, lister in listing.items():
            try:
                orders = await lister.open_orders()
            except FuseError as exc:
                log.warning("cannot list open orders to check for another instance", fuse=name, error=repr(exc))
                continue
            found += [(name, o) for o in orders if not lister.is_ours(o.client_id, self.instance, known)]
        for fuse, order in found:
            log.warning(
                "open order on our account not sent by this instance (another daemon on the same account?)",
                fuse=fuse, market=order.market, client_id=order.client_id, instance=self.instance,
            )
        if found:
            self.note(f"{len(found)} open order(s) on our accounts were not sent by instance {self.instance}")

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
            ("risk", lambda stop: svc.risk_service(self, stop)),
            ("margin", lambda stop: svc.margin_service(self, stop)),
            ("scheduler", lambda stop: svc.scheduler_service(self, stop)),
        ]
        if self.config_path is not None:
            services.append(("config", lambda stop: svc.config_service(self, stop)))
        return services

    def request_stop(self) -> None:
        """Stop taking decisions; in-flight legs finish or unwind; services end."""
        if not self.supervisor.stop.is_set():
            log.info("stopping: no new decisions; finishing in-flight legs")
        if self._stop_at is None:
            self._stop_at = time.monotonic()
        if self.watchdog is not None:
            self.watchdog.arm()
        self.supervisor.stop.set()
        if self.executor is not None:
            self.executor.stop.set()
        self.wake.set()

    def stop_time_left(self) -> float:
        """Real seconds left of ``execution.shutdown_bound`` since the first stop request (all of it before)."""
        bound = self.config.execution.shutdown_bound.total_seconds()
        if self._stop_at is None:
            return bound
        return bound - (time.monotonic() - self._stop_at)

    async def run(self, *, install_signals: bool = True, watchdog: bool = False) -> int:
        """Start, run every service until stopped, shut down; return the process exit code.

        SIGTERM and SIGINT are plain signal handlers: they request the stop through the loop
        and arm the watchdog (``watchdog=True``, for a process of its own), which ends the
        process if the stop overruns ``execution.shutdown_bound`` even when the loop is too
        busy to run the stop at all. A stop requested while start-up waits on a venue is a
        clean stop.
        """
        loop = asyncio.get_running_loop()
        bound = self.config.execution.shutdown_bound.total_seconds()
        if watchdog:
            self.watchdog = Watchdog(bound, lambda: self.exit_code)
            self.watchdog.start()
        previous: dict[signal.Signals, Any] = {}
        if install_signals:

            def on_signal(signum: int, frame: object) -> None:
                if self.watchdog is not None:
                    self.watchdog.arm()
                loop.call_soon_threadsafe(self.request_stop)

            for sig in (signal.SIGTERM, signal.SIGINT):
                previous[sig] = signal.signal(sig, on_signal)
            loop.add_signal_handler(signal.SIGHUP, lambda: self.trigger("config"))
        try:
            try:
                await self.start()
            except StartupInterrupted as exc:
                log.info("stopped during start-up", reason=str(exc))
                return self.exit_code
            except (StartupError, FuseError) as exc:
                self.exit_code = EXIT_FATAL
                if isinstance(exc, StartupError):
                    raise
                raise StartupError(str(exc)) from exc
            except BaseException:
                self.exit_code = EXIT_CRASH
                raise
            main = asyncio.create_task(self.supervisor.run(), name="supervisor")
            stopped = asyncio.create_task(self.supervisor.stop.wait())
            await asyncio.wait({main, stopped}, return_when=asyncio.FIRST_COMPLETED)
            budget = StopBudget(bound)
            wait = max(self.stop_time_left() - budget.reserve, 0.0)
            try:
                await asyncio.wait_for(asyncio.shield(main), timeout=wait)
            except TimeoutError:
                log.error("services did not stop within the shutdown bound; cancelling", bound_seconds=bound)
                main.cancel()
                with contextlib.suppress(asyncio.CancelledError, RestartBudgetExceeded):
                    await main
            except RestartBudgetExceeded as exc:
                log.error("giving up: restart budget exceeded", service=exc.service, error=str(exc))
                self.exit_code = EXIT_CRASH
            except Exception as exc:  # the supervisor itself failed (not a service): never silent, never exit 0
                log.exception("supervisor failed", error=repr(exc))
                self.exit_code = EXIT_CRASH
            stopped.cancel()
        finally:
            await self.shutdown()
            if install_signals:
                for signum, handler in previous.items():
                    signal.signal(signum, handler)
                loop.remove_signal_handler(signal.SIGHUP)
            if self.watchdog is not None:
                self.watchdog.done()
        return self.exit_code

    async def shutdown(self) -> None:
        """Close fuses (reverse order), stop servers, flush and close the journal, within what is left of the bound."""

        if self._stop_at is None:  # a failed start-up: the clean-up is bounded all the same
            self._stop_at = time.monotonic()

        def left() -> float:
            return max(self.stop_time_left() - 0.5, 0.1)  # keep half a second for the journal and the exit

        for name in reversed(self.started_fuses):
            try:
                await asyncio.wait_for(self.fuses[name].close(), left())
            except Exception as exc:
                log.error("fuse failed to close", fuse=name, error=repr(exc))
        self.started_fuses.clear()
        # Whatever fails here, the journal below is still flushed and closed.
        for what, close in (("wiring", self.wiring.close), ("servers", self.servers.stop)):
            if close is None:
                continue
            try:
                await asyncio.wait_for(close(), left())
            except Exception as exc:
                log.error("clean-up step failed", step=what, error=repr(exc))
        await self.notices.close(left())  # what is queued is sent within the bound, the rest counted as dropped
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

    async def view(self, now: datetime, purpose: ViewPurpose = ViewPurpose.AFTER) -> PortfolioView:
        """Build the portfolio view from every fuse's account and the latest market data.

        A decision's view (``DECIDE``) is built on market data refreshed at its own instant, a
        margin check's (``MARGIN``) on marks and funding at most a poll old (the backtest replay
        does the same); the view's time is the clock's after the refresh, so no snapshot is
        newer than the view.
        """
        if purpose is not ViewPurpose.AFTER:
            await self.marketdata.ensure_fresh(now, books=purpose is ViewPurpose.DECIDE, max_age=self.wiring.poll_every)
            now = max(now, self.clock.now())  # a live clock moved while the venues answered: the view is as of now
        return await gather_view(
            now, fuses=self.fuses, marketdata=self.marketdata, config=self.config, vault_cash=self.wiring.vault_cash, rates=self.wiring.rates
        )

    def export_view(self, view: PortfolioView) -> None:
        """Export NAV, idle, capital, exposure, delta, margin and PnL metrics from ``view``."""
        self.last_view = view
        if self.exporter is not None:
            self.exporter.config = self.config
            self.exporter.export(view)

    def note(self, text: str) -> None:
        """Remember an event for the status table (and log it)."""
        stamp = self.clock.now().strftime("%m-%d %H:%M")
        self.events.append(f"{stamp} {text}")
        log.info(text)

    # -- simulated-world events (demo, paper, backtest) -------------------------------------

    def record_events(self, events: Iterable[Event], ours: set[str]) -> None:
        """Journal funding, interest and liquidations of our accounts from the simulated world."""
        if self.journal is None or self.journal.closed:
            return  # a world kept across daemons still calls the one that has stopped
        for ev in events:
            if not isinstance(ev, AccountEvent) or ev.account not in ours:
                continue
            if isinstance(ev, FundingPaid):
                self.journal.funding(ev.ts, ev.venue, ev.market, ev.asset, ev.amount, size=ev.size, mark=ev.mark, rate=ev.rate)
                metric = self.metrics.funding_received if ev.amount >= 0 else self.metrics.funding_paid
                metric.labels(fuse=ev.venue, market=ev.market).inc(f(abs(ev.amount)))
            elif isinstance(ev, InterestAccrued):
                # PnL is in the base asset: interest on a borrowed coin (e.g. ETH) is journalled at its value.
                amount = ev.value if ev.value is not None else ev.amount
                self.journal.append("interest", ev.ts, fuse=ev.venue, asset=ev.asset, amount=amount, side=ev.side, units=ev.amount)
            elif isinstance(ev, Liquidation):
                self.liquidations += 1
                self.metrics.liquidations.labels(fuse=ev.venue).inc()
                self.journal.append("liquidation", ev.ts, fuse=ev.venue, event=type(ev).__name__)
                self.engage_kill_switch(f"liquidation on {ev.venue}")

    # -- control ---------------------------------------------------------------------------

    def engage_kill_switch(self, reason: str) -> None:
        """Stop all trading until an operator resumes."""
        if not self.kill_switch:
            self.kill_switch = True
            self.metrics.kill_switch.set(1)
            self.note(f"KILL SWITCH engaged: {reason}")
            self.notices.notify(Notice(NoticeEvent.KILL_SWITCH, self.clock.now(), f"kill switch engaged: {reason}", {"reason": reason}))

    def set_paused(self, reason: str, on: bool) -> None:
        """Pause or unpause trading for one reason (operator, stale_data, unresolved, flattened)."""
        if on and reason not in self.paused:
            self.paused[reason] = self.clock.now().isoformat()
            self.note(f"paused ({reason})")
            self.notices.notify(Notice(NoticeEvent.PAUSED, self.clock.now(), f"trading paused ({reason})", {"reason": reason}))
        elif not on and reason in self.paused:
            del self.paused[reason]
            self.note(f"unpaused ({reason})")
            self.notices.notify(Notice(NoticeEvent.RESUMED, self.clock.now(), f"trading resumed ({reason} lifted)", {"reason": reason}))
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
        onchain: dict[str, Any] = {}
        for name, cap in self.vault_caps().items():  # an on-chain vault's part of NAV, exact: its market and its idle
            idle = getattr(self.fuses[name], "vault_idle", lambda: None)()
            if view is not None and name in view.accounts and idle is not None:
                supplied = view.fuse_equity(name)
                onchain[name] = {"vault": cap.vault, "supplied": str(supplied), "idle": str(idle), "total": str(supplied + idle)}
        allocated = journal_allocations(self.journal) if self.journal is not None and not self.journal.closed else {}
        for name, amount in allocated.items():
            if name in fuses and amount != 0:
                fuses[name]["allocated"] = str(amount.quantize(Decimal("0.01")))  # on the venue, counted in idle
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
            "vaults": onchain,
            "positions": positions,
            "funding_earned": str(totals.get("funding", ZERO).quantize(Decimal("0.01"))),
            "top_ups": str(totals.get("top_ups", ZERO).quantize(Decimal("0.01"))),
            "decisions": len(self.decisions),
            "liquidations": self.liquidations,
            "services": {k: v for k, v in self.supervisor.running.items()},
            "events": list(self.events),
            "base_asset": self.config.vault.base_asset,
            "pnl": pnl_summary(totals, None if view is None else view.nav, self.start_nav),
            "allocations": allocation_summary(allocated, self.config.vault.base_asset) if any(allocated.values()) else None,
            "perp_power": [] if view is None else perp_power_report(view),
        }

    def portfolio(self) -> dict[str, Any]:
        """The accounts of the last view (as the daemon sees them), with PnL and journal-only allocations, for ``alpha inspect``."""
        status = self.status()
        view = self.last_view
        return {
            "mode": status["mode"], "run_id": self.run_id, "now": status["now"], "as_of": None if view is None else view.ts.isoformat(),
            "base_asset": status["base_asset"], "nav": status["nav"], "idle": status["idle"],
            "accounts": [] if view is None else [snapshot_dict(a) for a in view.accounts.values()],
            "fuses": status["fuses"], "pnl": status["pnl"], "allocations": status["allocations"],
        }

    async def pause(self, reason: str = "operator") -> dict[str, Any]:
        self.set_paused("operator", True)
        if reason != "operator":
            self.note(f"paused by operator: {reason}")
        return {"paused": dict(self.paused), "reason": reason}

    async def resume(self) -> dict[str, Any]:
        for reason in ("operator", "flattened"):
            self.set_paused(reason, False)
        if self.kill_switch:
            self.kill_switch = False
            self.metrics.kill_switch.set(0)
            self.note("kill switch released by operator")
            self.notices.notify(Notice(NoticeEvent.RESUMED, self.clock.now(), "kill switch released by operator", {"reason": "kill_switch"}))
        return {"paused": dict(self.paused), "kill_switch": self.kill_switch}

    async def flatten(self) -> dict[str, Any]:
        """Pause and close every hedge (both legs together) through the pipeline's flatten step."""
        self.set_paused("flattened", True)
        async with self.stepping:
            step, done = await self.runner().flatten()
        return {
            "flatten_actions": len(step.approved), "completed": done, "paused": dict(self.paused),
            "refused": [r.reason for r in step.refused],
        }

    def trigger(self, reason: str) -> None:
        """Ask the scheduler for a rebalance now (drift, signal, config, operator)."""
        self.triggers.append(reason)
        self.wake.set()

    # -- decisions -------------------------------------------------------------------------

    def trading_blocked(self) -> str | None:
        """Why trading is blocked right now, or None."""
        if self.kill_switch:
            return "kill switch engaged"
        if self.paused:
            return "paused: " + ", ".join(sorted(self.paused))
        if not self.ready:
            return "not reconciled"
        return None

    async def decide_once(self, trigger: str) -> DecisionRecord:
        """Take one decision through the pipeline's decision step; journal and execute it."""
        return await self.runner().decide(trigger)

    async def margin_check(self) -> list[Action]:
        """Run the pipeline's margin step once (repay, top up, withdraw, move, deleverage); return what was approved."""
        async with self.stepping:
            step = await self.runner().margin()
        return list(step.approved)

    def risk_state(self) -> RiskState:
        """The switches the risk gate reads now."""
        caps = self.vault_caps()
        closed = sorted(f"vault {c.vault} closed by its guardian" for c in caps.values() if c.closed)
        return RiskState(
            kill_switch=self.kill_switch,
            paused=bool(self.paused) or bool(closed),
            pause_reason=", ".join([*sorted(self.paused), *closed]),
            executor_slices=True,
            now=self.clock.now(),
            vault_caps=caps,
        )

    def vault_caps(self) -> dict[str, VaultCap]:
        """The caps of every fuse that is an on-chain vault's market, as its last account read saw them."""
        caps = {}
        for name, fuse in self.fuses.items():
            read = getattr(fuse, "vault_cap", None)
            cap = read() if callable(read) else None
            if isinstance(cap, VaultCap):
                caps[name] = cap
        return caps

    def runner(self) -> StepRunner:
        """The step runner (after ``start``), with the current config."""
        if self.steps is None:
            raise RuntimeError("the daemon has not started")
        self.steps.config = self.config
        return self.steps

    def on_account_update(self, fuse: str) -> Callable[[Any], None]:
        """Return the ``on_account`` callback of fuse ``fuse``'s user stream.

        A position that changes while no decision of ours is executing was changed by someone
        else (a hand trade on the same account, a venue's liquidation or auto-deleverage): the
        risk monitor is woken at once to read the accounts and check the hedge, instead of at
        its next poll. Order updates are the executor's (it reads them from the feed).
        """

        from fuses.ccxt.streams import PositionUpdate  # only ccxt fuses have user streams

        def changed(update: Any) -> None:
            if not isinstance(update, PositionUpdate) or self.executing:  # a position, not changed by us
                return
            log.info("position changed at the venue; checking the hedge", fuse=fuse, market=update.market, size=str(update.size))
            self.risk_wake.set()

        return changed

    @property
    def executing(self) -> int:
        """How many steps are executing now (their own fills move positions)."""
        return self.steps.executing if self.steps is not None else 0

    def next_scheduled(self, now: datetime) -> tuple[datetime, str]:
        """When the next scheduled rebalance is due, and why (settlement or periodic)."""
        return self.schedule.next_decision(now, self.marketdata.settlements(), self.config)

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
        if self.journal_override is not None:
            new = new.model_copy(update={"journal": new.journal.model_copy(update={"path": self.journal_override})})
        if [f.name for f in new.fuses] != [f.name for f in self.config.fuses] or new.journal != self.config.journal:
            self.note("config change refused: fuses and journal cannot change while running (restart instead)")
            return False
        if new != self.config:
            self.config = new
            if self.executor is not None:
                self.executor.config = new
            self.note("config reloaded")
        return True


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
