"""The contract every trading fuse honours: instruments, funding, account and margin, the
order lifecycle (fills, resting, cancel, partial fills, unknown outcomes), errors, rate limits."""

from __future__ import annotations

from decimal import Decimal

import pytest
from contract_env import ContractEnv

from alpha.domain.account import OrderRequest, OrderStatus, OrderType, TimeInForce
from alpha.domain.instruments import Side
from fuses.base import (
    Fuse,
    InsufficientFundsError,
    OrderNotFoundError,
    RejectedError,
    UnknownOutcomeError,
)


async def test_fuse_satisfies_the_protocol(env: ContractEnv) -> None:
    assert isinstance(env.fuse, Fuse)


async def test_instruments_carry_exact_precision_and_limits(env: ContractEnv) -> None:
    instruments = {i.symbol: i for i in await env.fuse.instruments()}
    inst = instruments[env.market]
    assert inst.kind.is_perp
    for value in (inst.tick_size, inst.lot_step):
        assert isinstance(value, Decimal) and value > 0
    assert inst.min_notional >= 0


async def test_funding_carries_interval_and_a_future_settlement(env: ContractEnv) -> None:
    rates = await env.fuse.funding_rates()
    rate = rates[env.market]
    assert rate.interval.total_seconds() > 0
    assert rate.next_settlement.tzinfo is not None
    account = await env.fuse.account()
    assert rate.next_settlement > account.ts
    assert rate.next_settlement - account.ts <= rate.interval


async def test_marks_are_positive_decimals(env: ContractEnv) -> None:
    marks = await env.fuse.marks([env.market])
    assert isinstance(marks[env.market], Decimal) and marks[env.market] > 0


async def test_book_is_sorted_and_uncrossed(env: ContractEnv) -> None:
    book = await env.fuse.order_book(env.market, 10)
    assert book.bids and book.asks
    assert [b.price for b in book.bids] == sorted((b.price for b in book.bids), reverse=True)
    assert [a.price for a in book.asks] == sorted(a.price for a in book.asks)
    assert book.bids[0].price < book.asks[0].price


async def test_market_order_fills_and_shows_in_positions_and_margin(env: ContractEnv) -> None:
    before = await env.fuse.account()
    order = await env.fuse.submit(OrderRequest("contract-buy-1", env.market, Side.BUY, Decimal("0.01")))
    assert order.status is OrderStatus.FILLED
    assert order.filled == Decimal("0.01")
    assert order.average_price is not None and order.average_price > 0
    after = await env.fuse.account()
    position = after.position(env.market)
    assert position is not None and position.size == Decimal("0.01")
    assert after.margin is not None
    assert after.margin.maintenance_margin > 0
    assert after.margin.margin_ratio == after.margin.maintenance_margin / after.margin.equity
    assert before.position(env.market) is None


async def test_limit_order_rests_is_found_by_client_id_and_cancels(env: ContractEnv) -> None:
    book = await env.fuse.order_book(env.market, 5)
    far = (book.bids[0].price * Decimal("0.8") / 100).to_integral_value() * 100  # on every venue's price grid
    placed = await env.fuse.submit(
        OrderRequest("contract-rest-1", env.market, Side.BUY, Decimal("0.01"), OrderType.LIMIT, far, TimeInForce.GTC)
    )
    assert placed.status is OrderStatus.NEW and placed.filled == 0
    found = await env.fuse.order_status(env.market, "contract-rest-1")
    assert found.client_id == "contract-rest-1" and found.price == far
    canceled = await env.fuse.cancel(env.market, "contract-rest-1")
    assert canceled.status is OrderStatus.CANCELED


async def test_unknown_client_id_is_order_not_found(env: ContractEnv) -> None:
    with pytest.raises(OrderNotFoundError):
        await env.fuse.order_status(env.market, "never-sent-1")


async def test_partial_fill_leaves_the_rest_of_an_ioc_unfilled(env: ContractEnv) -> None:
    env.partial_fill(Decimal("0.01"))
    order = await env.fuse.submit(OrderRequest("contract-partial-1", env.market, Side.BUY, Decimal("0.02")))
    env.partial_fill(None)
    assert order.filled == Decimal("0.01")
    assert order.status in (OrderStatus.PARTIALLY_FILLED, OrderStatus.EXPIRED, OrderStatus.CANCELED)
    account = await env.fuse.account()
    position = account.position(env.market)
    assert position is not None and position.size == Decimal("0.01")


async def test_timeout_after_accept_is_an_unknown_outcome_resolved_by_client_id(env: ContractEnv) -> None:
    env.timeout_next_order()
    with pytest.raises(UnknownOutcomeError) as caught:
        await env.fuse.submit(OrderRequest("contract-unknown-1", env.market, Side.SELL, Decimal("0.01")))
    assert caught.value.client_id == "contract-unknown-1"
    resolved = await env.fuse.order_status(env.market, "contract-unknown-1")
    assert resolved.status is OrderStatus.FILLED and resolved.filled == Decimal("0.01")


async def test_order_beyond_margin_is_insufficient_funds(env: ContractEnv) -> None:
    with pytest.raises(InsufficientFundsError):
        await env.fuse.submit(OrderRequest("contract-huge-1", env.market, Side.BUY, Decimal("100")))
    account = await env.fuse.account()
    assert account.position(env.market) is None


async def test_reduce_only_without_a_position_is_rejected(env: ContractEnv) -> None:
    with pytest.raises(RejectedError):
        await env.fuse.submit(OrderRequest("contract-ro-1", env.market, Side.SELL, Decimal("0.01"), reduce_only=True))


async def test_quantity_off_the_lot_step_is_rejected_before_trading(env: ContractEnv) -> None:
    with pytest.raises(RejectedError):
        await env.fuse.submit(OrderRequest("contract-step-1", env.market, Side.BUY, Decimal("0.0001234")))
    with pytest.raises(OrderNotFoundError):
        await env.fuse.order_status(env.market, "contract-step-1")


async def test_leverage_set_up_within_the_fuse_maximum(env: ContractEnv) -> None:
    await env.fuse.set_leverage(env.market, Decimal(3))
    with pytest.raises(RejectedError):
        await env.fuse.set_leverage(env.market, Decimal(50))


async def test_normal_operation_never_meets_a_rate_limit(env: ContractEnv) -> None:
    for _ in range(5):
        await env.fuse.funding_rates()
        await env.fuse.account()
        await env.fuse.order_book(env.market, 20)
    assert env.rate_limited_answers() == 0
