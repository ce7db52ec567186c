"""Loaders and importers on every file family in shared/data, with their traps."""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from alpha.data.canonical import load_funding, load_prices, write_funding, write_prices
from alpha.data.importers import (
    FAMILIES,
    detect,
    from_ccxt_funding_history,
    from_ccxt_ohlcv,
    import_file,
    import_hourly_closes,
)
from alpha.data.series import DataError, Duplicates, FundingRecord, PricePoint
from alpha.data.timezones import local_to_utc


def t(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_every_canonical_funding_file_loads_in_order_with_exact_rates(shared_data: Path) -> None:
    files = sorted((shared_data / "funding").glob("*.csv"))
    assert len(files) == 23
    for f in files:
        series = load_funding(f)
        with f.open() as fh:
            raw = list(csv.DictReader(fh))
        assert len(series) == len(raw)
        # Exact decimal text, not a float round trip.
        assert series.records[0].rate == Decimal(raw[0]["rate"])
        assert all(a.ts < b.ts for a, b in zip(series.records, series.records[1:], strict=False))


def test_gate_reports_its_missing_january_2021(shared_data: Path) -> None:
    series = load_funding(shared_data / "funding" / "gate_BTCUSDT_funding.csv")
    gap = next(g for g in series.report.gaps if g.missing > 30)
    assert gap.after == t(2020, 11, 30, 16) and gap.before == t(2021, 1, 1)
    assert gap.missing == (gap.before - gap.after) // timedelta(hours=8) - 1


def test_bitmex_change_from_24h_to_8h_is_not_a_gap(shared_data: Path) -> None:
    series = load_funding(shared_data / "funding" / "bitmex_XBTUSD_funding.csv")
    assert series.records[0].interval == timedelta(hours=24)
    assert series.records[-1].interval == timedelta(hours=8)
    assert all(g.after.year > 2016 for g in series.report.gaps)


def test_uxd_ftx_export_refuses_its_26_duplicates_unless_asked(shared_data: Path) -> None:
    path = shared_data / "uxd" / "ftx_SOL-PERP_funding.csv"
    with pytest.raises(DataError, match="repeats row"):
        import_file(path)
    dropped = import_file(path, duplicates=Duplicates.DROP).funding[("ftx", "SOL-PERP")]
    kept = import_file(path, duplicates=Duplicates.KEEP).funding[("ftx", "SOL-PERP")]
    assert dropped.report.duplicates_dropped == 26
    assert len(kept) == len(dropped) + 26
    # Newest first in the file, oldest first once imported; equal to the cleaned canonical file.
    canonical = load_funding(shared_data / "funding" / "ftx_SOL-PERP_funding.csv")
    assert [(r.ts, r.rate) for r in dropped.records] == [(r.ts, r.rate) for r in canonical.records]


def test_uxd_bitmex_export_reads_the_interval_written_as_a_time(shared_data: Path) -> None:
    series = import_file(shared_data / "uxd" / "bitmex_XBTUSD_funding.csv").funding[("bitmex", "XBTUSD")]
    assert series.start == t(2016, 11, 11, 4)
    assert {r.interval for r in series.records} == {timedelta(hours=8)}
    canonical = load_funding(shared_data / "funding" / "bitmex_XBTUSD_funding.csv")
    by_ts = {r.ts: r.rate for r in canonical.records}
    assert all(by_ts[r.ts] == r.rate for r in series.records[-100:])


def test_cryptodatadownload_skips_the_banner_and_stamps_the_daily_close(shared_data: Path) -> None:
    path = shared_data / "prices" / "binance_BTCUSDT_spot_1d_cryptodatadownload.csv"
    assert detect(path)[0] == "cryptodatadownload"
    series = next(iter(import_file(path).prices.values()))
    # Row 2021-07-05 (opens 00:00 UTC) closes at 33690.14, stamped at the end of that day.
    point = next(p for p in series.points if p.ts == t(2021, 7, 6))
    assert point.price == Decimal("33690.14")
    assert series.points[0].ts < series.points[-1].ts


def test_wide_8h_file_is_stamped_at_the_candle_close(shared_data: Path) -> None:
    out = import_file(shared_data / "prices" / "binance_BTCUSD-CM_8h_spot_perp_ohlc_funding_2020-08_to_2025-04.csv")
    spot = out.prices[("binance", "BTCUSD-CM-spot")]
    daily = next(
        iter(import_file(shared_data / "prices" / "binance_BTCUSDT_spot_1d_cryptodatadownload.csv").prices.values())
    )
    daily_by_ts = {p.ts: p.price for p in daily.points}
    matches = [p for p in spot.points if p.ts in daily_by_ts and p.ts.year == 2021]
    assert len(matches) > 300
    assert sum(daily_by_ts[p.ts] == p.price for p in matches) / len(matches) > 0.95
    funding = out.funding[("binance", "BTCUSD-CM")]
    assert funding.records[0].mark is not None


def test_long_file_converts_london_local_time_across_both_dst_changes(shared_data: Path) -> None:
    long = import_file(shared_data / "prices" / "binance-bybit-okx_BTC-ETH_8h_spot_perp_ohlc_funding_2023-2024.csv")
    wide = import_file(shared_data / "prices" / "binance_BTCUSD-CM_8h_spot_perp_ohlc_funding_2020-08_to_2025-04.csv")
    long_f = long.funding[("binance", "BTCUSD-CM")]
    wide_f = {r.ts: r.rate for r in wide.funding[("binance", "BTCUSD-CM")].records}
    # Every settlement lands on the venue's 00/08/16 UTC grid, summer and winter alike...
    assert {r.ts.hour for r in long_f.records} == {0, 8, 16}
    assert all(b.ts - a.ts == timedelta(hours=8) for a, b in zip(long_f.records, long_f.records[1:], strict=False))
    # ...and agrees with the UTC file at the same instants (summer rows shift by an hour).
    common = [r for r in long_f.records if r.ts in wide_f]
    assert len(common) > 1500
    assert all(wide_f[r.ts] == r.rate for r in common)
    # The autumn hour that happens twice (2023-10-29 01:00 London) is its first occurrence.
    assert t(2023, 10, 29, 0) in {r.ts for r in long_f.records}


def test_local_time_conversion_refuses_nonexistent_and_resolves_ambiguous_hours() -> None:
    with pytest.raises(DataError, match="does not exist in Europe/London"):
        local_to_utc(datetime(2022, 3, 27, 1, 30), "Europe/London")
    assert local_to_utc(datetime(2023, 10, 29, 1), "Europe/London") == t(2023, 10, 29, 0)
    assert local_to_utc(datetime(2023, 10, 29, 1), "Europe/London", previous=t(2023, 10, 29, 0)) == t(2023, 10, 29, 1)
    assert local_to_utc(datetime(2023, 7, 1, 9), "Europe/London") == t(2023, 7, 1, 8)


def test_hourly_close_file_is_utc_not_london(shared_data: Path) -> None:
    path = shared_data / "prices" / "binance_BTC_spot_perp_close_1h_2021-07_to_2024-07.csv"
    # Read as London time it holds an hour that never happened there.
    with pytest.raises(DataError, match="2022-03-27 01:00:00 does not exist"):
        import_hourly_closes(path, zone="Europe/London")
    spot = import_file(path).prices[("binance", "BTCUSDT-spot")]
    daily = next(
        iter(import_file(shared_data / "prices" / "binance_BTCUSDT_spot_1d_cryptodatadownload.csv").prices.values())
    )
    hourly = {p.ts: p.price for p in spot.points}
    summer = [p for p in daily.points if p.ts.month == 7 and p.ts.year == 2021 and p.ts in hourly]
    assert len(summer) > 20 and all(hourly[p.ts] == p.price for p in summer)
    assert any(g.missing == 4 for g in spot.report.gaps)


def test_ftx_ohlcv_blocks_newest_first_are_sorted_and_duplicates_refused(shared_data: Path) -> None:
    path = shared_data / "prices" / "ftx_SOL-USD_spot_1h.csv"
    with pytest.raises(DataError, match="repeats row"):
        import_file(path)
    series = import_file(path, duplicates=Duplicates.DROP).prices[("ftx", "SOL-USD")]
    assert series.report.duplicates_dropped == 9
    assert series.points[0].ts == t(2020, 7, 27, 1) and series.points[0].price == Decimal("1.7375")
    btc = import_file(shared_data / "prices" / "ftx_BTC-USDT_spot_1h.csv").prices[("ftx", "BTC-USDT")]
    assert btc.points[-1].ts == t(2022, 1, 2, 1) and btc.points[-1].price == Decimal("47427.0")


def test_feather_files_import_with_floats_made_exact(shared_data: Path) -> None:
    for f in sorted((shared_data / "prices").glob("*.feather")):
        out = import_file(f)
        (series,) = out.prices.values()
        assert len(series) > 200
        assert all(isinstance(p.price, Decimal) for p in series.points)
    mark = import_file(shared_data / "prices" / "binance_BTCUSDT_mark_8h_2024-05_to_2025-08.feather")
    first = mark.prices[("binance", "BTCUSDT-mark")].points[0]
    assert first.ts == t(2024, 5, 1, 8) and first.price == Decimal("57474.0")


def test_bitmex_trades_give_the_price_after_each_settlement(shared_data: Path) -> None:
    out = import_file(shared_data / "prices" / "bitmex_XBTUSD_trade_at_funding_ts.csv")
    series = out.prices[("bitmex", "XBTUSD")]
    assert series.points[0].price == Decimal("7694")
    assert all(p.ts.hour in (4, 12, 20) for p in series.points)


def test_every_file_in_shared_data_has_a_family(shared_data: Path) -> None:
    files = [f for f in shared_data.rglob("*") if f.is_file() and f.suffix in (".csv", ".feather")]
    names = {detect(f)[0] for f in files}
    assert names == {name for name, _, _ in FAMILIES} | {"freqtrade feather"}


def test_ccxt_funding_history_takes_exact_rates_from_info_and_infers_interval() -> None:
    entries = [
        {
            "symbol": "BTC/USDT:USDT",
            "timestamp": 1704096000000 + i * 8 * 3600_000,
            "fundingRate": 0.00010000000000000002,
            "info": {"fundingRate": "0.00010000", "markPrice": "42000.1" if i else ""},
        }
        for i in range(3)
    ]
    entries.append(dict(entries[-1]))  # pages overlap at their edges
    series = from_ccxt_funding_history(entries, venue="binance")
    assert len(series) == 3 and series.report.duplicates_dropped == 1
    assert series.records[0].rate == Decimal("0.00010000")
    assert series.records[1].interval == timedelta(hours=8) and series.records[1].mark == Decimal("42000.1")
    assert series.symbol == "BTC/USDT:USDT"


def test_ccxt_ohlcv_is_stamped_at_close() -> None:
    candles = [[1704067200000, 1.0, 2.0, 0.5, 1.5, 10.0], [1704070800000, 1.5, 2.0, 1.0, 1.25, 3.0]]
    series = from_ccxt_ohlcv(candles, venue="binance", symbol="BTCUSDT", period=timedelta(hours=1))
    assert [(p.ts, p.price) for p in series.points] == [
        (t(2024, 1, 1, 1), Decimal("1.5")),
        (t(2024, 1, 1, 2), Decimal("1.25")),
    ]


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_loader_refuses_time_going_backwards_with_the_row(tmp_path: Path) -> None:
    p = _write(
        tmp_path / "x_Y_funding.csv",
        "ts_utc,rate,interval_h\n2024-01-01T08:00:00Z,0.0001,8\n2024-01-01T00:00:00Z,0.0001,8\n",
    )
    with pytest.raises(DataError, match=r"row 3 .* is earlier than row 2"):
        load_funding(p)


def test_loader_refuses_conflicting_duplicates_even_when_dropping(tmp_path: Path) -> None:
    p = _write(
        tmp_path / "x_Y_funding.csv",
        "ts_utc,rate,interval_h\n2024-01-01T00:00:00Z,0.0001,8\n2024-01-01T00:00:00Z,0.0002,8\n",
    )
    with pytest.raises(DataError, match="different values"):
        load_funding(p, duplicates=Duplicates.DROP)


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("2024-01-01T00:00:00,0.0001,8", "has no zone"),
        ("2024-01-01T00:00:00Z,abc,8", "rate 'abc' is not a number"),
        ("2024-01-01T00:00:00Z,NaN,8", "not a finite number"),
        ("2024-01-01T00:00:00Z,1.5,8", "100% or more"),
        ("2024-01-01T00:00:00Z,0.0001,0", "interval"),
        ("2024-01-01T00:00:00Z,,8", "missing rate"),
    ],
)
def test_loader_refuses_bad_rows_naming_them(tmp_path: Path, line: str, problem: str) -> None:
    p = _write(tmp_path / "x_Y_funding.csv", f"ts_utc,rate,interval_h\n{line}\n")
    with pytest.raises(DataError, match=problem):
        load_funding(p)


def test_absurd_rates_are_flagged_with_their_row_but_kept(tmp_path: Path) -> None:
    p = _write(
        tmp_path / "x_Y_funding.csv",
        "ts_utc,rate,interval_h\n2024-01-01T00:00:00Z,0.0001,1\n2024-01-01T01:00:00Z,0.02,1\n2024-01-01T02:00:00Z,0.0001,1\n",
    )
    series = load_funding(p)
    assert len(series) == 3
    assert [(f.row, f.ts) for f in series.report.flags] == [(3, t(2024, 1, 1, 1))]


def test_canonical_round_trip_csv_and_parquet_is_exact(tmp_path: Path) -> None:
    recs = [
        FundingRecord(t(2024, 1, 1, 0), Decimal("0.00010000000000000001"), timedelta(hours=8), mark=Decimal("42000.5")),
        FundingRecord(t(2024, 1, 1, 8), Decimal("-0.0003"), timedelta(hours=8)),
    ]
    pts = [PricePoint(t(2024, 1, 1, 1), Decimal("1.23456789012345678"))]
    for ext in ("csv", "parquet"):
        write_funding(tmp_path / f"v_S_funding.{ext}", recs[:1])
        write_funding(tmp_path / f"v_S_funding.{ext}", recs[1:], append=True)
        write_prices(tmp_path / f"v_S_price.{ext}", pts)
        assert load_funding(tmp_path / f"v_S_funding.{ext}").records == tuple(recs)
        assert load_prices(tmp_path / f"v_S_price.{ext}").points == tuple(pts)
