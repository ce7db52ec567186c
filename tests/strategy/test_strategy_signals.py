"""Signals: forecast mean-reverts, regimes follow sign persistence and trend, spreads are ordered."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from strategy_builders import NOW, fresh_view

from alpha.domain.funding import FundingRate, annualise
from alpha.strategy.signals import (
    FundingHistory,
    FundingSample,
    Regime,
    SignalParams,
    compute_signals,
    forecast_market,
)

D = Decimal
H8 = timedelta(hours=8)
KEY = "perp-cex:BTC/USDC:USDC"


def _fill(history: FundingHistory, key: str, rates: list[str], marks: list[str] | None = None) -> None:
    start = NOW - H8 * len(rates)
    for i, rate in enumerate(rates):
        mark = D(marks[i]) if marks else D("40000")
        history.record(key, start + H8 * i, FundingRate(D(rate), H8, start + H8 * (i + 1)), mark)


def test_forecast_of_a_spike_reverts_towards_the_long_run_mean() -> None:
    quiet = [FundingSample(NOW - H8 * (30 - i), D("0.10"), D(1)) for i in range(29)]
    spike = [*quiet, FundingSample(NOW, D("2.00"), D(1))]
    recent, long_run, forecast = forecast_market(spike, NOW, SignalParams())
    assert long_run < forecast < recent  # between the long-run mean and the recent level
    assert forecast < D("0.6")


def test_forecast_shrinks_towards_zero_when_history_is_short() -> None:
    one = [FundingSample(NOW, D("0.30"), D(1))]
    _, long_run, forecast = forecast_market(one, NOW, SignalParams())
    assert long_run == 0
    assert 0 < forecast < D("0.30")


def test_steady_funding_is_forecast_unchanged() -> None:
    steady = [FundingSample(NOW - H8 * (40 - i), D("0.12"), D(1)) for i in range(40)]
    _, _, forecast = forecast_market(steady, NOW, SignalParams())
    assert abs(forecast - D("0.12")) < D("1e-20")


def test_history_ignores_repeated_and_older_observations_and_is_bounded() -> None:
    history = FundingHistory(maxlen=3)
    rate = FundingRate(D("0.0001"), H8, NOW)
    assert history.record(KEY, NOW, rate, D(1))
    assert not history.record(KEY, NOW, rate, D(1))
    assert not history.record(KEY, NOW - H8, rate, D(1))
    for i in range(1, 6):
        history.record(KEY, NOW + H8 * i, rate, D(1))
    samples = history.samples(KEY)
    assert len(samples) == 3 and samples[-1].ts == NOW + H8 * 5
    assert samples[0].apr == annualise(D("0.0001"), H8)


def test_history_refuses_bad_marks_and_naive_times() -> None:
    history = FundingHistory()
    rate = FundingRate(D("0.0001"), H8, NOW)
    with pytest.raises(ValueError, match="mark"):
        history.record(KEY, NOW, rate, D("NaN"))
    with pytest.raises(ValueError, match="timezone"):
        history.record(KEY, NOW.replace(tzinfo=None), rate, D(1))


def test_observe_records_every_perp_with_funding_once() -> None:
    history = FundingHistory()
    view = fresh_view()
    assert history.observe(view) == 4  # two assets x two perp venues; spot has no funding
    assert history.observe(view) == 0


def test_regime_bull_when_funding_stays_positive_and_price_rises() -> None:
    history = FundingHistory()
    _fill(history, KEY, ["0.0002"] * 9, [str(39100 + 100 * i) for i in range(9)])
    signals = compute_signals(history, fresh_view(rates={"perp-cex:BTC": "0.0002", "perp-dex:BTC": "0.00002"}), NOW)
    assert signals.regime("BTC") is Regime.BULL
    assert signals.assets["BTC"].price_trend > 0


def test_regime_bear_when_funding_stays_negative_and_price_falls() -> None:
    history = FundingHistory()
    marks = [str(40000 - 300 * i) for i in range(9)]
    _fill(history, KEY, ["-0.0002"] * 9, marks)
    _fill(history, "perp-dex:BTC/USDC:USDC", ["-0.00003"] * 9, marks)
    view = fresh_view(rates={"perp-cex:BTC": "-0.0002", "perp-dex:BTC": "-0.00003"})
    signals = compute_signals(history, view, NOW)
    assert signals.regime("BTC") is Regime.BEAR
    assert signals.markets[KEY].forecast_apr < 0


def test_spreads_list_profitable_pairs_best_first() -> None:
    view = fresh_view(rates={"perp-cex:BTC": "0.0003", "perp-dex:BTC": "0.000001"})
    signals = compute_signals(FundingHistory(), view, NOW)
    spreads = signals.spreads["BTC"]
    assert spreads[0].short_key == KEY and spreads[0].long_key == "perp-dex:BTC/USDC:USDC"
    assert spreads[0].apr == signals.markets[KEY].forecast_apr - signals.markets[spreads[0].long_key].forecast_apr
    assert all(s.apr > 0 for s in spreads)


def test_term_forecast_is_the_forecast_at_its_horizon_and_tends_to_the_long_run_mean() -> None:
    from alpha.strategy.signals import MarketSignal, SignalParams, Signals

    p = SignalParams()  # horizon 7d, reversion 3d: the forecast keeps (1 - e^-x) / x of today's departure, x = 7/3
    x = D(7) / D(3)
    forecast = D("0.10") + (D("0.30") - D("0.10")) * (1 - (-x).exp()) / x
    sig = MarketSignal("perp:BTC", "perp", "BTC", "BTC", D("0.30"), D("0.30"), D("0.10"), forecast, 100)
    signals = Signals(ts=NOW, markets={"perp:BTC": sig}, reversion=p.reversion)
    assert signals.term_forecast("perp:BTC", p.horizon) == sig.forecast_apr  # the forecast's own term
    near, far = signals.term_forecast("perp:BTC", timedelta(hours=1)), signals.term_forecast("perp:BTC", timedelta(days=365))
    assert near is not None and far is not None
    assert abs(near - D("0.30")) < D("0.002")  # an hour ahead: today's level
    assert abs(far - D("0.10")) < D("0.002")  # a year ahead: the long-run mean
    assert signals.term_forecast("perp:ETH", p.horizon) is None
