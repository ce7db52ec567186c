"""Keep the latest funding, marks and books per market, with their age.

The service polls each trading fuse on a cadence (streams can replace polling per fuse
later without changing readers): funding for every perp, marks, and the visible book of
every allowed market. Readers get ``MarketSnapshot``s stamped with the time they were seen;
``max_age`` tells the risk monitor when data is too old to trade on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from statistics import median

from alpha.domain.clock import Clock
from alpha.domain.instruments import Instrument
from alpha.domain.market import MarketSnapshot
from alpha.domain.portfolio import market_key
from alpha.observability.logging import get_logger
from alpha.observability.metrics import Metrics, f
from fuses.base import FuseError, TransientError

log = get_logger("alpha.marketdata")


class MarketData:
    """The latest snapshot per market key (``fuse:market``) and when it was last refreshed."""

    def __init__(self, fuses: Mapping[str, object], clock: Clock, metrics: Metrics, *, book_depth: int = 20) -> None:
        self._all = fuses  # read at use: a mode may add its fuses during start-up (paper)
        self._clock = clock
        self._metrics = metrics
        self._book_depth = book_depth
        self.instruments: dict[str, Instrument] = {}
        self.snapshots: dict[str, MarketSnapshot] = {}
        self.updated = asyncio.Event()
        self.last_error: dict[str, str] = {}

    @property
    def _fuses(self) -> dict[str, object]:
        return {name: f for name, f in self._all.items() if hasattr(f, "order_book")}

    async def load_instruments(self) -> None:
        """Read every trading fuse's instruments (once, at start-up)."""
        for name, fuse in self._fuses.items():
            for inst in await fuse.instruments():  # type: ignore[attr-defined]
                self.instruments[market_key(name, inst.symbol)] = inst

    async def refresh(self) -> None:
        """Poll every fuse once; a failing fuse keeps its older (ageing) data."""
        if not self.instruments:
            await self.load_instruments()
        for name, fuse in self._fuses.items():
            try:
                await self._refresh_fuse(name, fuse)
                self.last_error.pop(name, None)
            except FuseError as exc:
                kind = "transient" if isinstance(exc, TransientError) else type(exc).__name__
                self.last_error[name] = repr(exc)
                self._metrics.request_errors.labels(fuse=name, kind=kind).inc()
                log.warning("market data refresh failed", fuse=name, error=repr(exc))
        self._export_ages(self._clock.now())
        self.updated.set()
        self.updated = asyncio.Event()

    async def _refresh_fuse(self, name: str, fuse: object) -> None:
        symbols = [inst.symbol for key, inst in self.instruments.items() if key.startswith(name + ":")]
        both = getattr(fuse, "funding_and_marks", None)
        if both is not None:  # one bulk request where the venue's funding answer carries the marks (ccxt)
            funding, marks = await both(symbols)
        else:
            funding = await fuse.funding_rates(symbols)  # type: ignore[attr-defined]
            marks = await fuse.marks(symbols)  # type: ignore[attr-defined]
        now = self._clock.now()
        for symbol in symbols:
            inst = self.instruments[market_key(name, symbol)]
            book = await fuse.order_book(symbol, self._book_depth)  # type: ignore[attr-defined]
            mark = marks.get(symbol)
            if mark is None:
                continue
            rate = funding.get(symbol)
            self.snapshots[market_key(name, symbol)] = MarketSnapshot(
                fuse=name, instrument=inst, ts=now, mark=mark, index=None, funding=rate, book=book
            )
            if rate is not None:
                self._metrics.funding_rate.labels(fuse=name, market=symbol).set(f(rate.rate))
                self._metrics.funding_apr.labels(fuse=name, market=symbol).set(f(rate.annualised))
                self._metrics.funding_interval.labels(fuse=name, market=symbol).set(rate.interval.total_seconds())
                self._metrics.funding_next.labels(fuse=name, market=symbol).set(rate.next_settlement.timestamp())

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
        seen: dict[str, list[Decimal]] = {}
        for snap in self.snapshots.values():
            inst = snap.instrument
            if inst.quote == base_asset or inst.quote in stablecoins:
                seen.setdefault(inst.base, []).append(snap.mark)
        out = {asset: Decimal(median(values)) for asset, values in seen.items()}
        for coin in stablecoins:
            out.setdefault(coin, Decimal(1))
        return out

    def settlements(self) -> dict[str, datetime]:
        """Next funding settlement per market key, as the venues report it."""
        return {k: s.funding.next_settlement for k, s in self.snapshots.items() if s.funding is not None}

    async def run(self, stop: asyncio.Event, every: timedelta) -> None:
        """Refresh on a cadence until ``stop``."""
        while not stop.is_set():
            await self.refresh()
            if await self._clock.sleep_until(self._clock.now() + every, stop):
                return
