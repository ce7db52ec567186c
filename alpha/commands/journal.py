"""``alpha journal export``: write the journal's trades, funding payments, transfers and decisions to files."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

help = "read the journal (export: trades, funding payments, transfers and decisions as CSV or Parquet)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    e = sub.add_parser(
        "export",
        help="write trades, funding, transfers and decisions, one file per kind",
        description="write trades, funding, transfers and decisions, one file per kind; amounts stay exact decimals",
    )
    where = e.add_mutually_exclusive_group(required=True)
    where.add_argument("--journal", type=Path, metavar="FILE", help="the journal file (SQLite)")
    where.add_argument("--config", type=Path, metavar="FILE", help="a strategy file: export the journal it names")
    e.add_argument("--format", default="csv", metavar="FORMAT", help="csv (default) or parquet")
    e.add_argument("--out", type=Path, required=True, metavar="DIR", help="directory for the files (created)")
    e.add_argument("--json", action="store_true", help="print what was written as JSON")


def run(args: argparse.Namespace) -> int:
    from alpha.daemon.journal_export import FORMATS, ExportError, export, open_journal

    try:
        if args.format not in FORMATS:
            raise ExportError(f"unknown format {args.format!r} (choose {' or '.join(FORMATS)})")
        path = args.journal if args.journal is not None else _journal_of(args.config)
        journal = open_journal(path)
        try:
            written = export(journal, args.format, args.out)
        finally:
            journal.close()
    except ExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({name: {"file": str(w.path), "rows": w.rows} for name, w in written.items()}, indent=2))
    else:
        for name, w in written.items():
            print(f"{name}: {w.rows} rows -> {w.path}")
    return 0


def _journal_of(config: Path) -> Path:
    from alpha.config import ConfigError, load_config
    from alpha.daemon.journal_export import ExportError

    try:
        return load_config(config).journal.path
    except ConfigError as exc:
        raise ExportError(str(exc).splitlines()[0] if str(exc) else f"{config}: not a valid strategy file") from None
    except OSError as exc:
        raise ExportError(f"cannot read {config}: {exc.strerror}") from None

