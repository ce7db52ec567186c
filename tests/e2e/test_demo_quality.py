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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from alpha.daemon.app import build_daemon
from alpha.daemon.daemon import Daemon
from alpha.daemon.journal import Journal
from alpha.domain.actions import CloseHedge, OpenHedge, ResizeLeg
from alpha.observability.logging import configure
from alpha.risk.exposure import holdings
from tests.budgets import CPU_BOUND
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
    incomplete: int = 0  # strategy actions the executor could not complete (failed transfers included)
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
            f"incomplete actions        {self.incomplete}",
            f"liquidations              {self.liquidations}",
            f"hedges opened per asset   {dict(sorted(self.opened.items()))}",
            f"hedges closed per asset   {dict(sorted(self.closed.items()))}",
            f"hedges re-opened          {len(self.reopened)}",
            f"resizes (legs or pairs)   {self.resizes}",
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
    rep.incomplete = sum(len(d.actions) - d.completed for d in daemon.decisions)
    closed_ids: set[str] = set()
    size: dict[str, Decimal] = {}  # base quantity each hedge holds, from its journalled actions
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
            hid, qty = hedge[1], Decimal(row["quantity"])
            # Both legs of a resize may travel together as one two-leg action (the daemon pairs
            # them): growing an open hedge is not opening one, shrinking it is not closing it.
            if kind in ("OpenHedge", "CloseHedge") and hedge not in seen_hedges:
                seen_hedges.add(hedge)
                if kind == "OpenHedge":
                    if size.get(hid, Decimal(0)) > 0:
                        rep.resizes += 1
                    else:
                        rep.opened[str(row.get("asset"))] += 1
                        if hid in closed_ids:
                            rep.reopened.append(hid)
                    size[hid] = size.get(hid, Decimal(0)) + qty
                elif not hid.startswith(("reduce-", "unwind|")):
                    size[hid] = size.get(hid, Decimal(0)) - qty
                    if size[hid] > 0:
                        rep.resizes += 1
                    else:
                        size[hid] = Decimal(0)
                        rep.closed[str(row.get("asset"))] += 1
                        closed_ids.add(hid)
            elif kind == "ResizeLeg":
                rep.resizes += 1  # one per leg
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


async def run_demo(
    tmp_path: Path, days: float, on_decision: Callable[[Daemon], Awaitable[None]] | None = None, **overrides: Any
) -> tuple[DemoReport, Daemon]:
    """Run config/demo.yaml in-process for ``days`` simulated days; return its report and the daemon.

    ``on_decision`` is awaited after every step in which the daemon took a decision.
    """
    cfg = demo_config(tmp_path, **overrides)
    clock = SteppedClock(cfg.clock.start)
    daemon = build_daemon(cfg, clock=clock, serve_http=False)
    task = asyncio.create_task(daemon.run(install_signals=False))
    seen = 0

    async def after_step() -> None:
        nonlocal seen
        if on_decision is not None and len(daemon.decisions) > seen:
            seen = len(daemon.decisions)
            await on_decision(daemon)

    await run_for(daemon, clock, timedelta(days=days), after_step)
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


DAYS = 10  # two settlement-driven weeks of decisions would be slower; ten days show every behaviour


@CPU_BOUND
async def test_demo_over_ten_days_trades_like_a_funding_farmer(tmp_path: Path) -> None:
    checked: list[str] = []
    done = 0

    async def check_resizes(daemon: Daemon) -> None:
        # Every strategy resize moves at least pnl.drift_tolerance of what the leg holds after it
        # (a growth of d on top of x moves d >= tol x, so d >= tol / (1 + tol) of x + d).
        nonlocal done
        view = daemon.last_view
        assert view is not None
        held = holdings(view)
        drift = daemon.config.pnl.drift_tolerance
        for rec in daemon.decisions[done:]:
            for action in rec.actions:
                legs = (action.leg,) if isinstance(action, ResizeLeg) else action.legs if isinstance(action, OpenHedge | CloseHedge) else ()
                for leg in legs:
                    after = abs(held.get((leg.fuse, leg.market), Decimal(0)))
                    if isinstance(action, OpenHedge) and after <= leg.quantity:
                        # a new hedge: at least rebalance.min_hedge_share of NAV
                        snap = view.market(leg.fuse, leg.market)
                        assert snap is not None
                        smallest = daemon.config.rebalance.min_hedge_share * view.nav
                        assert leg.quantity * snap.mark >= smallest * Decimal("0.98"), (rec.ts, action)
                    elif after > 0:
                        # a resize, on its own or paired with the other leg
                        assert leg.quantity >= drift / (1 + drift) * after * Decimal("0.999"), (rec.ts, action)
                        checked.append(rec.decision_id)
        done = len(daemon.decisions)

    rep, daemon = await run_demo(tmp_path, DAYS, check_resizes)
    cfg = daemon.config

    # Zero refusals of any kind in normal operation, and nothing liquidated.
    assert rep.rejected == 0 and rep.unknown == 0 and rep.incomplete == 0, rep.lines()
    assert rep.liquidations == 0
    assert rep.risk_actions.get("ResizeLeg", 0) == 0, "no leg ever needed neutralising after a failure"
    # Bounded turnover: hedges persist (at most two opened per asset per week, none re-opened)
    assert rep.opened, "no hedge was opened"
    weeks = Decimal(DAYS) / 7
    for asset, n in rep.opened.items():
        assert n <= 2 * weeks, f"{asset}: {n} hedges opened in {DAYS} days"
    assert rep.reopened == []
    assert rep.resizes <= 4 * DAYS, f"{rep.resizes} leg resizes in {DAYS} days"
    # ... and no capital action below the minimum size (margin top-ups are risk actions, sized by policy).
    for kind, amount in rep.capital_rows:
        assert amount >= cfg.rebalance.min_transfer, (kind, amount)
    # The carry pays: funding received, and a positive result after fees and slippage.
    assert rep.funding > 0
    assert rep.net > 0, rep.lines()
    assert rep.funding > rep.fees + rep.slippage


async def test_the_first_forty_hours_show_hedges_funding_rebalances_and_a_top_up(tmp_path: Path) -> None:
    # What `make run` shows within its first minute (one simulated hour per second).
    rep, daemon = await run_demo(tmp_path, 40 / 24)
    assert sum(rep.opened.values()) >= 2  # both assets hedged at once
    assert daemon.wiring.world.ledger.settlements > 0 and rep.funding > 0
    assert rep.resizes > 0 or rep.actions.get("Transfer", 0) > 1  # rebalances after the first decision
    assert rep.top_ups >= 1  # the scripted 30% gap at 30h is met with a margin top-up
    assert rep.rejected == 0 and rep.incomplete == 0 and rep.liquidations == 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
