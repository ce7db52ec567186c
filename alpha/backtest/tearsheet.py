"""Tearsheet metrics of a NAV series: returns, risk, drawdowns and costs, each a small pure function.

A series is a list of ``(instant, NAV)`` points in time order. Daily returns are taken between
the last NAV of consecutive UTC days; rates are annualised over 365 days (the venues settle
funding every day of the year). Amounts and ratios of amounts stay ``Decimal`` (drawdowns,
monthly returns, turnover, cost shares); the statistics of daily returns (volatility, Sharpe,
Sortino, CAGR, Calmar) are floats: they are estimates, not amounts.

Definitions:

* ``cagr``: ``(final / initial) ** (1 / years) - 1``, years of 365 days.
* ``volatility``: sample standard deviation of daily returns x sqrt(365).
* ``sharpe``: mean daily return / its standard deviation x sqrt(365), no risk-free rate.
* ``sortino``: mean daily return x 365 / (downside deviation x sqrt(365)); the downside
  deviation is sqrt(mean(min(r, 0) ** 2)) over every day (target 0).
* ``calmar``: CAGR / max drawdown.
* ``Drawdown``: the deepest fall from a running peak, as a share of the peak; its duration
  runs from the peak to the first point back at or above it (or to the end, not recovered).
* ``turnover``: traded notional / mean NAV (how many times the NAV was traded), per year.
* ``cost_share``: costs / funding received (None when funding is not positive).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import Decimal

from alpha.domain.money import ZERO

DAYS_PER_YEAR = 365
Point = tuple[datetime, Decimal]


def daily_closes(points: Sequence[Point]) -> list[tuple[date, Decimal]]:
    """The last NAV of each UTC day, in day order."""
    days: dict[date, Decimal] = {}
    for ts, nav in points:
        days[ts.date()] = nav
    return sorted(days.items())


def daily_returns(points: Sequence[Point]) -> list[float]:
    """Returns between the closes of consecutive days (a day after a zero NAV is left out)."""
    closes = [nav for _, nav in daily_closes(points)]
    return [float(b / a - 1) for a, b in itertools.pairwise(closes) if a > 0]


def years_between(start: datetime, end: datetime) -> float:
    """Length of ``[start, end]`` in years of 365 days."""
    return (end - start).total_seconds() / (DAYS_PER_YEAR * 86400)


def cagr(initial: Decimal, final: Decimal, years: float) -> float | None:
    """Compound annual growth rate; None for an empty period or a non-positive start; -1 when all was lost."""
    if years <= 0 or initial <= 0:
        return None
    if final <= 0:
        return -1.0
    growth: float = float(final / initial) ** (1 / years) - 1
    return growth


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs)


def _stdev(xs: Sequence[float]) -> float:
    m = _mean(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def volatility(returns: Sequence[float]) -> float | None:
    """Annualised standard deviation of daily returns (None with fewer than two)."""
    if len(returns) < 2:
        return None
    return _stdev(returns) * math.sqrt(DAYS_PER_YEAR)


def sharpe(returns: Sequence[float]) -> float | None:
    """Annualised mean over standard deviation of daily returns (None with fewer than two or no variance)."""
    if len(returns) < 2:
        return None
    sd = _stdev(returns)
    return _mean(returns) / sd * math.sqrt(DAYS_PER_YEAR) if sd > 0 else None


def downside_deviation(returns: Sequence[float]) -> float | None:
    """sqrt(mean(min(r, 0) ** 2)) over every daily return (None without returns)."""
    if not returns:
        return None
    return math.sqrt(sum(min(r, 0.0) ** 2 for r in returns) / len(returns))


def sortino(returns: Sequence[float]) -> float | None:
    """Annualised mean daily return over the annualised downside deviation (None without a losing day)."""
    dd = downside_deviation(returns)
    if dd is None or dd == 0:
        return None
    return _mean(returns) * DAYS_PER_YEAR / (dd * math.sqrt(DAYS_PER_YEAR))


def calmar(growth: float | None, worst: Decimal) -> float | None:
    """CAGR over max drawdown (None without either)."""
    if growth is None or worst <= 0:
        return None
    return growth / float(worst)


@dataclass(frozen=True, slots=True)
class Drawdown:
    """The deepest fall from a running peak."""

    depth: Decimal  # share of the peak, >= 0
    peak: datetime
    trough: datetime
    recovered: datetime | None  # first instant back at or above the peak (None: not by the end)

    def duration(self, end: datetime) -> timedelta:
        """From the peak to the recovery (or to ``end`` if it did not recover)."""
        return (self.recovered or end) - self.peak


def drawdowns(points: Sequence[Point]) -> list[Point]:
    """``(instant, NAV / running peak - 1)`` at every point: 0 at a new high, negative under water."""
    out: list[Point] = []
    peak = ZERO
    for ts, nav in points:
        peak = max(peak, nav)
        out.append((ts, nav / peak - 1 if peak > 0 else ZERO))
    return out


def worst_drawdown(points: Sequence[Point]) -> Drawdown | None:
    """The deepest drawdown of the series and when it started, bottomed and recovered (None if it never fell)."""
    worst: Drawdown | None = None
    peak: Point | None = None
    for ts, nav in points:
        if peak is None or nav >= peak[1]:
            if worst is not None and worst.recovered is None and peak is not None and worst.peak == peak[0]:
                worst = replace(worst, recovered=ts)
            peak = (ts, nav)
            continue
        depth = (peak[1] - nav) / peak[1] if peak[1] > 0 else ZERO
        if worst is None or depth > worst.depth:
            worst = Drawdown(depth, peak[0], ts, None)
    return worst


def longest_underwater(points: Sequence[Point]) -> timedelta:
    """The longest time from a peak to the first point back at or above it (to the end if still below)."""
    longest = timedelta(0)
    peak: Point | None = None
    under = False
    for ts, nav in points:
        if peak is None or nav >= peak[1]:
            if under and peak is not None:
                longest = max(longest, ts - peak[0])
            peak, under = (ts, nav), False
        else:
            under = True
    if under and peak is not None:
        longest = max(longest, points[-1][0] - peak[0])
    return longest


def monthly_returns(points: Sequence[Point]) -> dict[tuple[int, int], Decimal]:
    """``(year, month) -> return`` from the previous month's last NAV (the first point for the first month)."""
    if not points:
        return {}
    ends: dict[tuple[int, int], Decimal] = {}
    for ts, nav in points:
        ends[(ts.year, ts.month)] = nav
    out: dict[tuple[int, int], Decimal] = {}
    before = points[0][1]
    for month in sorted(ends):
        if before > 0:
            out[month] = ends[month] / before - 1
        before = ends[month]
    return out


def yearly_returns(monthly: dict[tuple[int, int], Decimal]) -> dict[int, Decimal]:
    """Each year's months compounded."""
    out: dict[int, Decimal] = {}
    for (year, _), r in sorted(monthly.items()):
        out[year] = (out.get(year, ZERO) + 1) * (1 + r) - 1
    return out


def turnover(traded_notional: Decimal, mean_nav: Decimal, years: float) -> tuple[Decimal, Decimal | None]:
    """Return ``(traded / mean NAV, the same per year)``; per year is None for an empty period."""
    if mean_nav <= 0:
        return ZERO, None
    times = traded_notional / mean_nav
    return times, (times / Decimal(repr(years)) if years > 0 else None)


def cost_share(costs: Decimal, funding: Decimal) -> Decimal | None:
    """The share of funding income the costs took (None when funding is not positive)."""
    return costs / funding if funding > 0 else None


@dataclass(frozen=True, slots=True)
class Tearsheet:
    """Every metric of one NAV series and its costs."""

    total_return: Decimal
    cagr: float | None
    volatility: float | None
    sharpe: float | None
    sortino: float | None
    calmar: float | None
    max_drawdown: Decimal
    drawdown: Drawdown | None
    max_drawdown_duration: timedelta
    longest_underwater: timedelta
    turnover: Decimal
    turnover_per_year: Decimal | None
    fee_share_of_funding: Decimal | None  # fees / funding
    cost_share_of_funding: Decimal | None  # (fees + slippage) / funding
    negative_day_share: float | None


def tearsheet(
    points: Sequence[Point], *, funding: Decimal, fees: Decimal, slippage: Decimal, traded_notional: Decimal
) -> Tearsheet:
    """Compute every metric of ``points`` (at least one point) and the run's funding, costs and traded notional."""
    start, end = points[0][0], points[-1][0]
    initial, final = points[0][1], points[-1][1]
    years = years_between(start, end)
    returns = daily_returns(points)
    growth = cagr(initial, final, years)
    worst = worst_drawdown(points)
    depth = worst.depth if worst is not None else ZERO
    mean_nav = sum((nav for _, nav in points), ZERO) / len(points)
    times, per_year = turnover(traded_notional, mean_nav, years)
    return Tearsheet(
        total_return=final / initial - 1 if initial > 0 else ZERO,
        cagr=growth,
        volatility=volatility(returns),
        sharpe=sharpe(returns),
        sortino=sortino(returns),
        calmar=calmar(growth, depth),
        max_drawdown=depth,
        drawdown=worst,
        max_drawdown_duration=worst.duration(end) if worst is not None else timedelta(0),
        longest_underwater=longest_underwater(points),
        turnover=times,
        turnover_per_year=per_year,
        fee_share_of_funding=cost_share(fees, funding),
        cost_share_of_funding=cost_share(fees + slippage, funding),
        negative_day_share=sum(1 for r in returns if r < 0) / len(returns) if returns else None,
    )
