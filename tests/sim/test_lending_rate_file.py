"""Recorded borrow rates: a backtest's lending market accrues at the rates a file records (issue 18)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from fuses.sim.engine import quantize_amount
from fuses.sim.lending import SimLendingMarket, read_borrow_rates, reserve_params_for
from fuses.sim.world import split_rate_files
from tests.sim.helpers import T0

D = Decimal
YEAR = D(365 * 24 * 3600)
DAY = D(24 * 3600)


def _market(rates: list[tuple[datetime, Decimal]]) -> SimLendingMarket:
    prices = {"USDC": D(1), "BTC": D("40000")}
    reserves = {"USDC": reserve_params_for("USDC"), "BTC": reserve_params_for("BTC")}
    m = SimLendingMarket("lend", reserves, lambda a: prices[a], T0, borrow_rates={"BTC": rates})
    m.open_account("a")
    m.deposit("a", "USDC", D("1000000"), T0)
    m.supply("a", "USDC", D("1000000"))
    m.borrow("a", "BTC", D("10"))
    return m


def test_debt_accrues_at_each_recorded_rate_over_its_own_stretch() -> None:
    rates = [(T0, D("0.05")), (T0 + timedelta(days=1), D("0.20"))]
    m = _market(rates)
    assert m.borrow_rate("BTC") == D("0.05")
    m.accrue(T0 + timedelta(days=2))  # one call across the change: split at it
    first = quantize_amount(D(10) * D("0.05") * DAY / YEAR)
    second = quantize_amount((D(10) + first) * D("0.20") * DAY / YEAR)
    assert m.accounts["a"].borrowed["BTC"] == D(10) + first + second
    assert m.borrow_rate("BTC") == D("0.20")
    # the same as accruing at the change and then to the end
    n = _market(rates)
    n.accrue(T0 + timedelta(days=1))
    n.accrue(T0 + timedelta(days=2))
    assert n.accounts["a"].borrowed["BTC"] == m.accounts["a"].borrowed["BTC"]


def test_before_the_first_record_the_first_rate_is_in_force_and_the_curve_is_not_used() -> None:
    m = _market([(T0 + timedelta(hours=6), D("0.03"))])
    assert m.borrow_rate("BTC") == D("0.03")
    assert m.borrow_rate("USDC") == m.reserves["USDC"].slope1 * m.utilisation("USDC") / m.reserves["USDC"].optimal_utilisation


def test_the_file_is_read_exactly_and_refused_with_its_line(tmp_path: Path) -> None:
    good = tmp_path / "btc_borrow.csv"
    good.write_text("ts,borrow_apr\n2024-01-01T00:00:00Z,0.045\n1704153600000,0.0525\n", encoding="utf-8")
    assert read_borrow_rates(good) == [
        (datetime(2024, 1, 1, tzinfo=UTC), D("0.045")),
        (datetime(2024, 1, 2, tzinfo=UTC), D("0.0525")),
    ]
    cases = {
        "ts,rate\n2024-01-01T00:00:00Z,0.04\n": "columns ts,borrow_apr",
        "ts,borrow_apr\n2024-01-01T00:00:00Z,abc\n": "line 2",
        "ts,borrow_apr\n2024-01-01T00:00:00,0.04\n": "no UTC offset",
        "ts,borrow_apr\n2024-01-01T00:00:00Z,-0.01\n": "not between 0 and 10",
        "ts,borrow_apr\n2024-01-01T00:00:00Z,0.01\nyesterday,0.02\n": "line 3",
    }
    for text, message in cases.items():
        bad = tmp_path / "bad.csv"
        bad.write_text(text, encoding="utf-8")
        with pytest.raises(ValueError, match=message):
            read_borrow_rates(bad)
    with pytest.raises(ValueError, match="cannot read it"):
        read_borrow_rates(tmp_path / "missing.csv")


def test_a_lending_fuse_names_its_rate_files_beside_its_reserve_options() -> None:
    rest, files = split_rate_files({"BTC.borrow_rate_file": "rates/btc.csv", "BTC.ltv": "0.7"})
    assert rest == {"BTC.ltv": "0.7"}
    assert files == {"BTC": Path("rates/btc.csv")}
