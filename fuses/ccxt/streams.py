"""Live market data of one ccxt fuse: ccxt.pro streams where the venue table names one, polling
otherwise, reconnect with exponential backoff, and staleness per market.

``MarketStreams(fuse, clock=...)`` keeps the latest mark (with index, funding rate and next
settlement where the stream carries them: Binance USD-M's mark-price stream has ``r`` and
``T``) and the latest order book of every allowed market, each stamped with the time it was
received. ``await run(stop)`` feeds them until ``stop`` is set:

* marks: ``VenueSpec.mark_stream`` (a ccxt.pro method such as ``watch_mark_prices``) when the
  venue has one, its fields read through ``VenueSpec.mark_stream_fields``; with
  ``VenueSpec.mark_stream_per_market`` the method takes one market and is watched for every
  market (Hyperliquid's ``watch_ticker``: activeAssetCtx, with mark, oracle and funding);
  otherwise, and while a stream is reconnecting or silent, the fuse's REST ``funding_rates`` +
  ``marks`` (polling fallback).
* books: ``VenueSpec.book_stream`` (``watch_order_book``) when the venue has one; otherwise the
  REST book, every ``poll_every``.
* orders and positions (a fuse with credentials only): ``VenueSpec.order_stream``
  (``watch_orders``: Binance's user data stream, ORDER_TRADE_UPDATE) keeps the latest state of
  each of our orders by client id, and ``VenueSpec.position_stream`` (``watch_positions``:
  ACCOUNT_UPDATE) the latest size of each position. ``final_order(client_id, wait)`` answers the
  executor from the stream (an order's final state, or None when the stream cannot tell, so the
  caller asks the venue by REST); order and position changes reach ``on_account``.
  ``VenueSpec.fill_stream`` (``watch_my_trades``: Hyperliquid's userFills) keeps our fills by
  trade id; the venue sends its recent fills again on every (re)subscription, so fills missed
  while reconnecting arrive with the snapshot.
  These streams are silent when nothing happens, so silence is not staleness: they fail only
  when the connection does. Fill-in after a gap: when an account stream is re-opened, and again
  at its first message after the gap, every order the stream knows that is not final (and every
  order a streamed fill names that it does not know) is read by REST, so a fill or cancel missed
  while away is not lost. The stream only ever adds certainty (a final state seen), never
  removes it: a final state is never replaced by a live one.

A stream that fails is re-opened after ``Backoff`` delays (doubling up to a maximum, reset by
the first message after a reconnect); a stream that stays silent longer than ``stale_after`` is
treated as failed. ``updated_at(market)`` / ``last_updates()`` expose the latest update time
per market and ``stale(now)`` the markets silent past ``stale_after``, which the daemon's risk
monitor reads to pause trading. Every wait goes through the injected clock and wakes on stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any, TypeVar

import ccxt.async_support as ccxt

from alpha.domain.account import Order
from alpha.domain.clock import Clock
from alpha.domain.funding import FundingRate
from alpha.domain.market import OrderBook
from alpha.domain.money import ONE
from alpha.observability.metrics import Metrics
from fuses.base import Backoff, FuseError
from fuses.ccxt import parse
from fuses.ccxt.client import isolated
from fuses.ccxt.errors import translate
from fuses.ccxt.fuse import CcxtFuse

log = logging.getLogger(__name__)
T = TypeVar("T")


ACCOUNT_RESCAN = 0.25  # seconds between reads of ccxt's order / position cache while a user stream is quiet


class FeedState(StrEnum):
    """How a feed currently gets its data."""

    STARTING = "starting"  # connecting (first time, or again after a failure and its backoff)
    STREAMING = "streaming"
    POLLING = "polling"  # the venue has no stream: REST on a cadence
    RECONNECTING = "reconnecting"  # the stream failed or went silent; REST fills in meanwhile
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class StreamSettings:
    """Cadences and bounds of ``MarketStreams``."""

    stale_after: timedelta = timedelta(seconds=30)
    poll_every: timedelta = timedelta(seconds=10)
    backoff: Backoff = field(default_factory=Backoff)
    book_depth: int = 20

    def __post_init__(self) -> None:
        if self.stale_after <= timedelta(0) or self.poll_every <= timedelta(0):
            raise ValueError("stale_after and poll_every must be positive")


@dataclass(frozen=True, slots=True)
class MarkUpdate:
    """The latest mark of one market and, for perps, its funding, as received at ``received``."""

    market: str
    mark: Decimal
    index: Decimal | None
    funding: FundingRate | None
    received: datetime
    source: str  # "stream" or "poll"


@dataclass(frozen=True, slots=True)
class BookUpdate:
    """The latest visible book of one market, as received at ``received``."""

    market: str
    book: OrderBook
    received: datetime
    source: str


@dataclass(frozen=True, slots=True)
class OrderUpdate:
    """The latest state of one of our orders as the user stream told it, received at ``received``."""

    order: Order
    received: datetime

    @property
    def market(self) -> str:
        return self.order.market


@dataclass(frozen=True, slots=True)
class FillUpdate:
    """One fill of one of our orders as the fill stream told it (``venue_client_id``: the order's id at the venue)."""

    market: str
    trade_id: str
    venue_client_id: str | None
    side: str
    price: Decimal
    quantity: Decimal  # base units
    fee: Decimal | None
    received: datetime


@dataclass(frozen=True, slots=True)
class PositionUpdate:
    """The size of one position (signed, base units; zero when flat) as the user stream told it."""

    market: str
    size: Decimal
    entry_price: Decimal | None
    received: datetime


@dataclass(frozen=True, slots=True)
class Gap:
    """A stretch during which a feed's stream was down (from the failure to the first message after)."""

    feed: str
    start: datetime
    end: datetime

    @property
    def length(self) -> timedelta:
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class StreamHealth:
    """What the risk monitor reads: per-feed state, stale markets with their ages, reconnects."""

    fuse: str
    states: Mapping[str, FeedState]
    stale: Mapping[str, timedelta]
    reconnects: int
    last_error: str | None

    @property
    def ok(self) -> bool:
        return not self.stale


class _Stopped(Exception):
    """``stop`` was set while waiting."""


class MarketStreams:
    """Keep one ccxt fuse's marks (with funding) and books fresh from streams or polling."""

    def __init__(
        self,
        fuse: CcxtFuse,
        *,
        clock: Clock,
        settings: StreamSettings | None = None,
        markets: Sequence[str] | None = None,
        metrics: Metrics | None = None,
        on_update: Callable[[MarkUpdate | BookUpdate], None] | None = None,
        on_account: Callable[[OrderUpdate | PositionUpdate | FillUpdate], None] | None = None,
    ) -> None:
        self.fuse = fuse
        self.spec = fuse.spec
        self.clock = clock
        self.settings = settings or StreamSettings()
        self.markets: tuple[str, ...] = tuple(markets if markets is not None else fuse.settings.markets)
        self.metrics = metrics
        self.on_update = on_update
        self.on_account = on_account
        self.marks: dict[str, MarkUpdate] = {}
        self.books: dict[str, BookUpdate] = {}
        self.orders: dict[str, OrderUpdate] = {}  # by the client id the venue carries
        self.positions: dict[str, PositionUpdate] = {}
        self.fills: dict[str, FillUpdate] = {}  # by the venue's trade id
        self.states: dict[str, FeedState] = {"marks": FeedState.STARTING, "books": FeedState.STARTING}
        self._account_feeds: dict[str, str] = {}  # feed -> ccxt.pro method
        if fuse.settings.has_credentials:
            streams = (("orders", self.spec.order_stream), ("positions", self.spec.position_stream), ("fills", self.spec.fill_stream))
            for feed, method in streams:
                if method is not None:
                    self._account_feeds[feed] = method
                    self.states[feed] = FeedState.STARTING
        self._order_changed = asyncio.Event()
        self._order_seen: dict[str, tuple[Any, Any]] = {}  # venue client id -> (status, filled) last taken
        self._unknown_filled: dict[str, str] = {}  # venue client id -> market: fills of orders the stream has not seen
        self.reconnects = 0
        self.gaps: list[Gap] = []
        self.last_error: str | None = None
        self.started_at: datetime | None = None
        self._down_since: dict[str, datetime] = {}
        self._event_times: dict[str, Any] = {}

    # -- what readers use ----------------------------------------------------------------------

    def updated_at(self, market: str) -> datetime | None:
        """Return when ``market`` last got data (the older of its mark and its book)."""
        times = [u.received for u in (self.marks.get(market), self.books.get(market)) if u is not None]
        return min(times) if len(times) == 2 else None

    def last_updates(self) -> dict[str, datetime | None]:
        """Return the latest update time of every market (None before its first mark and book)."""
        return {m: self.updated_at(m) for m in self.markets}

    def stale(self, now: datetime | None = None) -> dict[str, timedelta]:
        """Return the markets silent for longer than ``stale_after``, with their ages.

        A market never updated counts from the start of ``run``.
        """
        now = now or self.clock.now()
        bound = self.settings.stale_after
        out: dict[str, timedelta] = {}
        for market in self.markets:
            seen = self.updated_at(market) or self.started_at
            if seen is None:
                continue
            age = now - seen
            if age > bound:
                out[market] = age
        return out

    def order(self, client_id: str) -> Order | None:
        """Return the latest streamed state of our order ``client_id`` (None if the stream has not seen it)."""
        update = self.orders.get(self.fuse._venue_client_id(client_id))
        return replace(update.order, client_id=client_id) if update is not None else None

    async def final_order(self, client_id: str, wait: float) -> Order | None:
        """Return ``client_id``'s final state from the order stream, waiting up to ``wait`` seconds for it.

        None when the stream cannot tell: the venue has no order stream, the stream is
        reconnecting (then it does not wait: what it missed is not replayed), or the order is not
        final within ``wait``. None never means the venue lacks the order: only the venue's REST
        answer can say that.
        """
        if "orders" not in self._account_feeds:
            return None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            order = self.order(client_id)
            if order is not None and order.status.is_final:
                return order
            left = deadline - loop.time()
            if self.states.get("orders") not in (FeedState.STARTING, FeedState.STREAMING) or left <= 0:
                return None
            changed = self._order_changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), timeout=left)

    def _notify_orders(self) -> None:
        """Wake every ``final_order`` waiter (an update arrived or the feed changed state)."""
        self._order_changed.set()
        self._order_changed = asyncio.Event()

    def health(self, now: datetime | None = None) -> StreamHealth:
        """Return the feeds' state for the risk monitor."""
        return StreamHealth(self.fuse.name, dict(self.states), self.stale(now), self.reconnects, self.last_error)

    # -- running --------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Feed marks and books until ``stop`` is set; close the fuse's streams on the way out."""
        self.started_at = self.clock.now()
        try:
            feeds = [self._marks_feed(stop), self._books_feed(stop)]
            feeds += [self._account_feed(feed, method, stop) for feed, method in self._account_feeds.items()]
            await asyncio.gather(*feeds)
        finally:
            self.states = {k: FeedState.STOPPED for k in self.states}
            self._notify_orders()
            await self._close_streams()

    async def _close_streams(self) -> None:
        close = getattr(self.fuse.client, "close_ws_clients", None)
        if close is not None:
            with contextlib.suppress(Exception):
                await close()

    async def _until(
        self, awaitable: Awaitable[T], stop: asyncio.Event, timeout: float | None,
        poll: Callable[[], Awaitable[None]] | None = None,
    ) -> T:
        """Await ``awaitable`` unless ``stop`` comes first (``_Stopped``) or ``timeout`` passes (TimeoutError).

        With ``poll`` (a feed reconnecting), REST is polled every ``poll_every`` while waiting: a
        reconnect that takes long (ccxt's own dial delays) must not leave the data stale.
        """
        task = asyncio.ensure_future(isolated(awaitable))
        stopper = asyncio.ensure_future(stop.wait())
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        try:
            while True:
                left = math.inf if deadline is None else max(deadline - loop.time(), 0.0)
                chunk = left if poll is None else min(left, self.settings.poll_every.total_seconds())
                done, _ = await asyncio.wait(
                    {task, stopper}, timeout=None if chunk == math.inf else chunk, return_when=asyncio.FIRST_COMPLETED
                )
                if done or poll is None or (deadline is not None and loop.time() >= deadline):
                    break
                await poll()
        except BaseException:  # cancelled while waiting: the read must not outlive us unobserved
            task.cancel()
            raise
        finally:
            stopper.cancel()
        if task in done:
            if task.cancelled():  # another feed closed the connections under this read: a failed stream
                raise ccxt.NetworkError("stream closed")
            return task.result()
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        if stop.is_set():
            raise _Stopped
        raise TimeoutError

    async def _sleep(self, seconds: float, stop: asyncio.Event) -> bool:
        """Wait ``seconds`` on the clock; True if stopped."""
        return await self.clock.sleep_until(self.clock.now() + timedelta(seconds=seconds), stop)

    async def _fill_in_after(
        self, feed: str, exc: BaseException, attempt: int, stop: asyncio.Event, poll: Callable[[], Awaitable[None]]
    ) -> bool:
        """Handle a market feed's failed read: note it, re-open a silent connection, fill in from
        REST and wait out reconnect ``attempt``'s back-off (polling meanwhile); True if stopped."""
        self._failed(feed, exc)
        if isinstance(exc, TimeoutError):
            await self._close_streams()  # a silent connection is re-opened, not waited on
        await poll()  # REST fills the gap if it is up
        return await self._wait_polling(self.settings.backoff.delay(attempt), stop, poll)

    async def _wait_polling(self, seconds: float, stop: asyncio.Event, poll: Callable[[], Awaitable[None]]) -> bool:
        """Wait ``seconds`` before a reconnect, polling REST every ``poll_every`` meanwhile; True if stopped.

        The fallback keeps its own cadence: a long reconnect wait must not leave the data stale
        while REST is up.
        """
        end = self.clock.now() + timedelta(seconds=seconds)
        while True:
            if await self.clock.sleep_until(min(end, self.clock.now() + self.settings.poll_every), stop):
                return True
            if self.clock.now() >= end:
                return False
            await poll()

    def _failed(self, feed: str, exc: BaseException) -> None:
        now = self.clock.now()
        self._down_since.setdefault(feed, now)
        self.states[feed] = FeedState.RECONNECTING
        self.reconnects += 1
        if isinstance(exc, TimeoutError):
            self.last_error = f"{feed} stream silent for over {self.settings.stale_after}"
        elif isinstance(exc, ccxt.BaseError):
            self.last_error = str(translate(exc, self.spec, venue=self.fuse.name))
        else:
            self.last_error = f"{feed} stream: {type(exc).__name__}"
        log.warning("stream down", extra={"fuse": self.fuse.name, "feed": feed, "error": self.last_error})

    def _recovered(self, feed: str) -> bool:
        """Mark ``feed`` streaming again; True if this ends a gap."""
        since = self._down_since.pop(feed, None)
        if since is not None:
            self.gaps.append(Gap(feed, since, self.clock.now()))
        self.states[feed] = FeedState.STREAMING
        return since is not None

    # -- marks ----------------------------------------------------------------------------------

    async def _marks_feed(self, stop: asyncio.Event) -> None:
        await self._poll_marks()  # a first reading, and the venue's funding intervals
        method = self.spec.mark_stream
        if method is None:
            self.states["marks"] = FeedState.POLLING
            while not await self._sleep(self.settings.poll_every.total_seconds(), stop):
                await self._poll_marks()
            return
        watch = getattr(self.fuse.client, method)
        per_market = self.spec.mark_stream_per_market
        # one watch per market (every market: the method streams spot marks too), or one for the perps
        watched = list(self.markets) if per_market else [m for m in self.markets if m in self._perp_markets()]

        async def read() -> Any:
            if not per_market:
                return await watch(watched)
            return dict(zip(watched, await asyncio.gather(*(watch(m) for m in watched)), strict=True))

        attempt = 0
        while not stop.is_set():
            try:
                fill_in = self._poll_marks if self.states["marks"] is FeedState.RECONNECTING else None
                raw = await self._until(read(), stop, self.settings.stale_after.total_seconds(), fill_in)
            except _Stopped:
                return
            except (ccxt.BaseError, OSError, TimeoutError) as exc:
                attempt += 1
                if await self._fill_in_after("marks", exc, attempt, stop, self._poll_marks):
                    return
                continue
            attempt = 0
            self._recovered("marks")
            await self._refresh_intervals()
            if per_market:  # every market woke its own watch: each one is new
                self._take_stream_marks(raw)
                continue
            # A watch wakes on one message; others for other markets may have arrived meanwhile
            # and sit only in ccxt's cache: read every market from it, keeping only new events.
            cached = getattr(self.fuse.client, "tickers", None) or {}
            self._take_stream_marks({**{m: cached[m] for m in watched if m in cached}, **raw})

    async def _refresh_intervals(self) -> None:
        """Keep the venue's funding intervals current while streaming (a venue may change one at any time)."""
        try:
            await self.fuse.refresh_intervals()
        except FuseError as exc:  # the old intervals stay; the next refresh asks again
            self.last_error = str(exc)

    def _perp_markets(self) -> set[str]:
        return {m for m, i in self.fuse._instruments.items() if i.kind.is_perp}

    async def _poll_marks(self) -> None:
        try:
            marks = await self.fuse.marks(list(self.markets))
            funding = await self.fuse.funding_rates([m for m in self.markets if m in self._perp_markets()])
        except FuseError as exc:
            self.last_error = str(exc)
            return
        now = self.clock.now()
        indexes = self.fuse.indexes()
        for market, mark in marks.items():
            self._put_mark(MarkUpdate(market, mark, indexes.get(market), funding.get(market), now, "poll"))

    def _take_stream_marks(self, raw: Mapping[str, Any]) -> None:
        fields = self.spec.mark_stream_fields
        now = self.clock.now()
        for symbol, ticker in raw.items():
            if symbol not in self.markets or not isinstance(ticker, Mapping):
                continue
            info = ticker.get("info") or {}
            event_time = info.get(fields.get("time", ""))
            if event_time is not None:
                if self._event_times.get(symbol) == event_time:
                    continue  # already taken
                self._event_times[symbol] = event_time
            try:
                mark = parse.price(info.get(fields.get("mark", "")) or ticker.get("markPrice") or ticker.get("last"), f"{symbol}.mark")
                index = parse.opt_price(info.get(fields.get("index", "")) or ticker.get("indexPrice"), f"{symbol}.index")
                funding = self._stream_funding(symbol, info, fields, now)
            except FuseError as exc:
                self.last_error = str(exc)
                continue
            self._put_mark(MarkUpdate(symbol, mark, index, funding, now, "stream"))

    def _stream_funding(self, symbol: str, info: Mapping[str, Any], fields: Mapping[str, str], now: datetime) -> FundingRate | None:
        rate_key, next_key = fields.get("rate"), fields.get("next")
        if rate_key is None or info.get(rate_key) in (None, ""):
            previous = self.marks.get(symbol)
            return previous.funding if previous is not None else None
        interval = self.fuse.intervals.get(symbol) or self.fuse.capabilities.funding_interval_default
        raw = {"symbol": symbol, "fundingRate": info.get(rate_key), "fundingTimestamp": info.get(next_key) if next_key else None}
        return parse.funding_rate(raw, interval, now, cap=self.spec.funding_rate_cap)

    def _put_mark(self, update: MarkUpdate) -> None:
        self.marks[update.market] = update
        self._export(update.market)
        if self.on_update is not None:
            self.on_update(update)

    # -- books ----------------------------------------------------------------------------------

    async def _books_feed(self, stop: asyncio.Event) -> None:
        method = self.spec.book_stream
        if method is None:
            self.states["books"] = FeedState.POLLING
            while True:
                await self._poll_books()
                if await self._sleep(self.settings.poll_every.total_seconds(), stop):
                    return
        watch = getattr(self.fuse.client, method)
        await self._poll_books()
        attempt = 0
        while not stop.is_set():
            try:
                # no limit: ccxt keeps every level (a depth-limited book loses the levels that
                # move up as top ones go); the snapshot size is the venue's watchOrderBookLimit
                pending = [watch(m) for m in self.markets]
                fill_in = self._poll_books if self.states["books"] is FeedState.RECONNECTING else None
                raws = await self._until(asyncio.gather(*pending), stop, self.settings.stale_after.total_seconds(), fill_in)
            except _Stopped:
                return
            except (ccxt.BaseError, OSError, TimeoutError) as exc:
                attempt += 1
                if await self._fill_in_after("books", exc, attempt, stop, self._poll_books):
                    return
                continue
            attempt = 0
            self._recovered("books")
            now = self.clock.now()
            for market, raw in zip(self.markets, raws, strict=True):
                try:
                    depth = self.settings.book_depth
                    top = {"bids": raw["bids"][:depth], "asks": raw["asks"][:depth]}
                    fresh = parse.Freshness(now, self.fuse.max_data_age, self.fuse.clock_skew)
                    stamped = {**top, "timestamp": raw.get("timestamp")}
                    book = parse.book(stamped, self.fuse._contract_sizes.get(market, ONE), fresh=fresh, market=f"{market} book")
                except FuseError as exc:
                    self.last_error = str(exc)
                    continue
                self._put_book(BookUpdate(market, book, now, "stream"))

    async def _poll_books(self) -> None:
        for market in self.markets:
            try:
                book = await self.fuse.order_book(market, self.settings.book_depth)
            except FuseError as exc:
                self.last_error = str(exc)
                continue
            self._put_book(BookUpdate(market, book, self.clock.now(), "poll"))

    # -- our orders and positions --------------------------------------------------------------

    async def _account_feed(self, feed: str, method: str, stop: asyncio.Event) -> None:
        """Follow one of the user data streams: silence is normal, only a failed connection is not.

        A watch wakes on one message; a message that comes while no watch is pending (between
        one wake and the next call) reaches only ccxt's cache, so the cache is also read every
        ``ACCOUNT_RESCAN`` seconds while waiting, keeping only changes.
        """
        watch = getattr(self.fuse.client, method)
        take = {"orders": self._take_orders, "positions": self._take_positions, "fills": self._take_fills}[feed]
        cache = {"fills": "myTrades"}.get(feed, feed)  # where ccxt.pro keeps what the stream sent
        perps = [m for m in self.markets if m in self._perp_markets()]
        attempt = 0
        pending: asyncio.Future[Any] | None = None
        try:
            while not stop.is_set():
                if pending is None:
                    pending = asyncio.ensure_future(isolated(watch(perps) if feed == "positions" else watch()))
                stopper = asyncio.ensure_future(stop.wait())
                try:
                    done, _ = await asyncio.wait({pending, stopper}, timeout=ACCOUNT_RESCAN, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    stopper.cancel()
                if pending not in done:
                    take(_flatten(getattr(self.fuse.client, cache, None)))
                    continue
                finished, pending = pending, None
                # a watch cancelled under us (another feed closed the connections) is a failed stream
                exc = ccxt.NetworkError(f"{feed} stream closed") if finished.cancelled() else finished.exception()
                if exc is not None:
                    if not isinstance(exc, ccxt.BaseError | OSError):
                        raise exc
                    attempt += 1
                    self._failed(feed, exc)
                    self._reauthenticate()
                    self._notify_orders()  # waiters stop waiting on a stream that is down
                    if await self._sleep(self.settings.backoff.delay(attempt), stop):
                        return
                    self.states[feed] = FeedState.STARTING  # connecting again: what comes now is streamed
                    if feed == "orders":  # what changed while away, read once the watch is re-opened
                        pending = asyncio.ensure_future(isolated(watch()))
                        await self._fill_in_orders()
                    continue
                attempt = 0
                gap_ended = self._recovered(feed)
                take([*finished.result(), *_flatten(getattr(self.fuse.client, cache, None))])
                if gap_ended:
                    await self._fill_in_orders()  # again once the stream is surely back: nothing falls between
        finally:
            if pending is not None:
                pending.cancel()
                with contextlib.suppress(BaseException):
                    await pending

    def _reauthenticate(self) -> None:
        """Make ccxt fetch a fresh user-stream credential (listen key) on the next watch.

        A user stream that failed may have failed because its listen key expired; asking again
        returns the same key while it is valid (Binance extends it), a new one otherwise.
        """
        bucket = self.spec.user_stream_auth
        options = self.fuse.client.options.get(bucket) if bucket is not None else None
        if isinstance(options, dict):
            options["lastAuthenticatedTime"] = 0

    def _take_orders(self, raw: Sequence[Any]) -> None:
        now = self.clock.now()
        changed = False
        for entry in raw:
            if not isinstance(entry, Mapping):
                continue
            venue_id, symbol = entry.get("clientOrderId"), entry.get("symbol")
            if not venue_id or symbol not in self.markets:
                continue  # not one of ours (a hand-placed order without our id, or another market)
            seen = (entry.get("status"), entry.get("filled"))
            if self._order_seen.get(str(venue_id)) == seen:
                continue
            self._order_seen[str(venue_id)] = seen
            try:
                order = parse.order(entry, str(venue_id), self.fuse._contract_sizes.get(str(symbol), ONE))
            except FuseError as exc:
                self.last_error = str(exc)
                continue
            changed = self._put_order(str(venue_id), order, now) or changed
        if changed:
            self._notify_orders()

    def _put_order(self, venue_id: str, order: Order, now: datetime) -> bool:
        """Keep ``order`` as the latest state of ``venue_id`` unless it says less than what is known; True if kept."""
        known = self.orders.get(venue_id)
        if known is not None and known.order.status.is_final and not order.status.is_final:
            return False  # a live state after a final one is an older message: certainty is never removed
        if known is not None and (known.order.status, known.order.filled) == (order.status, order.filled):
            return False
        update = OrderUpdate(order, now)
        self.orders[venue_id] = update
        self._unknown_filled.pop(venue_id, None)
        if self.on_account is not None:
            self.on_account(update)
        return True

    async def _fill_in_orders(self) -> None:
        """Read by REST every order the account streams may have missed news of (fill-in after a gap).

        Those are the orders last seen live and those a streamed fill names that the order
        stream never showed. An order the venue does not know, or a failed read, keeps what the
        stream knew (the caller of ``final_order`` asks the venue itself when the stream cannot tell).
        """
        if "orders" not in self._account_feeds:
            return
        wanted = {vid: u.market for vid, u in self.orders.items() if not u.order.status.is_final}
        wanted.update(self._unknown_filled)
        changed = False
        for venue_id, market in wanted.items():
            try:
                order = await self.fuse.order_status(market, venue_id)  # a venue id maps to itself
            except FuseError as exc:
                self.last_error = str(exc)
                continue
            changed = self._put_order(venue_id, order, self.clock.now()) or changed
        if changed:
            self._notify_orders()

    def _take_fills(self, raw: Sequence[Any]) -> None:
        now = self.clock.now()
        for entry in raw:
            if not isinstance(entry, Mapping) or entry.get("symbol") not in self.markets or entry.get("id") is None:
                continue
            trade_id, symbol = str(entry["id"]), str(entry["symbol"])
            if trade_id in self.fills:
                continue
            info = entry.get("info") or {}
            venue_id = entry.get("clientOrderId") or (info.get("cloid") if isinstance(info, Mapping) else None)
            size = self.fuse._contract_sizes.get(symbol, ONE)
            try:  # exact figures from the venue's own strings where ccxt keeps them (its parsed numbers are floats)
                price = parse.price(info.get("px", entry.get("price")), f"{symbol} fill price")
                quantity = parse.dec(info.get("sz", entry.get("amount")), f"{symbol} fill size") * size
                fee = parse.opt_dec(info.get("fee", (entry.get("fee") or {}).get("cost")), f"{symbol} fill fee")
            except FuseError as exc:
                self.last_error = str(exc)
                continue
            update = FillUpdate(symbol, trade_id, str(venue_id) if venue_id else None, str(entry.get("side")), price, quantity, fee, now)
            self.fills[trade_id] = update
            if update.venue_client_id and update.venue_client_id not in self.orders:
                self._unknown_filled[update.venue_client_id] = symbol
            if self.on_account is not None:
                self.on_account(update)

    def _take_positions(self, raw: Sequence[Any]) -> None:
        now = self.clock.now()
        latest: dict[str, Mapping[str, Any]] = {}  # per market, the entry of the latest message
        for entry in raw:
            if isinstance(entry, Mapping) and entry.get("symbol") in self.markets:
                symbol = str(entry["symbol"])
                if symbol not in latest or (entry.get("timestamp") or 0) >= (latest[symbol].get("timestamp") or 0):
                    latest[symbol] = entry
        for symbol, entry in latest.items():
            try:
                size = parse.signed_size(entry, symbol, self.fuse._contract_sizes.get(symbol, ONE))
                entry_price = parse.opt_dec(entry.get("entryPrice"), f"{symbol}.entryPrice")
            except FuseError as exc:
                self.last_error = str(exc)
                continue
            previous = self.positions.get(symbol)
            if previous is not None and previous.size == size:
                continue  # a balance-only update repeats every position: keep only changes
            update = PositionUpdate(symbol, size, entry_price or None, now)
            self.positions[symbol] = update
            if self.on_account is not None:
                self.on_account(update)

    def _put_book(self, update: BookUpdate) -> None:
        self.books[update.market] = update
        self._export(update.market)
        if self.on_update is not None:
            self.on_update(update)

    def _export(self, market: str) -> None:
        if self.metrics is None:
            return
        seen = self.updated_at(market)
        if seen is not None:
            age = max((self.clock.now() - seen).total_seconds(), 0.0)
            self.metrics.data_age.labels(fuse=self.fuse.name, market=market).set(age)


def _flatten(cache: Any) -> list[Any]:
    """Return the entries of a ccxt.pro cache: a list, or a dict of lists (positions per market type)."""
    if isinstance(cache, Mapping):
        return [entry for part in cache.values() if isinstance(part, list) for entry in part]
    return list(cache) if isinstance(cache, list) else []
