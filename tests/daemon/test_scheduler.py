"""The scheduler retries a skipped decision at the data cadence; it never spins while paused."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from alpha.daemon.app import build_daemon
from tests.e2e.harness import STEP, SteppedClock, demo_config, run_for


async def test_a_pause_longer_than_the_rebalance_period_retries_each_poll_and_resumes(tmp_path: Path) -> None:
    cfg = demo_config(tmp_path)
    clock = SteppedClock(cfg.clock.start)
    daemon = build_daemon(cfg, clock=clock, serve_http=False)
    task = asyncio.create_task(daemon.run(install_signals=False))
    try:
        await run_for(daemon, clock, STEP)
        await daemon.pause("test")
        paused_at, before = clock.now(), len(daemon.decisions)
        # Paused for longer than pnl.rebalance_every: the periodic rebalance falls due and is skipped.
        span = cfg.pnl.rebalance_every + timedelta(hours=2)
        await run_for(daemon, clock, span)
        skipped = daemon.decisions[before:]
        assert skipped and all(d.skipped == "paused: operator" for d in skipped)
        polls = span / daemon.wiring.poll_every
        settlements = span / timedelta(hours=1) * len(cfg.enabled_fuses)  # hourly perp-dex funding at most, per fuse
        assert len(skipped) <= polls + settlements + 2, f"{len(skipped)} skipped decisions in {span}: the scheduler spins"
        assert max(d.ts for d in skipped) > paused_at + cfg.pnl.rebalance_every, "retries go on after the period"

        await daemon.resume()
        resumed = len(daemon.decisions)
        await run_for(daemon, clock, daemon.wiring.poll_every)
        assert any(d.skipped is None for d in daemon.decisions[resumed:]), "trading resumes within one poll"
    finally:
        daemon.request_stop()
        assert await asyncio.wait_for(task, 30) == 0
