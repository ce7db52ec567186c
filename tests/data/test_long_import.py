"""Long-format funding (CSV and Parquet, any file name), clear one-line errors, and repeated marks as fresh data."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from alpha.backtest.source import MarketTape, RecordedSource
from alpha.data.canonical import load_funding
from alpha.data.importers import import_file
from alpha.data.series import DataError

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2024, 1, 1, tzinfo=UTC)

LONG = """venue,symbol,settlement_time,rate,interval,mark
binance,BTCUSDT,2024-01-01T00:00:00Z,0.0001,8,42000.5
binance,BTCUSDT,2024-01-01T08:00:00Z,0.00012,8,42000.5
bybit,ETHUSDT,2024-01-01T00:00:00Z,-0.00003,8h,2300
bybit,ETHUSDT,1704096000000,0.00005,8h,2301
"""


def alpha(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "alpha", *args], capture_output=True, text=True, cwd=ROOT)


def test_long_csv_with_any_name_takes_venue_and_symbol_from_its_columns(tmp_path: Path) -> None:
    f = tmp_path / "my export (2024).csv"
    f.write_text(LONG)
    imported = import_file(f)
    assert set(imported.funding) == {("binance", "BTCUSDT"), ("bybit", "ETHUSDT")}
    btc = imported.funding[("binance", "BTCUSDT")].records
    assert [r.rate for r in btc] == [Decimal("0.0001"), Decimal("0.00012")]
    assert btc[1].mark == Decimal("42000.5") and btc[1].interval == timedelta(hours=8)
    eth = imported.funding[("bybit", "ETHUSDT")].records
    assert eth[1].ts == T0 + timedelta(hours=8)  # epoch milliseconds
    assert eth[0].rate == Decimal("-0.00003") and eth[1].mark == Decimal(2301)


def test_parquet_long_file_imports_exactly_and_writes_canonical_files(tmp_path: Path) -> None:
    table = pa.table(
        {
            "exchange": ["okx", "okx", "okx"],
            "symbol": ["BTCUSDT"] * 3,
            "ts": [T0, T0 + timedelta(hours=8), T0 + timedelta(hours=16)],
            "funding_rate": ["0.0001", "0.0002", "-0.0001"],
            "interval_h": [8, 8, 8],
            "mark_price": [42000.1, 42000.1, 41999.9],
        }
    )
    f = tmp_path / "whatever.bin"  # the content says Parquet, not the name
    pq.write_table(table, f)
    done = alpha("data", "import", str(f), "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    series = load_funding(tmp_path / "out" / "okx_BTCUSDT_funding.csv")
    assert [r.rate for r in series.records] == [Decimal("0.0001"), Decimal("0.0002"), Decimal("-0.0001")]
    assert [r.mark for r in series.records] == [Decimal("42000.1"), Decimal("42000.1"), Decimal("41999.9")]


def test_a_file_without_market_columns_needs_a_canonical_name_or_the_flags(tmp_path: Path) -> None:
    f = tmp_path / "BTCUSDT_zs_funding_utc.csv"
    f.write_text("ts_utc,rate,interval_h\n2024-01-01T00:00:00Z,0.0001,8\n2024-01-01T08:00:00Z,0.0001,8\n")
    with pytest.raises(DataError, match=r"cannot tell the venue and symbol.*--venue and --symbol"):
        import_file(f)
    imported = import_file(f, venue="binance", symbol="BTCUSDT")
    assert set(imported.funding) == {("binance", "BTCUSDT")}
    named = tmp_path / "bybit_ETHUSDT_funding.csv"
    named.write_text(f.read_text())
    assert set(import_file(named).funding) == {("bybit", "ETHUSDT")}
    done = alpha("data", "import", str(f), "--symbol", "BTCUSDT", "--out", str(tmp_path / "o"))
    assert done.returncode == 2 and "--venue" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (bytes(range(256)) * 4, "binary content"),
        (b"\xff\xfe\xfa garbage \xc3\x28 more", "not UTF-8 text"),
        (b"PAR1 this is not really parquet", "not a readable Parquet file"),
        (b"a,b,c\n1,2,3\n", "unknown format"),
        (b"venue,symbol,time,rate\nbinance,BTCUSDT,yesterday,0.1\n", "not a"),
        (b"venue,symbol,time,rate\nbinance,BTCUSDT,2024-01-01T00:00:00Z,lots\n", "rate"),
    ],
)
def test_anything_else_is_refused_in_one_line_without_a_traceback(tmp_path: Path, content: bytes, expected: str) -> None:
    f = tmp_path / "input.dat"
    f.write_bytes(content)
    done = alpha("data", "import", str(f), "--out", str(tmp_path / "out"))
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and done.stderr.strip().count("\n") == 0
    assert expected in done.stderr and str(f) in done.stderr


def test_a_repeated_mark_at_a_new_time_is_fresh_data() -> None:
    times = [T0 + timedelta(hours=i) for i in range(4)]
    tape = MarketTape("spot", "BTC/USDT", "BTC", False, times, [Decimal(100), Decimal(100), Decimal(100), Decimal(101)])
    source = RecordedSource([tape])
    assert source.advance(times[0]) == {"spot": {"BTC/USDT": source.advance(times[0])["spot"]["BTC/USDT"]}}
    assert "spot" in source.advance(times[1])  # the same value, recorded again: re-emitted
    assert source.advance(times[1] + timedelta(minutes=30)) == {}  # nothing new recorded: nothing emitted
    assert source.advance(times[2])["spot"]["BTC/USDT"].mark == Decimal(100)
    assert source.advance(times[3])["spot"]["BTC/USDT"].mark == Decimal(101)
