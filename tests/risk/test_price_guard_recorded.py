"""The price guard flags nothing in the recorded history: its defaults leave room for real markets.

Every file of ``shared/data/prices`` is read with the project's importers; at each recorded
instant the guard screens every series of the file as one venue's market (a perp's index is the
same venue's spot price where the file has one, its funding the file's latest settlement), so
the mark-vs-index, cross-venue and jump checks all meet real data. Every funding file is then
screened settlement by settlement against the funding bound. The largest gaps met are printed.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from alpha.config.schema import RiskLimits
from alpha.data.importers import Imported, import_file
from alpha.data.series import Duplicates, FundingRecord
from alpha.domain.funding import FundingRate
from alpha.domain.instruments import Instrument, InstrumentKind
from alpha.domain.market import MarketSnapshot
from alpha.domain.money import ZERO
from alpha.risk.prices import PriceGuard
from tests.conftest import SHARED_DATA

pytestmark = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="shared data missing")

D = Decimal
LIMITS = RiskLimits()
QUOTES = ("USDT", "USD")
PRICE_FILES = sorted((SHARED_DATA / "prices").glob("*")) if SHARED_DATA.is_dir() else []
FUNDING_FILES = sorted((SHARED_DATA / "funding").glob("*.csv")) if SHARED_DATA.is_dir() else []


@dataclass
class Series:
    """One recorded series of a file, as one venue's market."""

    venue: str
    symbol: str
    times: list[datetime]
    prices: list[Decimal]
    funding: list[FundingRecord]

    @property
    def base(self) -> str:
        for asset in ("BTC", "ETH", "SOL"):
            if self.symbol.startswith(asset):
                return asset
        assert self.symbol.startswith("XBT"), self.symbol
        return "BTC"

    @property
    def spot(self) -> bool:
        return "spot" in self.symbol or self.venue == "ftx"

    def instrument(self) -> Instrument:
        quote = "USDT" if "USDT" in self.symbol else "USD"
        kind = InstrumentKind.SPOT if self.spot else InstrumentKind.LINEAR_PERP
        symbol = f"{self.base}/{quote}" + ("" if self.spot else f":{quote}")
        return Instrument(f"{self.venue}-{self.symbol}", symbol, kind, self.base, quote, quote, D("0.01"), D("0.001"))

    def at(self, ts: datetime) -> tuple[datetime, Decimal] | None:
        """The last recorded price at or before ``ts`` while the series runs."""
        if ts > self.times[-1]:
            return None
        i = bisect.bisect_right(self.times, ts) - 1
        return (self.times[i], self.prices[i]) if i >= 0 else None

    def funding_at(self, ts: datetime) -> FundingRate | None:
        i = bisect.bisect_right([r.ts for r in self.funding], ts) - 1
        if i < 0:
            return None
        r = self.funding[i]
        return FundingRate(r.rate, r.interval, r.ts + r.interval)


def _series(imported: Imported) -> list[Series]:
    out = []
    for (venue, symbol), prices in sorted(imported.prices.items()):
        funding = imported.funding.get((venue, symbol))
        points = prices.points
        out.append(Series(venue, symbol, [p.ts for p in points], [p.price for p in points], list(funding.records) if funding else []))
    return out


def _views(series: list[Series]) -> Iterator[dict[str, MarketSnapshot]]:
    """Every instant of the file: each running series' latest price (perps indexed on their venue's spot)."""
    instruments = {id(s): s.instrument() for s in series}
    spots = {(s.venue, s.base): s for s in series if s.spot}
    for ts in sorted({t for s in series for t in s.times}):
        markets = {}
        for s in series:
            seen = s.at(ts)
            if seen is None:
                continue
            spot = spots.get((s.venue, s.base))
            index = spot.at(ts) if spot is not None and spot is not s else None
            inst = instruments[id(s)]
            snap = MarketSnapshot(inst.venue, inst, seen[0], seen[1], index[1] if index else None, s.funding_at(ts) if s.funding else None)
            markets[f"{inst.venue}:{inst.symbol}"] = snap
        yield markets


@dataclass
class Widest:
    """The largest gaps met, to print (figures, not assertions)."""

    index: Decimal = ZERO
    venues: Decimal = ZERO
    jump_per_hour: Decimal = ZERO
    funding_per_hour: Decimal = ZERO

    def observe(self, markets: dict[str, MarketSnapshot], before: dict[str, tuple[datetime, Decimal]]) -> None:
        by_base: dict[str, list[Decimal]] = {}
        for key, snap in markets.items():
            by_base.setdefault(snap.instrument.base, []).append(snap.mark)
            if snap.index is not None:
                self.index = max(self.index, abs(snap.mark - snap.index) / snap.index)
            if snap.funding is not None:
                self.funding_per_hour = max(self.funding_per_hour, abs(snap.funding.rate) / snap.funding.interval_hours)
            last = before.get(key)
            if last is not None and snap.ts > last[0]:
                hours = max(D(int((snap.ts - last[0]).total_seconds())) / 3600, D(1))
                self.jump_per_hour = max(self.jump_per_hour, abs(snap.mark / last[1] - 1) / hours)
            before[key] = (snap.ts, snap.mark)
        for marks in by_base.values():
            if len(marks) > 1:
                self.venues = max(self.venues, max(marks) / min(marks) - 1)


@pytest.mark.parametrize("path", PRICE_FILES, ids=lambda p: p.name)
def test_the_guard_refuses_no_recorded_price(path: Path) -> None:
    series = _series(import_file(path, duplicates=Duplicates.DROP))
    assert series, f"{path.name} holds prices"
    guard = PriceGuard()
    widest, before = Widest(), {}
    screens = 0
    refused = []

    for markets in _views(series):
        screen = guard.screen(markets, LIMITS, quotes=QUOTES)
        refused += [f"{snap.ts.isoformat()} {o}" for o in screen.outliers for snap in [markets[o.key]]]
        guard = screen.guard
        widest.observe(markets, before)
        screens += 1

    print(
        f"\n{path.name}: {screens} instants, {len(series)} series; widest mark-index {widest.index:.2%}, "
        f"across venues {widest.venues:.2%}, jump {widest.jump_per_hour:.2%}/h, funding {widest.funding_per_hour:.4%}/h"
    )
    assert screens > 100
    assert refused == [], f"{len(refused)} recorded prices refused, first: {refused[:5]}"


@pytest.mark.parametrize("path", FUNDING_FILES, ids=lambda p: p.name)
def test_the_guard_refuses_no_recorded_funding_rate(path: Path) -> None:
    imported = import_file(path, duplicates=Duplicates.DROP)
    records = [r for s in imported.funding.values() for r in s.records]
    assert records, f"{path.name} holds funding"
    inst = Instrument("venue", "BTC/USD:USD", InstrumentKind.LINEAR_PERP, "BTC", "USD", "USD", D("0.01"), D("0.001"))
    guard = PriceGuard()
    refused = []
    widest = D(0)

    for r in records:  # a constant mark: only the funding bound can refuse
        snap = MarketSnapshot("venue", inst, r.ts, D(1), None, FundingRate(r.rate, r.interval, r.ts + timedelta(seconds=1)))
        screen = guard.screen({"venue:BTC/USD:USD": snap}, LIMITS, quotes=QUOTES)
        refused += [f"{r.ts.isoformat()} {o}" for o in screen.outliers]
        guard = screen.guard
        widest = max(widest, abs(r.rate) / r.interval_hours)

    print(f"\n{path.name}: {len(records)} settlements, widest funding {widest:.4%}/h")
    assert refused == [], f"{len(refused)} recorded funding rates refused, first: {refused[:5]}"
