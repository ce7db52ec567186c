"""Keep the latest funding, marks and books per market, with their age.

The service polls each trading fuse on a cadence: funding for every perp, marks, and the
visible book of every allowed market. A fuse with a stream feed attached (``attach_streams``:
live mode attaches a ``fuses.ccxt.streams.MarketStreams`` to every ccxt fuse whose venue has
streams) is read from that feed instead: its snapshots are rebuilt on every stream update and
stamped with the feed's per-market update time (``updated_at``), so a silent stream ages the
data the risk monitor reads (``oldest_age``) and pauses trading; the feed itself polls REST
while its stream reconnects. While the feed is not running (not yet started, or crashed and
waiting for the supervisor's restart), for markets it has no data for yet and for markets whose
feed data is older than two polls (a stream lagging the clock), the fuse is polled here as
before; a failed poll leaves the data ageing. Readers get ``MarketSnapshot``s stamped with the time they were seen.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from alpha.config.types import format_duration
from alpha.daemon.registry import AnyFuse, FuseRegistry
from alpha.domain.clock import Clock
from alpha.domain.funding import FundingIntervals, FundingRate, IntervalChanged
from alpha.domain.instruments import Instrument
from alpha.domain.market import MarketSnapshot
from alpha.domain.portfolio import market_key
from alpha.observability.logging import get_logger
from alpha.observability.metrics import Metrics, f
from alpha.risk.prices import asset_prices
from fuses.base import Fuse, FuseError

log = get_logger("alpha.marketdata")


class StreamFeed(Protocol):
    """What the service reads from a fuse's stream feed (``fuses.ccxt.streams.MarketStreams``)."""

    marks: Mapping[str, Any]  # market -> update with .mark, .index, .funding, .received
    books: Mapping[str, Any]  # market -> update with .book, .received
    states: Mapping[str, Any]  # feed -> state ("stopped" once ``run`` has ended)
    started_at: datetime | None
    last_error: str | None

    def updated_at(self, market: str) -> datetime | None: ...

    def health(self, now: datetime | None = None) -> Any: ...

    async def final_order(self, client_id: str, wait: float) -> Any: ...  # the executor's order stream


class MarketData:
    """The latest snapshot per market key (``fuse:market``) and when it was last refreshed."""

    def __init__(self, fuses: Mapping[str, AnyFuse], clock: Clock, metrics: Metrics, *, book_depth: int = 20) -> None:
        self._all = FuseRegistry.of(fuses)  # read at use: a mode may add its fuses during start-up (paper)
        self._clock = clock
        self._metrics = metrics
        self._book_depth = book_depth
        self.instruments: dict[str, Instrument] = {}
        self.snapshots: dict[str, MarketSnapshot] = {}
        self.updated = asyncio.Event()
        self.last_error: dict[str, str] = {}
        self.streams: dict[str, StreamFeed] = {}
        self._every = timedelta(seconds=10)  # the poll cadence (``run`` sets it)
        self.refreshed_at: datetime | None = None  # clock time of the last refresh (marks and funding)
        self.books_at: datetime | None = None  # clock time of the last refresh that read books
        self.intervals: dict[str, FundingIntervals] = {}  # by fuse: each market's funding interval, as last read
        self.on_interval_change: Callable[[str], None] | None = None  # the daemon's note: a venue changed an interval

    def attach_streams(self, name: str, feed: StreamFeed) -> None:
        """Read fuse ``name``'s marks, funding and books from ``feed`` while it runs."""
        self.streams[name] = feed

    def on_stream_update(self, name: str) -> Callable[[Any], None]:
        """Return the ``on_update`` callback of fuse ``name``'s feed: rebuild the market's snapshot."""

        def update(event: Any) -> None:
            feed = self.streams.get(name)
            if feed is not None and self.streaming(name):
                self._take_stream(name, feed, event.market)

        return update

    def streaming(self, name: str) -> bool:
        """True while fuse ``name`` has a feed that is running (started and not stopped)."""
        feed = self.streams.get(name)
        return (
            feed is not None
            and feed.started_at is not None
            and not all(str(state) == "stopped" for state in feed.states.values())
        )

    def stream_health(self, now: datetime) -> dict[str, Any]:
        """Each attached feed's health (state per feed, stale markets with their ages, reconnects)."""
        return {name: feed.health(now) for name, feed in self.streams.items()}

    @property
    def _fuses(self) -> dict[str, Fuse]:
        return self._all.trading_fuses()

    async def load_instruments(self) -> None:
        """Read every trading fuse's instruments (once, at start-up)."""
        for name, fuse in self._fuses.items():
            for inst in await fuse.instruments():
                self.instruments[market_key(name, inst.symbol)] = inst

    async def refresh(self, *, books: bool = True) -> None:
        """Poll every fuse once; a failing fuse keeps its older (ageing) data.

        ``books=False`` reads funding and marks only and keeps each market's last book (the
        backtest's margin checks, which read no book, between decisions).
        """
        if not self.instruments:
            await self.load_instruments()
        started = self._clock.now()
        for name, fuse in self._fuses.items():
            symbols = self._symbols(name)
            feed = self.streams.get(name)
            if feed is not None and self.streaming(name):
                symbols = [s for s in symbols if not self._take_stream(name, feed, s) or self._lagging(feed, s)]
                if not symbols:  # everything came from the feed: no REST request
                    self._note_feed_error(name, feed)
                    continue
            try:
                await self._refresh_fuse(name, fuse, symbols, books=books)
                self.last_error.pop(name, None)
            except FuseError as exc:
                # The fuse has counted it in alpha_venue_request_errors_total (by kind) already.
                self.last_error[name] = repr(exc)
                log.warning("market data refresh failed", fuse=name, error=repr(exc))
        self.refreshed_at = started
        if books:
            self.books_at = started
        self._export_ages(self._clock.now())
        self.updated.set()
        self.updated = asyncio.Event()

    async def ensure_fresh(self, now: datetime, *, books: bool, max_age: timedelta | None = None) -> None:
        """Refresh the data a step at ``now`` decides on, unless it is fresh enough.

        With ``books`` (a decision): unless books were read at ``now`` or later. Without (a
        margin check, which reads no book): marks and funding, unless refreshed within
        ``max_age`` (None: at ``now`` or later).
        """
        if books:
            if self.books_at is None or self.books_at < now:
                await self.refresh()
            return
        if self.refreshed_at is None or (now - self.refreshed_at >= max_age if max_age is not None else self.refreshed_at < now):
            await self.refresh(books=self.books_at is None)

    def _symbols(self, name: str) -> list[str]:
        return [inst.symbol for key, inst in self.instruments.items() if key.startswith(name + ":")]

    def _take_stream(self, name: str, feed: StreamFeed, symbol: str) -> bool:
        """Rebuild one snapshot from ``feed``, stamped with its update time; False if it has no data yet."""
        key = market_key(name, symbol)
        inst = self.instruments.get(key)
        mark, book, seen = feed.marks.get(symbol), feed.books.get(symbol), feed.updated_at(symbol)
        if inst is None or mark is None or book is None or seen is None:
            return False
        funding = mark.funding
        previous = self.snapshots.get(key)
        if funding is None and previous is not None:
            funding = previous.funding
        if previous is not None and previous.ts > seen:
            return True  # polled here (while the feed was down) more recently than the feed's data
        self.snapshots[key] = MarketSnapshot(
            fuse=name, instrument=inst, ts=seen, mark=mark.mark, index=mark.index, funding=funding, book=book.book
        )
        self._export_funding(name, symbol, funding)
        return True

    def _lagging(self, feed: StreamFeed, symbol: str) -> bool:
        """The feed's data of ``symbol`` is older than two polls (its stream lags the clock): poll it."""
        seen = feed.updated_at(symbol)
        return seen is None or self._clock.now() - seen > 2 * self._every

    def _note_feed_error(self, name: str, feed: StreamFeed) -> None:
        if feed.last_error is not None and feed.health(self._clock.now()).stale:
            self.last_error[name] = feed.last_error
        else:
            self.last_error.pop(name, None)

    async def _refresh_fuse(self, name: str, fuse: Fuse, symbols: list[str], *, books: bool = True) -> None:
        bulk = self._all.bulk_market_data(name)
        indexes: dict[str, Decimal] = {}
        if bulk is not None:  # one bulk request where the venue's funding answer carries the marks (ccxt)
            funding, marks = await bulk.funding_and_marks(symbols)
            indexes = bulk.indexes()
        else:
            funding = await fuse.funding_rates(symbols)
            marks = await fuse.marks(symbols)
        now = self._clock.now()
        for symbol in symbols:
            inst = self.instruments[market_key(name, symbol)]
            mark = marks.get(symbol)
            if mark is None:
                continue
            previous = self.snapshots.get(market_key(name, symbol))
            book = previous.book if previous is not None and not books else None
            if book is None:
                book = await fuse.order_book(symbol, self._book_depth)
            rate = funding.get(symbol)
            self.snapshots[market_key(name, symbol)] = MarketSnapshot(
                fuse=name, instrument=inst, ts=now, mark=mark, index=indexes.get(symbol), funding=rate, book=book
            )
            self._export_funding(name, symbol, rate)

    def _export_funding(self, name: str, symbol: str, rate: FundingRate | None) -> None:
        if rate is None:
            return
        tracker = self.intervals.setdefault(name, FundingIntervals(name, on_change=self._interval_changed))
        tracker.observe(symbol, rate.interval, self._clock.now())  # the rate and the settlements follow a new one
        self._metrics.funding_rate.labels(fuse=name, market=symbol).set(f(rate.rate))
        self._metrics.funding_apr.labels(fuse=name, market=symbol).set(f(rate.annualised))
        self._metrics.funding_interval.labels(fuse=name, market=symbol).set(rate.interval.total_seconds())
        self._metrics.funding_next.labels(fuse=name, market=symbol).set(rate.next_settlement.timestamp())

    @property
    def interval_changes(self) -> list[IntervalChanged]:
        """Every funding interval change seen since start, oldest first."""
        return sorted((c for t in self.intervals.values() for c in t.changes), key=lambda c: c.at)

    def _interval_changed(self, change: IntervalChanged) -> None:
        log.warning("funding interval changed", fuse=change.fuse, market=change.market, before=str(change.old), after=str(change.new))
        if self.on_interval_change is not None:
            self.on_interval_change(
                f"funding interval of {change.fuse} {change.market} changed from {format_duration(change.old)} to "
                f"{format_duration(change.new)}; its rate is annualised and its settlements scheduled on the new one"
            )

    def _export_ages(self, now: datetime) -> None:
        for snap in self.snapshots.values():
            self._metrics.data_age.labels(fuse=snap.fuse, market=snap.market).set(max(snap.age(now).total_seconds(), 0.0))

    def oldest_age(self, now: datetime) -> timedelta | None:
        """Age of the oldest snapshot (None before the first refresh)."""
        if not self.snapshots:
            return None
        return max(s.age(now) for s in self.snapshots.values())

    def prices(self, base_asset: str, stablecoins: Sequence[str]) -> dict[str, Decimal]:
        """Value each asset in ``base_asset``: the median mark of its markets quoted in a stablecoin."""
        return asset_prices(self.snapshots.values(), base_asset, stablecoins)

    def settlements(self) -> dict[str, datetime]:
        """Next funding settlement per market key, as the venues report it."""
        return {k: s.funding.next_settlement for k, s in self.snapshots.items() if s.funding is not None}

    async def run(self, stop: asyncio.Event, every: timedelta) -> None:
        """Refresh on a cadence until ``stop``."""
        self._every = every
        while not stop.is_set():
            await self.refresh()
            if await self._clock.sleep_until(self._clock.now() + every, stop):
                return

