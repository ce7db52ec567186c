"""Maintenance starting mid-hedge on Binance or on Hyperliquid, against the venue emulators.

The daemon in live mode (real ccxt clients, real signatures, the emulators over the real
engine; the set-up of ``test_live_spread``) opens the spread long Binance / short Hyperliquid
in slices. Once the venue under test has filled a few of our orders it goes into maintenance
(the emulator's own switch, flipped from the engine's fill event, so the order that filled is
still answered) and stays there for a while in real time. The hedge must end hedged or flat
within ``risk.max_unhedged_time``, whatever the venue raised, without a restart; once the
venue is back the next decisions finish the spread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from alpha.daemon.daemon import Daemon
from alpha.daemon.journal import Journal
from alpha.domain.events import OrderFilled
from fuses.emulators.common import Faults
from tests.live import test_live_spread as spread
from tests.live.test_live_spread import (
    B_SYMBOL,
    BTC_PRICE,
    H_SYMBOL,
    MAX_UNHEDGED,
    MAX_UNHEDGED_TIME,
    Venues,
    _daemon,
    _drive,
    _legs,
    _stop,
    net_and_gross,
)
from tests.unhedged import UnhedgedSampler

# The venues and credentials of test_live_spread: both emulators over the real engine, one stepped clock.
credentials = spread.credentials
venues = spread.venues

FILLS_BEFORE = 3  # our orders the venue fills before it goes down: the hedge is mid-way
# Real seconds the venue stays down: back within the laggard's retry window (half of
# max_unhedged_time: the laggard is retried and fills), or past it (the leader is unwound).
BRIEF, LONG = 6.0, 14.0


def _maintenance_after(backend: Any, faults: Faults, fills: int, started: asyncio.Event) -> None:
    """Switch ``faults.maintenance`` on once ``fills`` of our orders filled on ``backend``'s engine."""
    seen: set[str] = set()

    def on_event(event: object) -> None:
        if isinstance(event, OrderFilled) and event.account == "us" and not faults.maintenance and not started.is_set():
            seen.add(event.fill.client_id)
            if len(seen) >= fills:
                faults.maintenance = True
                started.set()

    backend.listen(on_event)


async def _until(condition: Callable[[], bool], timeout: float = 90.0) -> None:
    """Wait (real time, polling) until ``condition`` holds."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not condition():
        assert loop.time() < end, "condition not met in time"
        await asyncio.sleep(0.02)


async def _decided(daemon: Daemon, task: asyncio.Task[int], v: Venues, since: int) -> None:
    """Wait until the scheduler journalled a decision after the first ``since`` (its actions are done), then until idle."""
    await _until(lambda: len(daemon.decisions) > since or task.done())
    await _drive(task, v, 0)


async def _decide_now(daemon: Daemon, task: asyncio.Task[int], v: Venues) -> None:
    """Ask for decisions until one is taken (not skipped while the risk monitor still sees stale data)."""
    for _ in range(5):
        n = len(daemon.decisions)
        daemon.trigger("operator")
        await _decided(daemon, task, v, n)
        if daemon.decisions[-1].skipped is None:
            return
        await _drive(task, v, 1)
    raise AssertionError(f"no decision taken: {daemon.decisions[-1].skipped}")


async def _end_maintenance(faults: Faults, started: asyncio.Event, seconds: float) -> None:
    await started.wait()
    await asyncio.sleep(seconds)
    faults.maintenance = False


@dataclass
class Watched:
    """A daemon run live against the emulators, its net exposure sampled, a maintenance window armed on one venue."""

    daemon: Daemon
    task: asyncio.Task[int]
    sampler: UnhedgedSampler
    started: asyncio.Event  # set when the maintenance starts
    _stop_sampling: asyncio.Event
    _tasks: tuple[asyncio.Task[None], asyncio.Task[None]]

    @classmethod
    def start(cls, v: Venues, daemon: Daemon, faults: Faults, seconds: float) -> Watched:
        """Sample, run the daemon, and end the maintenance ``seconds`` after it starts."""
        sampler, stop, started = UnhedgedSampler(lambda: net_and_gross(v)), asyncio.Event(), asyncio.Event()
        sampling = asyncio.create_task(sampler.run(stop))
        task = asyncio.create_task(daemon.run(install_signals=False))
        return cls(daemon, task, sampler, started, stop, (sampling, asyncio.create_task(_end_maintenance(faults, started, seconds))))

    async def stop(self) -> int:
        """Stop sampling and the daemon; return its exit code."""
        sampling, ending = self._tasks
        ending.cancel()
        self._stop_sampling.set()
        await sampling
        return await _stop(self.daemon, self.task)


def _lot(v: Venues) -> Decimal:
    return v.binance.instruments[B_SYMBOL].lot_step * BTC_PRICE


@pytest.mark.parametrize(("venue", "seconds"), [("binance", BRIEF), ("hyperliquid", BRIEF), ("binance", LONG), ("hyperliquid", LONG)])
async def test_maintenance_starting_mid_hedge_ends_hedged_or_flat_within_the_bound(
    tmp_path: Path, venues: Venues, venue: str, seconds: float
) -> None:
    v = venues
    server, backend = (v.binance_server, v.binance_backend) if venue == "binance" else (v.hyperliquid_server, v.hyperliquid_backend)
    daemon = _daemon(tmp_path, v)
    daemon.set_paused("operator", True)  # start-up without faults; trading starts below
    run = Watched.start(v, daemon, server.state.faults, seconds)
    try:
        await _drive(run.task, v, 0)
        _maintenance_after(backend, server.state.faults, FILLS_BEFORE, run.started)
        await daemon.resume()
        await _decide_now(daemon, run.task, v)  # the decision's hedge meets the maintenance and is balanced
        assert run.started.is_set(), "maintenance started mid-hedge"
        mid = _legs(v)
        assert abs(mid[0] + mid[1]) * BTC_PRICE <= 2 * _lot(v), f"hedged or flat once the hedge returned: {mid}; {run.sampler.report(MAX_UNHEDGED, _lot(v))}"
        await run.started.wait()
        await _until(lambda: not server.state.faults.maintenance)
        await _decide_now(daemon, run.task, v)  # the venue is back: the next decision (here asked for at once) finishes the spread
    finally:
        code = await run.stop()
    long, _, report = _within_bounds(run.sampler, v, code, f"{seconds:g}s of maintenance on {venue}")
    assert long > Decimal(3), f"the spread opened in full once the venue came back, without a restart: {report}"
    journal = Journal(tmp_path / "journal.db")
    assert not journal.pending_orders(), "every order of unknown outcome was resolved with the venue"
    causes = [r.data["error"] for r in journal.records("order_result") if r.fuse == venue and r.data.get("error")]
    assert causes, f"the cause is journalled with the orders the maintenance refused: {report}"
    purposes = [r.data["purpose"] for r in journal.records("order_intent")]
    if seconds > MAX_UNHEDGED_TIME.total_seconds() / 2:
        assert "unwind" in purposes, f"a venue down past the retry window has the other leg unwound: {report}"


async def test_hyperliquid_maintenance_during_a_hedge_reversal_never_leaves_both_legs_on_one_side(tmp_path: Path, venues: Venues) -> None:
    v = venues
    faults = v.hyperliquid_server.state.faults
    daemon = _daemon(tmp_path, v)
    run = Watched.start(v, daemon, faults, LONG)
    try:
        await _drive(run.task, v, 2)
        opened = _legs(v)
        assert opened[0] > 0 > opened[1], f"the spread is open long Binance / short Hyperliquid: {opened}"
        journal = daemon.journal
        assert journal is not None
        before = max(r.seq for r in journal.records())
        # Binance now pays shorts, Hyperliquid pays longs: the decision reverses the hedge between the same two markets.
        v.binance.set_funding(B_SYMBOL, Decimal("0.0005"))
        v.hyperliquid.set_funding(H_SYMBOL, Decimal("-0.0002"))
        _maintenance_after(v.hyperliquid_backend, faults, FILLS_BEFORE, run.started)
        for _ in range(24):  # hourly steps until the forecasts turn and the decision reverses the hedge
            n = len(daemon.decisions)
            await _drive(run.task, v, 1)
            if run.started.is_set():
                await _decided(daemon, run.task, v, n)  # the reversing decision is done (balanced or unwound)
                break
        assert run.started.is_set(), f"maintenance started mid-reversal: {_legs(v)}"
        mid = _legs(v)
        assert abs(mid[0] + mid[1]) * BTC_PRICE <= 2 * _lot(v), f"hedged or flat once the reversal returned: {mid}; {run.sampler.report(MAX_UNHEDGED, _lot(v))}"
        await _until(lambda: not faults.maintenance)
        await _decide_now(daemon, run.task, v)  # the book is safe; the next decision (here asked for at once) finishes the reversal
        refused = [r for r in journal.records("order_result") if r.seq > before and r.fuse == "binance" and r.data["outcome"] == "rejected"]
    finally:
        code = await run.stop()
    long, short, report = _within_bounds(run.sampler, v, code, f"{LONG:g}s of Hyperliquid maintenance mid-reversal")
    assert long < 0 < short, f"the hedge is reversed once Hyperliquid is back: {report}"
    assert refused == [], f"no Binance order refused (no reduce-only order past its position): {[r.data for r in refused]}"


def _within_bounds(sampler: UnhedgedSampler, v: Venues, code: int, what: str) -> tuple[Decimal, Decimal, str]:
    """Assert the run ended cleanly, hedged or flat, never one-sided past the limits; return the legs and the report."""
    sampler.sample()
    long, short = _legs(v)
    lot = _lot(v)
    report = f"{what}: {sampler.report(MAX_UNHEDGED, 2 * lot)}; legs {long} / {short}"
    assert code == 0, report
    assert sampler.worst <= MAX_UNHEDGED + 2 * lot, report
    assert sampler.longest_above(2 * lot) <= MAX_UNHEDGED_TIME.total_seconds(), report
    assert abs(long + short) * BTC_PRICE <= 2 * lot, f"hedged or flat at the end: {report}"
    return long, short, report
