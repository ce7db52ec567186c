"""Binance emulator klines: the real ccxt client's fetch_ohlcv over the marks the venue has shown."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from alpha.domain.clock import SimulatedClock
from fuses.ccxt.client import build_client
from fuses.ccxt.config import CcxtSettings
from fuses.ccxt.ratelimit import forget_limiters
from fuses.ccxt.venues import VENUES
from fuses.emulators.binance import create_app
from fuses.emulators.common import EmulatorServer, EngineBackend, emulator_world

BTC = "BTC/USDT:USDT"


async def test_fetch_ohlcv_buckets_the_marks_shown_into_minute_candles() -> None:
    forget_limiters()
    clock = SimulatedClock(datetime(2026, 3, 1, 12, 0, tzinfo=UTC))
    world = emulator_world("binance", {"BTC": "60000"}, start=clock.now(), step="1m")
    backend = EngineBackend(world, "binance")
    server = await EmulatorServer(create_app(backend, clock=clock)).start()
    client = build_client(CcxtSettings(name="klines", venue="binanceusdm", markets=(BTC,), api_url=server.url), VENUES["binanceusdm"])
    try:
        await client.load_markets()
        shown: list[tuple[datetime, Decimal]] = []
        for _ in range(7):  # a mark every 30 s of venue time, each read through the public API
            rate = await client.fetch_funding_rate(BTC)
            shown.append((clock.now(), Decimal(str(rate["markPrice"]))))
            clock.advance(timedelta(seconds=30))

        candles = await client.fetch_ohlcv(BTC, "1m", since=int(shown[0][0].timestamp() * 1000), limit=10)

        by_minute: dict[datetime, list[Decimal]] = {}
        for ts, px in shown:
            by_minute.setdefault(ts.replace(second=0), []).append(px)
        assert [datetime.fromtimestamp(c[0] / 1000, UTC) for c in candles] == sorted(by_minute)
        for candle in candles:
            pxs = by_minute[datetime.fromtimestamp(candle[0] / 1000, UTC)]
            assert [Decimal(str(x)) for x in candle[1:5]] == [pxs[0], max(pxs), min(pxs), pxs[-1]]
        assert server.state.log.count(path="/fapi/v1/klines", status=200) == 1
    finally:
        await client.close()
        await server.stop()
        forget_limiters()
