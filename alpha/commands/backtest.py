"""``alpha backtest``: replay recorded history through the strategy and a passive baseline."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from alpha.commands._args import utc_date

if TYPE_CHECKING:
    from alpha.config.schema import StrategyConfig

help = "run the strategy and a passive baseline over recorded funding and prices"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, type=Path, help="strategy YAML file")
    parser.add_argument("--data", required=True, type=Path, help="directory of canonical funding and price files")
    parser.add_argument("--from", dest="start", type=utc_date, help="start (default: first instant every market has data)")
    parser.add_argument("--to", dest="end", type=utc_date, help="end (default: last instant every market has data)")
    parser.add_argument(
        "--out", type=Path, default=Path("backtest-report"), help="report directory (default ./backtest-report)"
    )
    parser.add_argument("--json", action="store_true", help="print the summaries as JSON")
    parser.add_argument("--verbose", action="store_true", help="show the executor's warnings")
    wf = parser.add_argument_group("walk-forward (fit on past windows only, test on the next)")
    wf.add_argument("--walk-forward", action="store_true", help="fit the grid on each training window, test on the next, roll over the history")
    wf.add_argument(
        "--grid", action="append", default=[], metavar="KEY=V1,V2,...",
        help="a dotted strategy-config path and its values, repeatable (default: entry_min_net_apr x holding_period)",
    )
    wf.add_argument("--train", type=_span, default=None, help="training window (default 180d)")
    wf.add_argument("--test", type=_span, default=None, help="test window, also the step (default 90d)")
    wf.add_argument(
        "--workers", type=int, default=None,
        help="local processes for the replays (default: one per CPU; 1: in this process); every count gives the same figures",
    )
    wf.add_argument(
        "--dask", metavar="ADDRESS", type=_dask_address, default=None,
        help="run the replays on the Dask cluster whose scheduler is at ADDRESS (tcp://host:port), same figures as locally;"
        " every worker needs alpha installed and must read --data at the same absolute path as here (a shared or copied"
        " directory); connection timeout: Dask's distributed.comm.timeouts.connect (30s)",
    )


def _span(text: str) -> timedelta:
    from alpha.backtest.walkforward import parse_span

    try:
        return parse_span(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _dask_address(text: str) -> str:
    from alpha.backtest.sweep import check_address

    try:
        return check_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None


def run(args: argparse.Namespace) -> int:
    from alpha.backtest.baselines import baseline_lines, baselines
    from alpha.backtest.report import summarise, summary_json, summary_lines, write_html, write_json
    from alpha.backtest.runner import run_both
    from alpha.backtest.source import RecordedSource, load_tapes
    from alpha.config import ConfigError, load_config
    from alpha.data.series import DataError
    from alpha.observability.logging import configure

    configure(level="info" if args.verbose else "error", stream=sys.stderr)
    try:
        config = load_config(args.config)
        tapes = load_tapes(config, args.data)
        source = RecordedSource(tapes)
        start = max(args.start or source.start, source.start)
        end = min(args.end or source.end, source.end)
        if end <= start:
            raise DataError(f"no common history between {start.isoformat()} and {end.isoformat()}")
    except ConfigError as exc:
        print(f"{args.config}: " + "; ".join(str(p) for p in exc.problems), file=sys.stderr)
        return 2
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.walk_forward:
        return _walk_forward(args, config, start, end)
    strategy, baseline = run_both(config, tapes, start, end)
    s, b = summarise(strategy, config.delta_tolerance), summarise(baseline, config.delta_tolerance)
    independent = baselines(config, tapes, start, end)
    out: Path = args.out
    write_json(out / "summary.json", s, b, independent)
    write_html(
        out / "report.html", strategy, baseline, s, b, independent,
        title=f"alpha backtest: {config.vault.name}", nav=config.vault.nav, delta_tolerance=config.delta_tolerance,
    )
    if args.json:
        print(json.dumps(summary_json(s, b, independent), indent=2))
    else:
        print("\n".join(summary_lines(s, b)))
        print()
        print("independent baselines (computed from the tapes, not decide(); same fees, slippage and funding):")
        print("\n".join(baseline_lines(independent)))
        print(f"report: {out / 'report.html'} (JSON: {out / 'summary.json'})")
    return 0


def _walk_forward(args: argparse.Namespace, config: StrategyConfig, start: datetime, end: datetime) -> int:
    from alpha.backtest.report import write_walk_forward_html
    from alpha.backtest.sweep import SweepError
    from alpha.backtest.walkforward import DEFAULT_TEST, DEFAULT_TRAIN, GridError, WalkForward, grid_points, parse_grid

    if args.workers is not None and args.workers < 1:
        print("error: --workers must be at least 1", file=sys.stderr)
        return 2
    if args.workers is not None and args.dask is not None:
        print("error: --workers and --dask exclude each other (the Dask cluster has its own workers)", file=sys.stderr)
        return 2
    try:
        points, dropped = grid_points(config, parse_grid(args.grid) if args.grid else None)
    except GridError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    evaluation = WalkForward(
        config, args.data, points, train=args.train or DEFAULT_TRAIN, test=args.test or DEFAULT_TEST,
        workers=args.workers, scheduler=args.dask,
    )
    try:
        evaluation.run(start, end)
    except SweepError as exc:
        where = f" (every Dask worker must read --data at {args.data.resolve()})" if args.dask is not None else ""
        print(f"error: {exc}{where}", file=sys.stderr)
        return 2
    if not evaluation.results:
        print(f"error: the history ({start} .. {end}) is shorter than one training plus half a test window", file=sys.stderr)
        return 2
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    doc = evaluation.as_json()
    doc["dropped_grid_points"] = dropped
    (out / "walk-forward.json").write_text(json.dumps(doc, indent=2))
    lines = evaluation.lines()
    write_walk_forward_html(out / "walk-forward.html", evaluation, dropped, title=f"alpha backtest --walk-forward: {evaluation.config.vault.name}")
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print("\n".join(lines))
        for reason in dropped:
            print(f"grid point dropped: {reason}")
        print(f"report: {out / 'walk-forward.html'} (JSON: {out / 'walk-forward.json'})")
    return 0
