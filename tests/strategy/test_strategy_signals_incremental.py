"""Incremental signals (prefix sums kept as the history grows) equal the reference that rescans the history.

Stated tolerance: persistence (times and runs), regimes, sign counts, price trends, sample
counts and the current funding are compared exactly. The EWMA, the long-run mean and the
forecast may differ only by the reference's own rounding (28-digit weights and sums): at most
``TOLERANCE`` times (1 + the largest absolute APR of the history).
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategy_builders import NOW, fresh_view

from alpha.data.importers import import_file
from alpha.domain.funding import FundingRate
from alpha.strategy.signals import (
    FundingHistory,
    Persistence,
    SignalParams,
    Signals,
    compute_signals,
    compute_signals_reference,
)
from tests.budgets import examples

D = Decimal
TOLERANCE = D("1e-20")
DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
PERPS = ("perp-cex:BTC/USDC:USDC", "perp-dex:BTC/USDC:USDC", "perp-cex:ETH/USDC:USDC", "perp-dex:ETH/USDC:USDC")
INTERVALS = (timedelta(hours=1), timedelta(hours=4), timedelta(hours=8))


def assert_same_signals(fast: Signals, ref: Signals, scale: Decimal) -> None:
    """Exact where the statistic is exact; the EWMA-based figures within ``TOLERANCE * scale``."""
    bound = TOLERANCE * scale
    assert fast.ts == ref.ts
    assert fast.markets.keys() == ref.markets.keys()
    for key, r in ref.markets.items():
        f = fast.markets[key]
        assert (f.fuse, f.market, f.asset, f.current_apr, f.samples) == (r.fuse, r.market, r.asset, r.current_apr, r.samples)
        assert f.persistence == r.persistence, key
        assert abs(f.recent_apr - r.recent_apr) <= bound, key
        assert abs(f.long_run_apr - r.long_run_apr) <= bound, key
        assert abs(f.forecast_apr - r.forecast_apr) <= bound, key
    assert fast.assets == ref.assets
    assert fast.pairs == ref.pairs
    assert fast.spreads.keys() == ref.spreads.keys()
    for asset, spreads in ref.spreads.items():
        got = fast.spreads[asset]
        assert {(s.long_key, s.short_key) for s in got} == {(s.long_key, s.short_key) for s in spreads}
        by_pair = {(s.long_key, s.short_key): s.apr for s in got}
        assert all(abs(by_pair[(s.long_key, s.short_key)] - s.apr) <= 2 * bound for s in spreads)


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[tuple[int, list[tuple[str, Decimal, timedelta, Decimal]]]], int]:
    """A timeline of ticks (minutes after the first) and, at each, which markets were observed with what.

    Markets skip ticks (gaps), change funding interval, and join late (or never: the view's
    observation alone); some pay exactly zero for stretches (a zero sign). Ticks are mostly
    whole hours, so window edges often fall exactly on an observation.
    """
    ticks = draw(st.integers(min_value=1, max_value=70))
    gaps = draw(st.lists(st.sampled_from([1, 60, 60, 60, 480, 480, 1440, 6000]), min_size=ticks, max_size=ticks))
    joins = {key: draw(st.integers(min_value=0, max_value=ticks + 5)) for key in PERPS}
    zeros = {key: draw(st.sampled_from([0, 2, 9])) for key in PERPS}  # out of 10 observations paying zero
    timeline: list[tuple[int, list[tuple[str, Decimal, timedelta, Decimal]]]] = []
    minute = 0
    for i, gap in enumerate(gaps):
        minute += gap
        seen = []
        for key in PERPS:
            if i < joins[key] or draw(st.integers(min_value=0, max_value=3)) == 0:  # a gap
                continue
            rate = D(0)
            if draw(st.integers(min_value=0, max_value=9)) >= zeros[key]:
                rate = draw(st.decimals(min_value=D("-0.002"), max_value=D("0.003"), places=draw(st.sampled_from([4, 6, 12]))))
            mark = draw(st.decimals(min_value=D("100"), max_value=D("50000"), places=2))
            seen.append((key, rate, draw(st.sampled_from(INTERVALS)), mark))
        timeline.append((minute, seen))
    return timeline, draw(st.integers(min_value=2, max_value=30))


@settings(max_examples=examples(100), deadline=None)
@given(
    drawn=histories(),
    halflife_h=st.sampled_from([1, 24, 24 * 7]),
    window_h=st.sampled_from([0, 6, 72, 24 * 90]),
    regime_h=st.sampled_from([8, 72]),
    # (lag of now after the last observation, lag of the view's observation before now), in minutes
    checks=st.lists(st.tuples(st.integers(min_value=-2, max_value=15).map(lambda h: 60 * h) | st.integers(-120, 900), st.integers(min_value=-10, max_value=10).map(lambda h: 60 * h)), min_size=1, max_size=4),
    smoothing_h=st.sampled_from([1, 72]),
)
def test_incremental_signals_equal_the_reference_on_random_histories(
    drawn: tuple[list[tuple[int, list[tuple[str, Decimal, timedelta, Decimal]]]], int],
    halflife_h: int,
    window_h: int,
    regime_h: int,
    checks: list[tuple[int, int]],
    smoothing_h: int,
) -> None:
    timeline, maxlen = drawn
    params = SignalParams(
        halflife=timedelta(hours=halflife_h), persistence_window=timedelta(hours=window_h), regime_window=timedelta(hours=regime_h)
    )
    history = FundingHistory(maxlen=maxlen, smoothing=timedelta(hours=smoothing_h))
    t0 = NOW - timedelta(minutes=timeline[-1][0])
    largest = D(0)
    chunk = max(1, len(timeline) // len(checks))
    for n, (lag, view_lag) in enumerate(checks):
        # Arrange: record the next part of the timeline (the same history is asked again: its sums are kept)
        for minute, seen in timeline[n * chunk : (n + 1) * chunk if n + 1 < len(checks) else None]:
            ts = t0 + timedelta(minutes=minute)
            for key, rate, interval, mark in seen:
                history.record(key, ts, FundingRate(rate, interval, ts + interval), mark)
                largest = max(largest, abs(history.samples(key)[-1].apr))
        last = max((s.ts for k in PERPS for s in history.samples(k)), default=t0)
        now = last + timedelta(minutes=lag)  # a negative lag: asked as of a time some observations are after
        view = fresh_view(rates={"perp-cex:BTC": "0.0002", "perp-dex:BTC": "-0.00001", "perp-cex:ETH": "0.00005"}, ts=now - timedelta(minutes=view_lag))
        largest = max([largest, *(abs(s.funding.annualised) for s in view.markets.values() if s.funding is not None)])

        # Act
        fast = compute_signals(history, view, now, params=params)
        ref = compute_signals_reference(history, view, now, params=params)

        # Assert
        assert_same_signals(fast, ref, 1 + largest)


@pytest.mark.skipif(not DATA.exists(), reason="shared data missing")
def test_incremental_signals_equal_the_reference_on_recorded_funding() -> None:
    """Binance and dYdX BTC (8h and 1h), Bybit and OKX ETH (8h), 2023-01 .. 2023-05, a decision every 56h, 300 kept."""
    files = {
        "perp-cex:BTC/USDC:USDC": "binance_BTCUSDT_funding.csv",
        "perp-dex:BTC/USDC:USDC": "dydx_BTC-USD_funding.csv",
        "perp-cex:ETH/USDC:USDC": "bybit_ETHUSDT_funding.csv",
        "perp-dex:ETH/USDC:USDC": "okx_ETHUSDT_funding.csv",
    }
    start, end = NOW.replace(year=2023, month=1, day=1, hour=0), NOW.replace(year=2023, month=5, day=1, hour=0)
    events = []
    for key, name in files.items():
        (series,) = import_file(DATA / "funding" / name).funding.values()
        events += [(rec.ts, key, rec) for rec in series.records if start - timedelta(days=60) <= rec.ts < end]
    events.sort(key=lambda e: (e[0], e[1]))
    history = FundingHistory(maxlen=300)
    largest = max(abs(rec.rate) * 24 * 365 for _, _, rec in events)
    compared = 0
    decision = start
    for ts, key, rec in events:
        while decision < ts:  # decide before recording anything later than the decision
            if decision >= start:
                view = fresh_view(ts=decision)
                if compared % 2:
                    history.observe(view)  # as the daemon does; otherwise the view's funding is read beside the history
                assert_same_signals(compute_signals(history, view, decision), compute_signals_reference(history, view, decision), 1 + largest)
                compared += 1
            decision += timedelta(hours=8 * 7)
        history.record(key, ts, FundingRate(rec.rate, rec.interval, ts + rec.interval), rec.mark or D("30000"))
    assert compared > 40
    assert all(len(history.samples(k)) == 300 for k in files)  # every market's oldest observations were evicted


def _hourly(history: FundingHistory, key: str, hours: list[int], rates: list[str], marks: list[str]) -> None:
    for h, rate, mark in zip(hours, rates, marks, strict=True):
        ts = NOW + timedelta(hours=h)
        history.record(key, ts, FundingRate(D(rate), timedelta(hours=8), ts + timedelta(hours=8)), D(mark))


def test_an_observation_exactly_at_the_regime_window_start_counts_in_the_window() -> None:
    # Arrange: BTC on one venue, observed 80h, 72h (= the regime window), 40h and 8h before now
    history = FundingHistory()
    _hourly(history, PERPS[0], [-80, -72, -40, -8], ["-0.0001", "0.0001", "0.0001", "0.0002"], ["30000", "40000", "41000", "42000"])
    view = fresh_view()
    history.observe(view)

    # Act
    fast = compute_signals(history, view, NOW)
    ref = compute_signals_reference(history, view, NOW)

    # Assert: the window reads 72h (mark 40000) .. now (mark 40000 in the view), all positive
    assert_same_signals(fast, ref, D(1))
    assert fast.assets["BTC"].positive_share == 1
    assert fast.assets["BTC"].price_trend == 0


def test_a_view_observation_before_the_persistence_window_leaves_nothing_recorded_in_it() -> None:
    # Arrange: recorded until 10h ago; the view is of 7h ago (newer than the history, not recorded); a 6h window
    history = FundingHistory()
    _hourly(history, PERPS[0], [-30, -20, -10], ["0.0001", "0.0002", "0.0001"], ["40000"] * 3)
    _hourly(history, PERPS[1], [-30, -20, -10], ["0.00001", "0.00001", "0.00001"], ["40000"] * 3)
    view = fresh_view(ts=NOW - timedelta(hours=7))
    params = SignalParams(persistence_window=timedelta(hours=6))

    # Act
    fast = compute_signals(history, view, NOW, params=params)
    ref = compute_signals_reference(history, view, NOW, params=params)

    # Assert
    assert_same_signals(fast, ref, D(1))
    assert fast.markets[PERPS[0]].persistence == Persistence()
    assert fast.pairs[(PERPS[0], PERPS[1])] == Persistence()
    # and with a longer window the recorded observations count: 23h positive since 30h ago, minus the 7h outside
    longer = SignalParams(persistence_window=timedelta(hours=23))
    assert compute_signals(history, view, NOW, params=longer).markets[PERPS[0]].persistence == Persistence(positive_time=timedelta(hours=23))
