"""The Bybit v5 emulator over the simulated engine, and the real ccxt ``bybit`` client pointed at it."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import ccxt.async_support as ccxt
import pytest

from alpha.domain.clock import SimulatedClock
from fuses.ccxt.client import point_urls
from fuses.emulators.bybit import bybit_state, create_app
from fuses.emulators.common import EmulatorServer, EngineBackend, emulator_world

KEY, SECRET, ACCOUNT = "bybit-key-1", "bybit-secret-1", "carol"
BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"
OPTIONS = {"defaultType": "swap", "fetchMarkets": {"types": ["linear"]}}


@dataclass
class Rig:
    server: EmulatorServer
    backend: EngineBackend
    clock: SimulatedClock
    monotonic: list[float]

    def client(self, key: str = KEY, secret: str = SECRET) -> Any:
        return ccxt.bybit({
            "apiKey": key, "secret": secret, "enableRateLimit": False, "options": dict(OPTIONS),
            "urls": {"api": point_urls(ccxt.bybit().urls["api"], self.server.url)},
        })


async def _rig(wall_offset: float = 0.0, ip_limit: int = 600) -> Rig:
    # The venue's engine runs on a simulated clock (moved by tests to cross funding settlements);
    # signatures are checked against the wall clock, as Bybit does. Rate limits run on a clock
    # the tests hold still, so that counting requests never depends on the machine's speed.
    clock = SimulatedClock(datetime.now(UTC).replace(microsecond=0))
    world = emulator_world("bybit", {"BTC": "60000", "ETH": "3000"}, start=clock.now())
    backend = EngineBackend(world, "bybit")
    backend.fund(ACCOUNT, "USDT", Decimal(100000), clock.now())
    monotonic = [1000.0]
    app = create_app(backend, clock=clock, accounts=[(KEY, SECRET, ACCOUNT)], wall=lambda: time.time() + wall_offset,
                     monotonic=lambda: monotonic[0], ip_limit=ip_limit)
    return Rig(await EmulatorServer(app).start(), backend, clock, monotonic)


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    r = await _rig()
    try:
        yield r
    finally:
        await r.server.stop()


@pytest.fixture
async def client(rig: Rig) -> AsyncIterator[Any]:
    exchange = rig.client()
    try:
        yield exchange
    finally:
        await exchange.close()


async def test_load_markets_reads_linear_perps_with_exact_filters(rig: Rig, client: Any) -> None:
    markets = await client.load_markets()
    assert set(markets) == {BTC, ETH}
    btc = markets[BTC]
    engine = {i.symbol: i for i in rig.backend.instruments()}[BTC]
    assert (btc["id"], btc["type"], btc["linear"], btc["settle"]) == ("BTCUSDT", "swap", True, "USDT")
    assert Decimal(str(btc["precision"]["price"])) == engine.tick_size
    assert Decimal(str(btc["precision"]["amount"])) == engine.lot_step
    assert btc["info"]["fundingInterval"] == 480  # minutes, Bybit's field


async def test_order_book_is_sorted_uncrossed_and_limited(client: Any) -> None:
    book = await client.fetch_order_book(BTC, 5)
    assert len(book["bids"]) == 5 and len(book["asks"]) == 5
    assert [b[0] for b in book["bids"]] == sorted((b[0] for b in book["bids"]), reverse=True)
    assert book["bids"][0][0] < book["asks"][0][0]
    with pytest.raises(ccxt.BadRequest):  # retCode 10001: limit beyond Bybit's 500
        await client.fetch_order_book(BTC, 501)


async def test_funding_rates_carry_the_engine_rate_next_time_and_interval(rig: Rig, client: Any) -> None:
    rates = await client.fetch_funding_rates([BTC, ETH])
    view = rig.backend.market(BTC, rig.clock.now())
    assert view.funding is not None
    btc = rates[BTC]
    assert Decimal(btc["info"]["fundingRate"]) == view.funding.rate
    assert btc["fundingTimestamp"] == int(view.funding.next_settlement.timestamp() * 1000)
    assert btc["interval"] == "8h"
    one = await client.fetch_funding_rate(ETH)
    assert one["symbol"] == ETH and one["fundingRate"] is not None


async def test_funding_settles_every_eight_hours_into_history_and_our_payments(rig: Rig, client: Any) -> None:
    await client.create_order(BTC, "market", "buy", 0.1, None, {"clientOrderId": "fund-long-1"})
    expected = rig.backend.market(BTC, rig.clock.now()).funding
    assert expected is not None
    since = int(rig.clock.now().timestamp() * 1000)
    rig.clock.advance(timedelta(hours=8, minutes=1))
    history = await client.fetch_funding_rate_history(BTC, since)
    assert [(h["timestamp"], Decimal(h["info"]["fundingRate"])) for h in history] == [
        (int(expected.next_settlement.timestamp() * 1000), expected.rate)
    ]
    [paid] = await client.fetch_funding_history(BTC, since)
    settled = rig.backend.funding_history(BTC, ACCOUNT)[0]
    assert paid["info"]["execType"] == "Funding"
    assert Decimal(paid["info"]["execFee"]) == -settled.amount  # Bybit: positive is paid
    assert Decimal(paid["info"]["feeRate"]) == expected.rate


async def test_balance_is_the_unified_wallet_and_margin_shows_after_a_fill(client: Any) -> None:
    before = await client.fetch_balance({"type": "unified"})
    assert before["USDT"]["total"] == 100000
    await client.create_order(BTC, "market", "buy", 0.2, None, {"clientOrderId": "bal-1"})
    after = await client.fetch_balance({"type": "unified"})
    account = after["info"]["result"]["list"][0]
    assert account["accountType"] == "UNIFIED"
    assert Decimal(account["totalInitialMargin"]) > 0 and Decimal(account["totalMaintenanceMargin"]) > 0
    assert after["USDT"]["used"] > 0 and after["USDT"]["free"] < after["USDT"]["total"]


async def test_market_order_is_acknowledged_then_found_filled_by_order_link_id(client: Any) -> None:
    ack = await client.create_order(BTC, "market", "sell", 0.083, None, {"clientOrderId": "hedge-1"})
    assert ack["status"] is None and ack["clientOrderId"] == "hedge-1"  # Bybit answers only the ids
    [order] = await client.fetch_open_orders(BTC, None, None, {"orderLinkId": "hedge-1"})
    assert (order["id"], order["status"], order["filled"], order["side"]) == (ack["id"], "closed", 0.083, "sell")
    assert order["average"] > 0 and order["fee"]["currency"] == "USDT"
    [position] = await client.fetch_positions()
    assert (position["symbol"], position["side"], position["contracts"]) == (BTC, "short", 0.083)
    with pytest.raises(ccxt.ArgumentsRequired):  # ccxt's own rule for Bybit: at most one symbol
        await client.fetch_positions([BTC, ETH])


async def test_limit_order_rests_cancels_and_moves_to_history(client: Any) -> None:
    await client.create_order(BTC, "limit", "buy", 0.01, 40000, {"clientOrderId": "rest-1"})
    [resting] = await client.fetch_open_orders(BTC)
    assert (resting["clientOrderId"], resting["status"], resting["price"]) == ("rest-1", "open", 40000)
    await client.cancel_order(None, BTC, {"orderLinkId": "rest-1"})
    assert await client.fetch_open_orders(BTC) == []
    [closed] = await client.fetch_canceled_and_closed_orders(BTC, None, None, {"orderLinkId": "rest-1"})
    assert closed["status"] == "canceled"
    with pytest.raises(ccxt.OrderNotFound):  # retCode 110001
        await client.cancel_order(None, BTC, {"orderLinkId": "rest-1"})


async def test_trades_show_in_the_execution_list(client: Any) -> None:
    await client.create_order(ETH, "market", "buy", 1, None, {"clientOrderId": "exec-1"})
    trades = await client.fetch_my_trades(ETH)
    assert [(t["order"] is not None, t["side"], t["amount"]) for t in trades] == [(True, "buy", 1.0)]


async def test_venue_refusals_carry_bybit_codes(client: Any) -> None:
    with pytest.raises(ccxt.InvalidOrder, match="110017"):  # reduce-only without a position
        await client.create_order(BTC, "market", "sell", 0.01, None, {"clientOrderId": "ro-1", "reduceOnly": True})
    with pytest.raises(ccxt.InsufficientFunds, match="110007"):
        await client.create_order(BTC, "market", "buy", 100, None, {"clientOrderId": "huge-1"})
    await client.create_order(BTC, "market", "buy", 0.01, None, {"clientOrderId": "dup-1"})
    with pytest.raises(ccxt.InvalidOrder, match="110072"):
        await client.create_order(BTC, "market", "buy", 0.01, None, {"clientOrderId": "dup-1"})


async def test_leverage_and_margin_mode(client: Any, rig: Rig) -> None:
    await client.set_leverage(3, BTC)
    assert rig.backend.leverage(ACCOUNT, BTC) == Decimal(3)
    with pytest.raises(ccxt.BadRequest, match="110043"):  # not modified
        await client.set_leverage(3, BTC)
    with pytest.raises(ccxt.BadRequest, match="10001"):
        await client.set_leverage(101, BTC)
    answer = await client.set_margin_mode("cross", BTC)
    assert answer["retCode"] == 0
    [position] = [p for p in (await client.fetch_positions([BTC])) if p["symbol"] == BTC]
    assert position["leverage"] == 3 and position["contracts"] == 0


async def test_bad_signature_and_unknown_key_are_authentication_errors(rig: Rig) -> None:
    for key, secret, code in ((KEY, "not-the-secret", "10004"), ("unknown-key", SECRET, "10003")):
        bad = rig.client(key, secret)
        try:
            await bad.load_markets()  # public instruments, then the signed coin list
        except ccxt.AuthenticationError as exc:
            assert f'"retCode":{code}' in str(exc)
        else:
            raise AssertionError("a bad credential was accepted")
        finally:
            await bad.close()
    assert bybit_state(rig.server.app).orders == {}


async def test_stale_timestamp_is_refused_with_10002() -> None:
    rig = await _rig(wall_offset=60.0)  # the venue's clock a minute ahead: our requests are stale
    client = rig.client()
    try:
        with pytest.raises(ccxt.InvalidNonce, match="10002"):
            await client.load_markets()
    finally:
        await client.close()
        await rig.server.stop()


async def test_per_uid_limit_answers_10006_and_the_ip_limit_403() -> None:
    rig = await _rig(ip_limit=40)
    client = rig.client()
    try:
        await client.load_markets()
        for n in range(10):  # Bybit's 10 orders per second per UID (the limit clock stands still)
            await client.create_order(BTC, "limit", "buy", 0.01, 40000, {"clientOrderId": f"rl-{n}"})
        with pytest.raises(ccxt.RateLimitExceeded, match="10006"):
            await client.create_order(BTC, "limit", "buy", 0.01, 40000, {"clientOrderId": "rl-10"})
        rig.monotonic[0] += 1.5  # a second later the UID limit has room again
        await client.create_order(BTC, "limit", "buy", 0.01, 40000, {"clientOrderId": "rl-11"})
        with pytest.raises(ccxt.RateLimitExceeded, match="403"):
            for _ in range(40):
                await client.fetch_order_book(BTC, 5)
        assert bybit_state(rig.server.app).limited == 2
    finally:
        await client.close()
        await rig.server.stop()


async def test_chaos_maintenance_is_exchange_not_available(rig: Rig, client: Any) -> None:
    await client.load_markets()
    rig.server.state.faults.maintenance = True
    with pytest.raises(ccxt.ExchangeNotAvailable):
        await client.fetch_funding_rates([BTC, ETH])
    rig.server.state.faults.maintenance = False
    assert await client.fetch_funding_rates([BTC, ETH])
