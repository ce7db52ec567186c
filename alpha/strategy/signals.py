"""Signals: funding forecasts, funding/price regimes and cross-venue spreads.

Funding is mean-reverting and driftless (DOMAIN.md): the forecast is the expected *average*
rate over the horizon of an Ornstein-Uhlenbeck process that starts at the recent level (an
exponentially weighted mean of observations) and reverts to the long-run mean of the
history, itself shrunk towards zero while the history is short.

Persistence: how long funding has stayed of one sign, from the trailing
``persistence_window`` of observations (``Persistence``: time spent positive and negative and
how many runs of each sign ended in the window). The sign is that of funding smoothed over its
reversion time (``FundingSample.smoothed``, an exponentially weighted mean with that
half-life, kept as the history is recorded): an 8h print of the other sign inside a positive
regime is noise a hedge holds through, not the end of its holding. ``decide`` turns it into
the expected holding of a hedge (``expected_holding``), over which its costs are amortised.

Everything here is computed from observations at or before ``now``: nothing later is read.

Cost: ``FundingHistory`` keeps prefix sums beside its observations (``alpha.strategy.rolling``),
so ``compute_signals`` reads each statistic in O(1) per market (O(log n) to find a window's
ends) whatever the stored history's length; ``compute_signals_reference`` is the same
computation rescanning the history, kept to check it against.

Every rate here is annualised with ``alpha.domain.funding.annualise`` (the one function).
"""

from __future__ import annotations

from bisect import bisect_right
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, getcontext
from enum import StrEnum
from functools import lru_cache
from operator import mul

from alpha.domain.funding import FundingRate, annualise
from alpha.domain.money import ONE, ZERO
from alpha.domain.portfolio import PortfolioView
from alpha.strategy.rolling import EXACT, MarketSeries, PairSeries, growth, micros

LN2 = Decimal(2).ln()


class Regime(StrEnum):
    """Market regime of one asset: funding sign persistence and price trend agree."""

    BULL = "bull"
    BEAR = "bear"
    NEUTRAL = "neutral"


@dataclass(frozen=True, slots=True)
class FundingSample:
    """One observation of a market: annualised funding and mark at ``ts``."""

    ts: datetime
    apr: Decimal
    mark: Decimal
    smoothed: float | None = None  # funding smoothed over the history's half-life (a statistic: a float); None: not recorded


@dataclass(frozen=True, slots=True)
class SignalParams:
    """Tuning of the signals (defaults suit 1h-8h funding)."""

    halflife: timedelta = timedelta(hours=24)  # EWMA of recent funding
    reversion: timedelta = timedelta(days=3)  # mean-reversion time of funding
    horizon: timedelta = timedelta(days=7)  # forecast = expected average over this horizon
    min_history: timedelta = timedelta(days=7)  # shorter histories shrink the long-run mean to 0
    regime_window: timedelta = timedelta(days=3)
    regime_share: Decimal = Decimal("0.6")  # share of samples of one sign that makes a regime
    persistence_window: timedelta = timedelta(days=90)  # trailing window the run lengths are measured on


@dataclass(frozen=True, slots=True)
class Persistence:
    """How long a funding series stayed of one sign in a trailing window.

    ``positive_time`` / ``negative_time``: time spent above / below zero (each observation
    holds until the next one, the last until ``now``); ``positive_runs`` / ``negative_runs``:
    runs of that sign that ended inside the window (a run still going is censored, not counted).
    """

    positive_time: timedelta = timedelta(0)
    positive_runs: int = 0
    negative_time: timedelta = timedelta(0)
    negative_runs: int = 0

    def flipped(self) -> Persistence:
        """The persistence of the series of opposite sign."""
        return Persistence(self.negative_time, self.negative_runs, self.positive_time, self.positive_runs)


def persistence(times: list[datetime], values: list[Decimal] | list[float], now: datetime, window: timedelta) -> Persistence:
    """Measure the runs of one sign of ``values`` (observed at ``times``, oldest first) over ``[now - window, now]``.

    Only observations at or before ``now`` are read.
    """
    start = now - window
    pos = neg = timedelta(0)
    pos_runs = neg_runs = 0
    prev_sign = 0
    n = len(times)
    for i in range(n):
        t = times[i]
        if t > now:
            break
        nxt = times[i + 1] if i + 1 < n and times[i + 1] <= now else now
        v = values[i]
        sign = 1 if v > 0 else -1 if v < 0 else 0
        if nxt <= start:
            prev_sign = sign
            continue
        if prev_sign != sign and t >= start:
            if prev_sign > 0:
                pos_runs += 1
            elif prev_sign < 0:
                neg_runs += 1
        prev_sign = sign
        held = nxt - max(t, start)
        if sign > 0:
            pos += held
        elif sign < 0:
            neg += held
    return Persistence(pos, pos_runs, neg, neg_runs)


class FundingHistory:
    """A bounded per-market history of funding and marks that the daemon appends to.

    Keys are ``market_key(fuse, market)``. Observations older than the last one of the same
    market are ignored, so recording the same view twice changes nothing. Each sample also
    carries funding smoothed over ``smoothing`` (an exponentially weighted mean kept as the
    history is recorded, O(1) per observation), which the persistence is measured on.
    """

    def __init__(self, maxlen: int = 2000, *, smoothing: timedelta = timedelta(days=3)) -> None:
        if maxlen < 1:
            raise ValueError("maxlen must be at least 1")
        if smoothing <= timedelta(0):
            raise ValueError("smoothing must be positive")
        self._maxlen = maxlen
        self._smoothing = smoothing.total_seconds()
        self._samples: dict[str, deque[FundingSample]] = {}
        self._series: dict[str, MarketSeries] = {}  # the same observations as columns with prefix sums
        self._pairs: dict[tuple[str, str], PairSeries] = {}

    def record(self, key: str, ts: datetime, funding: FundingRate, mark: Decimal) -> bool:
        """Append one observation; return False if it is not newer than the last one."""
        if ts.tzinfo is None:
            raise ValueError("observation time must be timezone-aware")
        if not mark.is_finite() or mark <= 0:
            raise ValueError(f"{key}: mark {mark} is not a positive finite number")
        samples = self._samples.setdefault(key, deque(maxlen=self._maxlen))
        if samples and ts <= samples[-1].ts:
            return False
        apr = annualise(funding.rate, funding.interval)
        smoothed = float(apr)
        if samples and samples[-1].smoothed is not None:
            keep = 0.5 ** ((ts - samples[-1].ts).total_seconds() / self._smoothing)
            smoothed = samples[-1].smoothed * keep + smoothed * (1 - keep)
        samples.append(FundingSample(ts, apr, mark, smoothed))
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = MarketSeries(self._maxlen)
        series.append(micros(ts), apr, mark, smoothed)
        return True

    def observe(self, view: PortfolioView) -> int:
        """Record every perp market of ``view`` that carries a funding rate; return how many were new."""
        added = 0
        for key, snap in view.markets.items():
            if snap.funding is None or not snap.instrument.kind.is_perp:
                continue
            if not snap.mark.is_finite() or snap.mark <= 0:
                continue  # bad data is refused by decide, never recorded
            added += self.record(key, snap.ts, snap.funding, snap.mark)
        return added

    def samples(self, key: str) -> tuple[FundingSample, ...]:
        """Return the observations of one market, oldest first."""
        return tuple(self._samples.get(key, ()))

    def iter_samples(self, key: str) -> Iterable[FundingSample]:
        """Iterate over the observations of one market, oldest first (no copy)."""
        return iter(self._samples.get(key, ()))

    def last(self, key: str) -> FundingSample | None:
        """Return the latest observation of one market, if any."""
        samples = self._samples.get(key)
        return samples[-1] if samples else None

    def keys(self) -> tuple[str, ...]:
        return tuple(self._samples)

    def series(self, key: str) -> MarketSeries | None:
        """Return the observations of one market as columns with prefix sums, if any."""
        return self._series.get(key)

    def pair(self, low: str, high: str) -> PairSeries:
        """Return the spread ``high - low`` of two recorded markets' smoothed funding (kept as both grow)."""
        pair = self._pairs.get((low, high))
        if pair is None:
            pair = self._pairs[(low, high)] = PairSeries(self._series[low], self._series[high])
        return pair


@dataclass(frozen=True, slots=True)
class MarketSignal:
    """Signals of one perp market."""

    key: str
    fuse: str
    market: str
    asset: str
    current_apr: Decimal
    recent_apr: Decimal  # EWMA
    long_run_apr: Decimal
    forecast_apr: Decimal
    samples: int
    persistence: Persistence = Persistence()


@dataclass(frozen=True, slots=True)
class AssetSignal:
    """Regime of one asset across its perp markets."""

    asset: str
    regime: Regime
    positive_share: Decimal  # share of recent funding observations above zero
    negative_share: Decimal
    price_trend: Decimal  # relative change of the mark over the regime window
    funding_regime: Regime = Regime.NEUTRAL  # from the funding sign alone: BEAR when funding is mostly negative


@dataclass(frozen=True, slots=True)
class Spread:
    """A cross-venue spread: long ``long_key``, short ``short_key``, earning ``apr`` (forecast)."""

    asset: str
    long_key: str
    short_key: str
    apr: Decimal


@dataclass(frozen=True, slots=True)
class Signals:
    """Everything ``decide`` needs to know about funding, per market key and per asset."""

    ts: datetime
    markets: Mapping[str, MarketSignal] = field(default_factory=dict)
    assets: Mapping[str, AssetSignal] = field(default_factory=dict)
    spreads: Mapping[str, tuple[Spread, ...]] = field(default_factory=dict)
    # Persistence of the spread (short - long) of two perps of one asset, by (long key, short key).
    pairs: Mapping[tuple[str, str], Persistence] = field(default_factory=dict)
    reversion: timedelta = timedelta(days=3)  # the mean-reversion time the forecasts were made with (SignalParams.reversion)

    def forecast(self, key: str) -> Decimal | None:
        """Return the forecast funding APR of a market key, if known."""
        sig = self.markets.get(key)
        return sig.forecast_apr if sig is not None else None

    def term_forecast(self, key: str, term: timedelta) -> Decimal | None:
        """The expected average funding APR of a market key over the next ``term`` (e.g. to a rate market's maturity).

        The same mean-reverting model as ``forecast`` (whose term is ``SignalParams.horizon``):
        the long-run mean plus today's departure from it, weighted by how much of it an
        Ornstein-Uhlenbeck process keeps on average over ``term``; a long term tends to the
        long-run mean.
        """
        sig = self.markets.get(key)
        if sig is None:
            return None
        w = _ou_average_weight(max(term, timedelta(0)), self.reversion)
        return sig.long_run_apr + (sig.recent_apr - sig.long_run_apr) * w

    def regime(self, asset: str) -> Regime:
        sig = self.assets.get(asset)
        return sig.regime if sig is not None else Regime.NEUTRAL

    def funding_regime(self, asset: str) -> Regime:
        """The asset's regime by the sign of its funding alone (BEAR: mostly negative)."""
        sig = self.assets.get(asset)
        return sig.funding_regime if sig is not None else Regime.NEUTRAL


def _decay(age: timedelta, halflife: timedelta) -> Decimal:
    ctx = getcontext()
    return _decay_in(age, halflife, ctx.prec, ctx.rounding)


@lru_cache(maxsize=1 << 16)
def _decay_in(age: timedelta, halflife: timedelta, _prec: int, _rounding: str) -> Decimal:
    # Cached (per decimal context): a replay asks for the same few thousand ages at every
    # decision, and Decimal.exp is slow.
    ratio = Decimal(age.total_seconds()) / Decimal(halflife.total_seconds())
    return (-(ratio * LN2)).exp()


def _ou_average_weight(horizon: timedelta, reversion: timedelta) -> Decimal:
    """Weight of today's level in the expected average of an OU process over ``horizon``."""
    x = Decimal(horizon.total_seconds()) / Decimal(reversion.total_seconds())
    if x == 0:
        return ONE
    return (ONE - (-x).exp()) / x


def forecast_market(
    samples: Iterable[FundingSample],
    now: datetime,
    params: SignalParams,
    *,
    weights: dict[datetime, Decimal] | None = None,
) -> tuple[Decimal, Decimal, Decimal]:
    """Return ``(recent EWMA, long-run mean, forecast)`` APRs from observations (at least one).

    ``weights`` (optional) caches the decay weight of each observation time for this ``now``
    and ``params``, shared by the markets observed at the same times.
    """
    obs = [s for s in samples if s.ts <= now]
    if not obs:
        raise ValueError("no observation at or before now")
    return _forecast([s.ts for s in obs], [s.apr for s in obs], now, params, weights if weights is not None else {}, [])


_Weighted = tuple[list[datetime], list[Decimal], Decimal]  # observation times, their weights, the weights' sum


def _forecast(
    times: list[datetime],
    aprs: list[Decimal],
    now: datetime,
    params: SignalParams,
    weights: dict[datetime, Decimal],
    seen: list[_Weighted],
) -> tuple[Decimal, Decimal, Decimal]:
    """``forecast_market`` over columns; markets observed at the same times share their weights (``seen``).

    The sums run oldest first, exactly as a plain loop adding one observation at a time.
    """
    shared = next((entry for entry in seen if entry[0] == times), None)
    if shared is not None:
        _, ws, den = shared
    else:
        halflife = params.halflife
        ws = []
        for t in times:
            w = weights.get(t)
            if w is None:
                w = weights[t] = _decay(now - t, halflife)
            ws.append(w)
        den = sum(ws, ZERO)
        seen.append((times, ws, den))
    recent = sum(map(mul, ws, aprs), ZERO) / den
    mean = sum(aprs, ZERO) / len(aprs)
    span = times[-1] - times[0]
    coverage = min(ONE, Decimal(span.total_seconds()) / Decimal(params.min_history.total_seconds()))
    long_run = mean * coverage
    w = _ou_average_weight(params.horizon, params.reversion)
    return recent, long_run, long_run + (recent - long_run) * w


def compute_signals_reference(
    history: FundingHistory, view: PortfolioView, now: datetime, *, params: SignalParams | None = None
) -> Signals:
    """``compute_signals`` as first written, rescanning the stored history: the reference the incremental one is checked against.

    The view's current funding counts as the latest observation if the history does not
    have it yet (the history itself is not changed).
    """
    p = params or SignalParams()
    weights: dict[datetime, Decimal] = {}
    seen: list[_Weighted] = []
    markets: dict[str, MarketSignal] = {}
    per_asset: dict[str, list[tuple[str, list[FundingSample]]]] = {}
    for key, snap in sorted(view.markets.items()):
        if not snap.instrument.kind.is_perp or snap.funding is None:
            continue
        obs = [s for s in history.iter_samples(key) if s.ts <= now]
        last = history.last(key)
        if last is None or last.ts < snap.ts:
            if not snap.mark.is_finite() or snap.mark <= 0:
                continue
            if snap.ts <= now:
                obs.append(FundingSample(snap.ts, snap.funding.annualised, snap.mark))
        if not obs:
            continue
        times = [s.ts for s in obs]
        aprs = [s.apr for s in obs]
        recent, long_run, forecast = _forecast(times, aprs, now, p, weights, seen)
        asset = snap.instrument.base
        markets[key] = MarketSignal(
            key=key,
            fuse=snap.fuse,
            market=snap.market,
            asset=asset,
            current_apr=obs[-1].apr,
            recent_apr=recent,
            long_run_apr=long_run,
            forecast_apr=forecast,
            samples=len(obs),
            persistence=_persistence(obs, now, p.persistence_window),
        )
        per_asset.setdefault(asset, []).append((key, obs))

    assets: dict[str, AssetSignal] = {}
    spreads: dict[str, tuple[Spread, ...]] = {}
    pairs: dict[tuple[str, str], Persistence] = {}
    for asset, entries in per_asset.items():
        assets[asset] = _regime(asset, entries, now, p)
        spreads[asset] = _spreads(asset, [k for k, _ in entries], markets)
        for i, (low, low_obs) in enumerate(entries):
            for high, high_obs in entries[i + 1 :]:
                pairs[(low, high)] = _spread_persistence(low_obs, high_obs, now, p.persistence_window)
                pairs[(high, low)] = pairs[(low, high)].flipped()
    return Signals(ts=now, markets=markets, assets=assets, spreads=spreads, pairs=pairs, reversion=p.reversion)


def compute_signals(
    history: FundingHistory, view: PortfolioView, now: datetime, *, params: SignalParams | None = None
) -> Signals:
    """Compute forecasts, regimes and spreads for every perp market of ``view`` with funding.

    The view's current funding counts as the latest observation if the history does not
    have it yet (the history itself is not changed).

    The one entry point of every decision (live, paper, backtest, plan). Its statistics are
    read from the history's prefix sums (``alpha.strategy.rolling``): the cost does not grow
    with the stored history. It gives what ``compute_signals_reference`` gives: persistence,
    regimes, counts and spans exactly; the EWMA and the long-run mean to the reference's
    rounding (exactly where the reference's own sums are exact).
    """
    p = params or SignalParams()
    now_us = micros(now)
    halflife_us = _micros_of(p.halflife)
    window_us = _micros_of(p.persistence_window)
    start_us = now_us - window_us
    regime_start = now_us - _micros_of(p.regime_window)
    ou = _ou_weight(p.horizon, p.reversion)
    min_history_us = _micros_of(p.min_history)
    markets: dict[str, MarketSignal] = {}
    per_asset: dict[str, list[tuple[str, _Observed]]] = {}
    for key, snap in sorted(view.markets.items()):
        if not snap.instrument.kind.is_perp or snap.funding is None:
            continue
        series = history.series(key)
        j = series.last_at(now_us) if series is not None else -1
        stored = series is not None and j >= series.first
        extra: FundingSample | None = None
        last = history.last(key)
        if last is None or last.ts < snap.ts:
            if not snap.mark.is_finite() or snap.mark <= 0:
                continue
            if snap.ts <= now:
                extra = FundingSample(snap.ts, snap.funding.annualised, snap.mark)
        if series is None or not stored:
            if extra is None:
                continue
            series, j = None, -1
        obs = _Observed(series, j, extra, micros(extra.ts) if extra is not None else 0)
        recent, long_run, forecast, count = obs.forecast(halflife_us, min_history_us, ou)
        asset = snap.instrument.base
        current = extra.apr if extra is not None else obs.aprs[j]
        persisted = obs.persistence(start_us, now_us, window_us)
        markets[key] = MarketSignal(key, snap.fuse, snap.market, asset, current, recent, long_run, forecast, count, persisted)
        per_asset.setdefault(asset, []).append((key, obs))

    assets: dict[str, AssetSignal] = {}
    spreads: dict[str, tuple[Spread, ...]] = {}
    pairs: dict[tuple[str, str], Persistence] = {}
    for asset, entries in per_asset.items():
        pos = neg = total = 0
        trends: list[Decimal] = []
        for _, obs in entries:
            mp, mn, mt, trend = obs.regime_counts(regime_start)
            pos, neg, total = pos + mp, neg + mn, total + mt
            if trend is not None:
                trends.append(trend)
        assets[asset] = _asset_signal(asset, pos, neg, total, trends, p)
        spreads[asset] = _spreads(asset, [k for k, _ in entries], markets)
        kept = [(key, obs.kept_from(start_us, window_us)) for key, obs in entries]
        for i, (low, low_from) in enumerate(kept):
            for high, high_from in kept[i + 1 :]:
                measured = None
                if low_from is not None and high_from is not None:
                    measured = history.pair(low, high).measure(max(low_from, high_from), start_us, now_us)
                pairs[(low, high)] = spread = _persistence_of(measured)
                pairs[(high, low)] = _flipped(spread)
    return Signals(ts=now, markets=markets, assets=assets, spreads=spreads, pairs=pairs, reversion=p.reversion)


def _micros_of(d: timedelta) -> int:
    return d // timedelta(microseconds=1)


@lru_cache(maxsize=1 << 12)  # once a history is longer than the window, most markets measure the same from one decision to the next
def _persistence_of(measured: tuple[int, int, int, int] | None) -> Persistence:
    if measured is None:
        return Persistence()
    pos, pos_runs, neg, neg_runs = measured
    return Persistence(timedelta(microseconds=pos), pos_runs, timedelta(microseconds=neg), neg_runs)


@lru_cache(maxsize=1 << 12)
def _flipped(p: Persistence) -> Persistence:
    return p.flipped()


@lru_cache(maxsize=64)
def _ou_weight_in(horizon: timedelta, reversion: timedelta, _prec: int, _rounding: str) -> Decimal:
    return _ou_average_weight(horizon, reversion)


def _ou_weight(horizon: timedelta, reversion: timedelta) -> Decimal:
    ctx = getcontext()
    return _ou_weight_in(horizon, reversion, ctx.prec, ctx.rounding)


class _Observed:
    """The observations of one market a decision reads: stored positions ``first..j`` and the view's, if newer."""

    __slots__ = ("aprs", "extra", "extra_us", "j", "series")

    def __init__(self, series: MarketSeries | None, j: int, extra: FundingSample | None, extra_us: int) -> None:
        self.series = series
        self.j = j
        self.extra = extra
        self.extra_us = extra_us
        self.aprs = series.aprs if series is not None else []

    def forecast(self, halflife_us: int, min_history_us: int, ou: Decimal) -> tuple[Decimal, Decimal, Decimal, int]:
        """Return ``(recent EWMA, long-run mean, forecast, observations)`` as ``_forecast`` does."""
        s, j, x = self.series, self.j, self.extra
        if s is None:
            assert x is not None
            num, den, total, count, first_us, last_us = x.apr, ONE, x.apr, 1, self.extra_us, self.extra_us
        else:
            f = s.first
            num, den, w = s.weighted(halflife_us, f, j)
            total, count, first_us, last_us = s.apr_sum(f, j), j - f + 1, s.times[f], s.times[j]
            if x is not None:
                wx = EXACT.multiply(w, growth(self.extra_us - last_us, halflife_us))
                num = EXACT.add(num, EXACT.multiply(wx, x.apr))
                den = EXACT.add(den, wx)
                total = EXACT.add(total, x.apr)
                count += 1
                last_us = self.extra_us
        recent = num / den
        mean = total / count
        covered = last_us - first_us
        if covered >= min_history_us:  # the ratio is at least one: min() gives ONE
            coverage = ONE
        else:
            coverage = min(ONE, Decimal(timedelta(microseconds=covered).total_seconds()) / Decimal(timedelta(microseconds=min_history_us).total_seconds()))
        long_run = mean * coverage
        return recent, long_run, long_run + (recent - long_run) * ou, count

    def kept_from(self, start_us: int, window_us: int) -> int | None:
        """The time the persistence is read from (the last stored observation at or before ``start``); None: nothing to read.

        As ``_recorded_in``: the view's own observation is not recorded, and when even it is
        at or before ``start`` nothing recorded is in the window.
        """
        s = self.series
        if s is None or window_us <= 0 or (self.extra is not None and self.extra_us <= start_us):
            return None
        return s.times[max(s.last_at_or_before(start_us, self.j), s.first)]

    def persistence(self, start_us: int, now_us: int, window_us: int) -> Persistence:
        """Persistence of the market's smoothed funding, as ``_persistence``."""
        since = self.kept_from(start_us, window_us)
        s = self.series
        if since is None or s is None:
            return Persistence()
        f = max(s.last_at_or_before(start_us, self.j), s.first)
        return _persistence_of(s.runs.measure(f, self.j, start_us, now_us))

    def regime_counts(self, start_us: int) -> tuple[int, int, int, Decimal | None]:
        """Return ``(positive, negative, observations, price trend or None)`` over the regime window, as ``_regime``."""
        s, j, x = self.series, self.j, self.extra
        pos = neg = count = 0
        first_mark = last_mark = None
        if s is not None:
            i = s.first_from(start_us, j)
            if i <= j:
                pos, neg = s.sign_counts(i, j)
                count = j - i + 1
                first_mark, last_mark = s.marks[i], s.marks[j]
        if x is not None and self.extra_us >= start_us:
            pos, neg, count = pos + (x.apr > 0), neg + (x.apr < 0), count + 1
            first_mark, last_mark = first_mark if first_mark is not None else x.mark, x.mark
        if count == 0:  # nothing in the window: the last observation alone
            apr = x.apr if x is not None else self.aprs[j]
            return int(apr > 0), int(apr < 0), 1, None
        if count == 1 or first_mark is None or last_mark is None:
            return pos, neg, count, None
        return pos, neg, count, (last_mark - first_mark) / first_mark


def _spreads(asset: str, keys: list[str], markets: Mapping[str, MarketSignal]) -> tuple[Spread, ...]:
    """Every profitable pair of the asset's markets (long the lower forecast, short the higher), best first."""
    found: list[Spread] = []
    for low in keys:
        for high in keys:
            if low == high:
                continue
            apr = markets[high].forecast_apr - markets[low].forecast_apr
            if apr > 0:
                found.append(Spread(asset, low, high, apr))
    return tuple(sorted(found, key=lambda s: (-s.apr, s.long_key, s.short_key)))


def _recorded_in(obs: list[FundingSample], start: datetime) -> list[FundingSample]:
    """The recorded (smoothed) observations from the last one at or before ``start`` on."""
    i = bisect_right([s.ts for s in obs], start) - 1
    return [s for s in obs[max(i, 0) :] if s.smoothed is not None]


def _persistence(obs: list[FundingSample], now: datetime, window: timedelta) -> Persistence:
    """Persistence of a market's smoothed funding (observations not recorded in the history are left out)."""
    kept = _recorded_in(obs, now - window)
    return persistence([s.ts for s in kept], [s.smoothed for s in kept if s.smoothed is not None], now, window)


def _spread_persistence(low: list[FundingSample], high: list[FundingSample], now: datetime, window: timedelta) -> Persistence:
    """Persistence of ``high - low`` (smoothed) over the times both markets were observed."""
    start = now - window
    low_at = {s.ts: s.smoothed for s in _recorded_in(low, start)}
    times: list[datetime] = []
    values: list[float] = []
    for s in _recorded_in(high, start):
        other = low_at.get(s.ts)
        if other is not None and s.smoothed is not None:
            times.append(s.ts)
            values.append(s.smoothed - other)
    return persistence(times, values, now, window)


def _regime(asset: str, entries: list[tuple[str, list[FundingSample]]], now: datetime, p: SignalParams) -> AssetSignal:
    start = now - p.regime_window
    pos = neg = total = 0
    trends: list[Decimal] = []
    for _, obs in entries:
        window = [s for s in obs if s.ts >= start] or obs[-1:]
        for s in window:
            total += 1
            pos += s.apr > 0
            neg += s.apr < 0
        if len(window) > 1:
            trends.append((window[-1].mark - window[0].mark) / window[0].mark)
    return _asset_signal(asset, pos, neg, total, trends, p)


def _asset_signal(asset: str, pos: int, neg: int, total: int, trends: list[Decimal], p: SignalParams) -> AssetSignal:
    """The asset's regime from its funding sign counts and its markets' price trends."""
    positive = Decimal(pos) / total
    negative = Decimal(neg) / total
    trend = sum(trends, ZERO) / len(trends) if trends else ZERO
    funding_regime = Regime.BULL if positive >= p.regime_share else Regime.BEAR if negative >= p.regime_share else Regime.NEUTRAL
    if positive >= p.regime_share and trend >= 0:
        regime = Regime.BULL
    elif negative >= p.regime_share and trend <= 0:
        regime = Regime.BEAR
    else:
        regime = Regime.NEUTRAL
    return AssetSignal(asset, regime, positive, negative, trend, funding_regime)


__all__ = [
    "AssetSignal",
    "FundingHistory",
    "FundingSample",
    "MarketSignal",
    "Persistence",
    "Regime",
    "SignalParams",
    "Signals",
    "Spread",
    "compute_signals",
    "compute_signals_reference",
    "forecast_market",
    "persistence",
]
