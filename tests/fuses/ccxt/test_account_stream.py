"""Our own orders and positions through the Binance user data stream (ccxt.pro watch_orders /
watch_positions) against the emulator: fills resolved without a REST poll, positions followed,
disconnects and an expired listen key survived, and nothing claimed while the stream is away."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

from alpha.domain.account import OrderRequest, OrderStatus, OrderType
from alpha.domain.clock import LiveClock
from alpha.domain.instruments import Side
from fuses.ccxt.streams import FeedState, MarketStreams, OrderUpdate, PositionUpdate
from fuses.emulators.binance import BINANCE_KEY
from tests.fuses.ccxt.test_streams import BTC, SETTINGS, running, wait_for


def _rest_order_reads(log: Any) -> int:
    return int(log.count("/fapi/v1/order", "GET") + log.count("/fapi/v1/openOrders"))


FILL_WAIT = 30.0  # seconds a fill may take to come back on the stream: generous, a loaded machine is slow


async def _user_stream_open(rig: Any, streams: MarketStreams, posts: int = 1) -> None:
    """Wait until the listen key is made and the account streams are connected (not failed)."""
    log = rig.server.state.log
    await wait_for(lambda: log.count("/fapi/v1/listenKey", "POST") >= posts and rig.server.app[BINANCE_KEY].user_queues)
    await wait_for(lambda: any(rig.server.app[BINANCE_KEY].user_queues.values()))
    await asyncio.sleep(0.1)


async def _buy(rig: Any, client_id: str, quantity: str = "0.01", side: Side = Side.BUY) -> None:
    await rig.fuse.submit(OrderRequest(client_id, BTC, side, Decimal(quantity), OrderType.MARKET))


async def test_a_fill_and_the_position_it_opens_arrive_on_the_account_streams_without_rest_reads(rig_factory: Any) -> None:
    seen: list[OrderUpdate | PositionUpdate] = []
    async with rig_factory() as rig:
        streams = MarketStreams(rig.fuse, clock=LiveClock(), settings=SETTINGS, on_account=seen.append)
        assert set(streams.states) == {"marks", "books", "orders", "positions"}
        log = rig.server.state.log
        async with running(streams):
            await _user_stream_open(rig, streams)
            reads = _rest_order_reads(log)
            await _buy(rig, "acct-stream-1")
            order = await streams.final_order("acct-stream-1", wait=FILL_WAIT)
            assert order is not None and order.status is OrderStatus.FILLED
            assert order.client_id == "acct-stream-1" and order.filled == Decimal("0.01") and order.market == BTC
            venue = rig.backend.order("alice", BTC, "acct-stream-1")
            assert order.average_price == venue.average_price
            assert _rest_order_reads(log) == reads, "resolved from the stream, not by polling the venue"
            assert streams.states["orders"] is FeedState.STREAMING

            await wait_for(lambda: BTC in streams.positions and streams.positions[BTC].size == Decimal("0.01"))
            await _buy(rig, "acct-stream-2", "0.03", Side.SELL)
            await wait_for(lambda: streams.positions[BTC].size == Decimal("-0.02"))
            assert rig.backend.account("alice", LiveClock().now()).position(BTC).size == Decimal("-0.02")
        sizes = [u.size for u in seen if isinstance(u, PositionUpdate) and u.market == BTC]
        assert sizes[-2:] == [Decimal("0.01"), Decimal("-0.02")]
        assert {u.order.client_id for u in seen if isinstance(u, OrderUpdate)} >= {"acct-stream-1", "acct-stream-2"}


async def test_a_dropped_user_stream_claims_nothing_while_away_and_streams_again_after(rig_factory: Any) -> None:
    async with rig_factory() as rig:
        streams = MarketStreams(rig.fuse, clock=LiveClock(), settings=SETTINGS)
        faults = rig.server.state.faults
        async with running(streams):
            await _user_stream_open(rig, streams)
            await _buy(rig, "drop-1")
            assert (await streams.final_order("drop-1", wait=FILL_WAIT)) is not None

            faults.streams_down = True
            await wait_for(lambda: streams.states["orders"] is FeedState.RECONNECTING)
            await _buy(rig, "drop-2")  # filled at the venue while the stream is away
            # The stream cannot tell: it answers None at once (no waiting on a dead stream) and the
            # caller asks the venue, which knows.
            assert await asyncio.wait_for(streams.final_order("drop-2", wait=30), timeout=5) is None
            assert (await rig.fuse.order_status(BTC, "drop-2")).status is OrderStatus.FILLED

            faults.streams_down = False
            await _user_stream_open(rig, streams)
            await _buy(rig, "drop-3")
            order = await streams.final_order("drop-3", wait=FILL_WAIT)
            assert order is not None and order.status is OrderStatus.FILLED
            assert streams.states["orders"] is FeedState.STREAMING
            assert any(g.feed == "orders" for g in streams.gaps)


async def test_an_expired_listen_key_is_replaced_and_the_stream_resumes(rig_factory: Any) -> None:
    async with rig_factory() as rig:
        streams = MarketStreams(rig.fuse, clock=LiveClock(), settings=SETTINGS)
        venue, log = rig.server.app[BINANCE_KEY], rig.server.state.log
        async with running(streams):
            await _user_stream_open(rig, streams)
            # The venue drops the key (as when keepalives were missed past its 60 minutes).
            for key, (account, _) in list(venue.listen_keys.items()):
                venue.listen_keys[key] = (account, 0.0)
            await wait_for(lambda: streams.states["orders"] is FeedState.RECONNECTING)
            await _user_stream_open(rig, streams, posts=2)  # a fresh key, a fresh connection
            await _buy(rig, "expired-1")
            order = await streams.final_order("expired-1", wait=FILL_WAIT)
            assert order is not None and order.status is OrderStatus.FILLED
            assert all(expiry > 0 for _, expiry in venue.listen_keys.values())
            assert log.count("/fapi/v1/listenKey", "POST") >= 2


async def test_the_listen_key_is_kept_alive_so_the_stream_outlives_its_first_expiry(rig_factory: Any) -> None:
    async with rig_factory() as rig:
        rig.fuse.client.options["listenKeyRefreshRate"] = 300  # ms; Binance's own is 20 minutes of its 60
        streams = MarketStreams(rig.fuse, clock=LiveClock(), settings=SETTINGS)
        venue, log = rig.server.app[BINANCE_KEY], rig.server.state.log
        async with running(streams):
            await _user_stream_open(rig, streams)
            wall = venue.wall()
            for key, (account, _) in list(venue.listen_keys.items()):
                venue.listen_keys[key] = (account, wall + 1.0)  # would expire in a second without a keepalive
            # ccxt extends the key before it expires, and the stream lives on past that first expiry.
            await wait_for(lambda: all(expiry > wall + 60 for _, expiry in venue.listen_keys.values()))
            assert log.count("/fapi/v1/listenKey", "PUT") >= 1, "ccxt extends the key"
            await wait_for(lambda: venue.wall() > wall + 2.0)
            assert log.count("/fapi/v1/listenKey", "POST") == 1 and streams.reconnects == 0
            await _buy(rig, "kept-alive-1")
            order = await streams.final_order("kept-alive-1", wait=FILL_WAIT)
            assert order is not None and order.status is OrderStatus.FILLED
