"""``alpha research insurance-fund``: reproduce UXD's insurance-fund study on recorded funding."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from alpha.commands._args import utc_date

help = "research studies on recorded history (insurance-fund: UXD's study; evaluate: the walk-forward on every priced series)"


def _decimal(text: str) -> Decimal:
    from alpha.domain.money import NotExact, to_decimal

    try:
        return to_decimal(text)
    except NotExact as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="study", metavar="STUDY", required=True)
    p = sub.add_parser("insurance-fund", help="a fund receiving a share of a delta-neutral book's funding")
    p.add_argument("--data", required=True, type=Path, help="funding history (any format alpha imports)")
    p.add_argument("--symbol", help="market in the file when it holds several")
    p.add_argument("--start", type=utc_date, help="first settlement date (default: the first in the data)")
    p.add_argument("--end", type=utc_date, help="stop before this date (default: the end of the data)")
    p.add_argument("--notional", type=_decimal, default=Decimal("500000000"), help="book notional (default 500000000)")
    p.add_argument(
        "--initial-fund", type=_decimal, default=Decimal("57000000"), help="starting balance (default 57000000)"
    )
    p.add_argument(
        "--share", type=_decimal, default=Decimal(1), help="share of the funding the fund receives (default 1)"
    )
    p.add_argument("--fund-return", type=_decimal, default=Decimal(0), help="annual yield on the balance, e.g. 0.05")
    p.add_argument("--schedule", type=Path, help="CSV days,notional or date,notional: the book grows by a supply cap")
    p.add_argument("--all-starts", action="store_true", help="run from every start date (one per UTC day)")
    p.add_argument(
        "--duplicates",
        choices=("keep", "drop", "refuse"),
        default="keep",
        help="repeated settlements: keep them as the study did (default), drop exact repeats, or refuse",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--plot", type=Path, metavar="DIR", help="write PNG plots (balance path / max-mean-min per start)")
    e = sub.add_parser(
        "evaluate",
        help="walk-forward of the shipped strategy on every recorded series with prices, in one table",
        description="walk-forward of the shipped strategy on every recorded series with prices, in one table",
    )
    e.add_argument("--shared", type=Path, default=Path("../shared/data"), help="recorded data (default ../shared/data)")
    e.add_argument("--only", type=_names, help="comma-separated case names (default: every case)")
    e.add_argument("--train", type=_span, default=None, help="training window (default 180d; short cases use their own)")
    e.add_argument("--test", type=_span, default=None, help="test window, also the step (default 90d)")
    e.add_argument("--from", dest="start", type=utc_date, help="restrict every case to this start")
    e.add_argument("--to", dest="end", type=utc_date, help="restrict every case to this end")
    e.add_argument("--workers", type=int, default=1, help="processes for the grid points (default 1)")
    e.add_argument("--cache", type=Path, help="directory for the imported canonical files (default OUT/data)")
    e.add_argument("--out", type=Path, default=Path("reports/evaluate"), help="report directory (default reports/evaluate)")
    e.add_argument("--json", action="store_true", help="print the evaluation as JSON")


def _names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected NAME[,NAME...]")
    return names


def _span(text: str) -> timedelta:
    from alpha.backtest.walkforward import parse_span

    try:
        return parse_span(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    if args.study == "evaluate":
        return _evaluate(args)
    return _insurance_fund(args)


def _evaluate_argv(args: argparse.Namespace) -> list[str]:
    """The command's arguments, spelled out (what the table prints at its top)."""
    argv = ["research", "evaluate", "--shared", str(args.shared), "--out", str(args.out)]
    if args.only:
        argv += ["--only", ",".join(args.only)]
    for flag, value in (("--train", args.train), ("--test", args.test)):
        if value is not None:
            from alpha.config.types import format_duration

            argv += [flag, format_duration(value)]
    for flag, when in (("--from", args.start), ("--to", args.end)):
        if when is not None:
            argv += [flag, when.isoformat().replace("+00:00", "Z")]
    if args.workers != 1:
        argv += ["--workers", str(args.workers)]
    if args.cache is not None:
        argv += ["--cache", str(args.cache)]
    if args.json:
        argv.append("--json")
    return argv


def _evaluate(args: argparse.Namespace) -> int:
    from alpha.backtest.report import html_rows, write_page
    from alpha.backtest.walkforward import DEFAULT_TEST, DEFAULT_TRAIN
    from alpha.observability.logging import configure
    from alpha.research import evaluate as ev

    configure(level="error", stream=sys.stderr)
    if args.workers < 1:
        print("error: --workers must be at least 1", file=sys.stderr)
        return 2
    try:
        cases = ev.select(args.only)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not args.shared.is_dir():
        print(f"error: {args.shared}: no such directory (pass --shared DIR)", file=sys.stderr)
        return 2
    command = ev.command_line(_evaluate_argv(args))
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    skipped = ev.SKIPPED if not args.only else ()

    def save(results: list[ev.CaseResult]) -> None:
        (out / "evaluate.json").write_text(json.dumps(ev.document(command, results, skipped), indent=2))
        lines = ev.table_lines(command, results, skipped)
        write_page(out / "evaluate.html", "alpha research evaluate", html_rows(lines))

    results = ev.run_all(
        cases,
        args.shared,
        args.cache or out / "data",
        train=args.train or DEFAULT_TRAIN,
        test=args.test or DEFAULT_TEST,
        workers=args.workers,
        start=args.start,
        end=args.end,
        on_case=save,
    )
    save(results)
    if args.json:
        print(json.dumps(ev.document(command, results, skipped), indent=2))
    else:
        print("\n".join(ev.table_lines(command, results, skipped)))
        print(f"report: {out / 'evaluate.html'} (JSON: {out / 'evaluate.json'})")
    return 0 if any(r.status == "ok" for r in results) else 2


SHOWN_BANKRUPT = 10  # bankrupt starts listed by ``insurance-fund --all-starts``; the rest are counted


def _insurance_fund(args: argparse.Namespace) -> int:
    from alpha.data.importers import import_file
    from alpha.data.series import DataError, Duplicates
    from alpha.research import insurance_fund as study_mod

    try:
        imported = import_file(args.data, duplicates=Duplicates(args.duplicates))
        if not imported.funding:
            raise DataError(f"{args.data}: holds no funding history")
        if args.symbol:
            matches = [s for (_, sym), s in imported.funding.items() if sym == args.symbol]
            if not matches:
                raise DataError(f"{args.data}: no market {args.symbol}")
            series = matches[0]
        elif len(imported.funding) > 1:
            names = ", ".join(sorted(sym for _, sym in imported.funding))
            raise DataError(f"{args.data}: holds several markets ({names}); choose one with --symbol")
        else:
            (series,) = imported.funding.values()
        series = series.between(args.start, args.end)
        if not series.records:
            raise DataError("no settlement between --start and --end")
        study = study_mod.Study(
            notional=args.notional,
            initial_fund=args.initial_fund,
            share=args.share,
            fund_return=args.fund_return,
            schedule=study_mod.load_schedule(args.schedule) if args.schedule else None,
        )
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if series.report.duplicates_kept:
        print(f"note: {series.report.duplicates_kept} duplicate settlement(s) kept as recorded", file=sys.stderr)
    title = f"{series.venue} {series.symbol}: fund {args.initial_fund:,} on notional {args.notional:,}"
    if args.all_starts:
        results = study_mod.run_all_starts(series, study)
        if args.plot:
            study_mod.plot_all_starts(results, args.plot / "insurance_fund_all_starts.png", title)
        if args.json:
            print(json.dumps([r.as_json(with_start=True) for r in results]))
        else:
            broke = [r for r in results if r.bankrupt_at is not None]
            print(f"{len(results)} start dates, {len(broke)} go bankrupt")
            worst = min(results, key=lambda r: r.min)
            print(f"worst start {worst.start:%Y-%m-%d}: min {worst.min:,.0f}, end {worst.end_balance:,.0f}")
            for r in broke[:SHOWN_BANKRUPT]:
                print(f"  start {r.start:%Y-%m-%d} bankrupt at {r.bankrupt_at:%Y-%m-%d %H:%M}")
            if len(broke) > SHOWN_BANKRUPT:
                print(f"  ... and {len(broke) - SHOWN_BANKRUPT} more (--json lists every start)")
        return 0
    times, balances = study_mod.balance_path(series.records, study)
    stats = study_mod.stats_from_path(times, balances)
    if args.plot:
        study_mod.plot_path(times, balances, args.plot / "insurance_fund_path.png", title)
    if args.json:
        print(json.dumps(stats.as_json()))
    else:
        print(f"start {stats.start:%Y-%m-%d %H:%M} UTC, {len(balances) - 1} settlements")
        print(f"end balance {stats.end_balance:,.2f}")
        print(f"min {stats.min:,.2f}  mean {stats.mean:,.2f}  max {stats.max:,.2f}")
        print(f"bankrupt at {stats.bankrupt_at:%Y-%m-%d %H:%M}" if stats.bankrupt_at else "never bankrupt")
    return 0
