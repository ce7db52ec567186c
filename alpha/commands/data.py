"""``alpha data``: fetch history through ccxt, import recorded files, check canonical files."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path

from alpha.commands._args import utc_date

help = "market history: fetch through ccxt, import recorded exports, check files"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    f = sub.add_parser("fetch", help="download funding and price history into the canonical format (resumable)")
    f.add_argument("--venue", required=True, help="binance, bybit, okx or hyperliquid")
    f.add_argument("--symbol", required=True, help="market, unified (BTC/USDT:USDT) or the venue's id (BTCUSDT)")
    f.add_argument("--since", required=True, type=utc_date, help="first date to fetch (UTC)")
    f.add_argument("--until", type=utc_date, help="last instant to fetch (default: now)")
    f.add_argument("--out", type=Path, default=Path("data"), help="directory for the canonical files (default ./data)")
    f.add_argument("--timeframe", default="1h", help="candle period for prices: 1h, 4h, 8h, 1d (default 1h)")
    f.add_argument("--api-url", help="base URL override (a testnet, proxy or local emulator)")
    i = sub.add_parser("import", help="convert a recorded export (any supported family) to canonical files")
    i.add_argument("file", type=Path)
    i.add_argument("--out", type=Path, required=True, help="directory for the canonical files")
    i.add_argument("--duplicates", choices=("refuse", "drop", "keep"), default="refuse")
    i.add_argument("--venue", help="venue of a funding file without a venue column (default: from the file name)")
    i.add_argument("--symbol", help="symbol of a funding file without a symbol column (default: from the file name)")
    c = sub.add_parser("check", help="validate history files and report gaps, duplicates and absurd rates")
    c.add_argument("file", type=Path, nargs="+")
    c.add_argument("--duplicates", choices=("refuse", "drop", "keep"), default="refuse")


def run(args: argparse.Namespace) -> int:
    from alpha.data.series import DataError

    try:
        if args.action == "fetch":
            return _fetch(args)
        if args.action == "import":
            return _import(args)
        return _check(args)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _fetch(args: argparse.Namespace) -> int:
    from alpha.data.fetch import fetch_history, make_exchange

    # The command line is the shell's edge: "now" is read here and passed down.
    now = args.until or datetime.now(UTC)

    async def go() -> int:
        exchange = make_exchange(args.venue, args.api_url)
        try:
            result = await fetch_history(
                exchange,
                venue=args.venue,
                symbol=args.symbol,
                since=args.since,
                now=now,
                out=args.out,
                timeframe=args.timeframe,
            )
        finally:
            await exchange.close()
        resumed = (
            f" (resumed after {result.resumed_funding_from:%Y-%m-%d %H:%M})" if result.resumed_funding_from else ""
        )
        print(f"{result.funding_file}: +{result.funding_rows} settlements{resumed}")
        print(f"{result.price_file}: +{result.price_rows} closes")
        return 0

    return asyncio.run(go())


def _import(args: argparse.Namespace) -> int:
    from alpha.data.canonical import funding_path, price_path, write_funding, write_prices
    from alpha.data.importers import import_file
    from alpha.data.series import Duplicates

    imported = import_file(args.file, duplicates=Duplicates(args.duplicates), venue=args.venue, symbol=args.symbol)
    for (venue, symbol), series in sorted(imported.funding.items()):
        path = funding_path(args.out, venue, symbol)
        write_funding(path, series.records)
        print(f"{path}: {len(series)} settlements")
    for (venue, symbol), prices in sorted(imported.prices.items()):
        path = price_path(args.out, venue, symbol)
        write_prices(path, prices.points)
        print(f"{path}: {len(prices)} prices")
    for line in imported.report_lines():
        print(line, file=sys.stderr)
    return 0


def _check(args: argparse.Namespace) -> int:
    from alpha.data.importers import import_file
    from alpha.data.series import DataError, Duplicates

    failed = 0
    for path in args.file:
        try:
            imported = import_file(path, duplicates=Duplicates(args.duplicates))
        except DataError as exc:
            failed += 1
            print(f"{path}: {exc}", file=sys.stderr)
            continue
        for line in imported.report_lines():
            print(line)
    return 1 if failed else 0
