"""UXD's insurance-fund study: a fund receives a share of the funding on a delta-neutral book.

The book is short the perp (and long the asset elsewhere) on a constant notional at a constant
price, so at each settlement the fund receives ``share x notional x rate`` (positive rate:
shorts receive). With ``fund_return`` the balance also earns a simple annual yield, compounded
at every settlement over the time since the previous one. A schedule replaces the constant
notional by a step function of time (supply cap), either by elapsed days since the start or by
calendar date.

One start is computed exactly, in ``Decimal``, by a plain loop. All starts at once are
computed with numpy in float64 (converted back to ``Decimal`` at the cent for output): with no
fund return and a calendar (or no) schedule by prefix sums, suffix extrema and a vectorised
binary search over a sparse table, O(n log n); otherwise in blocks of starts, O(n x starts)
inside numpy. Neither is a Python loop over (start, settlement) pairs.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from alpha.data.canonical import parse_decimal, parse_utc
from alpha.data.series import DataError, FundingRecord, FundingSeries
from alpha.domain.funding import SECONDS_PER_YEAR
from alpha.domain.money import ZERO

DEFAULT_NOTIONAL = Decimal("500000000")
DEFAULT_INITIAL_FUND = Decimal("57000000")
CENT = Decimal("0.01")

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Schedule:
    """Notional as a step function: ``(threshold, notional)`` rows, thresholds ascending.

    ``relative``: thresholds are elapsed time since the fund's start; otherwise UTC instants.
    Before the first threshold the first row's notional applies.
    """

    relative: bool
    thresholds: tuple[timedelta, ...] | tuple[datetime, ...]
    notionals: tuple[Decimal, ...]

    def notional(self, ts: datetime, start: datetime) -> Decimal:
        """The notional in force at ``ts`` for a fund started at ``start``."""
        key: timedelta | datetime = ts - start if self.relative else ts
        value = self.notionals[0]
        for threshold, notional in zip(self.thresholds, self.notionals, strict=True):
            if threshold <= key:  # type: ignore[operator]
                value = notional
            else:
                break
        return value


def load_schedule(path: str | Path) -> Schedule:
    """Read a schedule CSV: ``days,notional`` (days since start) or ``date,notional`` (UTC dates)."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such schedule file")
    with p.open(newline="") as fh:
        reader = csv.DictReader(fh)
        fields = reader.fieldnames or []
        if "notional" not in fields or not ({"days", "date"} & set(fields)):
            raise DataError(f"{p}: a schedule has columns days,notional or date,notional (got {', '.join(fields)})")
        relative = "days" in fields
        thresholds: list[timedelta] | list[datetime] = []
        notionals: list[Decimal] = []
        for n, row in enumerate(reader, start=2):
            where = f"{p}: row {n}"
            notional = parse_decimal(row["notional"], where=where, name="notional")
            if notional < 0:
                raise DataError(f"{where}: notional {notional} is negative")
            if relative:
                days = parse_decimal(row["days"], where=where, name="days")
                thresholds.append(timedelta(days=float(days)))  # type: ignore[arg-type]
            else:
                text = row["date"].strip()
                thresholds.append(parse_utc(text if "T" in text else f"{text}T00:00:00+00:00", where=where))  # type: ignore[arg-type]
            if len(thresholds) > 1 and thresholds[-1] <= thresholds[-2]:  # type: ignore[operator]
                raise DataError(f"{where}: schedule rows must be in increasing order")
            notionals.append(notional)
    if not notionals:
        raise DataError(f"{p}: the schedule has no rows")
    return Schedule(relative, tuple(thresholds), tuple(notionals))  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Study:
    """The study's parameters."""

    notional: Decimal = DEFAULT_NOTIONAL
    initial_fund: Decimal = DEFAULT_INITIAL_FUND
    share: Decimal = Decimal(1)
    fund_return: Decimal = ZERO  # simple annual yield on the balance, compounded per settlement
    schedule: Schedule | None = None


@dataclass(frozen=True, slots=True)
class PathStats:
    """One start's outcome: the balance path's end, min, mean and max, and first time <= 0.

    The path is the initial balance at the start followed by the balance after each
    settlement up to the end of the data.
    """

    start: datetime
    end_balance: Decimal
    min: Decimal
    mean: Decimal
    max: Decimal
    bankrupt_at: datetime | None

    def as_json(self, *, with_start: bool = False) -> dict[str, object]:
        """The JSON object of issue 4: amounts as numbers (to the cent), times as ISO strings."""
        out: dict[str, object] = {}
        if with_start:
            out["start"] = _iso(self.start)
        out.update(
            end_balance=_number(self.end_balance),
            min=_number(self.min),
            mean=_number(self.mean),
            max=_number(self.max),
            bankrupt_at=None if self.bankrupt_at is None else _iso(self.bankrupt_at),
        )
        return out


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _number(value: Decimal) -> float:
    # JSON has only binary numbers; at the cent an amount below 1e13 survives the round trip.
    return float(value.quantize(CENT))


def balance_path(
    records: Sequence[FundingRecord], study: Study, start: datetime | None = None
) -> tuple[list[datetime], list[Decimal]]:
    """Compute the fund's balance exactly from ``start`` (default: the first settlement) to the end.

    Return the times and balances: the first entry is the initial balance at the start (stamped
    with the first settlement's time minus its interval), then one entry per settlement.
    """
    recs = [r for r in records if start is None or r.ts >= start]
    if not recs:
        raise DataError(f"no settlement at or after {start.isoformat() if start else 'the start'}")
    origin = recs[0].ts
    times = [origin - recs[0].interval]
    balances = [study.initial_fund]
    balance = study.initial_fund
    previous = times[0]
    for r in recs:
        if study.fund_return:
            elapsed = Decimal(int((r.ts - previous).total_seconds()))
            balance += balance * study.fund_return * elapsed / SECONDS_PER_YEAR
        notional = study.schedule.notional(r.ts, origin) if study.schedule else study.notional
        balance += study.share * notional * r.rate
        previous = r.ts
        times.append(r.ts)
        balances.append(balance)
    return times, balances


def stats_from_path(times: Sequence[datetime], balances: Sequence[Decimal]) -> PathStats:
    """Summarise a balance path."""
    start = times[1] if len(times) > 1 else times[0]
    bankrupt = next((max(t, start) for t, b in zip(times, balances, strict=True) if b <= 0), None)
    return PathStats(
        start=start,
        end_balance=balances[-1],
        min=min(balances),
        mean=sum(balances, ZERO) / len(balances),
        max=max(balances),
        bankrupt_at=bankrupt,
    )


def run_one(series: FundingSeries, study: Study, start: datetime | None = None) -> PathStats:
    """Run the study from one start date, exactly."""
    return stats_from_path(*balance_path(series.records, study, start))


def daily_starts(times: Sequence[datetime]) -> list[int]:
    """Indices of the first settlement of each UTC day."""
    out: list[int] = []
    last = None
    for i, t in enumerate(times):
        day = t.date()
        if day != last:
            out.append(i)
            last = day
    return out


def _arrays(series: FundingSeries, study: Study) -> tuple[FloatArray, FloatArray, FloatArray]:
    n = len(series.records)
    rates = np.fromiter((float(r.rate) for r in series.records), dtype=np.float64, count=n)
    seconds = np.fromiter((r.ts.timestamp() for r in series.records), dtype=np.float64, count=n)
    first_gap = series.records[0].interval.total_seconds()
    dt = np.diff(seconds, prepend=seconds[0] - first_gap)
    return rates, seconds, dt


def run_all_starts(
    series: FundingSeries, study: Study, starts: Sequence[int] | None = None, *, block: int = 256
) -> list[PathStats]:
    """Run the study from every start (default: the first settlement of each UTC day), vectorised."""
    times = [r.ts for r in series.records]
    idx = np.asarray(daily_starts(times) if starts is None else list(starts), dtype=np.int64)
    if len(idx) == 0:
        return []
    relative = study.schedule is not None and study.schedule.relative
    if study.fund_return == 0 and not relative:
        ends, mins, means, maxs, bankrupt = _fast(series, study, idx)
    else:
        ends, mins, means, maxs, bankrupt = _blocked(series, study, idx, block)
    out = []
    for k, j in enumerate(idx.tolist()):
        b = int(bankrupt[k])
        out.append(
            PathStats(
                start=times[j],
                end_balance=_dec(ends[k]),
                min=_dec(mins[k]),
                mean=_dec(means[k]),
                max=_dec(maxs[k]),
                bankrupt_at=times[b] if b >= 0 else None,
            )
        )
    return out


def _dec(x: float) -> Decimal:
    return Decimal(repr(float(x))).quantize(CENT)


def _payments(series: FundingSeries, study: Study, rates: FloatArray) -> FloatArray:
    if study.schedule is None:
        notional = np.full(len(rates), float(study.notional))
    else:
        origin = series.records[0].ts
        notional = np.fromiter((float(study.schedule.notional(r.ts, origin)) for r in series.records), dtype=np.float64)
    return float(study.share) * notional * rates


def _fast(
    series: FundingSeries, study: Study, idx: npt.NDArray[np.int64]
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, npt.NDArray[np.int64]]:
    rates, _, _ = _arrays(series, study)
    n = len(rates)
    fund = float(study.initial_fund)
    cum = np.cumsum(_payments(series, study, rates))  # S[k] = payments 0..k
    before = np.where(idx > 0, cum[np.maximum(idx - 1, 0)], 0.0)  # S[j-1]
    # Balance after settlement k from start j: fund + S[k] - S[j-1].
    suffix_min = np.minimum.accumulate(cum[::-1])[::-1]
    suffix_max = np.maximum.accumulate(cum[::-1])[::-1]
    suffix_sum = np.cumsum(cum[::-1])[::-1]
    count = n - idx  # settlements on the path
    ends = fund + cum[-1] - before
    mins = np.minimum(fund, fund + suffix_min[idx] - before)
    maxs = np.maximum(fund, fund + suffix_max[idx] - before)
    means = (fund + count * fund + suffix_sum[idx] - count * before) / (count + 1)
    bankrupt = _first_at_or_below(cum, idx, before - fund) if fund > 0 else idx.copy()
    return ends, mins, means, maxs, bankrupt


def _first_at_or_below(values: FloatArray, starts: npt.NDArray[np.int64], limits: FloatArray) -> npt.NDArray[np.int64]:
    """For each start j: the first k >= j with values[k] <= limit_j, or -1 (vectorised)."""
    n = len(values)
    # Sparse table of range minima: table[p][i] = min(values[i : i + 2**p]).
    table = [values]
    p = 1
    while (1 << p) <= n:
        prev = table[-1]
        half = 1 << (p - 1)
        table.append(np.minimum(prev[: n - (1 << p) + 1], prev[half : half + n - (1 << p) + 1]))
        p += 1

    def range_min(lo: npt.NDArray[np.int64], hi: npt.NDArray[np.int64]) -> FloatArray:  # inclusive bounds
        length = hi - lo + 1
        level = np.floor(np.log2(length)).astype(np.int64)
        out = np.empty(len(lo))
        for lv in np.unique(level):
            m = level == lv
            row = table[int(lv)]
            out[m] = np.minimum(row[lo[m]], row[hi[m] - (1 << int(lv)) + 1])
        return out

    result = np.full(len(starts), -1, dtype=np.int64)
    last = np.full(len(starts), n - 1, dtype=np.int64)
    hit = range_min(starts, last) <= limits
    lo = starts[hit].copy()
    hi = last[hit].copy()
    lim = limits[hit]
    begin = starts[hit]
    while np.any(lo < hi):
        mid = (lo + hi) // 2
        left = range_min(begin, mid) <= lim
        hi = np.where(left, mid, hi)
        lo = np.where(left, lo, mid + 1)
    result[hit] = lo
    return result


def _blocked(
    series: FundingSeries, study: Study, idx: npt.NDArray[np.int64], block: int
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, npt.NDArray[np.int64]]:
    rates, seconds, dt = _arrays(series, study)
    n = len(rates)
    fund = float(study.initial_fund)
    share = float(study.share)
    growth = 1.0 + float(study.fund_return) * dt / float(SECONDS_PER_YEAR)
    # B_k = G_k * (fund / G_{j-1} + sum_{i=j..k} p_i / G_i) with G the running product of growth.
    log_g = np.cumsum(np.log(growth))
    sched = study.schedule
    relative = sched is not None and sched.relative
    if sched is not None and relative:
        th = np.array([t.total_seconds() for t in sched.thresholds], dtype=np.float64)  # type: ignore[union-attr]
        nv = np.array([float(v) for v in sched.notionals], dtype=np.float64)
    else:
        flat_payments = _payments(series, study, rates)
    ends = np.empty(len(idx))
    mins = np.empty(len(idx))
    means = np.empty(len(idx))
    maxs = np.empty(len(idx))
    bankrupt = np.full(len(idx), -1, dtype=np.int64)
    cols = np.arange(n)
    for b0 in range(0, len(idx), block):
        js = idx[b0 : b0 + block]
        first = int(js.min())
        k = cols[first:]
        active = k[None, :] >= js[:, None]
        if relative:
            elapsed = seconds[None, first:] - seconds[js][:, None]
            pos = np.searchsorted(th, elapsed, side="right") - 1
            notional = nv[np.maximum(pos, 0)]
            pay = share * notional * rates[None, first:]
        else:
            pay = np.broadcast_to(flat_payments[first:], active.shape)
        base = np.where(js > 0, log_g[np.maximum(js - 1, 0)], 0.0)
        scale = np.exp(log_g[None, first:] - base[:, None])  # G_k / G_{j-1}
        disc = np.where(active, pay / scale, 0.0)
        bal = scale * (fund + np.cumsum(disc, axis=1))
        bal = np.where(active, bal, np.nan)
        ends[b0 : b0 + len(js)] = bal[:, -1]
        mins[b0 : b0 + len(js)] = np.minimum(fund, np.nanmin(bal, axis=1))
        maxs[b0 : b0 + len(js)] = np.maximum(fund, np.nanmax(bal, axis=1))
        counts = active.sum(axis=1)
        means[b0 : b0 + len(js)] = (fund + np.nansum(bal, axis=1)) / (counts + 1)
        broke = np.where(active, bal <= 0, False)
        anyb = broke.any(axis=1)
        bankrupt[b0 : b0 + len(js)] = np.where(anyb, first + broke.argmax(axis=1), -1)
    if fund <= 0:
        bankrupt = idx.copy()
    return ends, mins, means, maxs, bankrupt


def _dates(values: Sequence[datetime]) -> Any:
    # matplotlib's stubs do not take datetimes; it plots them as dates.
    return list(values)


def plot_path(times: Sequence[datetime], balances: Sequence[Decimal], path: Path, title: str) -> Path:
    """Draw one start's balance path as a PNG (the study's first figure)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4.5))
    ax.plot(_dates(times), [float(b) / 1e6 for b in balances], lw=1)  # floats for the plot only
    ax.axhline(0, color="black", lw=0.5)
    ax.set_ylabel("fund balance ($M)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_all_starts(results: Sequence[PathStats], path: Path, title: str) -> Path:
    """Draw max, mean and min of the fund per start date as a PNG (the study's second figure)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = _dates([r.start for r in results])
    fig, ax = plt.subplots(figsize=(10, 4.5))
    for name, color in (("max", "tab:green"), ("mean", "tab:blue"), ("min", "tab:red")):
        ax.plot(x, [float(getattr(r, name)) / 1e6 for r in results], label=name, color=color, lw=1)
    ax.axhline(0, color="black", lw=0.5)
    ax.set_xlabel("start date")
    ax.set_ylabel("fund balance since start ($M)")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
