"""Market streams of the ccxt fuse against the emulators: Binance's mark-price stream (funding r and
T), reconnect with backoff after disconnects, staleness while down, polling fallback."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from alpha.domain.clock import LiveClock
from fuses.ccxt.streams import Backoff, BookUpdate, FeedState, MarketStreams, MarkUpdate, StreamSettings
from fuses.ccxt.venues import VENUES, VenueSpec

BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"
SETTINGS = StreamSettings(
    stale_after=timedelta(seconds=0.4), poll_every=timedelta(seconds=0.1), backoff=Backoff(0.05, 2.0, 0.4)
)


@asynccontextmanager
async def running(streams: MarketStreams) -> AsyncIterator[asyncio.Event]:
    stop = asyncio.Event()
    task = asyncio.create_task(streams.run(stop))
    try:
        yield stop
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=20)


async def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    """Poll ``condition`` (real time: the emulator and the streams run on the wall clock; generous, a loaded machine is slow)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def wait_for_async(condition: Callable[[], Awaitable[bool]], timeout: float = 30.0) -> None:
    """Poll an awaitable ``condition`` until it holds (real time)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def test_backoff_doubles_up_to_its_cap() -> None:
    backoff = Backoff(initial=0.5, factor=2.0, maximum=3.0)
    assert [backoff.delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    with pytest.raises(ValueError):
        Backoff(initial=0)


async def test_mark_stream_carries_the_funding_rate_and_next_time_of_every_market(rig_factory: Any) -> None:
    async with rig_factory() as rig:
        streams = MarketStreams(rig.fuse, clock=LiveClock(), settings=SETTINGS)
        async with running(streams):
            await wait_for(lambda: all(m in streams.marks and streams.marks[m].source == "stream" for m in (BTC, ETH)))
            rest = await rig.fuse.funding_rates()
            for market in (BTC, ETH):
                update = streams.marks[market]
                assert update.funding is not None
                assert update.funding.rate == rest[market].rate
                assert update.funding.next_settlement == rest[market].next_settlement
                assert update.funding.interval == timedelta(hours=8)  # from the venue's fundingInfo
                assert update.index is not None and update.mark > 0
            await wait_for(lambda: streams.states["books"] is FeedState.STREAMING)
            assert (streams.states["marks"], streams.states["books"]) == (FeedState.STREAMING, FeedState.STREAMING)
            assert streams.stale() == {}
            assert all(isinstance(t, datetime) for t in streams.last_updates().values())


class ShiftedClock(LiveClock):
    """The wall clock moved on by ``offset``: the emulator's venue jumps ahead (its synthetic
    market steps once a minute) while ccxt and the streams keep real time."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return super().now() + self.offset


async def test_streamed_book_equals_the_rest_book_after_the_venue_moves(rig_factory: Any) -> None:
    async with rig_factory() as rig:
        venue_clock = ShiftedClock()
        rig.server.state.clock = venue_clock
        rig.fuse.clock_skew = timedelta(hours=1)  # the venue's clock runs ahead to move its market: allow its stamps
        streams = MarketStreams(rig.fuse, clock=LiveClock(), settings=SETTINGS)
        log = rig.server.state.log
        async with running(streams):
            await wait_for(lambda: all(m in streams.books and streams.books[m].source == "stream" for m in (BTC, ETH)))
            snapshots = log.count("/fapi/v1/depth")
            ours = 0
            for step in range(3):
                before = {m: streams.books[m].book for m in (BTC, ETH)}
                venue_clock.offset += timedelta(minutes=7)  # the venue's marks move, and its books with them
                moved_at = LiveClock().now()

                async def same(moved_at: datetime = moved_at) -> bool:
                    nonlocal ours
                    rest = {m: await rig.fuse.order_book(m, SETTINGS.book_depth) for m in (BTC, ETH)}
                    ours += 2
                    return all(
                        streams.books[m].source == "stream" and streams.books[m].received > moved_at and streams.books[m].book == rest[m]
                        for m in (BTC, ETH)
                    )

                await wait_for_async(same)
                for market in (BTC, ETH):
                    book = streams.books[market].book
                    assert book != before[market], (step, market)
                    assert len(book.bids) == len(book.asks) == SETTINGS.book_depth and book.bids[0].price < book.asks[0].price
            # the changes arrived as diffs: the only depth requests since are the test's own
            assert log.count("/fapi/v1/depth") == snapshots + ours
            assert streams.states["books"] is FeedState.STREAMING and streams.reconnects == 0


async def test_venue_outage_flags_staleness_then_reconnects_without_losing_markets(rig_factory: Any) -> None:
    seen: list[MarkUpdate | BookUpdate] = []
    async with rig_factory() as rig:
        streams = MarketStreams(rig.fuse, clock=LiveClock(), settings=SETTINGS, on_update=seen.append)
        faults = rig.server.state.faults
        async with running(streams):
            await wait_for(lambda: streams.states["marks"] is FeedState.STREAMING and BTC in streams.marks)

            faults.maintenance = True  # streams dropped, REST answers 503: nothing reaches us
            faults.disconnect_streams += 1
            await wait_for(lambda: set(streams.stale()) == {BTC, ETH})
            assert streams.states["marks"] is FeedState.RECONNECTING
            assert not streams.health().ok and streams.health().stale[BTC] > SETTINGS.stale_after
            down_for = 1.0
            await asyncio.sleep(down_for)
            faults.maintenance = False
            recovered_at = LiveClock().now()

            await wait_for(
                lambda: all(
                    m in streams.marks and streams.marks[m].source == "stream" and streams.marks[m].received > recovered_at
                    for m in (BTC, ETH)
                )
            )
            await wait_for(lambda: streams.stale() == {})
            assert streams.states["marks"] is FeedState.STREAMING
            assert streams.reconnects >= 1
            [gap] = [g for g in streams.gaps if g.feed == "marks"]
            assert timedelta(seconds=down_for) <= gap.length < timedelta(seconds=down_for) + timedelta(seconds=3)

        # No loss beyond the gap: every silence longer than the staleness bound lies inside it.
        marks = [u for u in seen if isinstance(u, MarkUpdate)]
        for market in (BTC, ETH):
            times = [u.received for u in marks if u.market == market]
            for before, after in itertools.pairwise(times):
                if after - before > SETTINGS.stale_after:
                    assert gap.start - SETTINGS.stale_after <= before and after <= gap.end + SETTINGS.stale_after


async def test_stream_drop_with_rest_up_falls_back_to_polling_and_stays_fresh(rig_factory: Any) -> None:
    seen: list[MarkUpdate | BookUpdate] = []
    async with rig_factory() as rig:
        streams = MarketStreams(rig.fuse, clock=LiveClock(), settings=SETTINGS, on_update=seen.append)
        faults = rig.server.state.faults
        async with running(streams):
            await wait_for(lambda: streams.states["marks"] is FeedState.STREAMING)
            faults.streams_down = True
            await wait_for(lambda: streams.states["marks"] is FeedState.RECONNECTING)
            dropped_at = LiveClock().now()
            for _ in range(8):
                await asyncio.sleep(0.1)
                assert streams.stale() == {}  # REST polling fills in while the stream is away
            polled = [u for u in seen if isinstance(u, MarkUpdate) and u.source == "poll" and u.received > dropped_at]
            assert {u.market for u in polled} == {BTC, ETH}
            assert all(u.funding is not None for u in polled)

            faults.streams_down = False
            await wait_for(lambda: streams.states["marks"] is FeedState.STREAMING)
            back = LiveClock().now()
            await wait_for(lambda: streams.marks[BTC].source == "stream" and streams.marks[BTC].received > back)


def without_streams(spec: VenueSpec) -> VenueSpec:
    """``spec`` with every stream taken out (a venue that has none)."""
    return replace(
        spec, capabilities=replace(spec.capabilities, streams=False),
        mark_stream=None, book_stream=None, order_stream=None, position_stream=None, fill_stream=None,
    )


async def test_a_venue_without_streams_is_polled_with_its_hourly_funding(hl_rig_factory: Any) -> None:
    async with hl_rig_factory(spec=without_streams(VENUES["hyperliquid"])) as rig:
        streams = MarketStreams(rig.fuse, clock=LiveClock(), settings=SETTINGS)
        async with running(streams):
            await wait_for(lambda: "BTC/USDC:USDC" in streams.marks and "BTC/USDC:USDC" in streams.books)
            first = streams.marks["BTC/USDC:USDC"].received
            await wait_for(lambda: streams.marks["BTC/USDC:USDC"].received > first)
            assert streams.states == {"marks": FeedState.POLLING, "books": FeedState.POLLING}
            update = streams.marks["BTC/USDC:USDC"]
            assert update.source == "poll" and update.funding is not None
            assert update.funding.interval == timedelta(hours=1)
            assert streams.stale() == {}
        # After stop nothing refreshes: the bound is crossed and the market is reported.
        later = LiveClock().now() + SETTINGS.stale_after * 2
        assert set(streams.stale(later)) == {"BTC/USDC:USDC", "ETH/USDC:USDC"}


async def test_an_orders_fill_arrives_through_the_user_stream_before_any_rest_poll(rig_factory: Any) -> None:
    from alpha.domain.account import OrderRequest, OrderType
    from alpha.domain.instruments import Side
    from fuses.emulators.binance import BINANCE_KEY

    async with rig_factory() as rig:
        client, log = rig.fuse.client, rig.server.state.log
        watching = asyncio.create_task(client.watch_orders())
        positions = asyncio.create_task(client.watch_positions())
        await wait_for(lambda: log.count("/fapi/v1/listenKey", "POST") == 1)
        await wait_for(lambda: any(rig.server.app[BINANCE_KEY].user_queues.values()))  # the user stream is open
        polls_before = log.count("/fapi/v1/order", "GET") + log.count("/fapi/v1/openOrders")
        await rig.fuse.submit(OrderRequest("stream-fill-1", BTC, Side.BUY, Decimal("0.01"), OrderType.MARKET))
        await asyncio.wait_for(watching, 30)  # woken by the first update; later ones land in ccxt's cache

        def ours() -> list[Any]:
            return [o for o in client.orders or [] if o["clientOrderId"] == "stream-fill-1"]

        await wait_for(lambda: bool(ours()) and ours()[-1]["status"] == "closed")
        done = ours()[-1]
        assert done["filled"] == 0.01 and done["info"]["x"] == "TRADE" and done["info"]["z"] == "0.01"
        assert log.count("/fapi/v1/order", "GET") + log.count("/fapi/v1/openOrders") == polls_before  # no REST poll
        await asyncio.wait_for(positions, 30)  # the REST snapshot; ACCOUNT_UPDATE after the fill updates the cache

        def btc_long() -> list[Any]:
            return [p for p in (client.positions or {}).get("linear", []) if p["symbol"] == BTC and p["contracts"]]

        await wait_for(lambda: bool(btc_long()))
        assert btc_long()[-1]["side"] == "long" and btc_long()[-1]["contracts"] == 0.01
