"""The emulators' chaos API (``fuses/emulators/README.md``), exercised with the real ccxt clients.

Both emulators run on the real engine (``tests.chaos.venues``, the chaos suite's venues); each
fault kind is posted through ``POST /_chaos/faults`` and the real ccxt client must meet it as it
would meet the real venue: the ccxt error class it raises, what the venue booked (read from the
order log ``GET /_chaos/orders`` and ``GET /_chaos/positions``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import aiohttp
import ccxt.async_support as ccxt
import pytest

from fuses.ccxt.client import point_urls
from fuses.ccxt.venues import VENUES
from tests.chaos.venues import BINANCE_KEY, BINANCE_SECRET, BTC_PRICE, SYMBOLS, ChaosVenues, start_venues

BOTH = ("binance", "hyperliquid")
SIZE = 0.01


@pytest.fixture
async def venues() -> AsyncIterator[ChaosVenues]:
    v = await start_venues()
    try:
        yield v
    finally:
        await v.stop()


def _client(v: ChaosVenues, venue: str, timeout_ms: int = 5000) -> Any:
    """The real ccxt client of ``venue`` with the options alpha's fuse gives it, pointed at the emulator."""
    if venue == "binance":
        client = ccxt.binanceusdm({"apiKey": BINANCE_KEY, "secret": BINANCE_SECRET, "enableRateLimit": False, "timeout": timeout_ms,
                                   "options": dict(VENUES["binanceusdm"].ccxt_options)})
        client.urls["api"] = point_urls(client.urls["api"], v.binance.url)
        return client
    url = v.hyperliquid.url
    return ccxt.hyperliquid({"privateKey": v.wallet_key, "walletAddress": v.wallet_address, "enableRateLimit": False, "timeout": timeout_ms,
                             "options": {**VENUES["hyperliquid"].ccxt_options, "fetchMarkets": {"types": ["swap"]}},
                             "urls": {"api": {"public": url, "private": url}}})


@pytest.fixture
async def clients(venues: ChaosVenues) -> AsyncIterator[dict[str, Any]]:
    made = {venue: _client(venues, venue) for venue in BOTH}
    try:
        for client in made.values():
            await client.load_markets()
        yield made
    finally:
        for client in made.values():
            await client.close()


def _cid(venue: str, n: int) -> str:
    return f"chaos-{n}" if venue == "binance" else "0x" + f"{n:032x}"


async def _buy(client: Any, venue: str, n: int, size: float = SIZE) -> Any:
    """A market buy of ``size`` BTC with client id ``n`` (Hyperliquid needs a price: its market orders are IOC limits)."""
    if venue == "binance":
        return await client.create_order(SYMBOLS[venue], "market", "buy", size, None, {"newClientOrderId": _cid(venue, n)})
    return await client.create_order(SYMBOLS[venue], "market", "buy", size, float(BTC_PRICE), {"clientOrderId": _cid(venue, n)})


async def _position(v: ChaosVenues, venue: str) -> Decimal:
    accounts = (await v.call(venue, "GET", "positions"))["accounts"]
    return sum((Decimal(p["size"]) for p in accounts.get("us", [])), Decimal(0))


async def _until_no_faults(v: ChaosVenues, bound: float = 30.0) -> None:
    end = time.monotonic() + bound
    while await v.faults_pending():
        assert time.monotonic() < end, "the faults did not run their course"
        await asyncio.sleep(0.05)


async def test_a_fault_is_posted_listed_and_cleared(venues: ChaosVenues) -> None:
    fault_id = await venues.post_fault("binance", kind="latency", duration_s=60, latency_ms=5)
    armed = await venues.post_fault("binance", kind="maintenance", duration_s=5, trigger="order", after_orders=2)
    listed = (await venues.call("binance", "GET", "faults"))["faults"]
    assert [(f["id"], f["kind"], f["state"]) for f in listed] == [(fault_id, "latency", "active"), (armed, "maintenance", "armed")]
    assert (await venues.call("binance", "DELETE", "faults")) == {"cleared": 2}
    assert (await venues.call("binance", "GET", "faults"))["faults"] == []


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"kind": "meteor", "duration_s": 1}, "kind: expected one of"),
        ({"kind": "latency", "duration_s": 1}, "latency_ms: required"),
        ({"kind": "partial_fills", "duration_s": 1, "fill_ratio": 0.5}, "fill_ratio: expected a decimal string"),
        ({"kind": "5xx", "duration_s": -1}, "duration_s: expected a number"),
        ({"kind": "5xx", "duration_s": 1, "after_orders": 2}, 'after_orders: only with trigger "order"'),
        ({"kind": "5xx", "duration_s": 1, "colour": "red"}, "unknown field(s): colour"),
    ],
)
async def test_a_bad_fault_request_is_refused_with_the_field_named(venues: ChaosVenues, body: dict[str, Any], problem: str) -> None:
    async with venues.http.post(f"{venues.hyperliquid.url}/_chaos/faults", json=body) as resp:
        assert resp.status == 400
        assert problem in (await resp.json())["error"]
    assert (await venues.call("hyperliquid", "GET", "faults"))["faults"] == []


@pytest.mark.parametrize(
    ("venue", "status", "error"),
    [
        ("binance", 503, ccxt.OperationFailed),  # {"code": -1001, "msg": "Internal error; ..."}: ccxt's class for -1001
        ("binance", 502, ccxt.ExchangeNotAvailable),  # the gateway's HTML page
        ("hyperliquid", 503, ccxt.ExchangeNotAvailable),
        ("hyperliquid", 502, ccxt.ExchangeNotAvailable),
    ],
)
async def test_5xx_answers_private_calls_only(venues: ChaosVenues, clients: dict[str, Any], venue: str, status: int, error: type[Exception]) -> None:
    client = clients[venue]
    await venues.post_fault(venue, kind="5xx", duration_s=30, status=status)
    with pytest.raises(error):
        await client.fetch_balance()
    with pytest.raises(error):
        await _buy(client, venue, 1)
    assert (await client.fetch_funding_rate(SYMBOLS[venue]))["symbol"] == SYMBOLS[venue], "public calls keep answering"
    assert (await venues.orders())[venue] == [], "nothing reached the venue's book"


@pytest.mark.parametrize("venue", BOTH)
async def test_timeout_after_accept_books_the_order_and_the_client_times_out(venues: ChaosVenues, venue: str) -> None:
    client = _client(venues, venue, timeout_ms=1000)
    try:
        await client.load_markets()
        await venues.post_fault(venue, kind="timeout_after_accept", duration_s=30, trigger="order", hang_s=3)
        with pytest.raises(ccxt.RequestTimeout):
            await _buy(client, venue, 7)
    finally:
        await client.close()
    [booked] = (await venues.orders())[venue]
    assert booked["client_id"] == _cid(venue, 7) and booked["side"] == "BUY" and Decimal(booked["size"]) == Decimal(str(SIZE))
    assert booked["faults"] == ["timeout_after_accept"]
    assert await _position(venues, venue) == Decimal(str(SIZE)), "the order the client gave up on was filled"


@pytest.mark.parametrize("venue", BOTH)
async def test_disconnect_closes_the_connection_without_an_answer(venues: ChaosVenues, clients: dict[str, Any], venue: str) -> None:
    await venues.post_fault(venue, kind="disconnect", duration_s=30)
    with pytest.raises(ccxt.NetworkError) as caught:
        await _buy(clients[venue], venue, 2)
    assert not isinstance(caught.value, ccxt.RequestTimeout), "a dropped connection, not a slow answer"
    assert (await venues.orders())[venue] == []
    assert await _position(venues, venue) == 0


async def test_disconnect_drops_the_binance_streams(venues: ChaosVenues) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{venues.binance.ws_url}/ws") as ws:
        await ws.send_json({"method": "SUBSCRIBE", "params": ["btcusdt@markPrice"], "id": 1})
        assert (await ws.receive_json(timeout=10))["id"] == 1
        await venues.post_fault("binance", kind="disconnect", duration_s=30)
        while not ws.closed:
            message = await ws.receive(timeout=10)
            if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                break
        assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)


@pytest.mark.parametrize(("venue", "error"), [("binance", ccxt.OnMaintenance), ("hyperliquid", ccxt.ExchangeNotAvailable)])
async def test_maintenance_answers_as_the_venue_does(venues: ChaosVenues, clients: dict[str, Any], venue: str, error: type[Exception]) -> None:
    await venues.post_fault(venue, kind="maintenance", duration_s=30)
    with pytest.raises(error):
        await _buy(clients[venue], venue, 3)
    with pytest.raises(error):
        await clients[venue].fetch_funding_rate(SYMBOLS[venue])
    if venue == "binance":
        async with venues.http.get(f"{venues.binance.url}/fapi/v1/time") as resp:
            assert (resp.status, await resp.json()) == (503, {"code": 1, "msg": "System is under maintenance."})


@pytest.mark.parametrize("venue", BOTH)
async def test_maintenance_triggered_by_orders_starts_mid_trade_and_ends(venues: ChaosVenues, clients: dict[str, Any], venue: str) -> None:
    client = clients[venue]
    await venues.post_fault(venue, kind="maintenance", duration_s=1.5, trigger="order", after_orders=1)
    await _buy(client, venue, 10)  # the first order goes through
    with pytest.raises(ccxt.ExchangeNotAvailable):
        await _buy(client, venue, 11)  # the second starts the maintenance and meets it
    await _until_no_faults(venues)
    await _buy(client, venue, 12)  # back after duration_s
    assert [o["client_id"] for o in (await venues.orders())[venue]] == [_cid(venue, 10), _cid(venue, 12)]
    assert await _position(venues, venue) == 2 * Decimal(str(SIZE))


@pytest.mark.parametrize("venue", BOTH)
async def test_partial_fills_fill_only_the_ratio(venues: ChaosVenues, clients: dict[str, Any], venue: str) -> None:
    await venues.post_fault(venue, kind="partial_fills", duration_s=30, fill_ratio="0.5")
    order = await _buy(clients[venue], venue, 4, size=0.02)
    assert await _position(venues, venue) == Decimal("0.01")
    if venue == "binance":
        assert order["filled"] == pytest.approx(0.01)
    [logged] = (await venues.orders())[venue]
    assert logged["faults"] == ["partial_fills"] and Decimal(logged["size"]) == Decimal("0.02")


@pytest.mark.parametrize("venue", BOTH)
async def test_rate_limit_storm_answers_429_with_retry_after_everywhere(venues: ChaosVenues, clients: dict[str, Any], venue: str) -> None:
    await venues.post_fault(venue, kind="rate_limit_storm", duration_s=30)
    # ccxt 4.5.90 raises DDoSProtection for Binance's 429 (its handle_errors), RateLimitExceeded for Hyperliquid's
    # (the generic HTTP table); the two are siblings under NetworkError
    limited = ccxt.DDoSProtection if venue == "binance" else ccxt.RateLimitExceeded
    with pytest.raises(limited):
        await clients[venue].fetch_funding_rate(SYMBOLS[venue])
    with pytest.raises(limited):
        await _buy(clients[venue], venue, 5)
    assert (await venues.orders())[venue] == []
    url = f"{venues.binance.url}/fapi/v1/time" if venue == "binance" else f"{venues.hyperliquid.url}/info"
    async with venues.http.request("GET" if venue == "binance" else "POST", url, json=None if venue == "binance" else {"type": "meta"}) as resp:
        assert resp.status == 429
        assert 1 <= int(resp.headers["Retry-After"]) <= 30
        if venue == "binance":
            assert (await resp.json())["code"] == -1003


@pytest.mark.parametrize("venue", BOTH)
async def test_latency_delays_every_answer(venues: ChaosVenues, clients: dict[str, Any], venue: str) -> None:
    await venues.post_fault(venue, kind="latency", duration_s=30, latency_ms=400)
    started = time.monotonic()
    await clients[venue].fetch_funding_rate(SYMBOLS[venue])
    assert time.monotonic() - started >= 0.4


@pytest.mark.parametrize("venue", BOTH)
async def test_the_order_log_and_positions_show_what_the_venue_received(venues: ChaosVenues, clients: dict[str, Any], venue: str) -> None:
    await _buy(clients[venue], venue, 20)
    with pytest.raises(ccxt.ExchangeError):  # the same client id again: the venue refuses it, and the log shows it twice
        await _buy(clients[venue], venue, 20)
    log = (await venues.orders())[venue]
    assert [(o["client_id"], o["status"].lower()) for o in log] == [(_cid(venue, 20), "filled"), (_cid(venue, 20), "rejected")]
    [position] = (await venues.call(venue, "GET", "positions"))["accounts"]["us"]
    assert Decimal(position["notional"]) == Decimal(position["size"]) * Decimal(position["mark"]) == Decimal("0.01") * BTC_PRICE
