"""The one place that wires the daemon for a mode.

* ``demo``: the simulated world (``fuses.sim.world.SimWorld``) driven by the synthetic market,
  simulated fuses (``fuses.sim.build``), an accelerated clock (``config.clock``; ``--speed``
  overrides). A ``world`` service steps the world on ``config.market.step`` and journals
  funding, interest and liquidations of our accounts.
* ``live``: real venues through ``fuses.ccxt.build`` and ``fuses.aave.build`` (imported only
  here, lazily: a missing connector is a clear error), the wall clock. Every ccxt fuse whose
  venue has streams gets a supervised ``streams-<fuse>`` service (``fuses.ccxt.streams``) that
  feeds the daemon's market data instead of polling.
* ``paper``: real market data from the venues' public endpoints (``fuses.ccxt.paper``, no
  keys), execution on the simulated engine (``paper_wiring``; ``paper_config`` turns each CEX /
  perp-DEX fuse into a simulated venue of the same name), the wall clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from alpha.config.schema import ForeignPositions, FuseKind, SimVenue, StrategyConfig
from alpha.config.startup import startup_problems
from alpha.daemon.daemon import Daemon, Wiring
from alpha.daemon.instrumented import TimedFuse
from alpha.daemon.registry import FuseRegistry
from alpha.daemon.supervisor import RestartPolicy, ServiceFn
from alpha.domain.clock import AcceleratedClock, Clock, LiveClock
from alpha.observability.logging import get_logger
from alpha.observability.metrics import Metrics

log = get_logger("alpha.app")

FUNDING_POLL = timedelta(minutes=5)  # live: how often the venues are asked for new funding payments
WORLD_CATCH_UP = timedelta(days=1)  # demo and paper: the most simulated time the world steps in one go
DEMO_SKIP_RETRY_FLOOR = timedelta(seconds=0.25)  # demo: real time between tries of a skipped decision


class WiringError(RuntimeError):
    """A mode cannot be wired (a connector is missing or the config does not fit the mode)."""


def make_clock(config: StrategyConfig, mode: str, speed: float | None = None, start: datetime | None = None) -> Clock:
    """Demo: an accelerated clock from ``config.clock`` (``speed`` overrides); otherwise the wall clock."""
    if mode != "demo":
        return LiveClock()
    begin = start or config.clock.start or LiveClock().now().replace(microsecond=0)
    return AcceleratedClock(begin, speed if speed is not None else float(config.clock.speed))


def _import(module: str, what: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise WiringError(f"{what} needs the {module} connector, which is not installed or failed to import: {exc}") from exc


def demo_wiring(config: StrategyConfig, clock: Clock, metrics: Metrics, *, world: Any = None) -> Wiring:
    """Build the simulated world and its fuses (``world`` may be given to keep it across daemons)."""
    world_mod = _import("fuses.sim.world", "demo mode")
    if world is None:
        world = world_mod.SimWorld.from_config(config, start=clock.now())
    for fc in config.enabled_fuses:
        if fc.kind not in (FuseKind.SIM, FuseKind.LENDING) or (fc.kind is FuseKind.LENDING and fc.venue != "sim"):
            raise WiringError(f"demo mode simulates every fuse; fuse {fc.name!r} is kind {fc.kind.value} on {fc.venue}")
    fuses = _sim_fuses(config, world, clock, metrics)
    step = config.market.step if config.market is not None else timedelta(minutes=5)
    box = {"world": world}
    return Wiring(
        mode="demo",
        fuses=fuses,
        vault_cash=_vault_cash(box, config.vault.base_asset),
        services=[("world", _world_service(box, fuses, clock, step))],
        world=world,
        rates=sim_rate_fuses(config, world, clock),
        poll_every=step,
    )


def sim_rate_fuses(config: StrategyConfig, world: Any, clock: Clock) -> dict[str, Any]:
    """The simulated rate fuses (Boros) of ``world``, one per enabled ``rates`` entry on venue sim."""
    if not config.enabled_rates:
        return {}
    ratefuse = _import("fuses.sim.ratefuse", "a simulated rate fuse")
    return {r.name: ratefuse.SimRateFuse(r, world, clock) for r in config.enabled_rates if r.venue == "sim"}


def _sim_fuses(config: StrategyConfig, world: Any, clock: Clock, metrics: Metrics) -> FuseRegistry:
    sim = _import("fuses.sim", "simulated execution")
    return FuseRegistry(
        {
            fc.name: TimedFuse(sim.build(fc, world=world, clock=clock, metrics=metrics), metrics, fc.name)
            for fc in config.enabled_fuses
        }
    )


def _vault_cash(box: dict[str, Any], base_asset: str) -> Callable[[], Awaitable[Decimal]]:
    async def vault_cash() -> Decimal:
        return Decimal(box["world"].vault.get(base_asset, Decimal(0)))

    return vault_cash


def _world_service(
    box: dict[str, Any], fuses: FuseRegistry, clock: Clock, step: timedelta | None
) -> Callable[[Daemon], ServiceFn]:
    """Step the simulated world on ``step`` (None: the wiring's poll) and journal our accounts' events."""

    def make(daemon: Daemon) -> ServiceFn:
        world = box["world"]
        every = step or daemon.wiring.poll_every
        ours = set(fuses)  # our account on each simulated venue is named after its fuse
        # Subscribe rather than read step_to's result: fuses may step the world too.
        world.subscribe(lambda event: daemon.record_events([event], ours))

        async def run(stop: asyncio.Event) -> None:
            while not stop.is_set():
                target = max(clock.now(), world.now)
                # Catch up at most a day of simulated time per step, yielding between: a world far
                # behind a fast clock must not hold the event loop (and the stop) for the whole gap.
                while True:
                    world.step_to(min(target, world.now + WORLD_CATCH_UP))
                    if world.now >= target:
                        break
                    await asyncio.sleep(0)
                    if stop.is_set():
                        return
                if await clock.sleep_until(clock.now() + every, stop):
                    return

        return run

    return make


def live_wiring(config: StrategyConfig, clock: Clock, metrics: Metrics) -> Wiring:
    """Build real connectors: ccxt for CEX and perp DEX fuses, Aave for lending fuses, Boros for rate fuses.

    * The vault is a ``LiveVault``: idle capital stays in each venue's free balance and is
      allocated to the vault in the journal; a transfer between the vault and a fuse with no
      on-venue path is such an allocation (see ``alpha.daemon.vault`` and the operations guide).
    * Funding income is read back from the venues (``Fuse.funding_payments``) by a ``funding``
      service every ``FUNDING_POLL`` and journalled once per venue payment id
      (``alpha.daemon.funding``); no simulated world reports it here.
    * Venue timeouts are real time, never the strategy clock: ccxt's request timeout, the
      executor's ``execution.order_timeout`` (``asyncio.wait_for``), back-offs and the rate
      limiter's waits all bound a real network counterpart and its per-minute budget. A
      strategy clock that jumps (an accelerated or test clock) must therefore only be moved
      while no service is awaiting a venue; the live tests advance it only once every service
      sleeps on it (``tests/live``).
    """
    from alpha.daemon.funding import FundingCollector
    from alpha.daemon.rates_live import live_rate_fuses
    from alpha.daemon.vault import LiveVault

    builders: dict[FuseKind, Callable[..., Any]] = {}
    raw: dict[str, Any] = {}
    for fc in config.enabled_fuses:
        if fc.kind not in builders:
            module = {FuseKind.CEX: "fuses.ccxt", FuseKind.PERP_DEX: "fuses.ccxt", FuseKind.LENDING: "fuses.aave"}.get(fc.kind)
            if module is None:
                raise WiringError(f"live mode cannot run fuse {fc.name!r} of kind {fc.kind.value}")
            builders[fc.kind] = _import(module, f"fuse {fc.name!r}").build
        # a ccxt fuse refuses venue answers stamped older than the strategy's risk.max_data_age
        # and, with risk.foreign_positions: halt, an account holding positions in markets it does not trade
        extra: dict[str, Any] = (
            {"max_data_age": config.risk.max_data_age, "halt_on_foreign": config.risk.foreign_positions is ForeignPositions.HALT}
            if fc.kind in (FuseKind.CEX, FuseKind.PERP_DEX)
            else {}
        )
        raw[fc.name] = builders[fc.kind](fc, clock=clock, metrics=metrics, **extra)
    vault = LiveVault(config.vault.base_asset, tuple(config.stablecoins), clock)
    fuses = vault.wrap(raw)

    def attach(daemon: Daemon) -> None:
        assert daemon.journal is not None
        vault.attach(daemon.journal)

    def funding_service(daemon: Daemon) -> ServiceFn:
        assert daemon.journal is not None
        collector = FundingCollector(daemon.fuses, daemon.journal, daemon.metrics, clock, settlements=daemon.marketdata.settlements)
        daemon.funding = collector

        async def run(stop: asyncio.Event) -> None:
            await collector.run(stop, FUNDING_POLL)

        return run

    services: list[tuple[str, Callable[[Daemon], ServiceFn]]] = [("funding", funding_service)]
    for name in fuses.streaming():  # the feed reads the ccxt fuse itself, not its vault view
        services.append((f"streams-{name}", _streams_service(name, raw[name], config, clock, metrics)))
    rates = live_rate_fuses(config.enabled_rates, clock) if config.enabled_rates else {}

    async def close_rates() -> None:
        for venue in rates.values():
            await venue.close()

    return Wiring(
        mode="live", fuses=fuses, vault_cash=vault.cash, services=services, attach=attach,
        poll_every=timedelta(seconds=10), rates=rates, close=close_rates if rates else None,
    )


def _streams_service(
    name: str, fuse: Any, config: StrategyConfig, clock: Clock, metrics: Metrics
) -> Callable[[Daemon], ServiceFn]:
    """Feed the daemon's market data from the ccxt fuse's streams (``fuses.ccxt.streams.MarketStreams``).

    The feed is a supervised service: a crash is logged, counted and restarted, and while it is
    down the market data service polls the fuse itself. Its staleness bound is the strategy's
    ``risk.max_data_age`` (at most the feed's default) and its REST cadence the daemon's poll.
    """
    streams_mod = _import("fuses.ccxt.streams", f"the streams of fuse {name!r}")

    def make(daemon: Daemon) -> ServiceFn:
        defaults = streams_mod.StreamSettings()
        settings = streams_mod.StreamSettings(
            stale_after=min(defaults.stale_after, config.risk.max_data_age),
            poll_every=daemon.wiring.poll_every,
        )
        feed = streams_mod.MarketStreams(
            fuse, clock=clock, settings=settings, metrics=metrics, on_update=daemon.marketdata.on_stream_update(name),
            on_account=daemon.on_account_update(name),
        )
        daemon.marketdata.attach_streams(name, feed)
        return feed.run  # type: ignore[no-any-return]

    return make


def paper_config(config: StrategyConfig) -> StrategyConfig:
    """The config paper mode simulates: every CEX / perp-DEX fuse becomes a simulated venue of the same name.

    Name, markets, caps and leverage are kept; credentials are dropped (paper mode never signs).
    Fees and book depth are the simulated defaults unless the fuse has a ``sim`` section.
    """
    fuses = []
    for fc in config.fuses:
        if fc.enabled and fc.kind in (FuseKind.CEX, FuseKind.PERP_DEX):
            fc = fc.model_copy(update={"kind": FuseKind.SIM, "credentials": None, "sim": fc.sim or SimVenue()})
        elif fc.enabled and not (fc.kind is FuseKind.SIM or (fc.kind is FuseKind.LENDING and fc.venue == "sim")):
            raise WiringError(f"paper mode cannot simulate fuse {fc.name!r} ({fc.kind.value} on {fc.venue}); use venue: sim")
        fuses.append(fc)
    return config.model_copy(update={"fuses": tuple(fuses)})


def paper_wiring(config: StrategyConfig, clock: Clock, metrics: Metrics) -> Wiring:
    """Real market data (public ccxt endpoints, no keys) with execution on the simulated engine.

    At start-up ``fuses.ccxt.paper.CcxtMarketSource`` loads every CEX / perp-DEX fuse's markets
    and takes a first reading; the simulated world is built over it (``paper_config``), and a
    ``paper-source`` service feeds it (ccxt.pro streams where the venue has them, REST every
    ``poll_every`` otherwise) while the ``world`` service steps the world on the wall clock.
    Orders only ever reach the simulated engine. Each simulated fuse is a
    ``fuses.ccxt.paper.PaperFuse``: while its venue's data is older than the strategy's
    ``risk.max_data_age`` (at most the feeds' default), its market reads and orders fail
    transiently, so the market data ages and the risk monitor pauses on ``stale_data``.
    """
    sim_config = paper_config(config)
    if not any(fc.kind in (FuseKind.CEX, FuseKind.PERP_DEX) for fc in config.enabled_fuses):
        raise WiringError("paper mode needs at least one cex or perp_dex fuse to read market data from")
    paper = _import("fuses.ccxt.paper", "paper mode")
    world_mod = _import("fuses.sim.world", "paper mode")
    fuses = FuseRegistry()  # filled by prepare: the daemon holds this registry from the start
    box: dict[str, Any] = {}

    async def prepare() -> None:
        stale_after = min(paper.STALE_AFTER, config.risk.max_data_age)
        source = paper.CcxtMarketSource.from_configs(config.enabled_fuses, clock=clock, metrics=metrics, stale_after=stale_after)
        box["source"] = source
        await source.start()
        box["world"] = world = world_mod.SimWorld.from_config(sim_config, source=source, start=clock.now())
        wiring.world = world
        for name, fuse in _sim_fuses(sim_config, world, clock, metrics).items():
            fuses.add(name, paper.PaperFuse(fuse, source, name, metrics) if name in source.fuses else fuse)

    async def close() -> None:
        source = box.pop("source", None)
        if source is not None:
            await source.close()

    def source_service(daemon: Daemon) -> ServiceFn:
        async def run(stop: asyncio.Event) -> None:
            await box["source"].run(stop, wiring.poll_every)

        return run

    wiring = Wiring(
        mode="paper",
        fuses=fuses,
        vault_cash=_vault_cash(box, config.vault.base_asset),
        services=[("paper-source", source_service), ("world", _world_service(box, fuses, clock, None))],
        close=close,
        prepare=prepare,
        poll_every=timedelta(seconds=10),
    )
    return wiring


WIRINGS: dict[str, Callable[[StrategyConfig, Clock, Metrics], Wiring]] = {
    "demo": demo_wiring,
    "live": live_wiring,
    "paper": paper_wiring,
}


def build_daemon(
    config: StrategyConfig,
    *,
    mode: str | None = None,
    speed: float | None = None,
    config_path: Path | None = None,
    metrics_address: str | None = None,
    control_address: str | None = None,
    run_for: timedelta | None = None,
    restart_policy: RestartPolicy | None = None,
    clock: Clock | None = None,
    world: Any = None,
    serve_http: bool = True,
    extra_services: list[tuple[str, Callable[[Daemon], ServiceFn]]] | None = None,
    poll_every: timedelta | None = None,
    crash_service: str | None = None,
    run_id: str | None = None,
    journal_override: Path | None = None,
) -> Daemon:
    """Wire a daemon for ``mode`` (default: the config's); ``poll_every`` overrides the mode's data cadence.

    ``crash_service`` names a service that raises at every start (a test hook: ``alpha run`` sets
    it only from the ``ALPHA_TEST_CRASH_SERVICE`` environment variable). ``journal_override``
    (``alpha run --journal``, already in ``config``) is kept when the strategy file is reloaded.
    """
    mode = mode or config.mode
    if mode not in WIRINGS:
        raise WiringError(f"mode {mode!r} cannot run as a daemon (choose demo, paper or live)")
    found = startup_problems(config, mode, control_address=control_address, metrics_address=metrics_address)
    if found:  # what ``alpha check`` refuses (``alpha.config.startup``): one check for both
        raise WiringError("; ".join(f"{'.'.join(map(str, p.path))}: {p.message}" for p in found))
    metrics = Metrics()
    clock_given = clock is not None
    clock = clock or make_clock(config, mode, speed)
    if mode == "demo" and world is not None:
        wiring = demo_wiring(config, clock, metrics, world=world)
    elif mode == "demo":
        _set_aside_journal(config.journal.path)
        wiring = demo_wiring(config, clock, metrics)
    else:
        wiring = WIRINGS[mode](config, clock, metrics)
    if poll_every is not None:
        wiring.poll_every = poll_every
    if mode == "demo" and not clock_given:  # the accelerated clock: a poll can be a few real milliseconds
        wiring.skip_retry_floor = DEMO_SKIP_RETRY_FLOOR
    if run_for is not None:
        wiring.services.append(("deadline", _deadline(clock, run_for)))
    wiring.services.extend(extra_services or [])
    return Daemon(
        config,
        clock,
        wiring,
        metrics=metrics,
        config_path=config_path,
        restart_policy=restart_policy,
        serve_http=serve_http,
        metrics_address=metrics_address,
        control_address=control_address,
        crash_service=crash_service,
        run_id=run_id,
        journal_override=journal_override,
    )


def _set_aside_journal(path: Path) -> None:
    """A fresh demo world cannot be reconciled with an old journal: keep the old one aside."""
    if not path.exists():
        return
    n = 1
    while path.with_name(f"{path.name}.{n}").exists():
        n += 1
    for suffix in ("", "-wal", "-shm"):
        old = path.with_name(path.name + suffix)
        if old.exists():
            old.rename(path.with_name(f"{path.name}.{n}{suffix}"))


def _deadline(clock: Clock, duration: timedelta) -> Callable[[Daemon], ServiceFn]:
    def make(daemon: Daemon) -> ServiceFn:
        end = clock.now() + duration

        async def run(stop: asyncio.Event) -> None:
            if not await clock.sleep_until(end, stop):
                daemon.note(f"ran for {duration}; stopping")
                daemon.request_stop()
            await stop.wait()

        return run

    return make


async def run_daemon(
    daemon: Daemon, *, on_tick: Callable[[Daemon], Awaitable[None]] | None = None, watchdog: bool = False
) -> int:
    """Run ``daemon`` to completion with signal handling; ``on_tick`` runs every real second.

    ``watchdog``: the process is the daemon's own (``alpha run``): a stop that overruns the
    shutdown bound ends it (``alpha.daemon.lifecycle.Watchdog``).
    """
    ticker: asyncio.Task[None] | None = None
    if on_tick is not None:

        async def tick() -> None:
            while True:
                await asyncio.sleep(1.0)
                try:
                    await on_tick(daemon)
                except Exception as exc:  # the status table must not die silently, nor take the daemon down
                    log.error("status display failed", error=repr(exc))

        ticker = asyncio.create_task(tick(), name="status-table")
    try:
        return await daemon.run(watchdog=watchdog)
    finally:
        if ticker is not None:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
