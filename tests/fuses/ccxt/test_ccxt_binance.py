"""The ccxt fuse against the Binance USD-M emulator: errors by code, signatures, rate limits,
funding intervals from the venue, the mark-price stream, secrets kept out of reprs."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal
from typing import Any

import ccxt.pro as ccxtpro
import pytest

from alpha.domain.account import OrderRequest
from alpha.domain.instruments import Side
from fuses.base import FatalError, RateLimitedError, TransientError
from fuses.ccxt.client import point_urls
from fuses.ccxt.config import Secret
from fuses.emulators.common import EngineBackend, MarketView

MARKETS_50 = {f"C{i:02d}": str(100 + i) for i in range(50)}


async def test_wrong_secret_is_fatal_and_never_trades(rig_factory: Any) -> None:
    async with rig_factory(secret="not-the-secret") as rig:
        with pytest.raises(FatalError) as caught:
            await rig.fuse.account()
        assert caught.value.code == "-1022"
        assert rig.server.state.log.count(path="/fapi/v1/order") == 0


async def test_maintenance_and_5xx_are_transient(rig_factory: Any) -> None:
    async with rig_factory() as rig:
        rig.server.state.faults.maintenance = True
        with pytest.raises(TransientError):
            await rig.fuse.funding_rates()
        rig.server.state.faults.maintenance = False
        rig.server.state.faults.fail_next = 1
        with pytest.raises(TransientError):
            await rig.fuse.order_book("BTC/USDT:USDT")
        assert (await rig.fuse.order_book("BTC/USDT:USDT")).bids


async def test_overload_gets_429_with_retry_after_and_the_limiter_pauses(rig_factory: Any) -> None:
    async with rig_factory(weight_limit=30) as rig:
        limiter = rig.fuse.client.alpha_limiter
        # a second client sharing nothing with our limiter exhausts the emulator's budget
        other = ccxtpro.binanceusdm({"enableRateLimit": False, "urls": {"api": point_urls(ccxtpro.binanceusdm().urls["api"], rig.server.url)}})
        try:
            with pytest.raises(ccxtpro.DDoSProtection):
                for _ in range(10):
                    await other.fapiPublicGetPremiumIndex()
        finally:
            await other.close()
        with pytest.raises(RateLimitedError) as caught:
            await rig.fuse.funding_rates()
        assert caught.value.retry_after is not None and caught.value.retry_after >= 1
        assert limiter.stats.rate_limited == 1
        assert limiter._paused_until > 0


async def test_fifty_markets_steady_state_uses_under_ten_percent_of_the_budget(rig_factory: Any) -> None:
    markets = tuple(f"{a}/USDT:USDT" for a in MARKETS_50)
    async with rig_factory(MARKETS_50, markets=markets) as rig:
        log = rig.server.state.log
        await rig.fuse.funding_rates()  # warm the interval table
        log.clear()
        # one minute of a steady state: funding+marks every 10 s, account every 15 s
        for tick in range(6):
            await rig.fuse.funding_rates()
            await rig.fuse.marks()
            if tick % 3 == 0:
                await rig.fuse.account()
                await rig.fuse.account()
        weight = sum(e.weight for e in log.entries)
        share = Decimal(weight) / Decimal(2400)
        print(f"50 markets, one minute of steady state: {len(log.entries)} requests, weight {weight} of 2400 ({share:.1%})")
        assert log.count(status=429) == 0
        assert share < Decimal("0.10")
        assert log.count(path="/fapi/v1/premiumIndex") == 12  # one bulk request per refresh, not 50


class IntervalChangingBackend(EngineBackend):
    """The engine as a venue that moves BTC to a 4h interval once ``changed`` is set."""

    changed = False

    def market(self, symbol: str, now: Any) -> MarketView:
        view = super().market(symbol, now)
        if self.changed and symbol == "BTC/USDT:USDT" and view.funding is not None:
            funding = type(view.funding)(view.funding.rate, timedelta(hours=4), view.funding.next_settlement)
            return MarketView(view.instrument, view.mark, view.index, funding)
        return view


async def test_registry_notices_when_the_venue_changes_an_interval(rig_factory: Any) -> None:
    async with rig_factory(backend_factory=IntervalChangingBackend) as rig:
        first = await rig.fuse.funding_rates()
        assert first["BTC/USDT:USDT"].interval == timedelta(hours=8)
        rig.backend.changed = True
        rig.fuse._intervals_fetched = None  # the refresh period has passed
        second = await rig.fuse.funding_rates()
        assert second["BTC/USDT:USDT"].interval == timedelta(hours=4)
        assert second["ETH/USDT:USDT"].interval == timedelta(hours=8)
        [change] = rig.fuse.intervals.changes
        assert (change.market, change.old, change.new) == ("BTC/USDT:USDT", timedelta(hours=8), timedelta(hours=4))


async def test_mark_price_stream_carries_funding_rate_and_next_time(rig_factory: Any) -> None:
    async with rig_factory() as rig:
        client = rig.fuse.client
        tickers = await asyncio.wait_for(client.watch_mark_prices(["BTC/USDT:USDT"]), timeout=5)
        info = tickers["BTC/USDT:USDT"]["info"]
        rest = (await rig.fuse.funding_rates())["BTC/USDT:USDT"]
        assert Decimal(info["r"]) == rest.rate
        assert int(info["T"]) == int(rest.next_settlement.timestamp() * 1000)


async def test_transfer_moves_between_spot_and_futures_wallets(rig_factory: Any) -> None:
    async with rig_factory() as rig:
        before = (await rig.fuse.account()).balance("USDT").total
        await rig.fuse.transfer("USDT", Decimal("250"), "futures", "spot")
        after = (await rig.fuse.account()).balance("USDT").total
        assert before - after == Decimal("250")
        spot = rig.backend.account("alice.spot", rig.fuse.clock.now())
        assert spot.balance("USDT").total == Decimal("250")


async def test_reduce_only_closes_a_position(rig_factory: Any) -> None:
    async with rig_factory() as rig:
        await rig.fuse.submit(OrderRequest("open-1", "ETH/USDT:USDT", Side.SELL, Decimal("0.5")))
        await rig.fuse.submit(OrderRequest("close-1", "ETH/USDT:USDT", Side.BUY, Decimal("0.5"), reduce_only=True))
        assert (await rig.fuse.account()).position("ETH/USDT:USDT") is None


def test_secrets_never_show_in_reprs() -> None:
    secret = Secret("s3cr3t-value", "env:BINANCE_SECRET")
    assert "s3cr3t" not in repr(secret) and "s3cr3t" not in str(secret)
    assert "env:BINANCE_SECRET" in repr(secret)


def test_point_urls_keeps_paths_and_maps_websockets() -> None:
    urls = point_urls({"fapiPublic": "https://fapi.binance.com/fapi/v1", "ws": {"linear": "wss://fstream.binance.com/ws"}}, "http://127.0.0.1:9")
    assert urls == {"fapiPublic": "http://127.0.0.1:9/fapi/v1", "ws": {"linear": "ws://127.0.0.1:9/ws"}}


async def test_fuse_calls_leave_the_process_decimal_context_alone(rig_factory: Any) -> None:
    """ccxt sets the current decimal context to ROUND_HALF_UP with Underflow trapped while it
    rounds amounts; the fuse must keep that inside its own calls, or every Decimal in alpha
    (funding, fees, PnL) would change how it rounds after the first order."""
    import decimal

    with decimal.localcontext() as ours:
        ours.rounding = decimal.ROUND_HALF_EVEN
        ours.traps[decimal.Underflow] = False
        async with rig_factory() as rig:
            await rig.fuse.instruments()
            await rig.fuse.submit(OrderRequest("ctx-1", "BTC/USDT:USDT", Side.BUY, Decimal("0.002")))
            await rig.fuse.order_status("BTC/USDT:USDT", "ctx-1")
        after = decimal.getcontext()
        assert after.rounding == decimal.ROUND_HALF_EVEN
        assert not after.traps[decimal.Underflow]
        # and a bare ccxt call, for contrast, does change it: the guard is what keeps it intact
        ccxtpro.binanceusdm().decimal_to_precision("1.5", 0, 0)
        assert decimal.getcontext().rounding == decimal.ROUND_HALF_UP
