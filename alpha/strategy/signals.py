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

    def forecast(self, key: str) -> Decimal | None:
        """Return the forecast funding APR of a market key, if known."""
        sig = self.markets.get(key)
        return sig.forecast_apr if sig is not None else None

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


def compute_signals(
    history: FundingHistory, view: PortfolioView, now: datetime, *, params: SignalParams | None = None
) -> Signals:
    """Compute forecasts, regimes and spreads for every perp market of ``view`` with funding.

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
        found: list[Spread] = []
        keys = [k for k, _ in entries]
        for low in keys:
            for high in keys:
                if low == high:
                    continue
                apr = markets[high].forecast_apr - markets[low].forecast_apr
                if apr > 0:
                    found.append(Spread(asset, low, high, apr))
        spreads[asset] = tuple(sorted(found, key=lambda s: (-s.apr, s.long_key, s.short_key)))
        for i, (low, low_obs) in enumerate(entries):
            for high, high_obs in entries[i + 1 :]:
                pairs[(low, high)] = _spread_persistence(low_obs, high_obs, now, p.persistence_window)
                pairs[(high, low)] = pairs[(low, high)].flipped()
    return Signals(ts=now, markets=markets, assets=assets, spreads=spreads, pairs=pairs)


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
    "forecast_market",
    "persistence",
]
