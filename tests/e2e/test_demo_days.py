"""The demo daemon over many simulated days: invariants at every decision, and a 30% price gap.

The daemon runs in-process with every service (world, market data, risk, margin, scheduler)
on a simulated clock the test advances in 5-minute steps once all services are idle.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from alpha.daemon.app import build_daemon
from alpha.daemon.daemon import Daemon
from alpha.risk.exposure import delta_ratio, holdings
from tests.budgets import CPU_BOUND
from tests.e2e.harness import SteppedClock, demo_config, run_for

EPS = Decimal("1e-9")


def _metric(daemon: Daemon, name: str, **labels: str) -> float:
    v = daemon.metrics.registry.get_sample_value(name, labels)
    return 0.0 if v is None else v


def _metric_sum(daemon: Daemon, name: str, **match: str) -> float:
    total = 0.0
    for metric in daemon.metrics.registry.collect():
        for s in metric.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in match.items()):
                total += s.value
    return total


async def _check_invariants(daemon: Daemon) -> None:
    cfg = daemon.config
    world = daemon.wiring.world
    assert daemon.journal is not None
    view = await daemon.view(daemon.clock.now())
    nav = view.nav
    # net delta within tolerance for every asset held
    for asset, ratio in delta_ratio(view).items():
        assert ratio <= cfg.delta_tolerance + EPS, f"{asset}: |net delta| / gross = {ratio} at {view.ts}"
    # caps (with the PnL drift the constant-notional policy tolerates between rebalances)
    for fc in cfg.enabled_fuses:
        cap = fc.max_share * nav * (1 + cfg.pnl.drift_tolerance)
        assert view.fuse_equity(fc.name) <= cap + EPS, f"{fc.name} holds {view.fuse_equity(fc.name)} > cap {cap}"
    # idle buffer (top-ups may draw on it: that is what it is for)
    floor = cfg.idle_buffer * nav - daemon.journal.totals["top_ups"]
    assert view.vault_cash >= floor - Decimal("0.01"), f"idle {view.vault_cash} below buffer {floor}"
    # funding in the journal equals the engine's ledger, exactly, per fuse and market
    journal_funding = {k: v for k, v in daemon.journal.funding_totals().items() if v != 0}
    ledger_funding = {k: v for k, v in world.ledger.funding.items() if v != 0}
    assert journal_funding == ledger_funding
    # metrics agree with the journal
    funding_metric = _metric_sum(daemon, "alpha_funding_received_usd_total") - _metric_sum(daemon, "alpha_funding_paid_usd_total")
    assert abs(funding_metric - float(daemon.journal.totals["funding"])) < 1e-6
    outcomes = daemon.journal.outcomes()
    for outcome in ("filled", "rejected"):
        assert _metric_sum(daemon, "alpha_execution_orders_total", outcome=outcome) == outcomes.get(outcome, 0)
    assert _metric(daemon, "alpha_strategy_decisions_total", trigger="settlement") + _metric(
        daemon, "alpha_strategy_decisions_total", trigger="schedule"
    ) + _metric(daemon, "alpha_strategy_decisions_total", trigger="drift") == sum(
        1 for d in daemon.decisions if d.skipped is None
    )


@CPU_BOUND
async def test_demo_over_days_keeps_every_invariant_at_every_decision(tmp_path: Path) -> None:
    cfg = demo_config(tmp_path, market=demo_config(tmp_path).market.model_copy(update={"shocks": ()}))
    clock = SteppedClock(cfg.clock.start)
    daemon = build_daemon(cfg, clock=clock, serve_http=False)
    task = asyncio.create_task(daemon.run(install_signals=False))
    checked = 0

    async def after_each_decision() -> None:
        nonlocal checked
        if len(daemon.decisions) > checked:
            await _check_invariants(daemon)
            checked = len(daemon.decisions)

    await run_for(daemon, clock, timedelta(days=6), after_each_decision)
    daemon.request_stop()
    assert await asyncio.wait_for(task, 30) == 0
    assert checked >= 100  # hourly settlements on perp-dex drive a decision each hour
    held = holdings(daemon.last_view) if daemon.last_view else {}
    assert any(q != 0 for q in held.values()), "no hedge was opened in six simulated days"
    assert daemon.journal is not None and daemon.journal.totals["funding"] != 0
    assert daemon.wiring.world.ledger.liquidations == {}


async def test_30_percent_price_gap_is_met_with_top_ups_and_no_liquidation(tmp_path: Path) -> None:
    cfg = demo_config(tmp_path)  # config/demo.yaml: 3x perps, 10% idle buffer, ETH gaps +30% at 30h
    assert cfg.market is not None
    (shock,) = cfg.market.shocks
    assert shock.move == Decimal("0.30") and cfg.idle_buffer == Decimal("0.10")
    assert {f.max_leverage for f in cfg.enabled_fuses if f.name.startswith("perp")} == {Decimal(3)}
    clock = SteppedClock(cfg.clock.start)
    daemon = build_daemon(cfg, clock=clock, serve_http=False)
    task = asyncio.create_task(daemon.run(install_signals=False))
    await run_for(daemon, clock, shock.at - timedelta(minutes=30))
    view = await daemon.view(clock.now())
    shorts = [k for k, q in holdings(view).items() if q < 0 and k[1].startswith(shock.asset)]
    assert shorts, f"the book should be short {shock.asset} perps before the gap"
    price_before = view.price(shock.asset)
    await run_for(daemon, clock, timedelta(hours=12))
    daemon.request_stop()
    assert await asyncio.wait_for(task, 30) == 0
    assert daemon.last_view is not None and daemon.last_view.price(shock.asset) > price_before * Decimal("1.2")
    top_ups = _metric_sum(daemon, "alpha_margin_top_ups_total")
    deleverages = _metric_sum(daemon, "alpha_margin_deleverages_total")
    assert top_ups + deleverages > 0
    assert daemon.wiring.world.ledger.liquidations == {}
    assert _metric_sum(daemon, "alpha_margin_liquidations_total") == 0
    assert daemon.journal is not None
    assert daemon.journal.totals["top_ups"] > 0 or deleverages > 0
