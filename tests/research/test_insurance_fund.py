"""UXD's insurance-fund study: numbers pinned by an independent computation on the raw files."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from alpha.cli import main
from alpha.data.importers import import_file
from alpha.data.series import Duplicates
from alpha.research.insurance_fund import (
    Schedule,
    Study,
    balance_path,
    load_schedule,
    run_all_starts,
    run_one,
)

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "uxd"
SOL = DATA / "ftx_SOL-PERP_funding.csv"
XBT = DATA / "bitmex_XBTUSD_funding.csv"

pytestmark = pytest.mark.skipif(not DATA.exists(), reason="shared data missing")


def raw_rates(path: Path, start: str, end: str) -> list[tuple[str, Decimal]]:
    """Read the raw export with the csv module: (ISO time, rate) rows within [start, end), every row kept."""
    out = []
    with path.open() as fh:
        for row in csv.DictReader(fh):
            ts = row.get("time") or row["timestamp"]
            rate = row.get("rate") or row["fundingRate"]
            if start <= ts[:10] < end:
                out.append((ts, Decimal(rate)))
    return out


def independent_year(path: Path) -> tuple[Decimal, Decimal, Decimal]:
    """End, min and max of the 2021 path with a plain Decimal loop (order does not matter for the end)."""
    rows = sorted(raw_rates(path, "2021-01-01", "2022-01-01"))
    balance = Decimal(57_000_000)
    path_values = [balance]
    for _, rate in rows:
        balance += Decimal(500_000_000) * rate
        path_values.append(balance)
    return balance, min(path_values), max(path_values)


def cli_json(capsys: pytest.CaptureFixture[str], *args: str) -> object:
    assert main(["research", "insurance-fund", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize(("path", "headline"), [(SOL, 180_000_000), (XBT, 115_000_000)])
def test_2021_end_balance_matches_independent_decimal_loop(
    capsys: pytest.CaptureFixture[str], path: Path, headline: int
) -> None:
    end, low, high = independent_year(path)
    got = cli_json(capsys, "--data", str(path), "--start", "2021-01-01", "--end", "2022-01-01")
    assert set(got) == {"end_balance", "min", "mean", "max", "bankrupt_at"}  # type: ignore[arg-type]
    assert Decimal(str(got["end_balance"])) == end  # type: ignore[index]
    assert Decimal(str(got["min"])) == low and Decimal(str(got["max"])) == high  # type: ignore[index]
    assert got["bankrupt_at"] is None  # type: ignore[index]
    # The study's headline: over $180M (SOL) and over $115M (XBTUSD) in 2021.
    assert end > headline


def test_pinned_2021_figures() -> None:
    # Pinned from independent_year above (kept as literals so a change in the data is noticed).
    assert independent_year(SOL)[0] == Decimal("198127500.000000")
    assert independent_year(XBT)[0] == Decimal("133857500.000000")


def test_sol_duplicates_count_as_the_study_used_them() -> None:
    dupes = import_file(SOL, duplicates=Duplicates.KEEP).funding[("ftx", "SOL-PERP")]
    clean = import_file(SOL, duplicates=Duplicates.DROP).funding[("ftx", "SOL-PERP")]
    year = (datetime(2021, 1, 1, tzinfo=UTC), datetime(2022, 1, 1, tzinfo=UTC))
    kept = run_one(dupes.between(*year), Study()).end_balance
    dropped = run_one(clean.between(*year), Study()).end_balance
    doubled = sum(
        (
            r.rate
            for a, r in zip(dupes.records, dupes.records[1:], strict=False)
            if a == r and year[0] <= r.ts < year[1]
        ),
        Decimal(0),
    )
    assert kept - dropped == Decimal(500_000_000) * doubled != 0


def test_xbtusd_start_in_2018_goes_bankrupt_like_the_study_says() -> None:
    series = import_file(XBT).funding[("bitmex", "XBTUSD")]
    stats = run_one(series, Study(), datetime(2018, 1, 16, tzinfo=UTC))
    # Independent: first time 57M + 500M x cumulative rate <= 0.
    balance = Decimal(57_000_000)
    first = None
    for ts, rate in sorted(raw_rates(XBT, "2018-01-16", "2030-01-01")):
        balance += Decimal(500_000_000) * rate
        if balance <= 0 and first is None:
            first = ts
    assert first is not None
    assert stats.bankrupt_at == datetime.fromisoformat(first.replace("Z", "+00:00"))


@pytest.mark.parametrize("path", [SOL, XBT])
def test_all_starts_vectorised_equals_exact_per_start(path: Path) -> None:
    (series,) = import_file(path, duplicates=Duplicates.KEEP).funding.values()
    results = run_all_starts(series, Study())
    assert len(results) > 500
    for r in results[:: len(results) // 7]:
        exact = run_one(series, Study(), r.start)
        for field in ("end_balance", "min", "mean", "max"):
            assert abs(getattr(r, field) - getattr(exact, field)) < Decimal("0.05"), field
        assert r.bankrupt_at == exact.bankrupt_at
    # The study: early starts go bankrupt (SOL before it passed $1B market cap, XBTUSD in 2018).
    broke_years = {r.start.year for r in results if r.bankrupt_at is not None}
    assert broke_years == ({2020} if path == SOL else {2017, 2018})


def test_fund_return_and_relative_schedule_match_the_exact_loop(tmp_path: Path) -> None:
    schedule_file = tmp_path / "cap.csv"
    schedule_file.write_text("days,notional\n0,100000000\n90,250000000\n180,500000000\n")
    schedule = load_schedule(schedule_file)
    assert (
        schedule.relative
        and schedule.notional(datetime(2021, 4, 1, tzinfo=UTC), datetime(2021, 1, 1, tzinfo=UTC)) == 250_000_000
    )
    (series,) = import_file(XBT).funding.values()
    for study in (Study(fund_return=Decimal("0.10")), Study(fund_return=Decimal("-0.10"), schedule=schedule)):
        results = run_all_starts(series, study, starts=[0, 1500, 3000, 5000])
        for r in results:
            exact = run_one(series, study, r.start)
            assert abs(r.end_balance - exact.end_balance) < Decimal("0.5")
            assert abs(r.mean - exact.mean) < Decimal("0.5")
            assert r.bankrupt_at == exact.bankrupt_at


def test_fund_return_compounds_per_interval() -> None:
    (series,) = import_file(XBT).funding.values()
    flat = series.between(datetime(2020, 1, 1, tzinfo=UTC), datetime(2021, 1, 1, tzinfo=UTC))
    zero_funding = type(flat)(
        flat.venue, flat.symbol, tuple(r.__class__(r.ts, Decimal(0), r.interval) for r in flat.records), flat.report
    )
    _, balances = balance_path(zero_funding.records, Study(fund_return=Decimal("0.10")))
    n = len(zero_funding.records)
    expected = Decimal(57_000_000) * (1 + Decimal("0.10") * Decimal(8 * 3600) / Decimal(365 * 86400)) ** n
    assert abs(balances[-1] - expected) < Decimal("0.01")


def test_date_schedule_keeps_the_fast_path_and_matches(tmp_path: Path) -> None:
    f = tmp_path / "cap.csv"
    f.write_text("date,notional\n2016-01-01,50000000\n2019-01-01,500000000\n")
    schedule = load_schedule(f)
    assert isinstance(schedule, Schedule) and not schedule.relative
    (series,) = import_file(XBT).funding.values()
    study = Study(schedule=schedule)
    r = run_all_starts(series, study, starts=[100])[0]
    assert abs(r.end_balance - run_one(series, study, r.start).end_balance) < Decimal("0.05")


def test_all_starts_json_and_plots(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "alpha",
            "research",
            "insurance-fund",
            "--data",
            str(SOL),
            "--all-starts",
            "--json",
            "--plot",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    rows = json.loads(out.stdout)
    assert set(rows[0]) == {"start", "end_balance", "min", "mean", "max", "bankrupt_at"}
    assert rows[0]["start"] == "2020-07-27T00:00:00Z"
    assert (tmp_path / "insurance_fund_all_starts.png").stat().st_size > 10_000


def test_bad_schedule_is_refused_with_the_row(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "cap.csv"
    f.write_text("days,notional\n10,1\n5,2\n")
    assert main(["research", "insurance-fund", "--data", str(XBT), "--schedule", str(f)]) == 2
    assert "row 3" in capsys.readouterr().err
    assert timedelta(0) < timedelta(days=1)


def test_example_supply_cap_keeps_the_sol_fund_above_40m_for_every_start() -> None:
    schedule = load_schedule(Path(__file__).resolve().parents[2] / "alpha" / "research" / "supply_cap_example.csv")
    (series,) = import_file(SOL, duplicates=Duplicates.KEEP).funding.values()
    constant = run_all_starts(series, Study())
    capped = run_all_starts(series, Study(schedule=schedule))
    assert min(r.min for r in constant) < 0
    assert min(r.min for r in capped) > 40_000_000


def test_all_starts_lists_ten_bankrupt_starts_and_counts_the_rest(capsys: pytest.CaptureFixture[str]) -> None:
    series = import_file(XBT).funding
    (xbt,) = series.values()
    broke = sum(1 for r in run_all_starts(xbt, Study()) if r.bankrupt_at is not None)
    assert main(["research", "insurance-fund", "--data", str(XBT), "--all-starts"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith(f"{broke} go bankrupt")
    assert sum(1 for line in lines if " bankrupt at " in line) == 10
    assert broke > 10
    assert lines[-1] == f"  ... and {broke - 10} more (--json lists every start)"
