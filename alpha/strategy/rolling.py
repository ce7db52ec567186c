"""Rolling statistics of funding series: prefix sums kept as observations are appended.

Each market's observations are stored as columns (times in integer microseconds since the
epoch, annualised funding, marks, smoothed funding) beside *exclusive prefix sums* (the sum
of every earlier value at each position). A statistic over any run of positions ``f..j`` is
then a difference of two prefix values: O(1) per new observation to keep, O(log n) to find
a window's ends by bisection, instead of a rescan of the stored history at every decision.

Exactness (what ``alpha.strategy.signals.compute_signals_reference`` gives):

* times, sign run lengths and counts are integers: exact;
* sums of funding are Decimal in ``EXACT`` (60 digits, unbounded exponent), so exact for
  funding of up to about 30 significant digits; the reference sums at the caller's
  precision (28 digits by default), so the two agree wherever the reference's own sum is exact;
* the decayed (EWMA) sums keep each observation's weight relative to the market's first
  stored one, ``2 ** ((t_i - t_0) / halflife)``, a chain of cached per-gap factors at 60
  digits: the common factor ``2 ** (-(now - t_0) / halflife)`` cancels in the weighted mean,
  so any ``now`` is answered from the same sums. It differs from the reference (fresh 28-digit
  weights per decision) only by the reference's rounding.

Storage is bounded like the history (``maxlen`` observations kept); positions evicted are
compacted away (and the prefix sums rebased) once every ``maxlen`` appends: amortised O(1).
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from datetime import UTC, datetime, timedelta
from decimal import MAX_EMAX, MIN_EMIN, Context, Decimal
from functools import lru_cache

EXACT = Context(prec=60, Emax=MAX_EMAX, Emin=MIN_EMIN)
_LN2 = EXACT.ln(Decimal(2))
_ZERO = Decimal(0)
_ONE = Decimal(1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def micros(ts: datetime) -> int:
    """Return a timezone-aware time as integer microseconds since the epoch."""
    return (ts - _EPOCH) // _MICROSECOND


def span(us: int) -> timedelta:
    """Return a duration given in integer microseconds."""
    return timedelta(microseconds=us)


@lru_cache(maxsize=1 << 14)
def growth(gap_us: int, halflife_us: int) -> Decimal:
    """Return ``2 ** (gap / halflife)`` at 60 digits: how much more a later observation weighs."""
    return EXACT.exp(EXACT.multiply(EXACT.divide(Decimal(gap_us), Decimal(halflife_us)), _LN2))


def _sign(value: Decimal | float) -> int:
    return 1 if value > 0 else -1 if value < 0 else 0


class SignRuns:
    """Prefix sums of the sign of a series: time spent positive and negative, runs that ended.

    Position ``k`` holds the time spent positive (negative) by observations before ``k``
    (each holding until the next one) and how many runs of each sign ended at or before ``k``.
    """

    __slots__ = ("neg_before", "neg_runs", "pos_before", "pos_runs", "signs", "times")

    def __init__(self) -> None:
        # typed arrays: a pair of markets keeps one of these too, so they are many (8 bytes a value)
        self.times = array("q")
        self.signs = array("b")
        self.pos_before = array("q")
        self.neg_before = array("q")
        self.pos_runs = array("q")
        self.neg_runs = array("q")

    def append(self, t: int, value: float) -> None:
        """Add the observation ``value`` at ``t`` (later than the last one)."""
        sign = _sign(value)
        if self.times:
            prev = self.signs[-1]
            held = t - self.times[-1]
            self.pos_before.append(self.pos_before[-1] + (held if prev > 0 else 0))
            self.neg_before.append(self.neg_before[-1] + (held if prev < 0 else 0))
            ended = prev != sign
            self.pos_runs.append(self.pos_runs[-1] + (ended and prev > 0))
            self.neg_runs.append(self.neg_runs[-1] + (ended and prev < 0))
        else:
            self.pos_before.append(0)
            self.neg_before.append(0)
            self.pos_runs.append(0)
            self.neg_runs.append(0)
        self.times.append(t)
        self.signs.append(sign)

    def trim(self, n: int) -> None:
        """Drop the first ``n`` positions."""
        for column in (self.times, self.signs, self.pos_before, self.neg_before, self.pos_runs, self.neg_runs):
            del column[:n]

    def measure(self, f: int, j: int, start: int, now: int) -> tuple[int, int, int, int]:
        """Return ``(positive time, positive runs, negative time, negative runs)`` over positions ``f..j``.

        The series is read from ``f`` (whose sign starts the first run, so no run ends at
        ``f``), observation ``j`` holds until ``now``, time before ``start`` is not counted.
        The caller ensures ``f <= j``, ``times[j] <= now`` and that only ``f`` may be at or before ``start``.
        """
        pos = self.pos_before[j] - self.pos_before[f]
        neg = self.neg_before[j] - self.neg_before[f]
        last, first = self.signs[j], self.signs[f]
        tail = now - self.times[j]
        if last > 0:
            pos += tail
        elif last < 0:
            neg += tail
        clipped = max(self.times[f], start) - self.times[f]
        if first > 0:
            pos -= clipped
        elif first < 0:
            neg -= clipped
        return pos, self.pos_runs[j] - self.pos_runs[f], neg, self.neg_runs[j] - self.neg_runs[f]


class _Decayed:
    """Exponentially weighted prefix sums of one market for one half-life (weights relative to position 0).

    A weight is the difference of two consecutive prefix values; only the last one is kept.
    """

    __slots__ = ("halflife_us", "last", "weighted_before", "weights_before")

    def __init__(self, halflife_us: int) -> None:
        self.halflife_us = halflife_us
        self.last = _ONE  # the weight of the last position summed
        self.weights_before: list[Decimal] = []
        self.weighted_before: list[Decimal] = []

    def catch_up(self, times: array[int], aprs: list[Decimal]) -> None:
        """Extend the sums to every stored observation."""
        add, mul = EXACT.add, EXACT.multiply
        before, weighted = self.weights_before, self.weighted_before
        w = self.last
        for i in range(len(before), len(times)):
            if i == 0:
                before.append(_ZERO)
                weighted.append(_ZERO)
                continue
            before.append(add(before[-1], w))
            weighted.append(add(weighted[-1], mul(w, aprs[i - 1])))
            w = mul(w, growth(times[i] - times[i - 1], self.halflife_us))
        self.last = w

    def weight(self, j: int) -> Decimal:
        """The weight of position ``j`` (summed already)."""
        return self.last if j + 1 == len(self.weights_before) else EXACT.subtract(self.weights_before[j + 1], self.weights_before[j])

    def trim(self, n: int) -> None:
        """Drop the first ``n`` positions and rebase: weights relative to the new first one, sums from it."""
        if n >= len(self.weights_before):
            raise ValueError("a decayed sum is trimmed only after it is caught up, keeping its last position")
        scale = EXACT.divide(_ONE, self.weight(n))
        del self.weights_before[:n]
        del self.weighted_before[:n]
        w0, a0 = self.weights_before[0], self.weighted_before[0]
        mul, sub = EXACT.multiply, EXACT.subtract
        self.weights_before = [mul(sub(w, w0), scale) for w in self.weights_before]
        self.weighted_before = [mul(sub(a, a0), scale) for a in self.weighted_before]
        self.last = mul(self.last, scale)


class MarketSeries:
    """The stored observations of one market as columns with prefix sums (the last ``maxlen`` are live).

    Positions are list indices; ``first`` is the first live one and ``offset`` how many
    positions were compacted away before position 0 (``offset + position`` is stable).
    """

    __slots__ = ("apr_before", "aprs", "decayed", "first", "marks", "maxlen", "negative_before", "offset", "positive_before", "runs", "smoothed", "times")

    def __init__(self, maxlen: int) -> None:
        self.maxlen = maxlen
        self.first = 0
        self.offset = 0
        self.runs = SignRuns()  # of the smoothed funding
        self.times = self.runs.times  # one column: appended and trimmed by ``runs``
        self.aprs: list[Decimal] = []
        self.marks: list[Decimal] = []
        self.smoothed = array("d")
        self.apr_before: list[Decimal] = []
        self.positive_before = array("q")  # observations with funding above zero before each position
        self.negative_before = array("q")
        self.decayed: dict[int, _Decayed] = {}

    def append(self, t: int, apr: Decimal, mark: Decimal, smoothed: float) -> None:
        """Add one observation (later than the last one), evicting the oldest past ``maxlen``."""
        if self.times:
            prev = self.aprs[-1]
            self.apr_before.append(EXACT.add(self.apr_before[-1], prev))
            self.positive_before.append(self.positive_before[-1] + (prev > 0))
            self.negative_before.append(self.negative_before[-1] + (prev < 0))
        else:
            self.apr_before.append(_ZERO)
            self.positive_before.append(0)
            self.negative_before.append(0)
        self.aprs.append(apr)
        self.marks.append(mark)
        self.smoothed.append(smoothed)
        self.runs.append(t, smoothed)
        if len(self.times) - self.first > self.maxlen:
            self.first += 1
            if self.first > self.maxlen:
                self._compact()

    def _compact(self) -> None:
        n = self.first
        for d in self.decayed.values():
            d.catch_up(self.times, self.aprs)
            d.trim(n)
        for column in (self.aprs, self.marks, self.smoothed, self.apr_before, self.positive_before, self.negative_before):
            del column[:n]
        self.runs.trim(n)  # and the times
        base = self.apr_before[0]
        self.apr_before = [EXACT.subtract(a, base) for a in self.apr_before]
        self.first = 0
        self.offset += n

    def last_at(self, now: int) -> int:
        """Return the position of the last live observation at or before ``now`` (``first - 1``: none)."""
        times = self.times
        if times and times[-1] <= now:
            return len(times) - 1
        return bisect_right(times, now, self.first) - 1

    def last_at_or_before(self, t: int, j: int) -> int:
        """Return the position of the last live observation at or before ``t`` among ``first..j`` (``first - 1``: none)."""
        return bisect_right(self.times, t, self.first, j + 1) - 1

    def first_from(self, t: int, j: int) -> int:
        """Return the position of the first live observation at or after ``t`` among ``first..j`` (``j + 1``: none)."""
        return bisect_left(self.times, t, self.first, j + 1)

    def apr_sum(self, f: int, j: int) -> Decimal:
        """Return the exact sum of funding over positions ``f..j``."""
        return EXACT.subtract(EXACT.add(self.apr_before[j], self.aprs[j]), self.apr_before[f])

    def sign_counts(self, i: int, j: int) -> tuple[int, int]:
        """Return how many observations of positions ``i..j`` have funding above and below zero."""
        last = self.aprs[j]
        pos = self.positive_before[j] + (last > 0) - self.positive_before[i]
        neg = self.negative_before[j] + (last < 0) - self.negative_before[i]
        return pos, neg

    def weighted(self, halflife_us: int, f: int, j: int) -> tuple[Decimal, Decimal, Decimal]:
        """Return ``(sum of w * apr, sum of w, w at j)`` over positions ``f..j``, weights ``2 ** (t / halflife)`` up to a common factor."""
        d = self.decayed.get(halflife_us)
        if d is None:
            d = self.decayed[halflife_us] = _Decayed(halflife_us)
        if len(d.weights_before) <= j:
            d.catch_up(self.times, self.aprs)
        w = d.weight(j)
        num = EXACT.subtract(EXACT.add(d.weighted_before[j], EXACT.multiply(w, self.aprs[j])), d.weighted_before[f])
        den = EXACT.subtract(EXACT.add(d.weights_before[j], w), d.weights_before[f])
        return num, den, w


class PairSeries:
    """The spread ``high - low`` of two markets' smoothed funding at the times both were observed, as sign runs.

    Built by merging the two series as they grow (each observation is read once).
    """

    __slots__ = ("high", "high_at", "low", "low_at", "runs")

    def __init__(self, low: MarketSeries, high: MarketSeries) -> None:
        self.low = low
        self.high = high
        self.low_at = 0  # next stable index of low to merge
        self.high_at = 0
        self.runs = SignRuns()

    def catch_up(self) -> None:
        """Merge the observations added to either market since the last call."""
        low, high, runs = self.low, self.high, self.runs
        lt, ht = low.times, high.times
        na, nb = len(lt), len(ht)
        if self.low_at == low.offset + na and self.high_at == high.offset + nb:
            return  # nothing new
        a = max(self.low_at - low.offset, low.first)
        b = max(self.high_at - high.offset, high.first)
        while a < na and b < nb:
            ta, tb = lt[a], ht[b]
            if ta == tb:
                runs.append(ta, high.smoothed[b] - low.smoothed[a])
                a += 1
                b += 1
            elif ta < tb:
                a += 1
            else:
                b += 1
        self.low_at = a + low.offset
        self.high_at = b + high.offset
        # drop what no query can read any more: before both markets' first live observation
        if len(runs.times) > 2 * max(low.maxlen, high.maxlen):
            stale = bisect_left(runs.times, max(lt[low.first], ht[high.first]))
            if stale > max(low.maxlen, high.maxlen):
                runs.trim(stale)

    def measure(self, since: int, start: int, now: int) -> tuple[int, int, int, int] | None:
        """Persistence of the spread from its first common time at or after ``since`` to ``now``; None: no common time."""
        self.catch_up()
        times = self.runs.times
        g = bisect_left(times, since)
        j = (len(times) - 1) if times and times[-1] <= now else bisect_right(times, now) - 1
        if g > j:
            return None
        return self.runs.measure(g, j, start, now)


__all__ = ["EXACT", "MarketSeries", "PairSeries", "SignRuns", "growth", "micros", "span"]
