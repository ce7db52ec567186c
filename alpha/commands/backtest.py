"""``alpha backtest``: replay recorded history through the strategy and a passive baseline."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from alpha.commands._args import utc_date

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


def run(args: argparse.Namespace) -> int:
    from alpha.backtest.baselines import baseline_lines, baselines
    from alpha.backtest.report import plot, summarise, summary_json, summary_lines, write_html, write_json
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
    strategy, baseline = run_both(config, tapes, start, end)
    s, b = summarise(strategy, config.delta_tolerance), summarise(baseline, config.delta_tolerance)
    independent = baselines(config, tapes, start, end)
    out: Path = args.out
    write_json(out / "summary.json", s, b, independent)
    images = plot([strategy, baseline], out)
    write_html(out / "report.html", s, b, images, f"alpha backtest: {config.vault.name}", independent)
    if args.json:
        print(json.dumps(summary_json(s, b, independent), indent=2))
    else:
        print("\n".join(summary_lines(s, b)))
        print()
        print("independent baselines (computed from the tapes, not decide(); same fees, slippage and funding):")
        print("\n".join(baseline_lines(independent)))
        print(f"report: {out / 'report.html'} (JSON: {out / 'summary.json'})")
    return 0
