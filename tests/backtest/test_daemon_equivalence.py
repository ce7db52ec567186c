"""The daemon itself and ``alpha backtest`` take the same steps on the same recorded tape.

The daemon runs its own services (market data, risk monitor, margin monitor, scheduler) on a
simulated clock over a simulated world fed by the recorded tape; a driver moves the clock to
each recorded update and to each time a service sleeps until, once every service is idle.
The backtest replays the same tape with the daemon's poll. Both must approve the same sequence of actions (every
decision, margin and repair step, in order, at the same instants) and end with the same book.
The tape carries a margin event: BTC and ETH gap up 12% on every venue at once on day 5, which
drains the short perp legs' margin and makes the margin monitor top them up.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from alpha.backtest.runner import replay
from alpha.backtest.source import MarketTape, RecordedSource, load_tapes
from alpha.bench import bench_config, make_bench_data
from alpha.config import load_config
from alpha.config.schema import StrategyConfig
from alpha.core import pipeline
from alpha.daemon.app import _sim_fuses, _vault_cash
from alpha.daemon.daemon import Daemon, Wiring
from alpha.daemon.steps import TakenStep
from alpha.domain.actions import Action, TopUpMargin, action_rows
from alpha.observability.metrics import Metrics
from alpha.risk import gate as gate_module
from fuses.sim.world import SimWorld
from tests.conftest import SHARED_DATA
from tests.e2e.harness import SteppedClock, wait_idle

pytestmark = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="shared data missing")

START = datetime(2019, 1, 1, tzinfo=UTC)
END = START + timedelta(days=8)
GAP_AT = START + timedelta(days=5, hours=3)
GAP = Decimal("1.12")
POLL = timedelta(hours=1)  # the tape's own resolution: hourly marks
SERVICES = 4  # marketdata, risk, margin, scheduler


def _config(tmp: Path) -> StrategyConfig:
    make_bench_data(tmp, START, END + timedelta(days=2))
    cfg = load_config(bench_config(tmp))
    return cfg.model_copy(
        update={
            "margin": cfg.margin.model_copy(update={"check_every": POLL}),
            "journal": cfg.journal.model_copy(update={"path": tmp / "journal.db"}),
        }
    )


def _tapes(cfg: StrategyConfig, tmp: Path) -> list[MarketTape]:
    tapes = load_tapes(cfg, tmp)
    for tape in tapes:
        if tape.asset in ("BTC", "ETH"):
            tape.prices = [p * GAP if t >= GAP_AT else p for t, p in zip(tape.price_times, tape.prices, strict=True)]
    return tapes


def _rows(taken: list[TakenStep]) -> list[dict[str, Any]]:
    return [
        {"ts": t.ts.isoformat(), "trigger": t.trigger, **row}
        for t in taken
        for action in t.step.approved
        for row in action_rows(action)
    ]


def _book(view: Any) -> dict[str, Any]:
    return {
        "vault": str(view.vault_cash),
        "positions": sorted((name, p.market, str(p.size)) for name, acct in view.accounts.items() for p in acct.positions if p.size),
        "balances": sorted((name, b.asset, str(b.total)) for name, acct in view.accounts.items() for b in acct.balances if b.total),
    }


async def _run_daemon(cfg: StrategyConfig, tapes: list[MarketTape]) -> tuple[Daemon, dict[str, Any]]:
    clock = SteppedClock(START)
    source = RecordedSource(tapes)
    world = SimWorld.from_config(cfg, source=source, start=START)
    metrics = Metrics()
    fuses = _sim_fuses(cfg, world, clock, metrics)
    wiring = Wiring(mode="demo", fuses=fuses, vault_cash=_vault_cash({"world": world}, cfg.vault.base_asset), world=world, poll_every=POLL)
    daemon = Daemon(cfg, clock, wiring, metrics=metrics, serve_http=False)
    events = sorted(t for t in set(source.event_times(START, END)) if t <= END)
    await daemon.start()
    supervisor = asyncio.create_task(daemon.supervisor.run())
    try:
        await wait_idle(clock, SERVICES)
        i = 0
        while True:
            now = clock.now()
            while i < len(events) and events[i] <= now:
                i += 1
            wakes = [when for when, _stop in clock._sleepers.values() if when > now]
            upcoming = [t for t in (events[i] if i < len(events) else None, min(wakes, default=None)) if t is not None]
            nxt = min(upcoming, default=None)
            if nxt is None or nxt > END:
                if now >= END:
                    break
                nxt = END  # as the replay: the last instant is the end itself
            clock.set(nxt)
            world.step_to(nxt)
            await wait_idle(clock, SERVICES)
        book = _book(world.portfolio_view(clock.now(), books=False))
    finally:
        daemon.request_stop()
        await asyncio.wait_for(supervisor, timeout=60)
        await daemon.shutdown()
    return daemon, book


def test_the_daemon_and_the_backtest_approve_the_same_actions_and_end_with_the_same_book(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = _config(tmp_path)
    gated: list[Action] = []
    real_gate = gate_module.gate

    def counting_gate(*args: Any, **kwargs: Any) -> Any:
        result = real_gate(*args, **kwargs)
        gated.extend(result.approved)
        return result

    monkeypatch.setattr(pipeline, "gate", counting_gate)

    backtest = asyncio.run(replay(cfg, _tapes(cfg, tmp_path), START, END, poll_every=POLL))
    assert backtest.final_view is not None
    backtest_book = _book(backtest.final_view)
    daemon, daemon_book = asyncio.run(_run_daemon(cfg, _tapes(cfg, tmp_path)))
    assert daemon.steps is not None

    expected, actual = _rows(backtest.taken), _rows(daemon.steps.taken)
    assert len(expected) > 20  # the tape trades: opens, resizes, transfers
    assert any(r["trigger"] == "margin" and r["type"] == TopUpMargin.__name__ for r in expected)  # the gap is a margin event
    assert len(actual) == len(expected)
    for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
        assert a == e, f"approved action {i} differs"
    assert daemon_book == backtest_book
    # Every executed action came out of the gate (both runs): nothing reaches the executor around it.
    executed = [r.action for _, r in daemon.steps.results]
    assert executed and all(any(a is g for g in gated) for a in executed)
