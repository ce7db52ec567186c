"""The demo as a funding farmer would judge it, over many simulated days.

The whole daemon runs in-process on the stepped simulated clock (``tests.e2e.harness``),
with config/demo.yaml as shipped (scripted price shock included). What is asserted:

* zero orders refused by the venues, zero liquidations, no order of unknown outcome;
* bounded turnover: few hedges opened per asset per week (no churn), no hedge closed and
  re-opened on the same markets, every capital action at or above the configured minimum
  size (``rebalance.min_transfer``), every resize at or above ``pnl.drift_tolerance`` of the
  leg's notional unless it is a risk action (margin, neutralise, deleverage);
* positive funding income and a positive net result after fees and slippage.

Print the figures with ``python -m tests.e2e.test_demo_quality [DAYS]`` (default 7 days).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from alpha.daemon.app import build_daemon
from alpha.daemon.daemon import Daemon
from alpha.daemon.journal import Journal
from alpha.observability.logging import configure
from tests.e2e.harness import SteppedClock, demo_config, run_for

CAPITAL_ACTIONS = ("Transfer", "TopUpMargin", "Supply", "Withdraw", "Borrow", "Repay")
RISK_TRIGGERS = ("margin", "neutralise")


@dataclass
class DemoReport:
    """What one demo run did, in the figures a funding farmer looks at."""

    days: float
    decisions: int = 0
    orders: int = 0
    filled: int = 0
    rejected: int = 0
    unknown: int = 0
    liquidations: int = 0
    opened: Counter[str] = field(default_factory=Counter)  # OpenHedge per asset
    closed: Counter[str] = field(default_factory=Counter)  # CloseHedge per asset (strategy decisions)
    resizes: int = 0
    actions: Counter[str] = field(default_factory=Counter)  # every action row type (all triggers)
    risk_actions: Counter[str] = field(default_factory=Counter)  # rows decided by margin/neutralise
    top_ups: int = 0
    smallest_capital: Decimal | None = None  # smallest transfer/supply/withdraw amount (strategy)
    capital_rows: list[tuple[str, Decimal]] = field(default_factory=list)
    resize_rows: list[tuple[str, str, Decimal, Decimal]] = field(default_factory=list)  # fuse, market, qty, notional
    reopened: list[str] = field(default_factory=list)  # hedge ids opened again after a close
    funding: Decimal = Decimal(0)
    fees: Decimal = Decimal(0)
    slippage: Decimal = Decimal(0)
    lending: Decimal = Decimal(0)
    start_nav: Decimal = Decimal(0)
    end_nav: Decimal = Decimal(0)

    @property
    def net(self) -> Decimal:
        return self.end_nav - self.start_nav

    def lines(self) -> list[str]:
        """Return the report as printable lines."""
        q = Decimal("0.01")
        return [
            f"simulated days            {self.days:g}",
            f"decisions                 {self.decisions}",
            f"orders sent / filled      {self.orders} / {self.filled}",
            f"orders rejected by venue  {self.rejected}",
            f"orders of unknown outcome {self.unknown}",
            f"liquidations              {self.liquidations}",
            f"hedges opened per asset   {dict(sorted(self.opened.items()))}",
            f"hedges closed per asset   {dict(sorted(self.closed.items()))}",
            f"hedges re-opened          {len(self.reopened)}",
            f"leg resizes               {self.resizes}",
            f"actions (rows) by type    {dict(sorted(self.actions.items()))}",
            f"risk actions (rows)       {dict(sorted(self.risk_actions.items()))}",
            f"margin top-ups            {self.top_ups}",
            f"smallest capital action   {self.smallest_capital.quantize(q) if self.smallest_capital is not None else '-'}",
            f"funding received (net)    {self.funding.quantize(q)}",
            f"fees                      {self.fees.quantize(q)}",
            f"slippage                  {self.slippage.quantize(q)}",
            f"lending interest          {self.lending.quantize(q)}",
            f"NAV start -> end          {self.start_nav.quantize(q)} -> {self.end_nav.quantize(q)}",
            f"net result                {self.net.quantize(q)}",
        ]


def _report(daemon: Daemon, days: float) -> DemoReport:
    journal = Journal(daemon.config.journal.path)  # the daemon closed its own on stop
    rep = DemoReport(days=days)
    rep.decisions = sum(1 for d in daemon.decisions if d.skipped is None)
    outcomes = journal.outcomes()
    rep.orders = journal.count("order_intent")
    rep.filled = outcomes.get("filled", 0) + outcomes.get("partially_filled", 0)
    rep.rejected = outcomes.get("rejected", 0)
    rep.unknown = outcomes.get("unknown", 0)
    rep.liquidations = sum(daemon.wiring.world.ledger.liquidations.values())
    closed_ids: set[str] = set()
    for rec in journal.records("decision"):
        trigger = str(rec.data.get("trigger"))
        seen_hedges: set[tuple[str, str]] = set()
        for row in rec.data.get("actions") or []:
            kind = str(row["type"])
            rep.actions[kind] += 1
            if trigger in RISK_TRIGGERS:
                rep.risk_actions[kind] += 1
                if kind == "TopUpMargin":
                    rep.top_ups += 1
                continue
            hedge = (kind, str(row.get("hedge_id")))
            if kind in ("OpenHedge", "CloseHedge") and hedge not in seen_hedges:
                seen_hedges.add(hedge)
                if kind == "OpenHedge":
                    rep.opened[str(row.get("asset"))] += 1
                    if hedge[1] in closed_ids:
                        rep.reopened.append(hedge[1])
                elif not hedge[1].startswith(("reduce-", "unwind|")):
                    rep.closed[str(row.get("asset"))] += 1
                    closed_ids.add(hedge[1])
            elif kind == "ResizeLeg":
                rep.resizes += 1
                rep.resize_rows.append((str(row["fuse"]), str(row["market"]), Decimal(row["quantity"]), Decimal(0)))
            elif kind in CAPITAL_ACTIONS:
                amount = Decimal(row["quantity"])
                rep.capital_rows.append((kind, amount))
                if kind == "TopUpMargin":
                    rep.top_ups += 1
                rep.smallest_capital = amount if rep.smallest_capital is None else min(rep.smallest_capital, amount)
    # Resized legs valued at the price of their decision is not journalled; value them at the end.
    view = daemon.last_view
    if view is not None:
        rep.resize_rows = [
            (fz, m, qty, qty * (view.market(fz, m).mark if view.market(fz, m) is not None else Decimal(0)))  # type: ignore[union-attr]
            for fz, m, qty, _ in rep.resize_rows
        ]
    rep.funding = journal.totals["funding"]
    rep.fees = journal.totals["fees"]
    rep.slippage = journal.totals["slippage"]
    rep.lending = journal.totals["lending"]
    rep.start_nav = daemon.start_nav or Decimal(0)
    rep.end_nav = view.nav if view is not None else Decimal(0)
    journal.close()
    return rep


async def run_demo(tmp_path: Path, days: float, **overrides: Any) -> tuple[DemoReport, Daemon]:
    """Run config/demo.yaml in-process for ``days`` simulated days; return its report and the daemon."""
    cfg = demo_config(tmp_path, **overrides)
    clock = SteppedClock(cfg.clock.start)
    daemon = build_daemon(cfg, clock=clock, serve_http=False)
    task = asyncio.create_task(daemon.run(install_signals=False))
    await run_for(daemon, clock, timedelta(days=days))
    daemon.request_stop()
    code = await asyncio.wait_for(task, 30)
    assert code == 0
    return _report(daemon, days), daemon


def main(argv: list[str]) -> int:
    """Print the demo's figures over ``argv[0]`` simulated days (default 7)."""
    days = float(argv[0]) if argv else 7.0
    configure(json=True, level="error", stream=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        rep, _ = asyncio.run(run_demo(Path(tmp), days))
    print("\n".join(rep.lines()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
