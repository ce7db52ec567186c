"""``alpha plan FILE`` / ``alpha plan --config FILE [--json] [--simulated]``: what the strategy would do now, without trading.

A live file (``mode: live``) is planned on the real venues as they are now: the live wiring's
fuses start, and their read calls only (instruments, accounts and positions, marks, funding
and books; never an order or a transfer) build the view the daemon would decide on, with the
vault's idle capital as the file's journal allocated it (``alpha.daemon.vault``). The
output names the venues read.

Otherwise, or with ``--simulated``, the current state is the simulated world of the strategy
(``fuses.sim.world.SimWorld``). A strategy whose fuses are live venues (``cex``, ``perp_dex``,
on-chain lending) is then planned against simulated stand-ins with the same names, markets
and caps, and, without a ``market`` section, default synthetic market parameters; the output
says so.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
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
from alpha.daemon.portfolio import JOURNAL_ONLY
from alpha.domain.actions import Action, action_rows
from alpha.domain.apply import apply
from alpha.domain.clock import Clock
from alpha.domain.market import BadMarketData
from alpha.domain.portfolio import PortfolioView
from alpha.risk.exposure import fuse_leverage, gross, net_delta
from alpha.risk.gate import RiskState
from alpha.risk.perp_power import perp_power_report
from alpha.strategy.signals import FundingHistory, compute_signals

help = "print what the strategy would do now, without trading (a live file: from the real venues, read only)"

DEFAULT_START = datetime(2024, 1, 1, tzinfo=UTC)
# Starting prices for assets a stand-in synthetic market has to invent (order of magnitude only).
DEFAULT_PRICES = {"BTC": Decimal("60000"), "ETH": Decimal("3000"), "SOL": Decimal("150")}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", nargs="?", help="strategy YAML file")
    parser.add_argument("--config", dest="config_file", help="strategy YAML file (same as FILE)")
    parser.add_argument("--json", action="store_true", help="print JSON (amounts as decimal strings)")
    parser.add_argument("--simulated", action="store_true", help="plan a live file on a simulated state instead of the real venues")


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
    report = plan_report(sim_config, world.portfolio_view(now), now)
    report["simulated"] = notes
    return report


async def build_live_plan(config: StrategyConfig, clock: Clock) -> dict[str, Any]:
    """Plan on the real venues: read the accounts, positions, marks, funding and books through the live fuses, never trade.

    The fuses are the live wiring's (the vault's allocations rebuilt from the file's journal
    when it exists); only their read calls are made, and they are closed before returning.
    """
    from alpha.daemon.app import live_wiring
    from alpha.daemon.book import gather_view
    from alpha.daemon.journal import Journal
    from alpha.daemon.marketdata import MarketData
    from alpha.daemon.vault import is_allocation
    from alpha.observability.metrics import Metrics

    metrics = Metrics()
    wiring = live_wiring(config, clock, metrics)
    journal_path = Path(config.journal.path)
    journal = Journal(journal_path) if journal_path.exists() else None
    started = []
    try:
        if journal is not None and wiring.attach is not None:
            wiring.attach(SimpleNamespace(journal=journal))  # type: ignore[arg-type]  # the vault reads only the journal
        for name, fuse in wiring.fuses.items():
            await fuse.start()
            started.append(name)
        marketdata = MarketData(wiring.fuses, clock, metrics)
        await marketdata.load_instruments()
        await marketdata.refresh(books=True)
        if marketdata.last_error:
            raise ValueError("cannot read market data: " + "; ".join(f"{n}: {e}" for n, e in sorted(marketdata.last_error.items())))
        now = clock.now()
        view = await gather_view(now, fuses=wiring.fuses, marketdata=marketdata, config=config, vault_cash=wiring.vault_cash)
    finally:
        for name in reversed(started):
            await wiring.fuses[name].close()
        if wiring.close is not None:
            await wiring.close()
        if journal is not None:
            journal.close()
    report = plan_report(config, view, now, lambda action: is_allocation(action, wiring.fuses))
    report["simulated"] = []
    report["read_from"] = {f.name: f.venue + (f" at {f.api_url}" if f.api_url else "") for f in config.enabled_fuses}
    report["positions"] = [
        {"fuse": name, "market": p.market, "size": str(p.size), "mark": str(p.mark_price)}
        for name, acct in view.accounts.items()
        for p in acct.positions
        if p.size != 0
    ]
    return report


def plan_report(
    config: StrategyConfig, view: PortfolioView, now: datetime, journal_only: Callable[[Action], bool] | None = None
) -> dict[str, Any]:
    """The decision step on ``view`` at ``now``, and the view after its approved actions, as plain data.

    ``journal_only``: which actions would move capital in the journal only (live: the vault's
    allocations); their rows say so (``allocation``).
    """
    history = FundingHistory()
    history.observe(view)
    signals = compute_signals(history, view, now)
    step = decision_step(view, signals, config, RiskState(now=now), now)
    if step.skipped is not None or step.target is None:
        raise ValueError(step.skipped or "no decision")
    target = step.target
    after = apply(view, step.approved)
    leverage = fuse_leverage(after)
    nav = after.nav
    fuses = {}
    for f in config.fuses:
        fuses[f.name] = {
            "capital": str(after.fuse_equity(f.name)),
            "cap": str(f.max_share * nav if f.enabled else Decimal(0)),
            "leverage": str(leverage.get(f.name, Decimal(0))),
            "max_leverage": str(f.max_leverage),
        }
    assets = sorted({*config.assets, *net_delta(after)})
    nd = net_delta(after)
    gr = gross(after)
    return {
        "nav": str(nav),
        "idle": str(after.vault_cash),
        "fuses": fuses,
        "net_delta": {a: str(nd.get(a, Decimal(0))) for a in assets},
        "gross": {a: str(gr.get(a, Decimal(0))) for a in assets},
        "actions": [
            {**row, "allocation": JOURNAL_ONLY} if journal_only is not None and journal_only(action) else row
            for action in step.approved
            for row in action_rows(action)
        ],
        "dropped": [
            {"hedge_id": str(d.hedge_id), "fuse": d.fuse, "market": d.market, "quantity": str(d.quantity), "reason": d.reason}
            for d in step.dropped
        ],
        "refused": [{**action_rows(r.action)[0], "refusal": r.reason} for r in step.refused],
        "reasons": list(target.reasons),
        "perp_power": perp_power_report(after),
        "rates": _rates_report(after),
        "notes": list(step.notes),
        "as_of": now.isoformat(),
    }


def _rates_report(view: PortfolioView) -> list[dict[str, Any]]:
    """Each rate market's mark and the YU held on it, with its zone's collateral and margin (the view after the plan)."""
    rows = []
    for key, market in sorted(view.rates.markets.items()):
        quote = view.rates.quotes.get(key)
        acct = view.rates.accounts.get(market.fuse)
        held = view.rates.position(key)
        rows.append({
            "fuse": market.fuse, "market": market.market, "underlying": market.underlying, "maturity": market.maturity.isoformat(),
            "mark_apr": None if quote is None else str(quote.mark_apr), "size": str(held.size if held is not None else 0),
            "asset": market.asset, "collateral": None if acct is None else str(acct.collateral),
            "initial_margin": None if acct is None else str(acct.initial_margin),
        })
    return rows


def _table(report: dict[str, Any]) -> str:
    def money(text: str) -> str:
        return f"{Decimal(text):,.2f}"

    lines = [f"as of {report['as_of']}: NAV {money(report['nav'])}, idle {money(report['idle'])}"]
    lines += [f"  note: {n}" for n in report["simulated"]]
    for name, where in report.get("read_from", {}).items():
        lines.append(f"  read from the venue (read only): {name} on {where}")
    for p in report.get("positions", []):
        lines.append(f"  open now: {p['fuse']} {p['market']} {p['size']} (mark {p['mark']})")
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
        kind = f"{row['type']} ({row['allocation']})" if row.get("allocation") else row["type"]
        lines.append(f"{kind:<12} {where:<28} {row['side'] or '':<9}{row['quantity']:>20}  {row['reason']}")
    for d in report["dropped"]:
        lines.append(f"dropped      {d['fuse']}:{d['market']}  {d['reason']}")
    for r in report["refused"]:
        lines.append(f"refused      {r['type']} {r['fuse']}  {r['refusal']}")
    if report.get("rates"):
        lines.append("")
        lines.append(f"{'rate market':<36}{'maturity':>12}{'mark APR':>10}{'YU held':>12}{'collateral':>14}")
        for r in report["rates"]:
            mark = "-" if r["mark_apr"] is None else f"{Decimal(r['mark_apr']):.2%}"
            collateral = "-" if r["collateral"] is None else f"{Decimal(r['collateral']):.6f} {r['asset']}"
            lines.append(f"{r['fuse'] + ':' + r['market']:<36}{r['maturity'][:10]:>12}{mark:>10}{r['size']:>12}{collateral:>14}")
    for note in report.get("notes", []):
        lines.append(f"note: {note}")
    liquidatable = [r for r in report.get("perp_power", []) if r["min_ratio"] is not None]
    if liquidatable:
        lines.append("")
        lines.append(f"{'p-perp view':<36}{'p':>3}{'c':>10}{'min':>10}{'liq. at':>12}{'max lev':>9}")
        for r in liquidatable:
            where = f"{r['fuse']}:{r['market']}"
            dist = "never" if r["liquidation_distance"] is None else f"{Decimal(r['liquidation_distance']) * 100:.1f}% {r['direction']}"
            lev = "" if r["max_leverage"] is None else f"{Decimal(r['max_leverage']):.2f}x"
            lines.append(f"{where:<36}{r['power']:>3}{Decimal(r['collateral_ratio']):>10.4f}{Decimal(r['min_ratio']):>10.4f}{dist:>12}{lev:>9}")
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
        if config.mode == "live" and not args.simulated:
            from alpha.daemon.app import WiringError
            from alpha.domain.clock import LiveClock
            from fuses.base import FuseError

            try:
                report = asyncio.run(build_live_plan(config, LiveClock()))
            except (WiringError, FuseError) as exc:
                print(f"alpha plan: cannot read the venues: {type(exc).__name__}: {' '.join(str(exc).split())}"
                      " (--simulated plans on a simulated state)", file=sys.stderr)
                return 1
        else:
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
