"""The one place that wires the daemon for a mode.

* ``demo``: the simulated world (``fuses.sim.world.SimWorld``) driven by the synthetic market,
  simulated fuses (``fuses.sim.build``), an accelerated clock (``config.clock``; ``--speed``
  overrides). A ``world`` service steps the world on ``config.market.step`` and journals
  funding, interest and liquidations of our accounts.
* ``live``: real venues through ``fuses.ccxt.build`` and ``fuses.aave.build`` (imported only
  here, lazily: a missing connector is a clear error), the wall clock.
* ``paper``: real market data, simulated execution: ``paper_wiring`` is the hook the CCXT
  connector fills in (a ccxt-backed ``MarketSource`` for ``SimWorld``); until then it says so.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from alpha.config.schema import FuseKind, StrategyConfig
from alpha.daemon.daemon import Daemon, Wiring
from alpha.daemon.instrumented import TimedFuse
from alpha.daemon.supervisor import RestartPolicy, ServiceFn
from alpha.domain.clock import AcceleratedClock, Clock, LiveClock
from alpha.observability.metrics import Metrics


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
    sim = _import("fuses.sim", "demo mode")
    if world is None:
        world = world_mod.SimWorld.from_config(config, start=clock.now())
    fuses: dict[str, Any] = {}
    for fc in config.enabled_fuses:
        if fc.kind not in (FuseKind.SIM, FuseKind.LENDING) or (fc.kind is FuseKind.LENDING and fc.venue != "sim"):
            raise WiringError(f"demo mode simulates every fuse; fuse {fc.name!r} is kind {fc.kind.value} on {fc.venue}")
        fuses[fc.name] = TimedFuse(sim.build(fc, world=world, clock=clock, metrics=metrics), metrics, fc.name)
    step = config.market.step if config.market is not None else timedelta(minutes=5)

    async def vault_cash() -> Decimal:
        return Decimal(world.vault.get(config.vault.base_asset, Decimal(0)))

    def world_service(daemon: Daemon) -> ServiceFn:
        ours = set(fuses)  # our account on each simulated venue is named after its fuse
        # Subscribe rather than read step_to's result: fuses may step the world too.
        world.subscribe(lambda event: daemon.record_events([event], ours))

        async def run(stop: asyncio.Event) -> None:
            while not stop.is_set():
                world.step_to(max(clock.now(), world.now))
                if await clock.sleep_until(clock.now() + step, stop):
                    return

        return run

    return Wiring(
        mode="demo",
        fuses=fuses,
        vault_cash=vault_cash,
        services=[("world", world_service)],
        world=world,
        poll_every=step,
    )


def live_wiring(config: StrategyConfig, clock: Clock, metrics: Metrics) -> Wiring:
    """Build real connectors: ccxt for CEX and perp DEX fuses, Aave for lending fuses."""
    builders: dict[FuseKind, Callable[..., Any]] = {}
    fuses: dict[str, Any] = {}
    for fc in config.enabled_fuses:
        if fc.kind not in builders:
            module = {FuseKind.CEX: "fuses.ccxt", FuseKind.PERP_DEX: "fuses.ccxt", FuseKind.LENDING: "fuses.aave"}.get(fc.kind)
            if module is None:
                raise WiringError(f"live mode cannot run fuse {fc.name!r} of kind {fc.kind.value}")
            builders[fc.kind] = _import(module, f"fuse {fc.name!r}").build
        fuses[fc.name] = builders[fc.kind](fc, clock=clock, metrics=metrics)

    async def vault_cash() -> Decimal:
        # The on-chain vault's idle balance is read by a vault fuse when one exists; until then
        # the vault holds nothing outside the fuses in live mode.
        vault = fuses.get("vault")
        if vault is not None and hasattr(vault, "idle_cash"):
            return Decimal(await vault.idle_cash())
        return Decimal(0)

    return Wiring(mode="live", fuses=fuses, vault_cash=vault_cash, poll_every=timedelta(seconds=10))


def paper_wiring(config: StrategyConfig, clock: Clock, metrics: Metrics) -> Wiring:
    """Real market data with simulated execution.

    Hook for the CCXT connector: ``fuses.ccxt.paper_source(config, clock=clock, metrics=metrics)``
    returning a ``fuses.sim.source.MarketSource`` fed by public endpoints; the world and the
    simulated fuses are then built exactly as in demo mode.
    """
    ccxt = _import("fuses.ccxt", "paper mode")
    make_source = getattr(ccxt, "paper_source", None)
    if make_source is None:
        raise WiringError("paper mode needs fuses.ccxt.paper_source (a MarketSource over public endpoints); not provided yet")
    world_mod = _import("fuses.sim.world", "paper mode")
    world = world_mod.SimWorld.from_config(config, source=make_source(config, clock=clock, metrics=metrics), start=clock.now())
    wiring = demo_wiring(config, clock, metrics, world=world)
    wiring.mode = "paper"
    wiring.poll_every = timedelta(seconds=10)
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
) -> Daemon:
    """Wire a daemon for ``mode`` (default: the config's)."""
    mode = mode or config.mode
    if mode not in WIRINGS:
        raise WiringError(f"mode {mode!r} cannot run as a daemon (choose demo, paper or live)")
    metrics = Metrics()
    clock = clock or make_clock(config, mode, speed)
    if mode == "demo" and world is not None:
        wiring = demo_wiring(config, clock, metrics, world=world)
    elif mode == "demo":
        _set_aside_journal(config.journal.path)
        wiring = demo_wiring(config, clock, metrics)
    else:
        wiring = WIRINGS[mode](config, clock, metrics)
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


async def run_daemon(daemon: Daemon, *, on_tick: Callable[[Daemon], Awaitable[None]] | None = None) -> int:
    """Run ``daemon`` to completion with signal handling; ``on_tick`` runs every real second."""
    ticker: asyncio.Task[None] | None = None
    if on_tick is not None:

        async def tick() -> None:
            while True:
                await asyncio.sleep(1.0)
                await on_tick(daemon)

        ticker = asyncio.create_task(tick())
    try:
        return await daemon.run()
    finally:
        if ticker is not None:
            ticker.cancel()
