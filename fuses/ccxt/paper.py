"""Paper mode's market source: real public market data through ccxt fuses (no keys), for
execution on the simulated engine.

``CcxtMarketSource`` implements ``fuses.sim.source.MarketSource``. ``advance(now)`` is
synchronous (the world calls it inside a step) and answers from the latest reading of every
venue. Readings arrive two ways while ``run(stop)`` runs:

* a venue whose table names a mark stream (Binance USD-M: ``watch_mark_prices``, carrying index,
  funding rate and next funding time) is fed by a ``fuses.ccxt.streams.MarketStreams``: every
  mark update lands here through its ``on_update`` callback, and no REST request is made while
  the stream delivers. While the stream reconnects the feed itself polls REST every ``every``
  and its readings (source ``poll``) land here the same way;
* any other venue (Hyperliquid) is polled over REST every ``every`` (``refresh``: one bulk
  funding-and-marks request per venue).

``start()`` loads every venue's markets and takes a first REST reading (the world is built on it).
Each market's reading is stamped with the time it was received; ``stale(now)`` lists the markets
whose latest reading is older than ``stale_after``. A stale market keeps its last state (the world
holds a price either way) but is never offered as fresh: ``PaperFuse`` wraps each simulated paper
fuse and answers its market-data reads and orders with ``TransientError`` (code ``stale_data``)
while any market they touch is stale, so the daemon's market data ages exactly as when a live
venue stops answering, and its risk monitor pauses trading on ``stale_data``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from alpha.config.schema import FuseConfig, FuseKind
from alpha.domain.account import Order, OrderRequest
from alpha.domain.clock import Clock
from alpha.domain.market import OrderBook
from alpha.observability.logging import get_logger
from alpha.observability.metrics import Metrics
from fuses.base import Backoff, Capabilities, TransientError, error_kind
from fuses.ccxt.config import CcxtSettings
from fuses.ccxt.fuse import CcxtFuse
from fuses.ccxt.streams import BookUpdate, MarketStreams, MarkUpdate, StreamSettings
from fuses.ccxt.venues import venue_spec
from fuses.sim.source import MarketState, MarketStates

log = get_logger("alpha.paper")

STALE_AFTER = StreamSettings().stale_after  # the default bound: the live feeds' own
STALE_DATA = "stale_data"  # the code of the TransientError a paper fuse raises on stale data


@dataclass(frozen=True, slots=True)
class Reading:
    """When one market was last read, and how (``stream`` or ``poll``)."""

    received: datetime
    source: str


class CcxtMarketSource:
    """Prices and funding per (simulated) fuse and market, read from real venues' public endpoints."""

    def __init__(self, fuses: Mapping[str, CcxtFuse], clock: Clock, *, stale_after: timedelta = STALE_AFTER) -> None:
        if stale_after <= timedelta(0):
            raise ValueError("paper market source: stale_after must be positive")
        self.fuses = dict(fuses)
        self.clock = clock
        self.stale_after = stale_after
        self.states: MarketStates = {}
        self.readings: dict[str, dict[str, Reading]] = {}
        self.feeds: dict[str, MarketStreams] = {}  # the stream feeds of the current ``run``
        self.refreshed_at: datetime | None = None
        self.started_at: datetime | None = None
        self.last_error: dict[str, str] = {}
        self._feeding: set[str] = set()  # fuses whose feed is running (``streaming`` reads it)

    @classmethod
    def from_configs(
        cls,
        configs: Sequence[FuseConfig],
        *,
        clock: Clock,
        metrics: Metrics | None = None,
        stale_after: timedelta = STALE_AFTER,
    ) -> CcxtMarketSource:
        """Build a public-only ccxt fuse for every CEX / perp-DEX fuse config (no secret is read)."""
        fuses = {}
        for config in configs:
            if config.kind not in (FuseKind.CEX, FuseKind.PERP_DEX) or not config.enabled:
                continue
            settings = CcxtSettings.from_fuse_config(config, public_only=True)
            fuses[config.name] = CcxtFuse(settings, venue_spec(config.venue), clock=clock, metrics=metrics)
        return cls(fuses, clock, stale_after=stale_after)

    def streamed(self, name: str) -> bool:
        """True if fuse ``name``'s venue has a mark stream (``run`` feeds it from the stream)."""
        return self.fuses[name].spec.mark_stream is not None

    async def start(self) -> None:
        """Load every venue's markets and take a first reading."""
        self.started_at = self.clock.now()
        for fuse in self.fuses.values():
            await fuse.start()
        await self.refresh()

    async def close(self) -> None:
        """Close every venue's client (its streams with it)."""
        for fuse in self.fuses.values():
            await fuse.close()

    # -- readings -------------------------------------------------------------------------------

    async def refresh(self) -> MarketStates:
        """Read marks and funding over REST from every venue whose stream is not delivering.

        A venue that fails keeps its previous state, ageing.
        """
        for name, fuse in self.fuses.items():
            if self.streaming(name):
                continue
            try:
                funding, marks = await fuse.funding_and_marks()
            except TransientError as exc:
                self.last_error[name] = str(exc)
                continue
            now = self.clock.now()
            for market, mark in marks.items():
                rate = funding.get(market)
                self._put(name, market, MarkUpdate(market, mark, None, rate, now, "poll"))
        self.refreshed_at = self.clock.now()
        return self.states

    def streaming(self, name: str) -> bool:
        """True while fuse ``name``'s stream feed runs (it streams, or polls REST while reconnecting)."""
        return name in self._feeding and name in self.feeds

    def on_update(self, name: str) -> Callable[[MarkUpdate | BookUpdate], None]:
        """Return fuse ``name``'s feed callback: take each mark update (an unusable one is dropped and logged)."""

        def take(update: MarkUpdate | BookUpdate) -> None:
            if isinstance(update, MarkUpdate):  # books of the real venue do not feed the simulation
                self._put(name, update.market, update)

        return take

    def _put(self, name: str, market: str, update: MarkUpdate) -> None:
        previous = self.states.get(name, {}).get(market)
        rate = update.funding
        try:
            state = MarketState(
                mark=update.mark,
                index=update.index if update.index is not None else update.mark,
                funding_rate=rate.rate if rate else previous.funding_rate if previous else None,
                next_settlement=rate.next_settlement if rate else previous.next_settlement if previous else None,
                funding_interval=rate.interval if rate else previous.funding_interval if previous else None,
            )
        except ValueError as exc:  # a reading we cannot use is dropped: the market ages instead
            self.last_error[name] = f"{market}: {exc}"
            log.warning("paper market data refused", fuse=name, market=market, error=str(exc))
            return
        self.states.setdefault(name, {})[market] = state
        self.readings.setdefault(name, {})[market] = Reading(update.received, update.source)

    def advance(self, now: datetime) -> MarketStates:
        """Return the latest reading (the venue's time is real time; ``now`` is not simulated).

        A stale market keeps its last state here; ``stale`` (and ``PaperFuse``) say it is stale.
        """
        return {fuse: dict(markets) for fuse, markets in self.states.items()}

    # -- staleness ------------------------------------------------------------------------------

    def markets(self, name: str) -> tuple[str, ...]:
        """The markets fuse ``name`` reads: its allowed markets and any the venue has answered for."""
        allowed = self.fuses[name].settings.markets
        return tuple(dict.fromkeys((*allowed, *self.states.get(name, {}))))

    def age(self, name: str, market: str, now: datetime | None = None) -> timedelta | None:
        """How old ``market``'s latest reading on fuse ``name`` is (never read: since ``start``)."""
        now = now or self.clock.now()
        reading = self.readings.get(name, {}).get(market)
        seen = reading.received if reading is not None else self.started_at
        return None if seen is None else now - seen

    def stale_markets(self, name: str, markets: Iterable[str] | None = None, now: datetime | None = None) -> dict[str, timedelta]:
        """Return fuse ``name``'s markets (default: all it reads) last read more than ``stale_after`` ago, with their ages."""
        now = now or self.clock.now()
        out: dict[str, timedelta] = {}
        for market in markets if markets is not None else self.markets(name):
            age = self.age(name, market, now)
            if age is not None and age > self.stale_after:
                out[market] = age
        return out

    def stale(self, now: datetime | None = None) -> dict[str, dict[str, timedelta]]:
        """Return, per fuse with any, the markets whose latest reading is older than ``stale_after``."""
        now = now or self.clock.now()
        out = {name: self.stale_markets(name, now=now) for name in self.fuses}
        return {name: markets for name, markets in out.items() if markets}

    # -- running --------------------------------------------------------------------------------

    def stream_settings(self, every: timedelta) -> StreamSettings:
        """The feeds' settings: this source's staleness bound, REST every ``every`` while reconnecting
        and reconnect waits capped at the staleness bound."""
        bound = self.stale_after.total_seconds()
        initial = min(Backoff().initial, bound)
        return StreamSettings(
            stale_after=self.stale_after,
            poll_every=every,
            backoff=Backoff(initial=initial, maximum=max(initial, min(Backoff().maximum, bound))),
        )

    async def run(self, stop: asyncio.Event, every: timedelta = timedelta(seconds=10)) -> None:
        """Feed streamed venues from their streams and poll the others every ``every`` until ``stop`` is set.

        A feed that crashes stops the rest and re-raises (the daemon's supervisor restarts the
        service); until it runs again its venue is polled by ``refresh``.
        """
        settings = self.stream_settings(every)
        self.feeds = {
            name: MarketStreams(fuse, clock=self.clock, settings=settings, on_update=self.on_update(name))
            for name, fuse in self.fuses.items()
            if self.streamed(name)
        }
        inner = asyncio.Event()  # set on ``stop`` or when one task fails, ending the others
        relay = asyncio.ensure_future(self._relay(stop, inner))
        self._feeding = set(self.feeds)
        try:
            tasks: list[Awaitable[None]] = [self._feed(name, feed, inner) for name, feed in self.feeds.items()]
            results = await asyncio.gather(*tasks, self._poll(inner, every), return_exceptions=True)
        finally:
            self._feeding = set()
            relay.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await relay
        for result in results:
            if isinstance(result, BaseException):
                raise result

    @staticmethod
    async def _relay(stop: asyncio.Event, inner: asyncio.Event) -> None:
        await stop.wait()
        inner.set()

    async def _feed(self, name: str, feed: MarketStreams, stop: asyncio.Event) -> None:
        try:
            await feed.run(stop)
        except BaseException:
            stop.set()
            raise
        finally:
            self._feeding.discard(name)

    async def _poll(self, stop: asyncio.Event, every: timedelta) -> None:
        try:
            while not stop.is_set():
                await self.refresh()
                if await self.clock.sleep_until(self.clock.now() + every, stop):
                    return
        except BaseException:
            stop.set()
            raise


class PaperFuse:
    """Wrap a simulated paper fuse: refuse reads of market data and orders on markets whose real data is stale.

    ``marks``, ``funding_rates``, ``order_book`` and ``submit`` raise ``TransientError`` (code
    ``stale_data``, counted as a transient request error) while ``source`` has no fresh reading of
    a market they touch, before anything reaches the simulated engine; everything else reads and
    writes through to the wrapped fuse.
    """

    def __init__(self, inner: Any, source: CcxtMarketSource, name: str, metrics: Metrics | None = None) -> None:
        object.__setattr__(self, "_inner", inner)
        object.__setattr__(self, "_source", source)
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_metrics", metrics)

    @property
    def inner(self) -> Any:
        """The wrapped fuse."""
        return object.__getattribute__(self, "_inner")

    @property
    def capabilities(self) -> Capabilities:
        """The wrapped fuse's table: the wrapper adds and removes no ability."""
        table: Capabilities = self.inner.capabilities
        return table

    def __getattr__(self, attr: str) -> Any:
        return getattr(object.__getattribute__(self, "_inner"), attr)

    def __setattr__(self, attr: str, value: Any) -> None:
        setattr(object.__getattribute__(self, "_inner"), attr, value)

    def _check(self, markets: Iterable[str] | None) -> None:
        source: CcxtMarketSource = object.__getattribute__(self, "_source")
        name: str = object.__getattribute__(self, "_name")
        stale = source.stale_markets(name, markets)
        if not stale:
            return
        ages = ", ".join(f"{m} last read {age.total_seconds():.1f}s ago" for m, age in sorted(stale.items()))
        exc = TransientError(
            f"{name}: the venue's market data is stale ({ages}; bound {source.stale_after.total_seconds():g}s): "
            "paper mode neither prices nor trades on it",
            venue=name,
            code=STALE_DATA,
        )
        metrics: Metrics | None = object.__getattribute__(self, "_metrics")
        kind = error_kind(exc)
        if metrics is not None and kind is not None:
            metrics.request_errors.labels(fuse=name, kind=kind).inc()
        raise exc

    async def marks(self, markets: Sequence[str] | None = None) -> Any:
        """Return the simulated venue's marks, unless one of ``markets`` (default: all) is stale."""
        self._check(markets)
        return await self.inner.marks(markets)

    async def funding_rates(self, markets: Sequence[str] | None = None) -> Any:
        """Return the simulated venue's funding, unless one of ``markets`` (default: all) is stale."""
        self._check(markets)
        return await self.inner.funding_rates(markets)

    async def order_book(self, market: str, depth: int = 20) -> OrderBook:
        """Return the simulated venue's book of ``market``, unless its data is stale."""
        self._check([market])
        book: OrderBook = await self.inner.order_book(market, depth)
        return book

    async def submit(self, request: OrderRequest) -> Order:
        """Send an order to the simulated venue, unless its market's data is stale (then nothing is sent)."""
        self._check([request.market])
        order: Order = await self.inner.submit(request)
        return order

    def __repr__(self) -> str:
        return f"PaperFuse({self.inner!r})"

