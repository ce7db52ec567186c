"""The ccxt fuse (ccxt id ``bybit``) against the Bybit v5 emulator: a snapshot, a hedge-sized
order round trip, funding payments with Bybit's sign, wrong credentials."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from alpha.domain.account import OrderRequest, OrderStatus
from alpha.domain.clock import SimulatedClock
from alpha.domain.instruments import Side
from fuses.base import FatalError

BTC = "BTC/USDT:USDT"


async def test_snapshot_and_a_hedge_sized_round_trip(bybit_rig_factory: Any) -> None:
    async with bybit_rig_factory() as rig:
        fuse = rig.fuse
        start = await fuse.account()
        assert start.balance("USDT").total == Decimal("100000") and start.positions == ()
        rates = await fuse.funding_rates()
        assert rates[BTC].interval == timedelta(hours=8)
        assert rates[BTC].rate == rig.backend.market(BTC, fuse.clock.now()).funding.rate  # type: ignore[union-attr]
        await fuse.set_leverage(BTC, Decimal(3))
        short = await fuse.submit(OrderRequest("hedge-perp-1", BTC, Side.SELL, Decimal("0.083")))
        assert (short.status, short.filled) == (OrderStatus.FILLED, Decimal("0.083"))
        assert short.venue_order_id and short.average_price is not None and short.fee > 0
        held = await fuse.account()
        position = held.position(BTC)
        assert position is not None and position.size == Decimal("-0.083")
        assert held.margin is not None and held.margin.maintenance_margin > 0
        assert held.margin.equity == held.balance("USDT").total + position.unrealised_pnl
        close = await fuse.submit(OrderRequest("hedge-perp-close-1", BTC, Side.BUY, Decimal("0.083"), reduce_only=True))
        assert close.status is OrderStatus.FILLED
        assert (await fuse.account()).position(BTC) is None
        assert [o.client_id for o in await fuse.open_orders()] == []


async def test_funding_payments_are_received_positive_for_the_side_that_is_paid(bybit_rig_factory: Any) -> None:
    clock = SimulatedClock(datetime.now(UTC).replace(microsecond=0))
    async with bybit_rig_factory(clock=clock) as rig:
        fuse = rig.fuse
        rate = (await fuse.funding_rates())[BTC].rate
        assert rate > 0  # longs pay shorts: our short is paid
        since = clock.now()
        await fuse.submit(OrderRequest("fund-short-1", BTC, Side.SELL, Decimal("0.1")))
        clock.advance(timedelta(hours=8, minutes=1))
        [payment] = await fuse.funding_payments(since)
        settled = rig.backend.funding_history(BTC, "bob")[0]
        assert payment.amount == settled.amount > 0
        assert payment.rate == rate and payment.market == BTC


async def test_wrong_secret_is_fatal_before_any_order(bybit_rig_factory: Any) -> None:
    with pytest.raises(FatalError) as caught:
        async with bybit_rig_factory(secret="not-the-secret"):
            pass
    assert caught.value.code == "10004"


async def test_a_changed_funding_interval_is_noticed(bybit_rig_factory: Any) -> None:
    """ccxt bybit reads the interval from its market listing (instruments-info): the fuse reloads it every interval_refresh."""
    clock = SimulatedClock(datetime.now(UTC).replace(microsecond=0))
    async with bybit_rig_factory(clock=clock) as rig:
        fuse = rig.fuse
        assert (await fuse.funding_rates())[BTC].interval == timedelta(hours=8)
        rig.backend.set_funding_interval(BTC, timedelta(hours=4))
        clock.advance(timedelta(minutes=5))  # within interval_refresh: the listing is not asked again
        assert (await fuse.funding_rates())[BTC].interval == timedelta(hours=8) and fuse.intervals.changes == []
        clock.advance(fuse.spec.interval_refresh)
        assert (await fuse.funding_rates())[BTC].interval == timedelta(hours=4)
        [change] = fuse.intervals.changes
        assert (change.market, change.old, change.new) == (BTC, timedelta(hours=8), timedelta(hours=4))
