"""The daemon's single-purpose services: scheduler, margin monitor, risk monitor, config watcher.

Each is a loop the supervisor runs (``ServiceFn``: it ends when ``stop`` is set). The
scheduler and the margin monitor take steps through the daemon's ``StepRunner`` under one
lock, so one step executes at a time; at an instant where both are due, the margin check
runs first, exactly as in the backtest replay (``alpha.backtest.runner``).
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from typing import TYPE_CHECKING

from alpha.observability.logging import get_logger
from alpha.risk.exposure import delta_ratio
from fuses.base import TransientError

if TYPE_CHECKING:
    from alpha.daemon.daemon import Daemon

log = get_logger("alpha.daemon")

DRIFT_MIN_INTERVAL = timedelta(hours=1)


async def relay(stop: asyncio.Event, wake: asyncio.Event) -> None:
    """Set ``wake`` when ``stop`` is set (a service sleeping on ``wake`` then sees the stop)."""
    await stop.wait()
    wake.set()


async def margin_if_due(daemon: Daemon) -> None:
    """Run the margin step if a check is due now (callers hold ``daemon.stepping``)."""
    now = daemon.clock.now()
    if not daemon.ready or not daemon.schedule.margin_due(now):
        return
    daemon.schedule.margin_checked(now, daemon.config)
    try:
        await daemon.runner().margin()
    except TransientError as exc:
        log.warning("margin check skipped: a venue is unavailable", error=repr(exc))


async def margin_service(daemon: Daemon, stop: asyncio.Event) -> None:
    """Check margin and lending health every ``margin.check_every``."""
    while not stop.is_set():
        async with daemon.stepping:
            await margin_if_due(daemon)
        due = daemon.schedule.next_margin_at or daemon.clock.now() + daemon.config.margin.check_every
        if await daemon.clock.sleep_until(due, stop):
            return


async def scheduler_service(daemon: Daemon, stop: asyncio.Event) -> None:
    """Decide ahead of each settlement, every ``pnl.rebalance_every``, and on triggers."""
    relay_task = asyncio.create_task(relay(stop, daemon.wake))
    try:
        while not stop.is_set():
            now = daemon.clock.now()
            when, why = daemon.next_scheduled(now)
            if when > now and not daemon.triggers:
                daemon.wake.clear()
                # Re-plan at least every poll: refreshed data may announce new settlements.
                await daemon.clock.sleep_until(min(when, now + daemon.wiring.poll_every), daemon.wake)
                if stop.is_set():
                    return
                now = daemon.clock.now()
                if daemon.triggers:
                    why = daemon.triggers.popleft()
                elif now < when:
                    continue
            elif daemon.triggers:
                why = daemon.triggers.popleft()
            if why == "config":
                daemon.reload_config()
            async with daemon.stepping:
                await margin_if_due(daemon)
                settlements = daemon.marketdata.settlements()
                daemon.schedule.deciding(now, settlements, daemon.config)
                record = await daemon.runner().decide(why)
                daemon.schedule.decided(
                    now, skipped=record.skipped is not None, retry_after=daemon.wiring.poll_every, finished=daemon.clock.now()
                )
            if record.skipped is not None and daemon.wiring.skip_retry_floor > timedelta(0):
                await _pause_after_skip(daemon, stop)
    finally:
        relay_task.cancel()


async def _pause_after_skip(daemon: Daemon, stop: asyncio.Event) -> None:
    """Wait ``wiring.skip_retry_floor`` of real time after a skipped decision (a trigger or the stop ends it)."""
    if stop.is_set() or daemon.triggers:
        return
    daemon.wake.clear()  # the stop relay has not fired (stop is not set): it will set ``wake``
    await daemon.real_clock.sleep_until(daemon.real_clock.now() + daemon.wiring.skip_retry_floor, daemon.wake)


async def resolve_unknown(daemon: Daemon) -> None:
    """Ask the venues again about orders of unknown outcome; a resolved one triggers a decision (its fills may have moved the book)."""
    if daemon.ready and daemon.steps is not None and await daemon.steps.resolve_unknown():
        daemon.trigger("reconciled")


async def risk_service(daemon: Daemon, stop: asyncio.Event) -> None:
    """Watch the book every poll (or when a position changed at a venue): resolve unknown orders, export, pause on stale data, trigger on drift."""
    relay_task = asyncio.create_task(relay(stop, daemon.risk_wake))
    try:
        while not stop.is_set():
            daemon.risk_wake.clear()
            await resolve_unknown(daemon)
            now = daemon.clock.now()
            try:
                view = await daemon.view(now)
            except TransientError as exc:
                # A venue in maintenance or briefly unreachable: we cannot see the book, so we
                # do not trade on it; the service keeps watching and resumes when reads work.
                daemon.set_paused("stale_data", True)
                log.warning("accounts unreadable; trading paused until they can be read", error=repr(exc))
                if await daemon.clock.sleep_until(now + daemon.wiring.poll_every, stop):
                    return
                continue
            daemon.export_view(view)
            age = daemon.marketdata.oldest_age(now)
            daemon.set_paused("stale_data", age is None or age > daemon.config.risk.max_data_age)
            ratios = delta_ratio(view)
            drifting = [a for a, r in ratios.items() if r > daemon.config.delta_tolerance]
            if drifting and (daemon.last_drift_at is None or now - daemon.last_drift_at >= DRIFT_MIN_INTERVAL):
                daemon.last_drift_at = now
                daemon.trigger("drift")
            await daemon.clock.sleep_until(now + daemon.wiring.poll_every, daemon.risk_wake)
    finally:
        relay_task.cancel()


async def config_service(daemon: Daemon, stop: asyncio.Event) -> None:
    """Trigger a reload when the strategy file changes (checked every real second)."""
    path = daemon.config_path
    assert path is not None
    mtime: float | None = None
    with contextlib.suppress(OSError):
        mtime = path.stat().st_mtime
    while not stop.is_set():
        if await daemon.real_clock.sleep_until(daemon.real_clock.now() + timedelta(seconds=1), stop):
            return
        try:
            current = path.stat().st_mtime
        except OSError:
            continue
        if current != mtime:
            mtime = current
            daemon.trigger("config")
