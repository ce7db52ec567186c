"""The ccxt fuse (ccxt id ``okx``) against the OKX v5 emulator: a snapshot, a hedge-sized order
round trip in contracts, funding payments from the bills, a changed funding interval noticed,
OKX's client ids and wrong credentials (secret and passphrase)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from alpha.domain.account import OrderRequest, OrderStatus
from alpha.domain.clock import SimulatedClock
from alpha.domain.instruments import Side
from fuses.base import FatalError
from fuses.ccxt.fuse import CLIENT_ID_FORMATS
from fuses.emulators.okx import okx_state

BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"


async def test_snapshot_and_a_hedge_sized_round_trip_in_contracts(okx_rig_factory: Any) -> None:
    async with okx_rig_factory() as rig:
        fuse = rig.fuse
        start = await fuse.account()
        assert start.balance("USDT").total == Decimal("100000") and start.positions == ()
        instruments = {i.symbol: i for i in await fuse.instruments()}
        engine = {i.symbol: i for i in rig.backend.instruments()}
        assert instruments[BTC].lot_step == engine[BTC].lot_step and instruments[ETH].lot_step == engine[ETH].lot_step
        rates = await fuse.funding_rates()
        assert rates[BTC].interval == timedelta(hours=8)
        assert rates[BTC].rate == rig.backend.market(BTC, fuse.clock.now()).funding.rate  # type: ignore[union-attr]
        await fuse.set_leverage(BTC, Decimal(3))
        assert rig.backend.leverage("erin", BTC) == Decimal(3)
        short = await fuse.submit(OrderRequest("hedge-perp-1", BTC, Side.SELL, Decimal("0.083")))
        assert (short.status, short.filled, short.quantity) == (OrderStatus.FILLED, Decimal("0.083"), Decimal("0.083"))
        assert short.venue_order_id and short.average_price is not None and short.fee > 0
        # the venue booked 8.3 contracts of 0.01 BTC: the engine holds 0.083 BTC short
        [sent] = okx_state(rig.server.app).orders["erin"]
        assert rig.backend.order("erin", BTC, sent.engine_id).quantity == Decimal("0.083")
        held = await fuse.account()
        position = held.position(BTC)
        assert position is not None and position.size == Decimal("-0.083")
        assert held.margin is not None and held.margin.maintenance_margin > 0 and held.margin.initial_margin > 0
        assert held.margin.equity == held.balance("USDT").total  # OKX's eq already holds the unrealised PnL
        eth = await fuse.submit(OrderRequest("hedge-eth-1", ETH, Side.BUY, Decimal("1.5")))  # 15 contracts of 0.1 ETH
        assert eth.filled == Decimal("1.5") and (await fuse.account()).position(ETH).size == Decimal("1.5")  # type: ignore[union-attr]
        close = await fuse.submit(OrderRequest("hedge-perp-close-1", BTC, Side.BUY, Decimal("0.083"), reduce_only=True))
        assert close.status is OrderStatus.FILLED
        assert (await fuse.account()).position(BTC) is None
        assert [o.client_id for o in await fuse.open_orders()] == []


async def test_client_ids_travel_as_okx_cl_ord_ids_with_the_instance_marker(okx_rig_factory: Any) -> None:
    to_okx = CLIENT_ID_FORMATS["alnum32"]
    ours = to_okx("1a2b3c4d-abcdef00001-0001")
    assert len(ours) == 32 and ours.isalnum() and ours.startswith("1a2b3c4d")
    assert ours != to_okx("1a2b3c4d-abcdef00001-0002") and to_okx("plain42") == "plain42"
    async with okx_rig_factory() as rig:
        fuse = rig.fuse
        book = await fuse.order_book(BTC, 5)
        far = (book.bids[0].price * Decimal("0.8")).quantize(Decimal("0.1"))
        from alpha.domain.account import OrderType, TimeInForce

        await fuse.submit(OrderRequest("1a2b3c4d-run7-0001", BTC, Side.BUY, Decimal("0.01"), OrderType.LIMIT, far, TimeInForce.GTC))
        [held] = await fuse.open_orders()
        assert held.client_id == to_okx("1a2b3c4d-run7-0001")  # as the venue holds it
        assert fuse.is_ours(held.client_id, "1a2b3c4d", []) and not fuse.is_ours(held.client_id, "99999999", [])
        assert (await fuse.order_status(BTC, "1a2b3c4d-run7-0001")).status is OrderStatus.NEW
        assert (await fuse.cancel(BTC, "1a2b3c4d-run7-0001")).status is OrderStatus.CANCELED


async def test_funding_payments_come_from_the_funding_fee_bills(okx_rig_factory: Any) -> None:
    clock = SimulatedClock(datetime.now(UTC).replace(microsecond=0))
    async with okx_rig_factory(clock=clock) as rig:
        fuse = rig.fuse
        rate = (await fuse.funding_rates())[BTC].rate
        assert rate != 0
        since = clock.now()
        await fuse.submit(OrderRequest("fund-short-1", BTC, Side.SELL, Decimal("0.1")))
        clock.advance(timedelta(hours=8, minutes=1))
        [payment] = await fuse.funding_payments(since)
        settled = rig.backend.funding_history(BTC, "erin")[0]
        assert payment.amount == settled.amount and (payment.amount > 0) == (rate > 0)  # a short is paid when longs pay
        assert payment.market == BTC and payment.size == Decimal("0.1")  # 10 contracts x 0.01 BTC
        assert payment.rate is None  # OKX's bills carry no rate


async def test_a_changed_funding_interval_is_noticed(okx_rig_factory: Any) -> None:
    clock = SimulatedClock(datetime.now(UTC).replace(microsecond=0))
    async with okx_rig_factory(clock=clock) as rig:
        fuse = rig.fuse
        assert (await fuse.funding_rates())[BTC].interval == timedelta(hours=8)
        assert fuse.intervals.changes == []
        rig.backend.set_funding_interval(BTC, timedelta(hours=4))
        clock.advance(timedelta(minutes=2))
        rates = await fuse.funding_rates()
        assert rates[BTC].interval == timedelta(hours=4) and rates[ETH].interval == timedelta(hours=8)
        [change] = fuse.intervals.changes
        assert (change.market, change.old, change.new) == (BTC, timedelta(hours=8), timedelta(hours=4))


@pytest.mark.parametrize(("secret", "passphrase", "code"), [("not-the-secret", None, "50113"), (None, "not-the-passphrase", "50105")])
async def test_wrong_credentials_are_fatal_at_start(okx_rig_factory: Any, secret: str | None, passphrase: str | None, code: str) -> None:
    wrong = {k: v for k, v in (("secret", secret), ("passphrase", passphrase)) if v is not None}
    with pytest.raises(FatalError) as caught:
        async with okx_rig_factory(**wrong):
            pass
    assert caught.value.code == code


async def test_an_account_in_hedge_mode_is_fatal_at_start(okx_rig_factory: Any) -> None:
    with pytest.raises(FatalError, match="hedge") as caught:
        async with okx_rig_factory(pos_mode="long_short_mode"):
            pass
    assert "nothing was sent" in str(caught.value)
