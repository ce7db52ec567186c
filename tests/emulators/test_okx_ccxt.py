"""The OKX v5 emulator over the simulated engine, and the real ccxt ``okx`` client pointed at it."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import aiohttp
import ccxt.async_support as ccxt
import pytest

from alpha.domain.clock import SimulatedClock
from fuses.ccxt.client import point_urls
from fuses.emulators.common import EmulatorServer, EngineBackend, emulator_world
from fuses.emulators.okx import create_app, okx_state

KEY, SECRET, PASSPHRASE, ACCOUNT = "okx-key-1", "okx-secret-1", "okx-pass-1", "dave"
BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"
OPTIONS = {"defaultType": "swap", "fetchMarkets": {"types": ["swap"]}}


@dataclass
class Rig:
    server: EmulatorServer
    backend: EngineBackend
    clock: SimulatedClock
    monotonic: list[float]

    def client(self, key: str = KEY, secret: str = SECRET, password: str = PASSPHRASE, **options: Any) -> Any:
        return ccxt.okx({
            "apiKey": key, "secret": secret, "password": password, "enableRateLimit": False,
            "options": {**OPTIONS, **options},
            "urls": {"api": point_urls(ccxt.okx().urls["api"], self.server.url)},
        })


async def _rig(wall_offset: float = 0.0) -> Rig:
    # The venue's engine runs on a simulated clock (moved by tests to cross funding settlements);
    # signatures are checked against the wall clock, as OKX does. Rate limits run on a clock the
    # tests hold still, so that counting requests never depends on the machine's speed.
    clock = SimulatedClock(datetime.now(UTC).replace(microsecond=0))
    world = emulator_world("okx", {"BTC": "60000", "ETH": "3000"}, start=clock.now())
    backend = EngineBackend(world, "okx")
    backend.fund(ACCOUNT, "USDT", Decimal(100000), clock.now())
    monotonic = [1000.0]
    app = create_app(backend, clock=clock, accounts=[(KEY, SECRET, PASSPHRASE, ACCOUNT)],
                     wall=lambda: time.time() + wall_offset, monotonic=lambda: monotonic[0])
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


async def test_load_markets_reads_usdt_swaps_with_contract_values(rig: Rig, client: Any) -> None:
    markets = await client.load_markets()  # with keys set, ccxt also reads the signed currency list
    assert set(markets) == {BTC, ETH}
    btc, eth = markets[BTC], markets[ETH]
    engine = {i.symbol: i for i in rig.backend.instruments()}
    assert (btc["id"], btc["type"], btc["linear"], btc["settle"]) == ("BTC-USDT-SWAP", "swap", True, "USDT")
    assert (btc["contractSize"], eth["contractSize"]) == (0.01, 0.1)  # OKX's ctVal
    # the lot size is in contracts: contracts x ctVal is the engine's base step
    assert Decimal(str(btc["precision"]["amount"])) * Decimal("0.01") == engine[BTC].lot_step
    assert Decimal(str(eth["precision"]["amount"])) * Decimal("0.1") == engine[ETH].lot_step
    assert Decimal(str(btc["precision"]["price"])) == engine[BTC].tick_size
    assert "USDT" in client.currencies and "BTC" in client.currencies


async def test_funding_rate_carries_this_and_the_next_settlement(rig: Rig, client: Any) -> None:
    view = rig.backend.market(BTC, rig.clock.now())
    assert view.funding is not None
    one = await client.fetch_funding_rate(BTC)
    assert Decimal(one["info"]["fundingRate"]) == view.funding.rate
    assert one["fundingTimestamp"] == int(view.funding.next_settlement.timestamp() * 1000)
    assert one["nextFundingTimestamp"] - one["fundingTimestamp"] == 8 * 3_600_000
    assert one["interval"] == "8h" and one["nextFundingRate"] is None  # OKX publishes no next rate by default
    okx_state(rig.server.app).next_rates[BTC] = Decimal("0.00021")
    every = await client.fetch_funding_rates([BTC, ETH])  # instId=ANY
    assert set(every) == {BTC, ETH} and every[BTC]["nextFundingRate"] == 0.00021


async def test_a_changed_funding_interval_shows_in_the_settlement_times(rig: Rig, client: Any) -> None:
    rig.backend.set_funding_interval(BTC, timedelta(hours=4))
    rig.clock.advance(timedelta(minutes=2))
    btc, eth = await client.fetch_funding_rate(BTC), await client.fetch_funding_rate(ETH)
    assert btc["nextFundingTimestamp"] - btc["fundingTimestamp"] == 4 * 3_600_000 and btc["interval"] == "4h"
    assert eth["interval"] == "8h"


async def test_funding_settles_into_history_and_funding_fee_bills(rig: Rig, client: Any) -> None:
    await client.create_order(BTC, "market", "sell", 10, None, {"clientOrderId": "fundshort1"})  # 10 contracts = 0.1 BTC
    expected = rig.backend.market(BTC, rig.clock.now()).funding
    assert expected is not None
    since = int(rig.clock.now().timestamp() * 1000)
    rig.clock.advance(timedelta(hours=8, minutes=1))
    history = await client.fetch_funding_rate_history(BTC, since)
    assert [(h["timestamp"], Decimal(h["info"]["realizedRate"])) for h in history] == [
        (int(expected.next_settlement.timestamp() * 1000), expected.rate)
    ]
    [paid] = await client.fetch_funding_history(BTC, since)
    settled = rig.backend.funding_history(BTC, ACCOUNT)[0]
    assert Decimal(paid["info"]["balChg"]) == settled.amount and paid["info"]["type"] == "8"
    assert paid["info"]["subType"] == ("174" if settled.amount > 0 else "173") and paid["info"]["sz"] == "10"


async def test_order_book_sizes_are_contracts(rig: Rig, client: Any) -> None:
    book = await client.fetch_order_book(BTC, 5)
    engine = rig.backend.book(BTC, 5, rig.clock.now())
    assert len(book["bids"]) == 5 and book["bids"][0][0] < book["asks"][0][0]
    assert Decimal(str(book["bids"][0][1])) * Decimal("0.01") == engine.bids[0].quantity
    with pytest.raises(ccxt.BadRequest, match="51000"):  # OKX's books go to 400 levels
        await client.publicGetMarketBooks({"instId": "BTC-USDT-SWAP", "sz": "401"})


async def test_market_order_is_acknowledged_then_found_filled_by_client_id(rig: Rig, client: Any) -> None:
    ack = await client.create_order(BTC, "market", "sell", 8.3, None, {"clientOrderId": "hedge1"})
    assert ack["status"] is None and ack["clientOrderId"] == "hedge1" and ack["id"]  # OKX answers only the ids
    order = await client.fetch_order(None, BTC, {"clientOrderId": "hedge1"})
    assert (order["id"], order["status"], order["filled"], order["side"]) == (ack["id"], "closed", 8.3, "sell")
    assert order["average"] > 0 and order["fee"]["cost"] > 0 and order["fee"]["currency"] == "USDT"
    [position] = await client.fetch_positions()
    assert (position["symbol"], position["side"], position["contracts"], position["hedged"]) == (BTC, "short", 8.3, False)
    assert rig.backend.account(ACCOUNT, rig.clock.now()).position(BTC).size == Decimal("-0.083")  # type: ignore[union-attr]
    assert position["maintenanceMargin"] > 0 and position["initialMargin"] > 0


async def test_limit_order_rests_cancels_and_leaves_the_open_list(client: Any) -> None:
    await client.create_order(BTC, "limit", "buy", 1, 40000, {"clientOrderId": "rest1"})
    [resting] = await client.fetch_open_orders(BTC)
    assert (resting["clientOrderId"], resting["status"], resting["price"], resting["amount"]) == ("rest1", "open", 40000, 1)
    await client.cancel_order(None, BTC, {"clientOrderId": "rest1"})
    assert await client.fetch_open_orders(BTC) == []
    assert (await client.fetch_order(None, BTC, {"clientOrderId": "rest1"}))["status"] == "canceled"
    with pytest.raises(ccxt.OrderNotFound, match="51400"):
        await client.cancel_order(None, BTC, {"clientOrderId": "rest1"})
    with pytest.raises(ccxt.OrderNotFound, match="51603"):
        await client.fetch_order(None, BTC, {"clientOrderId": "neversent1"})


async def test_balance_is_the_trading_account_with_margin_after_a_fill(client: Any) -> None:
    before = await client.fetch_balance()
    assert before["USDT"]["total"] == 100000
    await client.create_order(BTC, "market", "buy", 20, None, {"clientOrderId": "bal1"})
    after = await client.fetch_balance()
    account = after["info"]["data"][0]
    assert Decimal(account["imr"]) > 0 and Decimal(account["mmr"]) > 0
    assert after["USDT"]["free"] < after["USDT"]["total"]


async def test_venue_refusals_carry_okx_codes(client: Any) -> None:
    with pytest.raises(ccxt.ExchangeError, match="51169"):  # reduce-only without a position (not in ccxt's table)
        await client.create_order(BTC, "market", "sell", 1, None, {"clientOrderId": "ro1", "reduceOnly": True})
    with pytest.raises(ccxt.InsufficientFunds, match="51008"):
        await client.create_order(BTC, "market", "buy", 10000, None, {"clientOrderId": "huge1"})
    await client.create_order(BTC, "market", "buy", 1, None, {"clientOrderId": "dup1"})
    with pytest.raises(ccxt.InvalidOrder, match="51016"):
        await client.create_order(BTC, "market", "buy", 1, None, {"clientOrderId": "dup1"})
    with pytest.raises(ccxt.BadRequest, match="51000"):  # OKX's clOrdId is alphanumeric
        await client.create_order(BTC, "market", "buy", 1, None, {"clientOrderId": "has-a-hyphen"})
    with pytest.raises(ccxt.InvalidOrder, match="51121"):  # ccxt rounds to the lot; the raw endpoint does not
        await client.privatePostTradeOrder({"instId": "BTC-USDT-SWAP", "tdMode": "cross", "side": "buy", "ordType": "market",
                                            "sz": "0.05", "clOrdId": "lot1"})


async def test_leverage_is_set_and_shown_on_the_position(client: Any, rig: Rig) -> None:
    await client.set_leverage(3, BTC, {"marginMode": "cross"})
    assert rig.backend.leverage(ACCOUNT, BTC) == Decimal(3)
    await client.set_leverage(3, BTC, {"marginMode": "cross"})  # unchanged: OKX answers success
    with pytest.raises(ccxt.ExchangeError, match="59102"):
        await client.set_leverage(101, BTC, {"marginMode": "cross"})
    await client.create_order(BTC, "market", "buy", 1, None, {"clientOrderId": "lev1"})
    [position] = await client.fetch_positions([BTC])
    assert position["leverage"] == 3 and position["marginMode"] == "cross"


async def test_bad_credentials_are_refused_with_okx_codes(rig: Rig) -> None:
    cases = ((KEY, "not-the-secret", PASSPHRASE, "50113"), ("unknown-key", SECRET, PASSPHRASE, "50111"),
             (KEY, SECRET, "not-the-passphrase", "50105"))
    for key, secret, password, code in cases:
        bad = rig.client(key, secret, password)
        try:
            await bad.load_markets()  # public instruments, then the signed currency list
        except ccxt.AuthenticationError as exc:
            assert f'"code":"{code}"' in str(exc)
        else:
            raise AssertionError(f"a bad credential was accepted (expected {code})")
        finally:
            await bad.close()
    assert okx_state(rig.server.app).orders == {}


async def test_a_request_signed_by_hand_must_sign_the_query_too(rig: Rig) -> None:
    import base64
    import hashlib
    import hmac

    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    path = "/api/v5/account/positions?instType=SWAP"

    def signed(message: str) -> dict[str, str]:
        sign = base64.b64encode(hmac.new(SECRET.encode(), message.encode(), hashlib.sha256).digest()).decode()
        return {"OK-ACCESS-KEY": KEY, "OK-ACCESS-SIGN": sign, "OK-ACCESS-TIMESTAMP": stamp, "OK-ACCESS-PASSPHRASE": PASSPHRASE}

    async with aiohttp.ClientSession() as http:
        async with http.get(rig.server.url + path, headers=signed(f"{stamp}GET{path}")) as good:
            assert good.status == 200 and (await good.json())["code"] == "0"
        async with http.get(rig.server.url + path, headers=signed(f"{stamp}GET/api/v5/account/positions")) as bad:
            assert bad.status == 401 and (await bad.json()) == {"code": "50113", "msg": "Invalid Sign.", "data": []}
        async with http.get(rig.server.url + path, headers={**signed(f"{stamp}GET{path}"), "OK-ACCESS-PASSPHRASE": ""}) as empty:
            assert (await empty.json())["code"] == "50104"


async def test_stale_timestamp_is_refused_with_50102() -> None:
    rig = await _rig(wall_offset=60.0)  # the venue's clock a minute ahead: our requests are stale
    client = rig.client()
    try:
        with pytest.raises(ccxt.InvalidNonce, match="50102"):
            await client.load_markets()
    finally:
        await client.close()
        await rig.server.stop()


async def test_per_endpoint_limit_answers_429_with_50011(rig: Rig, client: Any) -> None:
    await client.load_markets()
    for _ in range(10):  # OKX: 10 balance requests per 2 s per account (the limit clock stands still)
        await client.fetch_balance()
    with pytest.raises(ccxt.RateLimitExceeded, match="50011"):
        await client.fetch_balance()
    assert (await client.fetch_positions()) == []  # other endpoints keep their own limits
    rig.monotonic[0] += 2.5  # two seconds later the limit has room again
    await client.fetch_balance()
    assert okx_state(rig.server.app).limited == 1
    assert rig.server.state.log.count(status=429) == 1


async def test_chaos_faults_speak_okx(rig: Rig, client: Any) -> None:
    await client.load_markets()
    rig.server.state.faults.maintenance = True
    with pytest.raises(ccxt.OnMaintenance, match="50001"):
        await client.fetch_funding_rate(BTC)
    rig.server.state.faults.maintenance = False
    async with aiohttp.ClientSession() as http:
        fault = {"kind": "corrupt", "duration_s": 30, "endpoint": "/api/v5/public/funding-rate",
                 "edits": [{"path": ["data", 0, "fundingRate"], "value": "NaN-ish"}]}
        async with http.post(rig.server.url + "/_chaos/faults", json=fault) as answer:
            assert answer.status == 200
    corrupted = await client.fetch_funding_rate(BTC)
    assert corrupted["info"]["fundingRate"] == "NaN-ish" and corrupted["fundingRate"] is None
    assert (await client.fetch_funding_rate(BTC))["fundingRate"] is not None  # count 1: the next answer is clean
    rig.server.state.faults.fail_next = 1
    with pytest.raises(ccxt.ExchangeNotAvailable, match="50013"):
        await client.fetch_balance()


async def test_alpha_emulate_okx_serves_the_printed_credentials() -> None:
    import asyncio
    import os
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "alpha.cli", "emulate", "okx", "--key", "cli-key", "--secret", "cli-secret", "--passphrase", "cli-pass",
        "--deposit", "1234", "--for", "120", stdout=asyncio.subprocess.PIPE, env=env, cwd=str(root),
    )
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        while not lines or not lines[-1].startswith("test account funded"):
            line = await asyncio.wait_for(proc.stdout.readline(), timeout=60)
            assert line, f"alpha emulate okx exited early: {lines}"
            lines.append(line.decode().strip())
        url = lines[0].split("listening on ")[1].split()[0]
        assert "api passphrase: cli-pass" in lines and "ccxt venue: okx" in lines
        client = ccxt.okx({"apiKey": "cli-key", "secret": "cli-secret", "password": "cli-pass", "options": dict(OPTIONS),
                           "urls": {"api": point_urls(ccxt.okx().urls["api"], url)}})
        try:
            assert (await client.fetch_balance())["USDT"]["total"] == 1234
            assert "SOL/USDT:USDT" in client.markets
        finally:
            await client.close()
    finally:
        proc.terminate()
        await proc.wait()


def _pro(rig: Rig, password: str = PASSPHRASE) -> Any:
    import ccxt.pro as ccxtpro

    return ccxtpro.okx({
        # no currency list: load_markets makes no signed REST call, so the stream login is the first check
        "apiKey": KEY, "secret": SECRET, "password": password, "enableRateLimit": False, "has": {"fetchCurrencies": False},
        "options": dict(OPTIONS), "urls": {"api": point_urls(ccxtpro.okx().urls["api"], rig.server.url)},
    })


async def test_public_streams_push_tickers_funding_and_books5(rig: Rig) -> None:
    import asyncio

    client = _pro(rig)
    try:
        ticker = await asyncio.wait_for(client.watch_ticker(BTC), timeout=30)
        assert ticker["symbol"] == BTC and Decimal(ticker["info"]["last"]) == rig.backend.market(BTC, rig.clock.now()).mark
        funding = await asyncio.wait_for(client.watch_funding_rate(ETH), timeout=30)
        view = rig.backend.market(ETH, rig.clock.now()).funding
        assert view is not None and Decimal(funding["info"]["fundingRate"]) == view.rate
        assert funding["nextFundingTimestamp"] - funding["fundingTimestamp"] == 8 * 3_600_000
        book = await asyncio.wait_for(client.watch_order_book(BTC, 5), timeout=30)
        engine = rig.backend.book(BTC, 5, rig.clock.now())
        assert len(book["bids"]) == 5 and Decimal(str(book["bids"][0][1])) * Decimal("0.01") == engine.bids[0].quantity
    finally:
        await client.close()


async def test_private_streams_push_our_orders_and_positions_after_login(rig: Rig, client: Any) -> None:
    import asyncio

    pro = _pro(rig)
    try:
        await client.load_markets()
        watching = asyncio.create_task(pro.watch_orders(BTC))  # subscribed before or after the order: both are pushed
        await client.create_order(BTC, "market", "buy", 3, None, {"clientOrderId": "stream1"})
        orders = await asyncio.wait_for(watching, timeout=30)
        filled = [o for o in orders if o["clientOrderId"] == "stream1"]
        assert filled and filled[-1]["status"] == "closed" and filled[-1]["filled"] == 3
        positions = await asyncio.wait_for(pro.watch_positions(), timeout=30)
        assert [(p["symbol"], p["side"], p["contracts"]) for p in positions] == [(BTC, "long", 3)]
    finally:
        await pro.close()


async def test_stream_login_with_a_wrong_passphrase_is_refused_with_60024(rig: Rig) -> None:
    import asyncio

    pro = _pro(rig, password="not-the-passphrase")
    try:
        with pytest.raises(ccxt.AuthenticationError, match="60024"):
            await asyncio.wait_for(pro.watch_positions(), timeout=30)
    finally:
        await pro.close()


async def test_a_disconnect_fault_closes_open_streams(rig: Rig) -> None:
    import asyncio

    pro = _pro(rig)
    try:
        await asyncio.wait_for(pro.watch_ticker(BTC), timeout=30)
        assert len(rig.server.state.streams) == 1
        rig.server.state.faults.disconnect_streams += 1
        for _ in range(300):  # bounded wait on the condition (the push loop notices within one interval)
            if not rig.server.state.streams:
                break
            await asyncio.sleep(0.05)
        assert not rig.server.state.streams
    finally:
        await pro.close()


async def test_the_funding_rate_limit_counts_per_instrument(rig: Rig, client: Any) -> None:
    await client.load_markets()
    for _ in range(10):  # OKX: 10 funding-rate requests per 2 s per IP and instrument
        await client.fetch_funding_rate(BTC)
    with pytest.raises(ccxt.RateLimitExceeded, match="50011"):
        await client.fetch_funding_rate(BTC)
    assert (await client.fetch_funding_rate(ETH))["symbol"] == ETH  # another instrument has its own count


async def test_an_account_in_hedge_mode_refuses_orders_without_a_position_side(rig: Rig, client: Any) -> None:
    okx_state(rig.server.app).pos_mode[ACCOUNT] = "long_short_mode"
    assert (await client.fetch_position_mode(BTC))["hedged"] is True
    with pytest.raises(ccxt.BadRequest, match="51000"):
        await client.create_order(BTC, "market", "buy", 1, None, {"clientOrderId": "nopos1"})
    assert okx_state(rig.server.app).orders == {}
