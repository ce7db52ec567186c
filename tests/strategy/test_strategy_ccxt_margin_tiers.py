"""The ccxt fuse fills ``Instrument.margin_tiers`` from the venue's leverage brackets (opt-in).

Against the real ccxt client and the Binance USD-M emulator (GET /fapi/v1/leverageBracket),
so decide and plan size perp margin with the brackets the venue applies.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from alpha.domain.clock import LiveClock
from alpha.domain.margin import INFINITE, MarginTier, MarginTiers
from fuses.ccxt import parse
from fuses.ccxt.config import CcxtSettings, Secret
from fuses.ccxt.fuse import CcxtFuse
from fuses.ccxt.ratelimit import forget_limiters
from fuses.ccxt.venues import VENUES
from fuses.emulators.binance import create_app, serve
from fuses.emulators.common import EngineBackend, emulator_world

D = Decimal
KEY, SECRET, ACCOUNT = "tiers-key", "tiers-secret", "tiers"


async def _started_fuse(options: dict[str, str | int | bool]) -> tuple[CcxtFuse, object]:
    forget_limiters()
    clock = LiveClock()
    world = emulator_world("binance", {"BTC": "60000"}, start=clock.now())
    backend = EngineBackend(world, "binance")
    app = create_app(backend, clock=clock, accounts=[(KEY, SECRET, ACCOUNT)], stream_interval=0.05)
    server = await serve(app).start()
    settings = CcxtSettings(
        name="binance-tiers", venue="binanceusdm", markets=("BTC/USDT:USDT",), api_url=server.url,
        api_key=Secret(KEY, "test"), secret=Secret(SECRET, "test"), max_leverage=D(5), options=options,
    )
    fuse = CcxtFuse(settings, VENUES["binanceusdm"], clock=clock, timeout_ms=2000)
    await fuse.start()
    return fuse, server


async def test_ccxt_fuse_reads_the_venues_leverage_brackets_into_margin_tiers() -> None:
    fuse, server = await _started_fuse({"margin_tiers": True})
    try:
        (inst,) = await fuse.instruments()
    finally:
        await fuse.close()
        await server.stop()  # type: ignore[attr-defined]
        forget_limiters()
    # The emulator's brackets: 50x / 1% up to 1M, then 20x / 2.5% (the last tier unbounded).
    assert inst.margin_tiers == MarginTiers(
        (MarginTier(D("1000000"), D("50"), D("0.01")), MarginTier(INFINITE, D("20"), D("0.025")))
    )
    assert inst.initial_margin(D("2000000"), D("25")) == D("100000")  # held to 20x past 1M


async def test_without_the_option_margin_stays_notional_over_leverage() -> None:
    fuse, server = await _started_fuse({})
    try:
        (inst,) = await fuse.instruments()
    finally:
        await fuse.close()
        await server.stop()  # type: ignore[attr-defined]
        forget_limiters()
    assert inst.margin_tiers is None
    assert inst.initial_margin(D("2000000"), D("25")) == D("80000")


def test_parse_refuses_brackets_that_do_not_grow() -> None:
    raws = [
        {"minNotional": 0, "maxNotional": 500, "maxLeverage": 20, "maintenanceMarginRate": 0.01},
        {"minNotional": 0, "maxNotional": 100, "maxLeverage": 10, "maintenanceMarginRate": 0.02},
        {"minNotional": 500, "maxNotional": 1000, "maxLeverage": 5, "maintenanceMarginRate": 0.05},
    ]
    with pytest.raises(parse.BadPayload, match="grow in notional"):
        parse.margin_tiers(raws, "X/USDT:USDT")
    assert parse.margin_tiers([], "X/USDT:USDT") is None
