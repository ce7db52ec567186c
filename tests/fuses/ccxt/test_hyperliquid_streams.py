"""Hyperliquid's websocket: the emulator's ``/ws`` as the venue documents it, and the ccxt fuse's
streams on it through the real ccxt.pro client (activeAssetCtx marks with funding, l2Book,
orderUpdates, userFills): reconnect after the venue drops the socket with the fills and order
changes missed meanwhile filled in, and staleness (the gate refuses the data) when it goes silent.

Everything runs on the wall clock against the emulator on 127.0.0.1 over the real engine."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from decimal import Decimal
from typing import Any

import aiohttp
import pytest

from alpha.daemon.marketdata import MarketData
from alpha.domain.account import OrderRequest, OrderStatus, OrderType, TimeInForce
from alpha.domain.clock import LiveClock
from alpha.domain.instruments import Side
from alpha.domain.market import BadMarketData
from alpha.observability.metrics import Metrics
from fuses.ccxt.streams import FeedState, FillUpdate, MarketStreams, OrderUpdate
from fuses.emulators.hyperliquid_ws import WS_KEY
from tests.fuses.ccxt.test_streams import SETTINGS, running, wait_for

BTC, ETH = "BTC/USDC:USDC", "ETH/USDC:USDC"
FILL_WAIT = 30.0  # seconds a streamed answer may take on a loaded machine


async def _receive(ws: aiohttp.ClientWebSocketResponse, channel: str, timeout: float = 30.0) -> Any:
    """Return the ``data`` of the next message on ``channel`` (others are skipped)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            raise AssertionError(f"no {channel} message in time")
        message = json.loads(await ws.receive_str(timeout=left))
        if message["channel"] == channel:
            return message.get("data")


async def test_the_websocket_speaks_the_venues_subscriptions_and_shapes(hl_rig_factory: Any) -> None:
    async with hl_rig_factory() as rig, aiohttp.ClientSession() as http, http.ws_connect(rig.server.ws_url + "/ws") as ws:
        user = rig.wallet.address
        for sub in ({"type": "allMids"}, {"type": "l2Book", "coin": "BTC"}, {"type": "activeAssetCtx", "coin": "ETH"},
                    {"type": "orderUpdates", "user": user}, {"type": "userFills", "user": user}):
            await ws.send_json({"method": "subscribe", "subscription": sub})
            assert await _receive(ws, "subscriptionResponse") == {"method": "subscribe", "subscription": sub}
        snapshot = await _receive(ws, "userFills")
        assert snapshot == {"isSnapshot": True, "user": user.lower(), "fills": []}

        mids = (await _receive(ws, "allMids"))["mids"]
        assert set(mids) == {"BTC", "ETH"} and Decimal(mids["BTC"]) > 0
        book = await _receive(ws, "l2Book")
        bids, asks = book["levels"]
        assert book["coin"] == "BTC" and isinstance(book["time"], int)
        assert set(bids[0]) == {"px", "sz", "n"} and Decimal(bids[0]["px"]) < Decimal(asks[0]["px"])
        ctx = await _receive(ws, "activeAssetCtx")
        assert ctx["coin"] == "ETH"
        assert {"funding", "markPx", "oraclePx", "openInterest", "premium", "impactPxs"} <= set(ctx["ctx"])
        rest = await rig.fuse.funding_rates([ETH])
        assert Decimal(ctx["ctx"]["funding"]) == rest[ETH].rate  # the live rate metaAndAssetCtxs shows

        await ws.send_json({"method": "ping"})
        assert await _receive(ws, "pong") is None
        await ws.send_json({"method": "subscribe", "subscription": {"type": "l2Book", "coin": "BTC"}})
        assert (await _receive(ws, "error")).startswith("Already subscribed")
        await ws.send_json({"method": "subscribe", "subscription": {"type": "l2Book", "coin": "NOPE"}})
        assert (await _receive(ws, "error")).startswith("Invalid subscription")

        await rig.fuse.submit(OrderRequest("ws-shape-1", BTC, Side.BUY, Decimal("0.01"), OrderType.MARKET))
        [update] = await _receive(ws, "orderUpdates")
        assert update["status"] == "filled" and isinstance(update["statusTimestamp"], int)
        assert set(update["order"]) == {"coin", "side", "limitPx", "sz", "oid", "timestamp", "origSz", "cloid"}
        assert update["order"]["cloid"] == rig.fuse._venue_client_id("ws-shape-1") and update["order"]["sz"] == "0.0"
        fills = await _receive(ws, "userFills")
        assert fills["isSnapshot"] is False and [f["cloid"] for f in fills["fills"]] == [update["order"]["cloid"]]
        assert fills["fills"][0]["sz"] == "0.01" and fills["fills"][0]["oid"] == update["order"]["oid"]


async def test_the_fuse_streams_marks_with_hourly_funding_and_books_from_the_websocket(hl_rig_factory: Any) -> None:
    async with hl_rig_factory() as rig:
        streams = MarketStreams(rig.fuse, clock=LiveClock(), settings=SETTINGS)
        assert set(streams.states) == {"marks", "books", "orders", "fills"}
        async with running(streams):
            await wait_for(lambda: all(streams.marks.get(m) and streams.marks[m].source == "stream" for m in (BTC, ETH)))
            await wait_for(lambda: all(streams.books.get(m) and streams.books[m].source == "stream" for m in (BTC, ETH)))
            rest = await rig.fuse.funding_rates()
            for market in (BTC, ETH):
                update = streams.marks[market]
                assert update.funding is not None and update.funding.rate == rest[market].rate
                assert update.funding.interval == timedelta(hours=1)
                assert update.funding.next_settlement == rest[market].next_settlement  # the next hour
                assert update.index is not None and update.index > 0  # oraclePx
            first = streams.marks[BTC].received
            await wait_for(lambda: streams.marks[BTC].received > first)
            assert streams.states["marks"] is streams.states["books"] is FeedState.STREAMING
            assert streams.stale() == {} and streams.reconnects == 0
            subscribed = {(s["type"], s.get("coin")) for s in rig.server.app[WS_KEY].subscriptions}
            assert {("activeAssetCtx", "BTC"), ("l2Book", "ETH"), ("orderUpdates", None), ("userFills", None)} <= subscribed


async def test_a_dropped_socket_reconnects_and_fills_in_the_fills_and_order_changes_missed(hl_rig_factory: Any) -> None:
    seen: list[Any] = []
    async with hl_rig_factory() as rig:
        streams = MarketStreams(rig.fuse, clock=LiveClock(), settings=SETTINGS, on_account=seen.append)
        faults, ws = rig.server.state.faults, rig.server.app[WS_KEY]
        async with running(streams):
            # subscribed (an empty fills snapshot wakes no ccxt watch: the feeds stay STARTING until a message)
            await wait_for(lambda: {"orderUpdates", "userFills"} <= {s["type"] for s in ws.subscriptions})
            await rig.fuse.submit(OrderRequest("gap-live-1", BTC, Side.BUY, Decimal("0.01"), OrderType.MARKET))
            order = await streams.final_order("gap-live-1", wait=FILL_WAIT)
            assert order is not None and order.status is OrderStatus.FILLED
            await wait_for(lambda: streams.states["fills"] is FeedState.STREAMING)
            book = await rig.fuse.order_book(BTC)
            below = (book.bids[0].price * Decimal("0.9")).quantize(Decimal(1))  # rests, far from the market
            await rig.fuse.submit(OrderRequest("gap-rest-1", BTC, Side.BUY, Decimal("0.01"), OrderType.LIMIT, below, TimeInForce.GTC))
            resting = rig.fuse._venue_client_id("gap-rest-1")
            await wait_for(lambda: resting in streams.orders)
            assert streams.orders[resting].order.status is OrderStatus.NEW

            connections = ws.connections
            faults.streams_down = True  # the venue drops the socket and refuses new ones; REST answers
            await wait_for(lambda: streams.states["orders"] is FeedState.RECONNECTING and streams.states["fills"] is FeedState.RECONNECTING)
            await rig.fuse.cancel(BTC, "gap-rest-1")  # by REST while the stream is away
            await rig.fuse.submit(OrderRequest("gap-missed-1", BTC, Side.SELL, Decimal("0.02"), OrderType.MARKET))
            missed = rig.fuse._venue_client_id("gap-missed-1")
            assert missed not in streams.orders  # no stream told of it
            faults.streams_down = False

            await wait_for(lambda: ws.connections > connections and streams.states["fills"] is FeedState.STREAMING)
            # The fill made while away comes with the venue's userFills snapshot ...
            await wait_for(lambda: any(f.venue_client_id == missed for f in streams.fills.values()))
            [fill] = [f for f in streams.fills.values() if f.venue_client_id == missed]
            assert fill.quantity == Decimal("0.02") and fill.side == "sell" and fill.price > 0
            # ... and the orders the stream missed news of are read back: the cancel, and the order of that fill.
            await wait_for(lambda: resting in streams.orders and streams.orders[resting].order.status is OrderStatus.CANCELED)
            answered = await streams.final_order("gap-missed-1", wait=FILL_WAIT)
            assert answered is not None and answered.status is OrderStatus.FILLED and answered.filled == Decimal("0.02")
            assert "fills" in {g.feed for g in streams.gaps}

            # The stream is live again: a new order is answered from it.
            await rig.fuse.submit(OrderRequest("gap-after-1", BTC, Side.BUY, Decimal("0.01"), OrderType.MARKET))
            after = await streams.final_order("gap-after-1", wait=FILL_WAIT)
            assert after is not None and after.status is OrderStatus.FILLED
            await wait_for(lambda: "orders" in {g.feed for g in streams.gaps})  # its first message after the gap
        trade_ids = [u.trade_id for u in seen if isinstance(u, FillUpdate)]
        assert len(trade_ids) == len(set(trade_ids)) == 3, "each fill once, the snapshot's repeats dropped"
        states = [u.order.status for u in seen if isinstance(u, OrderUpdate) and u.order.client_id == resting]
        assert states == [OrderStatus.NEW, OrderStatus.CANCELED]


@pytest.mark.parametrize("how", ["faults", "chaos"])
async def test_a_socket_dropped_mid_stream_is_reopened_and_the_marks_stream_again(hl_rig_factory: Any, how: str) -> None:
    async with hl_rig_factory() as rig:
        streams = MarketStreams(rig.fuse, clock=LiveClock(), settings=SETTINGS)
        ws = rig.server.app[WS_KEY]
        async with running(streams):
            await wait_for(lambda: streams.states["marks"] is FeedState.STREAMING and streams.states["books"] is FeedState.STREAMING)
            connections = ws.connections
            if how == "faults":
                rig.server.state.faults.disconnect_streams += 1  # every open socket closed once, new ones accepted
            else:
                async with aiohttp.ClientSession() as http, http.post(
                    rig.server.url + "/_chaos/faults", json={"kind": "disconnect", "duration_s": 0.5, "trigger": "now"}
                ) as answer:
                    assert answer.status == 200
            await wait_for(lambda: streams.reconnects >= 1)
            back = LiveClock().now()
            await wait_for(lambda: ws.connections > connections)
            await wait_for(lambda: all(streams.marks[m].source == "stream" and streams.marks[m].received > back for m in (BTC, ETH)))
            await wait_for(lambda: all(streams.books[m].source == "stream" and streams.books[m].received > back for m in (BTC, ETH)))
            assert streams.states["marks"] is FeedState.STREAMING and streams.stale() == {}
            assert any(g.feed == "marks" for g in streams.gaps)


async def test_a_silent_socket_ages_the_data_until_the_gate_refuses_it_then_recovers(hl_rig_factory: Any) -> None:
    async with hl_rig_factory() as rig:
        max_age = timedelta(seconds=1)
        metrics = Metrics()
        data = MarketData({"hl": rig.fuse}, LiveClock(), metrics)
        await data.load_instruments()
        streams = MarketStreams(rig.fuse, clock=LiveClock(), settings=SETTINGS, on_update=lambda u: None)
        streams.on_update = data.on_stream_update("hl")
        data.attach_streams("hl", streams)
        faults, ws = rig.server.state.faults, rig.server.app[WS_KEY]
        key = f"hl:{BTC}"
        async with running(streams):
            await wait_for(lambda: key in data.snapshots and streams.marks[BTC].source == "stream")
            data.snapshots[key].validate(LiveClock().now(), max_age)  # fresh: the gate lets it through

            # The socket stays open but nothing comes, and REST /info answers 503: no fill-in either.
            faults.fault_paths, faults.fail_next = ("/info",), 1_000_000
            ws.silent = True
            await wait_for(lambda: set(streams.stale()) == {BTC, ETH})
            # silent, the feed goes round reconnecting and streaming (open but mute): wait for the first
            await wait_for(lambda: streams.states["marks"] is FeedState.RECONNECTING and not streams.health().ok)
            await wait_for(lambda: LiveClock().now() - data.snapshots[key].ts > max_age)
            with pytest.raises(BadMarketData, match="old"):
                data.snapshots[key].validate(LiveClock().now(), max_age)

            ws.silent, faults.fail_next = False, 0
            back = LiveClock().now()
            await wait_for(lambda: streams.stale() == {} and data.snapshots[key].ts > back)
            data.snapshots[key].validate(LiveClock().now(), max_age)
            await wait_for(lambda: streams.states["marks"] is FeedState.STREAMING and streams.marks[BTC].source == "stream")
            assert streams.reconnects >= 1
