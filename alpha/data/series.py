"""Canonical funding and price history: exact records, ordered in time, with a validation report.

A funding record is one settlement: the UTC instant it was paid, the rate paid for that one
interval (positive: longs pay shorts) and the interval's length; optionally the mark and index
prices at that instant. A price point is one observed price at one UTC instant (for a candle:
its close, stamped at the candle's *close* time, so that nothing in a backtest sees a price
before it existed).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import TypeVar

ABSURD_RATE_PER_HOUR = Decimal("0.005")  # 0.5% an hour is about 4,400% a year: flag it
IMPOSSIBLE_RATE = Decimal("1")  # a rate of 100% or more per interval is not data: refuse it


class DataError(ValueError):
    """History that cannot be used as it is; the message names the file, row and problem."""


class Duplicates(StrEnum):
    """What a loader does with rows stamped at the same instant."""

    REFUSE = "refuse"  # any repeated timestamp is an error (the default)
    DROP = "drop"  # drop exact repeats; repeated timestamps with different values are still errors
    KEEP = "keep"  # keep every row as recorded (UXD's study used its FTX file this way)


@dataclass(frozen=True, slots=True)
class FundingRecord:
    """One funding settlement: ``rate`` paid for ``interval`` at ``ts`` (UTC)."""

    ts: datetime
    rate: Decimal
    interval: timedelta
    mark: Decimal | None = None
    index: Decimal | None = None

    @property
    def interval_hours(self) -> Decimal:
        return Decimal(int(self.interval.total_seconds())) / 3600


@dataclass(frozen=True, slots=True)
class PricePoint:
    """A price observed at ``ts`` (UTC)."""

    ts: datetime
    price: Decimal


@dataclass(frozen=True, slots=True)
class Gap:
    """Missing settlements between two recorded ones."""

    after: datetime
    before: datetime
    missing: int  # whole intervals missing

    def __str__(self) -> str:
        return f"gap of {self.missing} interval(s) between {self.after.isoformat()} and {self.before.isoformat()}"


@dataclass(frozen=True, slots=True)
class Flag:
    """A suspicious row kept in the data but reported (e.g. an absurd funding rate)."""

    row: int
    ts: datetime
    problem: str

    def __str__(self) -> str:
        return f"row {self.row} ({self.ts.isoformat()}): {self.problem}"


@dataclass(frozen=True, slots=True)
class Report:
    """What validation found in a series that it did not refuse."""

    source: str
    rows: int
    duplicates_dropped: int = 0
    duplicates_kept: int = 0
    gaps: tuple[Gap, ...] = ()
    flags: tuple[Flag, ...] = ()

    def lines(self) -> list[str]:
        """Describe the findings, one line each."""
        out = [f"{self.source}: {self.rows} rows"]
        if self.duplicates_dropped:
            out.append(f"  {self.duplicates_dropped} exact duplicate row(s) dropped")
        if self.duplicates_kept:
            out.append(f"  {self.duplicates_kept} duplicate row(s) kept as recorded")
        out += [f"  {g}" for g in self.gaps]
        out += [f"  {f}" for f in self.flags]
        return out


@dataclass(frozen=True, slots=True)
class FundingSeries:
    """A validated funding history of one market, oldest first."""

    venue: str
    symbol: str
    records: tuple[FundingRecord, ...]
    report: Report = field(compare=False)

    def __len__(self) -> int:
        return len(self.records)

    @property
    def start(self) -> datetime:
        return self.records[0].ts

    @property
    def end(self) -> datetime:
        return self.records[-1].ts

    def between(self, start: datetime | None, end: datetime | None) -> FundingSeries:
        """Keep the records with ``start <= ts < end`` (either bound optional)."""
        kept = tuple(r for r in self.records if (start is None or r.ts >= start) and (end is None or r.ts < end))
        return FundingSeries(self.venue, self.symbol, kept, self.report)


@dataclass(frozen=True, slots=True)
class PriceSeries:
    """A validated price history of one market, oldest first."""

    venue: str
    symbol: str
    points: tuple[PricePoint, ...]
    report: Report = field(compare=False)

    def __len__(self) -> int:
        return len(self.points)


_Row = TypeVar("_Row", FundingRecord, PricePoint)


def _key_order(ts: Sequence[datetime], source: str, rows: Sequence[int]) -> None:
    for i in range(1, len(ts)):
        if ts[i] < ts[i - 1]:
            raise DataError(
                f"{source}: row {rows[i]} ({ts[i].isoformat()}) is earlier than row {rows[i - 1]} "
                f"({ts[i - 1].isoformat()}): times must increase (sort newest-first exports on import)"
            )


def _dedupe(
    items: Sequence[tuple[int, _Row]], *, source: str, duplicates: Duplicates, differs: str
) -> tuple[list[tuple[int, _Row]], int, int]:
    """Apply ``duplicates`` to rows stamped at the same instant as the row before.

    Return the kept ``(row number, row)`` pairs and how many repeats were dropped and kept.
    """
    kept: list[tuple[int, _Row]] = []
    dropped = kept_dup = 0
    for n, r in items:
        if kept and kept[-1][1].ts == r.ts:
            same = kept[-1][1] == r
            if duplicates is Duplicates.KEEP:
                kept_dup += 1
            elif duplicates is Duplicates.DROP and same:
                dropped += 1
                continue
            else:
                what = "repeats" if same else f"has the same time as, but {differs} from,"
                hint = "; pass duplicates=drop to drop exact repeats" if same else ""
                raise DataError(f"{source}: row {n} ({r.ts.isoformat()}) {what} row {kept[-1][0]}{hint}")
        kept.append((n, r))
    return kept, dropped, kept_dup


def validate_funding(
    records: Iterable[tuple[int, FundingRecord]],
    *,
    source: str,
    venue: str = "",
    symbol: str = "",
    duplicates: Duplicates = Duplicates.REFUSE,
    absurd_per_hour: Decimal = ABSURD_RATE_PER_HOUR,
) -> FundingSeries:
    """Check ``(row number, record)`` pairs already in time order and build a series.

    Refuse (``DataError``) times going backwards, timestamps without a zone, repeated
    timestamps (per ``duplicates``), non-finite or impossible rates and non-positive prices.
    Report gaps (more than one interval between settlements) and absurd rates (above
    ``absurd_per_hour`` per hour of the interval) without refusing them.
    """
    items = list(records)
    rows = [n for n, _ in items]
    recs = [r for _, r in items]
    for n, r in items:
        if r.ts.tzinfo is None or r.ts.utcoffset() != timedelta(0):
            raise DataError(f"{source}: row {n}: time {r.ts.isoformat()} is not UTC")
        if not r.rate.is_finite():
            raise DataError(f"{source}: row {n}: rate {r.rate} is not a finite number")
        if abs(r.rate) >= IMPOSSIBLE_RATE:
            raise DataError(f"{source}: row {n}: rate {r.rate} is 100% or more per interval: not a funding rate")
        if r.interval <= timedelta(0):
            raise DataError(f"{source}: row {n}: interval {r.interval} is not positive")
        for name, price in (("mark", r.mark), ("index", r.index)):
            if price is not None and (not price.is_finite() or price <= 0):
                raise DataError(f"{source}: row {n}: {name} price {price} is not a positive number")
    _key_order([r.ts for r in recs], source, rows)
    pairs, dropped, kept_dup = _dedupe(items, source=source, duplicates=duplicates, differs="different values")
    kept_rows = [n for n, _ in pairs]
    kept = [r for _, r in pairs]
    gaps: list[Gap] = []
    flags: list[Flag] = []
    for i, r in enumerate(kept):
        per_hour = abs(r.rate) / r.interval_hours
        if per_hour > absurd_per_hour:
            flags.append(Flag(kept_rows[i], r.ts, f"absurd funding rate {r.rate} per {r.interval_hours}h"))
        if i:
            step = r.ts - kept[i - 1].ts
            # A change of interval (BitMEX 24h -> 8h) is not a gap: compare with the longer one.
            expected = max(r.interval, kept[i - 1].interval)
            if step > expected + expected / 2:
                gaps.append(Gap(kept[i - 1].ts, r.ts, int(step / r.interval) - 1))
    report = Report(source, len(kept), dropped, kept_dup, tuple(gaps), tuple(flags))
    return FundingSeries(venue, symbol, tuple(kept), report)


def validate_prices(
    points: Iterable[tuple[int, PricePoint]],
    *,
    source: str,
    venue: str = "",
    symbol: str = "",
    duplicates: Duplicates = Duplicates.REFUSE,
    period: timedelta | None = None,
) -> PriceSeries:
    """Check ``(row number, point)`` pairs already in time order and build a series.

    Refuse times going backwards, timestamps without a zone, repeated timestamps (per
    ``duplicates``) and prices that are not positive finite numbers; report gaps longer than
    1.5 ``period`` when a period is given.
    """
    items = list(points)
    for n, p in items:
        if p.ts.tzinfo is None or p.ts.utcoffset() != timedelta(0):
            raise DataError(f"{source}: row {n}: time {p.ts.isoformat()} is not UTC")
        if not p.price.is_finite() or p.price <= 0:
            raise DataError(f"{source}: row {n}: price {p.price} is not a positive number")
    _key_order([p.ts for _, p in items], source, [n for n, _ in items])
    kept, dropped, kept_dup = _dedupe(items, source=source, duplicates=duplicates, differs="a different price")
    gaps: list[Gap] = []
    if period is not None:
        for (_, a), (_, b) in itertools.pairwise(kept):
            if b.ts - a.ts > period + period / 2:
                gaps.append(Gap(a.ts, b.ts, int((b.ts - a.ts) / period) - 1))
    report = Report(source, len(kept), dropped, kept_dup, tuple(gaps))
    return PriceSeries(venue, symbol, tuple(p for _, p in kept), report)
