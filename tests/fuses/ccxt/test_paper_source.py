"""Paper mode's market source reads public data through the ccxt fuse, without keys: from the
venue's mark stream where it has one (Binance USD-M), polling REST otherwise (Hyperliquid),
falling back to REST while the stream is away, and reporting the data stale when nothing comes."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from alpha.config.schema import FuseConfig
from alpha.domain.clock import LiveClock
from fuses.ccxt.paper import CcxtMarketSource
from fuses.ccxt.streams import FeedState, MarkUpdate
from fuses.ccxt.venues import VENUES
from fuses.sim.source import MarketSource
from tests.fuses.ccxt.test_streams import wait_for as wait_until
from tests.fuses.ccxt.test_streams import without_streams

BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"
HL_BTC, HL_ETH = "BTC/USDC:USDC", "ETH/USDC:USDC"
EVERY = timedelta(milliseconds=100)  # the source's poll cadence (and the feeds' reconnect cap)
STALE_AFTER = timedelta(milliseconds=600)


def binance_config(url: str, name: str = "binance") -> FuseConfig:
    """A paper fuse on the emulated Binance USD-M venue, naming credentials that are not set."""
    return FuseConfig.model_validate(
        {"name": name, "kind": "cex", "venue": "binanceusdm", "markets": [BTC, ETH], "max_share": "0.5",
         "api_url": url,
         "credentials": {"api_key": {"env": "UNSET_PAPER_KEY_1"}, "secret": {"env": "UNSET_PAPER_SECRET_1"}}}
    )


@asynccontextmanager
async def running(source: CcxtMarketSource) -> AsyncIterator[asyncio.Task[None]]:
    """Start ``source`` and run it until the block ends."""
    await source.start()
    stop = asyncio.Event()
    task = asyncio.create_task(source.run(stop, EVERY))
    try:
        yield task
    finally:
        stop.set()
        try:
            await asyncio.wait_for(task, timeout=10)
        finally:
            await source.close()


wait_for = functools.partial(wait_until, timeout=10.0)  # real time: the emulator and the streams run on the wall clock


def from_stream_since(source: CcxtMarketSource, fuse: str, markets: tuple[str, ...], since: Any) -> bool:
    readings = source.readings.get(fuse, {})
    return all(m in readings and readings[m].source == "stream" and readings[m].received > since for m in markets)


async def test_paper_source_reads_marks_and_funding_without_keys(rig_factory: Any) -> None:
    async with rig_factory() as rig:
        source = CcxtMarketSource.from_configs([binance_config(rig.server.url)], clock=LiveClock())
        try:
            await source.start()
            states = source.advance(LiveClock().now())
        finally:
            await source.close()
        assert isinstance(source, MarketSource)
        state = states["binance"]["BTC/USDT:USDT"]
        venue = rig.backend.market("BTC/USDT:USDT", LiveClock().now())
        assert state.mark == venue.mark
        assert venue.funding is not None and state.funding_rate == venue.funding.rate
        assert state.funding_interval == venue.funding.interval
        assert state.mark > Decimal(0)
        assert not source.fuses["binance"].settings.has_credentials  # the unset env vars were never read


async def test_steady_state_reads_the_mark_stream_and_stops_polling_rest(rig_factory: Any) -> None:
    async with rig_factory() as rig:
        log = rig.server.state.log
        source = CcxtMarketSource.from_configs([binance_config(rig.server.url)], clock=LiveClock(), stale_after=STALE_AFTER)
        async with running(source):
            started = LiveClock().now()
            await wait_for(lambda: from_stream_since(source, "binance", (BTC, ETH), started))
            feed = source.feeds["binance"]
            await wait_for(lambda: feed.states["books"] is FeedState.STREAMING)
            assert feed.states["marks"] is FeedState.STREAMING

            # Funding as the stream carries it: the venue's rate, next settlement and 8h interval.
            now = LiveClock().now()
            states = source.advance(now)
            for market in (BTC, ETH):
                venue = rig.backend.market(market, now)
                state = states["binance"][market]
                assert venue.funding is not None
                assert state.funding_rate == venue.funding.rate
                assert state.next_settlement == venue.funding.next_settlement
                assert state.funding_interval == timedelta(hours=8)
                assert state.index > 0 and state.mark > 0

            # Many poll periods pass: readings keep coming from the stream, no REST request at all.
            premium, total = log.count("/fapi/v1/premiumIndex"), log.count()
            mark = LiveClock().now()
            await asyncio.sleep(10 * EVERY.total_seconds())
            assert from_stream_since(source, "binance", (BTC, ETH), mark)
            assert log.count("/fapi/v1/premiumIndex") == premium
            assert log.count() == total, [(e.method, e.path) for e in log.entries[total:]]
            assert source.stale() == {}


async def test_stream_drop_falls_back_to_rest_and_stays_fresh_then_streams_again(rig_factory: Any) -> None:
    async with rig_factory() as rig:
        faults, log = rig.server.state.faults, rig.server.state.log
        source = CcxtMarketSource.from_configs([binance_config(rig.server.url)], clock=LiveClock(), stale_after=STALE_AFTER)
        async with running(source):
            await wait_for(lambda: from_stream_since(source, "binance", (BTC, ETH), source.started_at))
            feed = source.feeds["binance"]

            faults.streams_down = True
            await wait_for(lambda: feed.states["marks"] is FeedState.RECONNECTING)
            dropped_at = LiveClock().now()
            polls = log.count("/fapi/v1/premiumIndex")
            for _ in range(6):  # two staleness bounds: REST keeps every market fresh
                await asyncio.sleep(STALE_AFTER.total_seconds() / 3)
                assert source.stale() == {}
            readings = source.readings["binance"]
            assert all(readings[m].source == "poll" and readings[m].received > dropped_at for m in (BTC, ETH))
            assert log.count("/fapi/v1/premiumIndex") > polls
            venue = rig.backend.market(BTC, LiveClock().now())
            assert venue.funding is not None and source.advance(LiveClock().now())["binance"][BTC].funding_rate == venue.funding.rate

            faults.streams_down = False
            back = LiveClock().now()
            await wait_for(lambda: from_stream_since(source, "binance", (BTC, ETH), back))
            assert feed.states["marks"] is FeedState.STREAMING and feed.reconnects >= 1


async def test_venue_fully_down_goes_stale_keeps_the_last_state_and_recovers(rig_factory: Any) -> None:
    async with rig_factory() as rig:
        faults = rig.server.state.faults
        source = CcxtMarketSource.from_configs([binance_config(rig.server.url)], clock=LiveClock(), stale_after=STALE_AFTER)
        async with running(source):
            await wait_for(lambda: from_stream_since(source, "binance", (BTC, ETH), source.started_at))
            assert source.stale() == {}

            faults.maintenance = True  # streams closed, REST answers maintenance: nothing comes in
            faults.disconnect_streams += 1
            await wait_for(lambda: set(source.stale().get("binance", {})) == {BTC, ETH})
            last = source.advance(LiveClock().now())["binance"]
            stale = source.stale()["binance"]
            assert all(age > STALE_AFTER for age in stale.values())
            assert source.stale_markets("binance", [BTC]).keys() == {BTC}
            # the last state is kept (the world holds a price), and nothing new arrives meanwhile
            await asyncio.sleep(0.3)
            assert source.advance(LiveClock().now())["binance"] == last
            assert set(source.stale()["binance"]) == {BTC, ETH}

            faults.maintenance = False
            back = LiveClock().now()
            await wait_for(lambda: from_stream_since(source, "binance", (BTC, ETH), back))
            assert source.stale() == {}


async def test_a_venue_without_streams_is_polled_at_the_cadence_only(hl_rig_factory: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # Hyperliquid's row names its websocket streams; the venue table is data, so a row without
    # them is the venue as a stream-less one (the source builds its fuses from the table).
    monkeypatch.setitem(VENUES, "hyperliquid", without_streams(VENUES["hyperliquid"]))
    async with hl_rig_factory() as rig:
        config = FuseConfig.model_validate(
            {"name": "hl", "kind": "perp_dex", "venue": "hyperliquid", "markets": [HL_BTC, HL_ETH], "max_share": "0.5",
             "api_url": rig.server.url, "credentials": {"wallet_key": {"env": "UNSET_PAPER_WALLET_KEY_1"}}}
        )
        log = rig.venue.log
        source = CcxtMarketSource.from_configs([config], clock=LiveClock(), stale_after=STALE_AFTER)
        await source.start()
        try:
            before = log.count()
            await source.refresh()
            per_refresh = log.count() - before
        finally:
            await source.close()
        assert per_refresh >= 1

        source = CcxtMarketSource.from_configs([config], clock=LiveClock(), stale_after=STALE_AFTER)
        async with running(source):
            assert source.feeds == {}  # no mark stream on this venue
            first = LiveClock().now()
            await wait_for(lambda: all(source.readings["hl"][m].received > first for m in (HL_BTC, HL_ETH)))
            start, began = log.count(), asyncio.get_running_loop().time()
            await asyncio.sleep(0.6)
            requests, elapsed = log.count() - start, asyncio.get_running_loop().time() - began
            readings = source.readings["hl"]
            assert {r.source for r in readings.values()} == {"poll"}
            assert source.stale() == {}
            state = source.advance(LiveClock().now())["hl"][HL_BTC]
            assert state.funding_interval == timedelta(hours=1)
        # at most one refresh's requests per poll period (and one more for the period in progress)
        assert requests <= per_refresh * (elapsed / EVERY.total_seconds() + 1), (requests, per_refresh, elapsed)


async def test_an_unusable_reading_is_refused_and_the_market_ages(rig_factory: Any) -> None:
    async with rig_factory() as rig:
        source = CcxtMarketSource.from_configs([binance_config(rig.server.url)], clock=LiveClock(), stale_after=STALE_AFTER)
        try:
            await source.start()
            before = source.advance(LiveClock().now())["binance"][BTC]
            first = source.readings["binance"][BTC]
            take = source.on_update("binance")
            take(MarkUpdate(BTC, Decimal("0"), None, None, LiveClock().now(), "stream"))
            take(MarkUpdate(BTC, Decimal("NaN"), Decimal("1"), None, LiveClock().now(), "stream"))
        finally:
            await source.close()
        assert source.advance(LiveClock().now())["binance"][BTC] == before
        assert source.readings["binance"][BTC] == first  # not counted as fresh
        assert "mark price must be a positive finite Decimal" in source.last_error["binance"]
