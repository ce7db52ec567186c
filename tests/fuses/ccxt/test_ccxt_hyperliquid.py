"""The ccxt fuse against the Hyperliquid emulator: errors by ccxt class (no venue codes), request
weights by /info type, no builder fee or referrer unless configured, hourly funding."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from alpha.domain.account import OrderRequest
from alpha.domain.instruments import Side
from fuses.base import FatalError, OrderNotFoundError, TransientError
from fuses.ccxt.fuse import CLIENT_ID_FORMATS
from fuses.ccxt.venues import VENUES, request_weight
from fuses.emulators.hyperliquid import NONCE_SET_SIZE, ms

BTC = "BTC/USDC:USDC"


async def test_bad_signature_is_fatal_and_never_trades(hl_rig_factory: Any) -> None:
    async with hl_rig_factory(wrong_key=True) as rig:
        with pytest.raises(FatalError):
            await rig.fuse.submit(OrderRequest("hl-badsig-1", BTC, Side.BUY, Decimal("0.01")))
        assert rig.venue.orders == {}
        assert rig.venue.actions["order"] == 0


async def test_nonce_refusal_is_transient(hl_rig_factory: Any) -> None:
    async with hl_rig_factory() as rig:
        # The signer's 100 highest nonces all lie ahead of ccxt's (the wall clock's milliseconds).
        ahead = ms(rig.server.state.clock.now() + timedelta(hours=1))
        rig.venue.nonces[rig.wallet.address.lower()] = list(range(ahead, ahead + NONCE_SET_SIZE))
        with pytest.raises(TransientError):
            await rig.fuse.submit(OrderRequest("hl-nonce-1", BTC, Side.BUY, Decimal("0.01")))
        with pytest.raises(OrderNotFoundError):
            await rig.fuse.order_status(BTC, "hl-nonce-1")


async def test_no_builder_fee_or_referrer_reaches_the_venue_by_default(hl_rig_factory: Any) -> None:
    async with hl_rig_factory() as rig:
        await rig.fuse.set_leverage(BTC, Decimal(3))
        await rig.fuse.submit(OrderRequest("hl-quiet-1", BTC, Side.BUY, Decimal("0.01")))
        await rig.fuse.submit(OrderRequest("hl-quiet-2", BTC, Side.SELL, Decimal("0.01"), reduce_only=True))
        assert rig.venue.actions["order"] == 2 and rig.venue.actions["updateLeverage"] == 1
        assert rig.venue.actions["approveBuilderFee"] == 0
        assert rig.venue.actions["setReferrer"] == 0


async def test_builder_fee_and_referrer_are_sent_only_when_configured(hl_rig_factory: Any) -> None:
    options: dict[str, str | int | bool] = {"builderFee": True, "approvedBuilderFee": False, "refSet": False}
    async with hl_rig_factory(options=options) as rig:
        await rig.fuse.submit(OrderRequest("hl-builder-1", BTC, Side.BUY, Decimal("0.01")))
        assert rig.venue.actions["approveBuilderFee"] + rig.venue.actions["setReferrer"] >= 1


async def test_info_weights_follow_the_request_type_and_match_the_venue_count(hl_rig_factory: Any) -> None:
    spec = VENUES["hyperliquid"]
    assert request_weight(spec, "POST", "/info", {"type": "l2Book"}) == 2
    assert request_weight(spec, "POST", "/info", {"type": "metaAndAssetCtxs"}) == 20
    assert request_weight(spec, "POST", "/exchange", {}) == 1
    async with hl_rig_factory() as rig:
        limiter = rig.fuse.client.alpha_limiter
        before, logged_before = limiter.stats.weight, sum(e.weight for e in rig.server.state.log.entries)
        await rig.fuse.funding_rates()
        await rig.fuse.order_book(BTC, 10)
        await rig.fuse.account()
        spent = limiter.stats.weight - before
        logged = sum(e.weight for e in rig.server.state.log.entries) - logged_before
        assert spent == logged > 0


async def test_funding_is_hourly_with_the_next_settlement_on_the_hour(hl_rig_factory: Any) -> None:
    async with hl_rig_factory() as rig:
        rate = (await rig.fuse.funding_rates())[BTC]
        assert rate.interval == timedelta(hours=1)
        assert rate.next_settlement.minute == 0 and rate.next_settlement.second == 0


def test_client_ids_travel_as_stable_128_bit_cloids() -> None:
    to_cloid = CLIENT_ID_FORMATS["cloid"]
    cloid = to_cloid("leg-42-buy")
    assert cloid == to_cloid("leg-42-buy") != to_cloid("leg-43-buy")
    assert cloid.startswith("0x") and len(cloid) == 34
    int(cloid, 16)
