"""Each tearsheet metric against a hand computation on a small series."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from alpha.backtest.tearsheet import (
    cagr,
    calmar,
    cost_share,
    daily_returns,
    downside_deviation,
    drawdowns,
    longest_underwater,
    monthly_returns,
    sharpe,
    sortino,
    tearsheet,
    turnover,
    volatility,
    worst_drawdown,
    yearly_returns,
)

D = Decimal
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def day(n: int, hour: int = 0) -> datetime:
    return T0 + timedelta(days=n, hours=hour)


# Daily NAVs 100, 110, 99, 108.9, 119.79: returns +10%, -10%, +10%, +10%.
NAVS = [D("100"), D("110"), D("99"), D("108.9"), D("119.79")]
SERIES = [(day(i), nav) for i, nav in enumerate(NAVS)]
RETURNS = [0.1, -0.1, 0.1, 0.1]


def test_daily_returns_use_the_last_nav_of_each_day() -> None:
    intraday = [(day(0), D("100")), (day(0, 8), D("50")), (day(0, 16), D("100")), (day(1, 8), D("110"))]

    assert daily_returns(intraday) == pytest.approx([0.1])
    assert daily_returns(SERIES) == pytest.approx(RETURNS)


def test_volatility_sharpe_and_sortino_by_hand() -> None:
    # mean 0.05; deviations 0.05, -0.15, 0.05, 0.05: squares sum to 0.03, / (4 - 1) = 0.01, sd 0.1
    assert volatility(RETURNS) == pytest.approx(0.1 * math.sqrt(365))
    assert sharpe(RETURNS) == pytest.approx(0.05 / 0.1 * math.sqrt(365))
    # downside: only -0.1 counts, over all 4 days: sqrt(0.01 / 4) = 0.05
    assert downside_deviation(RETURNS) == pytest.approx(0.05)
    # 0.05 x 365 / (0.05 x sqrt(365)) = sqrt(365)
    assert sortino(RETURNS) == pytest.approx(math.sqrt(365))


def test_ratios_without_enough_data_or_without_a_losing_day_are_not_given() -> None:
    assert volatility([0.1]) is None and sharpe([0.1]) is None
    assert sharpe([0.01, 0.01]) is None  # no variance
    assert sortino([0.01, 0.02]) is None  # no losing day: no downside to divide by
    assert calmar(0.1, D(0)) is None and calmar(None, D("0.1")) is None


def test_cagr_compounds_over_years_of_365_days() -> None:
    assert cagr(D("100"), D("121"), 2.0) == pytest.approx(0.1)  # 1.21 ** (1/2) - 1
    assert cagr(D("100"), D("110"), 0.5) == pytest.approx(0.21)  # 1.1 ** 2 - 1
    assert cagr(D("100"), D("0"), 1.0) == -1.0
    assert cagr(D("100"), D("110"), 0.0) is None


def test_calmar_is_cagr_over_max_drawdown() -> None:
    assert calmar(0.1, D("0.25")) == pytest.approx(0.4)


def test_worst_drawdown_its_peak_trough_recovery_and_duration() -> None:
    worst = worst_drawdown(SERIES)

    assert worst is not None
    assert worst.depth == D("0.1")  # 110 -> 99
    assert (worst.peak, worst.trough, worst.recovered) == (day(1), day(2), day(4))  # 108.9 < 110, 119.79 >= 110
    assert worst.duration(day(4)) == timedelta(days=3)
    assert longest_underwater(SERIES) == timedelta(days=3)


def test_a_drawdown_not_recovered_lasts_to_the_end() -> None:
    series = [(day(0), D("100")), (day(1), D("90")), (day(2), D("95")), (day(5), D("96"))]

    worst = worst_drawdown(series)

    assert worst is not None and worst.recovered is None and worst.depth == D("0.1")
    assert worst.duration(day(5)) == timedelta(days=5)
    assert longest_underwater(series) == timedelta(days=5)
    assert [x for _, x in drawdowns(series)] == [D(0), D("-0.1"), D("-0.05"), D("-0.04")]


def test_the_deepest_of_two_drawdowns_is_kept_and_a_return_to_the_peak_recovers() -> None:
    series = [(day(0), D("100")), (day(1), D("95")), (day(2), D("100")), (day(3), D("80")), (day(4), D("100")), (day(9), D("90"))]

    worst = worst_drawdown(series)

    assert worst is not None and worst.depth == D("0.2") and (worst.peak, worst.recovered) == (day(2), day(4))
    assert longest_underwater(series) == timedelta(days=5)  # from the day-4 peak, still below at day 9
    assert worst_drawdown([(day(0), D("100")), (day(1), D("101"))]) is None


def test_monthly_returns_chain_month_ends_and_compound_into_years() -> None:
    series = [
        (datetime(2023, 12, 20, tzinfo=UTC), D("100")),
        (datetime(2023, 12, 31, tzinfo=UTC), D("100")),
        (datetime(2024, 1, 15, tzinfo=UTC), D("104")),
        (datetime(2024, 1, 31, tzinfo=UTC), D("110")),
        (datetime(2024, 2, 29, tzinfo=UTC), D("99")),
        (datetime(2024, 3, 10, tzinfo=UTC), D("108.9")),
    ]

    monthly = monthly_returns(series)

    assert monthly == {(2023, 12): D(0), (2024, 1): D("0.1"), (2024, 2): D("-0.1"), (2024, 3): D("0.1")}
    assert yearly_returns(monthly) == {2023: D(0), 2024: D("0.089")}  # 1.1 x 0.9 x 1.1 - 1


def test_turnover_and_cost_shares() -> None:
    assert turnover(D("300"), D("100"), 0.5) == (D(3), D(6))
    assert turnover(D("300"), D(0), 1.0) == (D(0), None)
    assert cost_share(D("10"), D("40")) == D("0.25")
    assert cost_share(D("10"), D("0")) is None and cost_share(D("10"), D("-5")) is None


def test_the_tearsheet_gathers_every_metric_of_a_series() -> None:
    sheet = tearsheet(SERIES, funding=D("40"), fees=D("8"), slippage=D("2"), traded_notional=D("1075.38"))

    assert sheet.total_return == D("0.1979")
    assert sheet.cagr == pytest.approx(1.1979 ** (365 / 4) - 1)
    assert sheet.max_drawdown == D("0.1") and sheet.max_drawdown_duration == timedelta(days=3)
    assert sheet.sortino == pytest.approx(math.sqrt(365)) and sheet.sharpe == pytest.approx(0.5 * math.sqrt(365))
    assert sheet.calmar == pytest.approx(sheet.cagr / 0.1)
    # mean NAV (100 + 110 + 99 + 108.9 + 119.79) / 5 = 107.538; 1075.38 / 107.538 = 10
    assert sheet.turnover == D(10)
    assert sheet.fee_share_of_funding == D("0.2") and sheet.cost_share_of_funding == D("0.25")
    assert sheet.negative_day_share == 0.25
