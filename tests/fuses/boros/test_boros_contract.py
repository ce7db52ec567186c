"""The Boros section of the contract suite: ``BorosFuse`` (real HTTP, real EIP-712 agent signatures)
against the Boros emulator on 127.0.0.1, on a simulated clock.

The market matures exactly 73 days (0.2 of a 365-day year) after the trade, so every booking of
the lite paper's arithmetic is exact at the venue's 18 decimals and the assertions are equalities.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import aiohttp
import pytest
from eth_account import Account

from alpha.domain.clock import SimulatedClock
from alpha.domain.instruments import Side
from alpha.domain.money import ZERO
from fuses.base import (
    FatalError,
    InsufficientFundsError,
    OrderNotFoundError,
    RejectedError,
    TransientError,
    UnknownOutcomeError,
)
from fuses.boros import parse
from fuses.boros.fuse import BOOK_TICK, BorosFuse, as_rate_venue
from fuses.boros.signing import place_order_calldata
from fuses.ccxt.parse import BadPayload
from fuses.emulators.boros import (
    BorosMarket,
    BorosVenue,
    create_app,
    emulator_of,
    encode_json,
    market_json,
    rate_at_tick,
)
from fuses.emulators.common import EmulatorServer

START = datetime(2026, 10, 1, tzinfo=UTC)
MATURITY = START + timedelta(days=73)
YEARS = Decimal("0.2")
PERIOD = timedelta(hours=8)
SYMBOL = "BINANCE-BTCUSDT-13DEC2026"
MID = Decimal("0.08")


@dataclass
class Rig:
    fuse: BorosFuse
    venue: BorosVenue
    clock: SimulatedClock
    server: EmulatorServer
    root: str


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    root, agent = Account.create(), Account.create()
    clock = SimulatedClock(START)
    venue = BorosVenue(tokens={1: "BTC"})
    venue.add_market(BorosMarket(2, 1, SYMBOL, "Binance", "BTCUSDT", MATURITY, MID), START)
    venue.fund(root.address, 1, Decimal(10))
    venue.approve_agent(root.address, agent.address, START + timedelta(days=400))
    async with EmulatorServer(create_app(venue, clock=clock)) as server:
        fuse = BorosFuse(server.url, root.address, agent.key.hex(), clock=clock, timeout=5.0)
        assert as_rate_venue(fuse).name == "boros"
        try:
            yield Rig(fuse, venue, clock, server, root.address)
        finally:
            await fuse.close()


def best_bid_tick(venue: BorosVenue) -> int:
    bids, _ = venue.markets[2].maker_ticks()
    return bids[0]


async def test_markets_parse_with_the_venues_exact_parameters(rig: Rig) -> None:
    (market,) = await rig.fuse.rate_markets()
    assert market.market == SYMBOL and market.asset == "BTC" and market.fuse == "boros"
    assert market.underlying == "binance:BTC/USDT:USDT"
    assert market.maturity == MATURITY and market.payment_period == PERIOD
    assert market.taker_fee_apr == Decimal("0.001")
    assert (market.im_factor, market.mm_factor) == (Decimal("0.5"), Decimal("0.25"))
    threshold = rate_at_tick(583, 2)
    assert market.im_floor == Decimal("0.5") * threshold and market.mm_floor == Decimal("0.25") * threshold
    assert market.max_leverage == 20 and market.tick_apr == BOOK_TICK
    assert market.years_left(START) == YEARS


async def test_book_is_in_implied_apr_ticks_sorted_and_uncrossed(rig: Rig) -> None:
    quote = await rig.fuse.rate_quote(SYMBOL)
    assert quote.mark_apr == MID
    assert quote.bids and quote.asks and quote.bids[0].apr < MID < quote.asks[0].apr
    assert [b.apr for b in quote.bids] == sorted((b.apr for b in quote.bids), reverse=True)
    assert all(level.size == Decimal(20) for level in quote.bids + quote.asks)
    # an aggregated long level is its tick's rate rounded down to the book's tick size
    assert quote.bids[0].apr <= rate_at_tick(best_bid_tick(rig.venue), 2) < quote.bids[0].apr + BOOK_TICK


async def test_a_short_swap_fills_at_the_books_apr_and_reads_back_exactly(rig: Rig) -> None:
    quote = await rig.fuse.rate_quote(SYMBOL)
    fill = await rig.fuse.swap(SYMBOL, Side.SELL, Decimal(5), quote.bids[0].apr, client_id="lock-1")
    apr = rate_at_tick(best_bid_tick(rig.venue), 2)
    assert fill.size == Decimal(-5) and fill.fixed_apr == apr and fill.client_id == "lock-1"
    assert fill.fee == Decimal(5) * YEARS * Decimal("0.001")
    account = await rig.fuse.rate_account("BTC")
    (position,) = account.positions
    assert position.market == SYMBOL and position.size == Decimal(-5) and position.fixed_apr == apr
    assert position.mark_apr == MID and position.unrealised == Decimal(-5) * MID * YEARS
    assert account.collateral == Decimal(10) + Decimal(5) * apr * YEARS - fill.fee
    (market,) = await rig.fuse.rate_markets()
    assert account.initial_margin == market.initial_margin(Decimal(5), MID, START)
    assert account.maintenance_margin == market.maintenance_margin(Decimal(5), MID, START)


async def test_a_locked_shorts_pnl_is_implied_minus_realised_times_size_and_time(rig: Rig) -> None:
    market = rig.venue.markets[2]
    times = [START + PERIOD * k for k in range(1, 220)]
    assert times[-1] == MATURITY
    rates = {t: Decimal("0.00008") + Decimal("0.00001") * (k % 7) - Decimal("0.00003") * (k % 3) for k, t in enumerate(times)}
    market.funding.update(rates)
    quote = await rig.fuse.rate_quote(SYMBOL)
    fill = await rig.fuse.swap(SYMBOL, Side.SELL, Decimal(5), quote.bids[0].apr, client_id="lock-pnl")
    start_collateral = Decimal(10) + Decimal(5) * fill.fixed_apr * YEARS - fill.fee
    paid = ZERO
    for k, t in enumerate(times, start=1):
        rig.clock.set(t)
        paid += Decimal(5) * rates[t]
        if k in (1, 2, 3, 100):  # several settlements read back on the way
            account = await rig.fuse.rate_account("BTC")
            assert account.collateral == start_collateral - paid
            assert account.positions[0].size == Decimal(-5)
    account = await rig.fuse.rate_account("BTC")
    assert account.positions == () and account.initial_margin == 0
    realised_apr = sum(rates.values(), ZERO) / YEARS
    pnl = account.collateral - Decimal(10)
    assert pnl == (fill.fixed_apr - realised_apr) * Decimal(5) * YEARS - fill.fee
    history = await rig.fuse.settlements(SYMBOL)
    assert [s.time for s in history] == times and [s.rate for s in history] == [rates[t] for t in times]
    assert all(s.size == Decimal(-5) for s in history)
    assert sum((s.amount for s in history), ZERO) == -Decimal(5) * sum(rates.values(), ZERO)


async def test_a_resting_order_shows_and_cancels(rig: Rig) -> None:
    order_id = await rig.fuse.rest(SYMBOL, Side.BUY, Decimal(1), Decimal("0.05"))
    assert [o.order_id for o in await rig.fuse.open_orders(SYMBOL)] == [order_id]
    quote = await rig.fuse.rate_quote(SYMBOL)
    assert any(level.size == 1 and Decimal("0.0499") <= level.apr <= Decimal("0.05") for level in quote.bids)
    await rig.fuse.cancel(SYMBOL, order_id)
    assert await rig.fuse.open_orders(SYMBOL) == []
    with pytest.raises(OrderNotFoundError):
        await rig.fuse.cancel(SYMBOL, order_id)


async def test_a_wrong_signer_or_a_tampered_order_is_refused(rig: Rig) -> None:
    stranger = BorosFuse(rig.server.url, rig.root, Account.create().key.hex(), clock=rig.clock)
    try:
        with pytest.raises(FatalError) as refused:
            await stranger.swap(SYMBOL, Side.SELL, Decimal(1), Decimal("0.01"), client_id="stranger")
        assert refused.value.code == "AuthInvalidMessage"
    finally:
        await stranger.close()
    await rig.fuse.rate_markets()
    call = rig.fuse._sign(place_order_calldata(2, 1, 10**18, 0, 2, Decimal(0)))
    tampered = {**call.body, "calldata": "0x" + place_order_calldata(2, 1, 10**20, 0, 2, Decimal(0)).hex()}
    async with aiohttp.ClientSession() as http, http.post(rig.server.url + "/send-txs-bot/v2/agent/direct-call", json=tampered) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"]["code"] == "AuthInvalidConnectionId"
    assert (await rig.fuse.rate_account("BTC")).positions == ()
    # the SDK's bulk relay tries each call on its own: the good one trades, the tampered one is refused
    good = rig.fuse._sign(place_order_calldata(2, 1, 10**18, 0, 2, Decimal(0)))
    tampered = {**rig.fuse._sign(place_order_calldata(2, 1, 10**18, 0, 2, Decimal(0))).body, "calldata": tampered["calldata"]}
    async with aiohttp.ClientSession() as http, http.post(rig.server.url + "/send-txs-bot/v2/agent/bulk-direct-call", json={"datas": [good.body, tampered]}) as resp:
        answers = await resp.json()
    assert answers[0]["status"] == "success" and answers[1] == {"error": "AuthInvalidConnectionId"}
    assert (await rig.fuse.rate_account("BTC")).positions[0].size == Decimal(-1)


async def test_an_expired_agent_is_refused_and_faults_surface_as_transient(rig: Rig) -> None:
    quote = await rig.fuse.rate_quote(SYMBOL)
    faults = emulator_of(rig.server.app).faults
    faults.fail_next = 1
    with pytest.raises(TransientError):
        await rig.fuse.rate_quote(SYMBOL)
    assert (await rig.fuse.rate_quote(SYMBOL)).bids == quote.bids
    rig.clock.set(START + timedelta(days=401))
    with pytest.raises(FatalError) as refused:
        await rig.fuse.swap(SYMBOL, Side.SELL, Decimal(1), quote.bids[0].apr, client_id="late")
    assert refused.value.code == "AuthAgentExpired"


async def test_a_swap_beyond_initial_margin_is_refused(rig: Rig) -> None:
    quote = await rig.fuse.rate_quote(SYMBOL)
    # 10 BTC covers |size| x 0.2 x 0.04 of initial margin up to about 1250 BTC of YU; ask for more than the book's depth allows cheaply
    rig.venue.markets[2].depth = Decimal(5000)
    with pytest.raises(InsufficientFundsError) as refused:
        await rig.fuse.swap(SYMBOL, Side.SELL, Decimal(2000), quote.bids[0].apr, client_id="too-big")
    assert refused.value.code == "MMInsufficientIM"
    account = await rig.fuse.rate_account("BTC")
    assert account.positions == () and account.collateral == Decimal(10)


async def test_a_retried_swap_with_the_same_client_id_trades_once(rig: Rig) -> None:
    quote = await rig.fuse.rate_quote(SYMBOL)
    first = await rig.fuse.swap(SYMBOL, Side.SELL, Decimal(1), quote.bids[0].apr, client_id="same")
    again = await rig.fuse.swap(SYMBOL, Side.SELL, Decimal(1), quote.bids[0].apr, client_id="same")
    assert again == first and len(rig.venue.calls) == 1
    # an answer lost after the venue executed: the retry resends the same signed call, which the nonce refuses
    faults = emulator_of(rig.server.app).faults
    faults.order_timeouts, faults.hang_seconds = 1, 8.0
    with pytest.raises(UnknownOutcomeError):
        await rig.fuse.swap(SYMBOL, Side.SELL, Decimal(2), quote.bids[0].apr, client_id="lost")
    retried = await rig.fuse.swap(SYMBOL, Side.SELL, Decimal(2), quote.bids[0].apr, client_id="lost")
    assert retried.size == Decimal(-2)
    assert [c.get("error") for c in rig.venue.calls] == [None, None, "AuthInvalidNonce"]
    account = await rig.fuse.rate_account("BTC")
    assert account.positions[0].size == Decimal(-3)


async def test_a_matured_market_is_not_offered_and_refuses_orders(rig: Rig) -> None:
    await rig.fuse.rate_markets()
    rig.clock.set(MATURITY + timedelta(hours=1))
    assert await rig.fuse.rate_markets() == []
    with pytest.raises(RejectedError) as refused:
        await rig.fuse.swap(SYMBOL, Side.SELL, Decimal(1), Decimal("0.01"), client_id="late")
    assert refused.value.code == "MarketMatured"


async def test_a_garbled_book_over_http_is_refused_and_nothing_trades(rig: Rig) -> None:
    rig.venue.markets[2].depth = Decimal(-1)  # the venue now publishes negative sizes
    with pytest.raises(BadPayload, match=r"book.long.sz\[0\]: negative"):
        await rig.fuse.rate_quote(SYMBOL)
    with pytest.raises(RejectedError):
        await rig.fuse.swap(SYMBOL, Side.SELL, Decimal(1), Decimal("Infinity"), client_id="inf")
    assert rig.venue.calls == []


def _market_row() -> dict[str, object]:
    venue = BorosVenue(tokens={1: "BTC"})
    market = venue.add_market(BorosMarket(2, 1, SYMBOL, "Binance", "BTCUSDT", MATURITY, MID), START)
    return json.loads(encode_json(market_json(venue, market, START)), parse_float=Decimal)  # type: ignore[no-any-return]


async def test_garbled_answers_are_refused_naming_the_field() -> None:
    with pytest.raises(BadPayload, match=r"book.long.ia"):
        parse.book({"long": {"ia": [5, 6], "sz": ["1", "1"]}, "short": {"ia": [], "sz": []}}, SYMBOL, BOOK_TICK, MID, START)
    with pytest.raises(BadPayload, match=r"book.short.sz\[0\]"):
        parse.book({"long": {"ia": [], "sz": []}, "short": {"ia": [5], "sz": ["1.5"]}}, SYMBOL, BOOK_TICK, MID, START)
    with pytest.raises(BadPayload, match=r"market.imData"):
        parse.market({"marketId": 2, "tokenId": 1}, {1: "BTC"}, fuse="boros", tick_apr=BOOK_TICK)
    with pytest.raises(BadPayload, match=r"market.state"):
        parse.market({**_market_row(), "state": "Sleeping"}, {1: "BTC"}, fuse="boros", tick_apr=BOOK_TICK)
    bare = parse.market({k: v for k, v in _market_row().items() if k != "metadata"}, {1: "BTC"}, fuse="boros", tick_apr=BOOK_TICK)
    assert bare.rate.underlying == "binance:BTC/USDT:USDT" and bare.rate.max_leverage == 1
    row = {"marketId": 2, "side": 0, "notionalSize": "-5000000000000000000", "fixedApr": MID, "markApr": MID,
           "positionValue": {"remainingPosition": "0"}}
    with pytest.raises(BadPayload, match=r"side"):
        parse.position(row, "p", "boros", {2: parse.MarketInfo(2, 1, 2, None)})  # type: ignore[arg-type]


async def test_alpha_emulate_boros_starts_and_answers_markets() -> None:
    root = Path(__file__).resolve().parents[3]
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "alpha.cli", "emulate", "boros", "--deposit", "3", "--for", "120",
        stdout=asyncio.subprocess.PIPE, env=env, cwd=str(root),
    )
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        while not lines or not lines[-1].startswith("test account funded"):
            line = await asyncio.wait_for(proc.stdout.readline(), timeout=60)
            assert line, f"alpha emulate boros exited early: {lines}"
            lines.append(line.decode().strip())
        url = lines[0].split("listening on ")[1].split()[0]
        root_address = lines[1].split()[-1]
        agent_key = lines[2].split()[-1]
        fuse = BorosFuse(url, root_address, agent_key)
        try:
            markets = await fuse.rate_markets()
            assert {m.asset for m in markets} == {"BTC", "ETH"}
            assert (await fuse.rate_account("BTC")).collateral == Decimal(3)
        finally:
            await fuse.close()
    finally:
        proc.terminate()
        await proc.wait()
