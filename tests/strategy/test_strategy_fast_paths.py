"""The strategy's fast paths give exactly what the plain computations give (speed never changes a decision)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from alpha.domain.instruments import Side
from alpha.domain.market import BookLevel, OrderBook
from alpha.strategy.carry import slippage_rate
from alpha.strategy.signals import LN2, FundingSample, SignalParams, forecast_market
from tests.budgets import examples

D = Decimal
T0 = datetime(2024, 1, 1, tzinfo=UTC)

prices = st.decimals(min_value=D("0.01"), max_value=D("100000"), places=2)
quantities = st.decimals(min_value=D("0"), max_value=D("50"), places=6)


@st.composite
def books(draw: st.DrawFn) -> OrderBook:
    mid = draw(prices)
    n = draw(st.integers(min_value=1, max_value=12))
    steps = draw(st.lists(st.decimals(min_value=D("0.01"), max_value=D("50"), places=2), min_size=n, max_size=n))
    bids: list[BookLevel] = []
    asks: list[BookLevel] = []
    bid, ask = mid, mid + D("0.01")
    for step in steps:
        bid -= step
        ask += step
        bids.append(BookLevel(max(bid, D("0.01")), draw(quantities)))
        asks.append(BookLevel(ask, draw(quantities)))
    return OrderBook(tuple(bids), tuple(asks))


@settings(max_examples=examples(300), deadline=None)
@given(book=books(), side=st.sampled_from(list(Side)), quantity=st.decimals(min_value=D("0.000001"), max_value=D("400")))
def test_cached_book_walk_prices_exactly_like_the_book(book: OrderBook, side: Side, quantity: Decimal) -> None:
    assert slippage_rate(book, side, quantity) == book.slippage_rate(side, quantity)
    # a second read (from the cache) gives the same
    assert slippage_rate(book, side, quantity) == book.slippage_rate(side, quantity)


def _plain_forecast(samples: list[FundingSample], now: datetime, p: SignalParams) -> tuple[Decimal, Decimal, Decimal]:
    """The forecast as first written: a plain loop with a fresh exp per observation."""
    obs = [s for s in samples if s.ts <= now]
    num = den = D(0)
    for s in obs:
        ratio = D((now - s.ts).total_seconds()) / D(p.halflife.total_seconds())
        w = (-(ratio * LN2)).exp()
        num += w * s.apr
        den += w
    recent = num / den
    mean = sum((s.apr for s in obs), D(0)) / len(obs)
    coverage = min(D(1), D((obs[-1].ts - obs[0].ts).total_seconds()) / D(p.min_history.total_seconds()))
    long_run = mean * coverage
    x = D(p.horizon.total_seconds()) / D(p.reversion.total_seconds())
    w = (D(1) - (-x).exp()) / x
    return recent, long_run, long_run + (recent - long_run) * w


@settings(max_examples=examples(100), deadline=None)
@given(
    aprs=st.lists(st.decimals(min_value=D("-3"), max_value=D("3"), places=10), min_size=1, max_size=60),
    gaps=st.lists(st.integers(min_value=1, max_value=600), min_size=60, max_size=60),
    lag=st.integers(min_value=0, max_value=900),
)
def test_forecast_with_shared_weights_equals_the_plain_loop(aprs: list[Decimal], gaps: list[int], lag: int) -> None:
    ts = T0
    samples = []
    for apr, gap in zip(aprs, gaps, strict=False):
        ts += timedelta(minutes=gap)
        samples.append(FundingSample(ts, apr, D("100")))
    now = ts + timedelta(minutes=lag)
    p = SignalParams()
    shared: dict[datetime, Decimal] = {}
    first = forecast_market(samples, now, p, weights=shared)
    again = forecast_market(samples, now, p, weights=shared)  # weights from the shared cache
    assert first == again == _plain_forecast(samples, now, p)


@settings(max_examples=examples(25), deadline=None)
@given(
    rates=st.lists(st.decimals(min_value=D("-0.001"), max_value=D("0.002"), places=6), min_size=40, max_size=40),
    skew=st.integers(min_value=0, max_value=3),
)
def test_signals_share_weights_across_markets_exactly(rates: list[Decimal], skew: int) -> None:
    """Markets observed at the same times share their weights; others do not; eviction is respected.

    This pins the reference (``compute_signals_reference``, which rescans the history) to the
    plain loop exactly; the incremental ``compute_signals`` is checked against the reference
    within a stated tolerance in ``test_strategy_signals_incremental``.
    """
    from strategy_builders import NOW, fresh_view

    from alpha.domain.funding import FundingRate
    from alpha.strategy.signals import FundingHistory, compute_signals_reference

    view = fresh_view()
    perps = sorted(k for k, s in view.markets.items() if s.instrument.kind.is_perp)
    history = FundingHistory(maxlen=25)  # 40 observations each: the oldest are evicted
    for i, rate in enumerate(rates):
        for j, key in enumerate(perps):
            # the first markets share their times; the last ones are shifted by ``skew`` hours
            shift = timedelta(hours=skew if j >= len(perps) - 2 else 0)
            ts = NOW - timedelta(hours=8 * (len(rates) - i)) + shift
            history.record(key, ts, FundingRate(rate * (j + 1), timedelta(hours=8), ts), D("100"))

    signals = compute_signals_reference(history, view, NOW)

    p = SignalParams()
    for key in perps:
        snap = view.markets[key]
        assert snap.funding is not None
        obs = [*history.samples(key), FundingSample(snap.ts, snap.funding.annualised, snap.mark)]
        recent, long_run, forecast = _plain_forecast(obs, NOW, p)
        sig = signals.markets[key]
        assert (sig.recent_apr, sig.long_run_apr, sig.forecast_apr) == (recent, long_run, forecast)
