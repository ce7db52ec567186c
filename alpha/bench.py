"""Benchmarks (``make bench`` = ``python -m alpha.bench``): print figures, assert nothing.

1. The insurance-fund study from every start date on the full BitMEX XBTUSD file (UXD's).
2. The backtest's events per second (one funding settlement or price update = one event) on a
   5-year, 3-venue, 10-market run. No 5-year hourly history of 10 markets exists in
   ``shared/data``, so the bench tiles real recorded series onto 2019-2024: hourly BTC spot and
   perp closes (2021-07..2024-07, scaled per asset), Binance and Bybit 8h funding and dYdX 1h
   funding, repeated end to end. The shapes (hourly marks, 8h and 1h settlements) are what a
   real run replays; the numbers are only load.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from alpha.data.canonical import load_funding, price_path, write_funding, write_prices
from alpha.data.importers import import_file
from alpha.data.series import Duplicates, FundingRecord, PricePoint

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"

# venue -> (fuse kind, markets with (asset, price scale, funding file or None for spot))
LAYOUT: dict[str, list[tuple[str, str, Decimal, str | None]]] = {
    "binance-spot": [("BTC/USDT", "BTC", Decimal(1), None), ("ETH/USDT", "ETH", Decimal("0.06"), None)],
    "binance": [
        ("BTC/USDT:USDT", "BTC", Decimal(1), "binance_BTCUSDT_funding.csv"),
        ("ETH/USDT:USDT", "ETH", Decimal("0.06"), "binance_ETHUSDT_funding.csv"),
        ("SOL/USDT:USDT", "SOL", Decimal("0.003"), "binance_ETHUSDT_funding.csv"),
    ],
    "bybit": [
        ("BTC/USDT:USDT", "BTC", Decimal(1), "bybit_BTCUSDT_funding.csv"),
        ("ETH/USDT:USDT", "ETH", Decimal("0.06"), "bybit_ETHUSDT_funding.csv"),
    ],
    "dydx": [
        ("BTC/USDT:USDT", "BTC", Decimal(1), "dydx_BTC-USD_funding.csv"),
        ("ETH/USDT:USDT", "ETH", Decimal("0.06"), "dydx_ETH-USD_funding.csv"),
        ("SOL/USDT:USDT", "SOL", Decimal("0.003"), "dydx_ETH-USD_funding.csv"),
    ],
}


def bench_insurance_fund() -> None:
    """Time the all-starts study on the full XBTUSD file."""
    from alpha.research.insurance_fund import Study, run_all_starts

    t0 = time.perf_counter()
    (series,) = import_file(SHARED / "uxd" / "bitmex_XBTUSD_funding.csv").funding.values()
    t1 = time.perf_counter()
    results = run_all_starts(series, Study())
    t2 = time.perf_counter()
    results_r = run_all_starts(series, Study(fund_return=Decimal("0.05")))
    t3 = time.perf_counter()
    print(f"insurance fund, all starts, BitMEX XBTUSD: {len(series)} settlements, {len(results)} start dates")
    print(f"  load {t1 - t0:.3f} s; study {t2 - t1:.3f} s (prefix sums); with 5% fund return {t3 - t2:.3f} s (blocked)")
    assert len(results_r) == len(results)


def _tile_prices(points: list[PricePoint], scale: Decimal, start: datetime, end: datetime) -> list[PricePoint]:
    span = points[-1].ts - points[0].ts + timedelta(hours=1)
    out: list[PricePoint] = []
    k = 0
    while True:
        shift = start - points[0].ts + k * span
        for p in points:
            ts = p.ts + shift
            if ts > end:
                return out
            out.append(PricePoint(ts, (p.price * scale).quantize(Decimal("0.0001"))))
        k += 1


def _tile_funding(records: list[FundingRecord], start: datetime, end: datetime) -> list[FundingRecord]:
    first = records[0].ts
    span = records[-1].ts - first + records[-1].interval
    out: list[FundingRecord] = []
    k = 0
    while True:
        shift = start - first + k * span
        for r in records:
            ts = r.ts + shift
            if ts > end:
                return out
            if not out or ts > out[-1].ts:
                out.append(FundingRecord(ts, r.rate, r.interval))
        k += 1


def make_bench_data(directory: Path, start: datetime, end: datetime) -> None:
    """Write the tiled canonical files for ``LAYOUT`` into ``directory``."""
    hourly = import_file(
        SHARED / "prices" / "binance_BTC_spot_perp_close_1h_2021-07_to_2024-07.csv", duplicates=Duplicates.DROP
    )
    perp = list(hourly.prices[("binance", "BTCUSDT")].points)
    spot = list(hourly.prices[("binance", "BTCUSDT-spot")].points)
    for venue, markets in LAYOUT.items():
        for market, _asset, scale, funding_file in markets:
            symbol = market.replace("/", "").split(":")[0] + ("" if funding_file else "-spot")
            write_prices(
                price_path(directory, venue, symbol), _tile_prices(perp if funding_file else spot, scale, start, end)
            )
            if funding_file:
                records = list(load_funding(SHARED / "funding" / funding_file).records)
                write_funding(directory / f"{venue}_{symbol}_funding.csv", _tile_funding(records, start, end))


def bench_config(directory: Path) -> Path:
    """Write the strategy file for the bench run."""
    fuses = []
    shares = {"binance-spot": "0.40", "binance": "0.20", "bybit": "0.15", "dydx": "0.15"}
    for venue, markets in LAYOUT.items():
        spot = venue.endswith("-spot")
        names = ", ".join(m for m, *_ in markets)
        fuses.append(
            f"""  - name: {venue}
    kind: sim
    venue: {venue.replace("-spot", "")}
    markets: [{names}]
    max_share: "{shares[venue]}"
    max_leverage: "{1 if spot else 3}"
    sim: {{funding_interval: {"1h" if venue == "dydx" else "8h"}, depth_notional: "20000000"}}"""
        )
    text = f"""version: 1
mode: backtest
vault: {{name: bench, base_asset: USDT, nav: "10000000"}}
assets: [BTC, ETH, SOL]
stablecoins: [USDT]
fuses:
{chr(10).join(fuses)}
risk: {{max_order_notional: "2000000", max_venue_exposure: "1", max_data_age: 2h, max_unhedged_notional: "2000000"}}
"""
    path = directory / "bench.yaml"
    path.write_text(text)
    return path


def bench_backtest(years: int) -> None:
    """Time one strategy replay over ``years`` of tiled history."""
    from alpha.backtest.runner import replay
    from alpha.backtest.source import load_tapes
    from alpha.config import load_config
    from alpha.observability.logging import configure

    configure(level="critical")
    start = datetime(2019, 1, 1, tzinfo=UTC)
    end = start + timedelta(days=365 * years)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        t0 = time.perf_counter()
        make_bench_data(d, start, end + timedelta(days=2))
        cfg = load_config(bench_config(d))
        tapes = load_tapes(cfg, d)
        t1 = time.perf_counter()
        result = asyncio.run(replay(cfg, tapes, start, end))
        markets = sum(len(f.markets) for f in cfg.fuses)
        venues = len({f.venue for f in cfg.fuses})
        print(
            f"backtest, {years} years, {venues} venues, {markets} markets: {result.events} events "
            f"({result.steps} time steps, {result.decisions} decisions, {len(result.fills)} fills)"
        )
        print(
            f"  data {t1 - t0:.1f} s; replay {result.wall_seconds:.1f} s = {result.events / result.wall_seconds:,.0f} events/s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m alpha.bench", description=__doc__.splitlines()[0] if __doc__ else ""
    )
    parser.add_argument("--years", type=int, default=5, help="years of history for the backtest bench (default 5)")
    parser.add_argument("--skip-backtest", action="store_true")
    args = parser.parse_args()
    bench_insurance_fund()
    if not args.skip_backtest:
        bench_backtest(args.years)


if __name__ == "__main__":
    main()
