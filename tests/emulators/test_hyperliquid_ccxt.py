"""The real ccxt hyperliquid client against the Hyperliquid emulator over the simulated engine."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from decimal import Decimal
from typing import Any

import aiohttp
import ccxt.async_support as ccxt
import pytest
from eth_account import Account

from alpha.domain.instruments import Side
from fuses.emulators import hyperliquid_signing as signing

from .conftest import DEPOSIT, MARKS, RATES, Rig

BTC = "BTC/USDC:USDC"
ETH = "ETH/USDC:USDC"


def cloid(n: int) -> str:
    return "0x" + f"{n:032x}"


async def test_markets_load_with_the_venue_precision(client: Any, rig: Rig) -> None:
    markets = await client.load_markets()

    btc = markets[BTC]
    assert btc["swap"] and btc["linear"] and btc["settle"] == "USDC"
    assert Decimal(str(btc["precision"]["amount"])) == rig.engine.instruments[BTC].lot_step
    assert btc["baseId"] == "0" and markets[ETH]["baseId"] == "1"


async def test_funding_is_hourly_with_the_engine_rate_mark_and_oracle(client: Any, rig: Rig) -> None:
    rate = await client.fetch_funding_rate(BTC)

    assert rate["interval"] == "1h"
    assert Decimal(str(rate["fundingRate"])) == RATES[BTC]
    assert Decimal(str(rate["markPrice"])) == MARKS[BTC]
    assert Decimal(str(rate["indexPrice"])) == MARKS[BTC] * Decimal("0.9995")
    assert rate["fundingTimestamp"] % 3_600_000 == 0


async def test_order_book_is_the_engine_book(client: Any, rig: Rig) -> None:
    book = await client.fetch_order_book(BTC)

    engine_book = rig.engine.book(BTC)
    assert Decimal(str(book["bids"][0][0])) == engine_book.bids[0].price
    assert Decimal(str(book["asks"][0][0])) == engine_book.asks[0].price
    assert Decimal(str(book["asks"][0][1])) == engine_book.asks[0].quantity


async def test_account_shows_the_deposit_and_then_the_position(client: Any, rig: Rig) -> None:
    balance = await client.fetch_balance()
    assert Decimal(str(balance["USDC"]["total"])) == DEPOSIT

    await client.create_order(BTC, "market", "sell", 0.01, float(MARKS[BTC]), {"clientOrderId": cloid(1)})
    positions = await client.fetch_positions([BTC])

    assert len(positions) == 1
    assert positions[0]["side"] == "short" and Decimal(str(positions[0]["contracts"])) == Decimal("0.01")
    assert rig.engine.snapshot("trader", rig.clock.now()).position(BTC).size == Decimal("-0.01")


async def test_market_order_is_an_ioc_limit_at_the_slippage_price(client: Any, rig: Rig) -> None:
    order = await client.create_order(BTC, "market", "buy", 0.02, float(MARKS[BTC]), {"clientOrderId": cloid(2)})

    status = await client.fetch_order(None, BTC, {"clientOrderId": cloid(2)})
    assert status["status"] == "closed"
    assert Decimal(str(order["filled"])) == Decimal("0.02")
    record = rig.venue.orders[int(order["id"])]
    assert record.tif == "Ioc"
    assert record.limit_px == MARKS[BTC] * Decimal("1.05")  # ccxt's default 5% slippage
    assert Decimal(str(order["average"])) < record.limit_px  # filled at book prices, not at the cap


async def test_limit_order_rests_is_found_by_cloid_and_cancelled(client: Any, rig: Rig) -> None:
    await client.load_markets()
    placed = await client.create_order(BTC, "limit", "buy", 0.01, 55000, {"clientOrderId": cloid(3)})
    assert placed["info"] == {"resting": {"oid": int(placed["id"]), "cloid": cloid(3)}}

    found = await client.fetch_order(None, BTC, {"clientOrderId": cloid(3)})
    assert found["status"] == "open" and found["clientOrderId"] == cloid(3)
    assert [o["clientOrderId"] for o in await client.fetch_open_orders(BTC)] == [cloid(3)]

    await client.cancel_order(placed["id"], BTC, {"clientOrderId": cloid(3)})
    after = await client.fetch_order(None, BTC, {"clientOrderId": cloid(3)})
    assert after["status"] == "canceled"
    assert await client.fetch_open_orders(BTC) == []


async def test_unknown_cloid_is_order_not_found(client: Any) -> None:
    await client.load_markets()
    with pytest.raises(ccxt.OrderNotFound):
        await client.fetch_order(None, BTC, {"clientOrderId": cloid(999)})


async def test_reduce_only_that_would_increase_is_refused_per_order(client: Any, rig: Rig) -> None:
    with pytest.raises(ccxt.InvalidOrder, match="Reduce only order would increase position"):
        await client.create_order(
            BTC, "market", "buy", 0.01, float(MARKS[BTC]), {"clientOrderId": cloid(4), "reduceOnly": True}
        )
    assert rig.engine.snapshot("trader", rig.clock.now()).position(BTC) is None


async def test_reduce_only_closes_an_open_position(client: Any, rig: Rig) -> None:
    await client.create_order(BTC, "market", "buy", 0.03, float(MARKS[BTC]), {"clientOrderId": cloid(5)})
    closed = await client.create_order(
        BTC, "market", "sell", 0.03, float(MARKS[BTC]), {"clientOrderId": cloid(6), "reduceOnly": True}
    )

    assert Decimal(str(closed["filled"])) == Decimal("0.03")
    assert rig.engine.snapshot("trader", rig.clock.now()).position(BTC) is None
    fills = await client.fetch_my_trades(BTC)
    assert sorted(Decimal(str(f["amount"])) for f in fills) == [Decimal("0.03"), Decimal("0.03")]


async def test_partial_fill_fault_fills_part_and_reports_it(client: Any, rig: Rig) -> None:
    rig.venue.faults.partial_fill = Decimal("0.5")
    order = await client.create_order(BTC, "market", "buy", 0.04, float(MARKS[BTC]), {"clientOrderId": cloid(7)})

    assert Decimal(str(order["filled"])) == Decimal("0.02")
    status = await client.fetch_order(None, BTC, {"clientOrderId": cloid(7)})
    assert Decimal(str(status["filled"])) == Decimal("0.02")
    assert rig.engine.snapshot("trader", rig.clock.now()).position(BTC).size == Decimal("0.02")


async def test_timeout_after_accept_is_resolved_by_order_status(rig: Rig) -> None:
    client = rig.client(timeout=500)
    try:
        await client.load_markets()
        rig.venue.faults.order_timeouts = 1
        rig.venue.faults.hang_seconds = 1.5
        with pytest.raises(ccxt.RequestTimeout):
            await client.create_order(BTC, "market", "sell", 0.01, float(MARKS[BTC]), {"clientOrderId": cloid(8)})

        resolved = await client.fetch_order(None, BTC, {"clientOrderId": cloid(8)})
        assert resolved["status"] == "closed" and Decimal(str(resolved["filled"])) == Decimal("0.01")
    finally:
        await client.close()


async def test_wrongly_signed_order_is_refused_and_never_reaches_the_engine(rig: Rig) -> None:
    impostor = rig.client(privateKey=Account.create().key.hex())  # claims the trader's address
    try:
        with pytest.raises(ccxt.ExchangeError, match="does not exist"):
            await impostor.create_order(BTC, "market", "buy", 0.01, float(MARKS[BTC]), {"clientOrderId": cloid(9)})
    finally:
        await impostor.close()
    assert rig.engine.open_orders("trader") == []
    assert rig.venue.orders == {}


async def _post(url: str, body: dict[str, Any]) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.post(url, data=json.dumps(body)) as r:
        text = await r.text()
        try:
            return r.status, json.loads(text)
        except json.JSONDecodeError:
            return r.status, text


async def test_replayed_nonce_is_refused(rig: Rig) -> None:
    nonce = int(rig.clock.now().timestamp() * 1000)
    action = {"type": "updateLeverage", "asset": 0, "isCross": True, "leverage": 3}
    body = {"action": action, "nonce": nonce, "signature": signing.sign_l1(rig.key.key.hex(), action, nonce)}

    first = await _post(rig.server.url + "/exchange", body)
    replay = await _post(rig.server.url + "/exchange", body)

    assert first == (200, {"status": "ok", "response": {"type": "default"}})
    assert replay == (200, {"status": "err", "response": f"Invalid nonce: duplicate nonce {nonce}"})


async def test_stale_nonce_is_refused(rig: Rig) -> None:
    nonce = int((rig.clock.now() - timedelta(days=3)).timestamp() * 1000)
    action = {"type": "noop"}
    body = {"action": action, "nonce": nonce, "signature": signing.sign_l1(rig.key.key.hex(), action, nonce)}

    status, answer = await _post(rig.server.url + "/exchange", body)

    assert status == 200 and answer["status"] == "err" and answer["response"].startswith("Invalid nonce")


async def test_undeserialisable_action_gets_422(rig: Rig) -> None:
    nonce = int(rig.clock.now().timestamp() * 1000)
    body = {"action": {"type": "order", "orders": "all of them"}, "nonce": nonce, "signature": {"r": "0x1", "s": "0x1", "v": 27}}

    status, answer = await _post(rig.server.url + "/exchange", body)

    assert status == 422 and "Failed to deserialize" in answer


async def test_set_leverage_reaches_the_engine(client: Any, rig: Rig) -> None:
    await client.set_leverage(4, BTC)

    assert rig.venue.state.backend.leverage("trader", BTC) == Decimal(4)


async def test_no_builder_fee_or_referrer_with_the_fuse_options(client: Any, rig: Rig) -> None:
    await client.load_markets()
    await client.create_order(BTC, "market", "buy", 0.01, float(MARKS[BTC]), {"clientOrderId": cloid(10)})

    assert rig.venue.actions["approveBuilderFee"] == 0
    assert rig.venue.actions["setReferrer"] == 0
    assert rig.venue.actions["order"] == 1


async def test_ccxt_defaults_would_approve_a_builder_fee_and_set_a_referrer(rig: Rig) -> None:
    defaults = rig.client(options={"fetchMarkets": {"types": ["swap", "spot"]}})
    try:
        await defaults.load_markets()
        await defaults.create_order(BTC, "market", "buy", 0.01, float(MARKS[BTC]), {"clientOrderId": cloid(11)})
    finally:
        await defaults.close()

    assert rig.venue.actions["approveBuilderFee"] >= 1
    assert rig.venue.actions["setReferrer"] == 1


async def test_funding_settles_hourly_and_shows_in_user_funding(client: Any, rig: Rig) -> None:
    await client.create_order(BTC, "market", "sell", 0.05, float(MARKS[BTC]), {"clientOrderId": cloid(12)})
    start = rig.clock.now()

    rig.clock.advance(timedelta(hours=1, minutes=1))
    history = await client.fetch_funding_history(BTC, since=int(start.timestamp() * 1000))

    assert len(history) == 1
    assert Decimal(str(history[0]["rate"])) == RATES[BTC]
    assert Decimal(str(history[0]["amount"])) > 0  # a short receives positive funding
    rates = await client.fetch_funding_rate_history(BTC, since=int(start.timestamp() * 1000))
    assert [Decimal(str(r["fundingRate"])) for r in rates] == [RATES[BTC]]


async def test_overload_gets_real_429s(rig: Rig) -> None:
    client = rig.client()
    try:
        await client.load_markets()
        rig.venue.budget.limit = 40  # 20 l2Book requests' worth
        rig.venue.budget.reset()
        with pytest.raises(ccxt.RateLimitExceeded):
            await asyncio.gather(*(client.fetch_order_book(BTC) for _ in range(30)))
    finally:
        await client.close()
    assert rig.venue.log.count(status=429) > 0


async def test_normal_operation_sees_no_429(client: Any, rig: Rig) -> None:
    await client.load_markets()
    for n in range(5):
        await client.fetch_funding_rates([BTC, ETH])
        await client.fetch_order_book(BTC)
        await client.fetch_balance()
        await client.fetch_positions()
        side = Side.BUY if n % 2 == 0 else Side.SELL
        await client.create_order(BTC, "market", side.value, 0.01, float(MARKS[BTC]), {"clientOrderId": cloid(100 + n)})

    assert rig.venue.log.count(status=429) == 0
    assert rig.venue.log.count(status=200) == len(rig.venue.log.entries)


async def test_predicted_fundings_and_the_live_funding_show_the_rate_published_for_the_next_hour(client: Any, rig: Rig) -> None:
    rig.engine.set_funding(ETH, Decimal("0.00002"), predicted=Decimal("0.0000375"))  # paid at the hour vs. shown meanwhile
    rows = await client.public_post_info({"type": "predictedFundings"})

    by_coin = dict(rows)
    assert set(by_coin) == {"BTC", "ETH"}
    [(venue, eth)] = by_coin["ETH"]
    assert venue == "HlPerp" and eth["fundingRate"] == "0.0000375" and eth["fundingIntervalHours"] == 1
    assert eth["nextFundingTime"] == int(rig.engine.markets[ETH].next_settlement.timestamp() * 1000)
    assert eth["nextFundingTime"] % 3_600_000 == 0
    assert dict(by_coin["BTC"])["HlPerp"]["fundingRate"] == str(RATES[BTC])  # no prediction: the rate it will pay
    # metaAndAssetCtxs (and activeAssetCtx) carry the same published rate as the live ``funding``
    rate = await client.fetch_funding_rate(ETH)
    assert rate["info"]["funding"] == "0.0000375"


async def test_without_a_chain_withdraw3_is_refused_and_the_ledger_is_empty(client: Any, rig: Rig) -> None:
    with pytest.raises(ccxt.ExchangeError, match="Unsupported action"):
        await client.withdraw("USDC", 10, rig.address)

    assert await client.fetch_withdrawals("USDC", 0) == []
    assert rig.engine.snapshot("trader", rig.clock.now()).balance("USDC").total == DEPOSIT
