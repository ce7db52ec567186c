"""Recorded history as the simulated world's ``MarketSource``.

Each market of each ``kind: sim`` fuse reads canonical files from the data directory:
``<venue>_<symbol>_funding.csv`` (perps) and ``<venue>_<symbol>_price.csv``. The data venue is
``options.data_venue`` of the fuse (default: the fuse's ``venue``); the data symbol is
``options["<market>"]`` (default: ``BTC/USDT:USDT`` -> ``BTCUSDT``, spot ``BTC/USDT`` ->
``BTCUSDT-spot``, inverse ``BTC/USD:BTC`` -> ``BTCUSD``).

Marks come from the price file, else from the funding file's ``mark_price`` column, else
from another market of the same asset (a spot market without its own prices takes the
perp's); each is held constant until the next recorded value. A perp's index is the spot
price of its asset when a spot market is configured, else its own mark. Funding is paid at
the recorded settlement times with the recorded rate and interval. What the venue publishes
meanwhile (``MarketState.predicted_rate``, what a decision sees) is a prediction made from
the data before the settlement: the last settled rate (0 before the first recorded one), as a
venue's predicted rate starts from the premium of the interval just settled. The rate about
to be paid is never shown before it is paid: no decision reads the future.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path

from alpha.config.schema import FuseKind, StrategyConfig
from alpha.data.canonical import funding_path, load_funding, load_prices, price_path
from alpha.data.series import DataError, FundingRecord
from fuses.sim.markets import parse_symbol
from fuses.sim.source import MarketState, MarketStates


def default_data_symbol(market: str) -> str:
    """The data file symbol of a unified market symbol when the fuse does not name one."""
    parsed = parse_symbol(market)
    name = f"{parsed.base}{parsed.quote}"
    return f"{name}-spot" if parsed.settle == parsed.quote and ":" not in market else name


@dataclass
class MarketTape:
    """One market's recorded marks and settlements, read forward in time."""

    fuse: str
    market: str
    asset: str
    is_perp: bool
    price_times: list[datetime] = field(default_factory=list)
    prices: list[Decimal] = field(default_factory=list)
    funding: list[FundingRecord] = field(default_factory=list)
    funding_times: list[datetime] = field(default_factory=list)
    price_source: str = ""

    def mark_at(self, now: datetime) -> Decimal | None:
        """The last recorded price at or before ``now``."""
        i = bisect.bisect_right(self.price_times, now) - 1
        return self.prices[i] if i >= 0 else None

    def next_funding(self, now: datetime) -> FundingRecord | None:
        """The first recorded settlement strictly after ``now`` (what the world pays; never shown to a decision)."""
        i = bisect.bisect_right(self.funding_times, now)
        return self.funding[i] if i < len(self.funding) else None

    def predicted_funding(self, now: datetime) -> Decimal:
        """The rate the venue publishes at ``now`` for its next settlement: the last rate settled at or before ``now`` (0 before any)."""
        i = bisect.bisect_right(self.funding_times, now) - 1
        return self.funding[i].rate if i >= 0 else Decimal(0)

    @property
    def first_time(self) -> datetime:
        return self.price_times[0]

    @property
    def last_time(self) -> datetime:
        last = self.price_times[-1]
        return min(last, self.funding_times[-1]) if self.is_perp and self.funding_times else last


def data_location(config: StrategyConfig, fuse_name: str, market: str) -> tuple[str, str]:
    """The ``(data venue, data symbol)`` a fuse's market reads."""
    fuse = config.fuse(fuse_name)
    venue = str(fuse.options.get("data_venue", fuse.venue))
    symbol = str(fuse.options.get(market, default_data_symbol(market)))
    return venue, symbol


def load_tapes(config: StrategyConfig, data_dir: Path) -> list[MarketTape]:
    """Read every simulated market's history for ``config`` from ``data_dir``."""
    tapes: list[MarketTape] = []
    for fuse in config.enabled_fuses:
        if fuse.kind is not FuseKind.SIM:
            continue
        for market in fuse.markets:
            parsed = parse_symbol(market)
            venue, symbol = data_location(config, fuse.name, market)
            tape = MarketTape(fuse.name, market, parsed.base, ":" in market)
            if tape.is_perp:
                fpath = funding_path(data_dir, venue, symbol)
                if not fpath.exists():
                    raise DataError(f"fuse {fuse.name} market {market}: no funding history {fpath}")
                series = load_funding(fpath)
                tape.funding = list(series.records)
                tape.funding_times = [r.ts for r in series.records]
            ppath = price_path(data_dir, venue, symbol)
            if ppath.exists():
                prices = load_prices(ppath)
                tape.price_times = [p.ts for p in prices.points]
                tape.prices = [p.price for p in prices.points]
                tape.price_source = str(ppath)
            elif tape.funding and all(r.mark is not None for r in tape.funding):
                tape.price_times = list(tape.funding_times)
                tape.prices = [r.mark for r in tape.funding if r.mark is not None]
                tape.price_source = f"{funding_path(data_dir, venue, symbol)} (mark_price)"
            tapes.append(tape)
    for tape in tapes:
        if tape.prices:
            continue
        donor = next((t for t in tapes if t.asset == tape.asset and t.prices), None)
        if donor is None:
            raise DataError(
                f"fuse {tape.fuse} market {tape.market}: no prices ({price_path(data_dir, *data_location(config, tape.fuse, tape.market))} "
                "is missing and no other market of the asset has prices)"
            )
        tape.price_times, tape.prices = donor.price_times, donor.prices
        tape.price_source = f"{donor.price_source} (shared with {donor.fuse}:{donor.market})"
    return tapes


class RecordedSource:
    """``MarketSource`` over recorded tapes: ``advance(now)`` returns the markets that changed."""

    def __init__(self, tapes: Sequence[MarketTape]) -> None:
        if not tapes:
            raise DataError("the strategy has no simulated markets to replay")
        self.tapes = list(tapes)
        self._last: dict[tuple[str, str], MarketState] = {}
        self._seen: dict[tuple[str, str], int] = {}  # recorded prices read so far, per market
        self._now: datetime | None = None
        self._index: dict[str, MarketTape] = {}
        for t in self.tapes:
            if not t.is_perp:
                self._index.setdefault(t.asset, t)

    @property
    def start(self) -> datetime:
        """The first instant every market has a price (and a settlement ahead, for perps)."""
        return max(t.first_time for t in self.tapes)

    @property
    def end(self) -> datetime:
        """The last instant every market has data."""
        return min(t.last_time for t in self.tapes)

    def event_times(self, start: datetime, end: datetime) -> list[datetime]:
        """Every price update and settlement time in ``(start, end]``, in order."""
        times: set[datetime] = set()
        for t in self.tapes:
            lo = bisect.bisect_right(t.price_times, start)
            hi = bisect.bisect_right(t.price_times, end)
            times.update(t.price_times[lo:hi])
            lo = bisect.bisect_right(t.funding_times, start)
            hi = bisect.bisect_right(t.funding_times, end)
            times.update(t.funding_times[lo:hi])
        return sorted(times)

    def count_events(self, start: datetime, end: datetime) -> int:
        """Price updates plus funding settlements of every market in ``(start, end]``."""
        n = 0
        for t in self.tapes:
            n += bisect.bisect_right(t.price_times, end) - bisect.bisect_right(t.price_times, start)
            if t.is_perp:
                n += bisect.bisect_right(t.funding_times, end) - bisect.bisect_right(t.funding_times, start)
        return n

    def advance(self, now: datetime) -> MarketStates:
        """Return the state of every market whose mark or funding changed since the last call.

        A repeated call at the same time returns every market (the world asks twice at its start).
        """
        if self._now is not None and now < self._now:
            raise ValueError(f"the recorded source cannot go back from {self._now} to {now}")
        repeat = self._now == now
        self._now = now
        out: MarketStates = {}
        for t in self.tapes:
            mark = t.mark_at(now)
            if mark is None:
                raise DataError(f"{t.fuse}:{t.market}: no recorded price at or before {now.isoformat()}")
            spot = self._index.get(t.asset)
            index = spot.mark_at(now) if spot is not None and spot is not t else None
            state: MarketState
            if t.is_perp:
                nxt = t.next_funding(now)
                state = MarketState(
                    mark=mark,
                    index=index or mark,
                    funding_rate=nxt.rate if nxt else None,
                    next_settlement=nxt.ts if nxt else None,
                    funding_interval=nxt.interval if nxt else None,
                    predicted_rate=t.predicted_funding(now) if nxt else None,
                )
            else:
                state = MarketState(mark=mark, index=mark)
            key = (t.fuse, t.market)
            # A recorded price at a new time is fresh data even when its value repeats the last one.
            seen = bisect.bisect_right(t.price_times, now)
            if repeat or self._last.get(key) != state or self._seen.get(key) != seen:
                self._last[key] = state
                self._seen[key] = seen
                out.setdefault(t.fuse, {})[t.market] = state
        return out

    def index_prices(self) -> dict[str, Decimal]:
        """Each asset's index price now: its spot mark, else the mean of its perps' marks."""
        out: dict[str, Decimal] = {}
        seen: dict[str, list[Decimal]] = {}
        for t in self.tapes:
            state = self._last.get((t.fuse, t.market))
            if state is None:
                continue
            if not t.is_perp:
                out.setdefault(t.asset, state.mark)
            seen.setdefault(t.asset, []).append(state.index)
        for asset, values in seen.items():
            out.setdefault(asset, sum(values, Decimal(0)) / len(values))
        return out
