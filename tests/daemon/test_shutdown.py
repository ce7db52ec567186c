"""Shutdown always flushes the journal, even when a clean-up step fails."""

from __future__ import annotations

from pathlib import Path

from alpha.daemon.app import build_daemon
from alpha.daemon.journal import Journal
from tests.e2e.harness import SteppedClock, demo_config


async def test_a_failing_clean_up_step_still_closes_fuses_and_flushes_the_journal(tmp_path: Path) -> None:
    cfg = demo_config(tmp_path)
    daemon = build_daemon(cfg, clock=SteppedClock(cfg.clock.start), serve_http=False)
    await daemon.start()

    async def broken_close() -> None:
        raise RuntimeError("wiring clean-up failed")

    daemon.wiring.close = broken_close
    await daemon.shutdown()
    assert daemon.journal is not None and daemon.journal.closed
    assert daemon.started_fuses == []
    stops = list(Journal(cfg.journal.path).records("stop"))
    assert len(stops) == 1 and stops[0].data["exit_code"] == 0
