"""``alpha plan FILE`` / ``alpha plan --config FILE [--json]``: what the strategy would do now, without trading.

The current state is the simulated world of the strategy (``fuses.sim.world.SimWorld``). A
strategy whose fuses are live venues (``cex``, ``perp_dex``, on-chain lending) is planned
against simulated stand-ins with the same names, markets and caps, and, without a
``market`` section, default synthetic market parameters; the output says so.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from alpha.config import ConfigError, load_config
from alpha.config.schema import (
    AssetMarket,
    ClockConfig,
    FuseConfig,
    FuseKind,
    StrategyConfig,
    SyntheticMarket,
)
from alpha.core.pipeline import decision_step
from alpha.domain.actions import action_rows
from alpha.domain.apply import apply
from alpha.domain.market import BadMarketData
from alpha.risk.exposure import fuse_leverage, gross, net_delta
from alpha.risk.gate import RiskState
from alpha.strategy.signals import FundingHistory, compute_signals

help = "print what the strategy would do from the current (simulated) state, without trading"

DEFAULT_START = datetime(2024, 1, 1, tzinfo=UTC)
# Starting prices for assets a stand-in synthetic market has to invent (order of magnitude only).
DEFAULT_PRICES = {"BTC": Decimal("60000"), "ETH": Decimal("3000"), "SOL": Decimal("150")}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", nargs="?", help="strategy YAML file")
    parser.add_argument("--config", dest="config_file", help="strategy YAML file (same as FILE)")
    parser.add_argument("--json", action="store_true", help="print JSON (amounts as decimal strings)")


def simulated_config(config: StrategyConfig) -> tuple[StrategyConfig, list[str]]:
    """Return a config whose every fuse the simulated world can run, and notes on what was replaced."""
    notes: list[str] = []
    fuses: list[FuseConfig] = []
    for f in config.fuses:
        if f.kind in (FuseKind.CEX, FuseKind.PERP_DEX):
            fuses.append(f.model_copy(update={"kind": FuseKind.SIM, "credentials": None}))
            notes.append(f"fuse {f.name} ({f.kind.value} on {f.venue}) is simulated")
        elif f.kind is FuseKind.LENDING and f.venue != "sim":
            fuses.append(f.model_copy(update={"venue": "sim", "credentials": None, "options": {}}))
            notes.append(f"lending fuse {f.name} ({f.venue}) is simulated")
        else:
            fuses.append(f)
    update: dict[str, Any] = {"fuses": tuple(fuses)}
    if config.market is None:
        assets = {a: AssetMarket(price=DEFAULT_PRICES.get(a, Decimal("100"))) for a in config.assets}
        update["market"] = SyntheticMarket(assets=assets)
        notes.append("no market section: default synthetic market parameters")
    if config.clock.start is None:
        update["clock"] = ClockConfig(start=DEFAULT_START, speed=config.clock.speed)
        notes.append(f"no clock.start: the simulated state starts at {DEFAULT_START.isoformat()}")
    return config.model_copy(update=update), notes


def build_plan(config: StrategyConfig) -> dict[str, Any]:
    """Run the pipeline's decision step on the strategy's simulated state; return the report as plain data.

    ``actions`` are the approved actions (resizes paired, as the daemon executes them), and
    the view after them; ``refused`` what the gate refused.
    """
    from fuses.sim.world import SimWorld

    sim_config, notes = simulated_config(config)
    world = SimWorld.from_config(sim_config)
    assert sim_config.clock.start is not None
    now = sim_config.clock.start
    view = world.portfolio_view(now)
    history = FundingHistory()
    history.observe(view)
    signals = compute_signals(history, view, now)
    step = decision_step(view, signals, sim_config, RiskState(now=now), now)
    if step.skipped is not None or step.target is None:
        raise ValueError(step.skipped or "no decision")
    target = step.target
    after = apply(view, step.approved)
    leverage = fuse_leverage(after)
    nav = after.nav
    fuses = {}
    for f in sim_config.fuses:
        fuses[f.name] = {
            "capital": str(after.fuse_equity(f.name)),
            "cap": str(f.max_share * nav if f.enabled else Decimal(0)),
            "leverage": str(leverage.get(f.name, Decimal(0))),
            "max_leverage": str(f.max_leverage),
        }
    assets = sorted({*sim_config.assets, *net_delta(after)})
    nd = net_delta(after)
    gr = gross(after)
    return {
        "nav": str(nav),
        "idle": str(after.vault_cash),
        "fuses": fuses,
        "net_delta": {a: str(nd.get(a, Decimal(0))) for a in assets},
        "gross": {a: str(gr.get(a, Decimal(0))) for a in assets},
        "actions": [row for action in step.approved for row in action_rows(action)],
        "dropped": [
            {"hedge_id": str(d.hedge_id), "fuse": d.fuse, "market": d.market, "quantity": str(d.quantity), "reason": d.reason}
            for d in step.dropped
        ],
        "refused": [{**action_rows(r.action)[0], "refusal": r.reason} for r in step.refused],
        "reasons": list(target.reasons),
        "as_of": now.isoformat(),
        "simulated": notes,
    }


def _table(report: dict[str, Any]) -> str:
    def money(text: str) -> str:
        return f"{Decimal(text):,.2f}"

    lines = [f"as of {report['as_of']}: NAV {money(report['nav'])}, idle {money(report['idle'])}"]
    lines += [f"  note: {n}" for n in report["simulated"]]
    lines.append("")
    lines.append(f"{'fuse':<16}{'capital':>16}{'cap':>16}{'leverage':>10}{'max':>6}")
    for name, f in report["fuses"].items():
        lev = f"{Decimal(f['leverage']):.2f}x"
        lines.append(f"{name:<16}{money(f['capital']):>16}{money(f['cap']):>16}{lev:>10}{f['max_leverage']:>6}")
    lines.append("")
    lines.append(f"{'asset':<8}{'net delta':>16}{'gross':>16}")
    for asset in report["net_delta"]:
        lines.append(f"{asset:<8}{money(report['net_delta'][asset]):>16}{money(report['gross'][asset]):>16}")
    lines.append("")
    if not report["actions"]:
        lines.append("no actions")
    for row in report["actions"]:
        where = f"{row['fuse']}:{row['market']}" if row["market"] else str(row["fuse"])
        lines.append(f"{row['type']:<12} {where:<28} {row['side'] or '':<9}{row['quantity']:>20}  {row['reason']}")
    for d in report["dropped"]:
        lines.append(f"dropped      {d['fuse']}:{d['market']}  {d['reason']}")
    for r in report["refused"]:
        lines.append(f"refused      {r['type']} {r['fuse']}  {r['refusal']}")
    if report["reasons"]:
        lines.append("")
        lines += [f"why: {r}" for r in report["reasons"]]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    path = args.config_file or args.file
    if not path:
        print("alpha plan: give a strategy file (alpha plan FILE or alpha plan --config FILE)", file=sys.stderr)
        return 2
    try:
        config = load_config(path)
    except ConfigError as exc:
        print(f"{path}: {len(exc.problems)} error(s)", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    try:
        report = build_plan(config)
    except BadMarketData as exc:
        print(f"alpha plan: refused to plan on bad market data: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"alpha plan: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(_table(report))
    return 0
