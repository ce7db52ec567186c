"""SimExchange: orders, fees, positions, margin, funding, liquidation, refusals."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from alpha.domain.account import OrderRequest, OrderStatus, OrderType, TimeInForce
from alpha.domain.instruments import Side
from fuses.base import InsufficientFundsError, OrderNotFoundError, RejectedError
from fuses.sim.book import DepthModel
from fuses.sim.engine import FEES, INSURANCE, SimExchange
from fuses.sim.events import FundingPaid, Liquidated, OrderFilled
from fuses.sim.markets import make_instrument
from tests.sim.helpers import ETH_PERP, PERP, SPOT, T0, limit_order, market_order, venue

D = Decimal


def funded(amount: str = "100000", **kw: object) -> SimExchange:
    ex = venue(**kw)  # type: ignore[arg-type]
    ex.open_account("a")
    ex.deposit("a", "USDC", D(amount), T0)
    return ex


def test_market_buy_walks_the_book_and_pays_taker_fee() -> None:
    ex = funded()
    book = ex.book(PERP)

    order = ex.submit("a", market_order(PERP, Side.BUY, "1"), T0)

    expected_fills = []
    left = D(1)
    for level in book.asks:
        take = min(left, level.quantity)
        expected_fills.append((level.price, take))
        left -= take
        if left == 0:
            break
    notional = sum(p * q for p, q in expected_fills)
    assert order.status is OrderStatus.FILLED
    assert order.average_price == notional / D(1)
    assert order.fee == sum((p * q * D("0.0005")).quantize(D("1e-8")) for p, q in expected_fills)
    assert ex.accounts[FEES].balance("USDC") == order.fee
    fills = [e for e in ex.events if isinstance(e, OrderFilled)]
    assert all(e.fill.slippage > 0 for e in fills)


def test_resting_limit_fills_as_maker_when_the_market_crosses_it() -> None:
    ex = funded()
    order = ex.submit("a", limit_order(PERP, Side.BUY, "0.5", "39000"), T0)
    assert order.status is OrderStatus.NEW and order.filled == 0

    ex.update_market(PERP, D("39500"), T0 + timedelta(minutes=1))
    assert ex.order("a", order.client_id).status is OrderStatus.NEW
    ex.update_market(PERP, D("38990"), T0 + timedelta(minutes=2))

    done = ex.order("a", order.client_id)
    assert done.status is OrderStatus.FILLED and done.average_price == D("39000")
    assert done.fee == (D("39000") * D("0.5") * D("0.0002")).quantize(D("1e-8"))
    assert ex.accounts["a"].positions[PERP].size == D("0.5")


def test_limit_that_crosses_takes_up_to_its_price_and_rests_the_rest() -> None:
    ex = funded(depth=DepthModel(D("2"), D("40000"), D("10"), 4))
    best_ask = ex.book(PERP).asks[0]
    order = ex.submit("a", limit_order(PERP, Side.BUY, "5", str(best_ask.price)), T0)
    assert order.filled == best_ask.quantity
    assert order.status is OrderStatus.PARTIALLY_FILLED
    assert len(ex.open_orders("a")) == 1


def test_ioc_and_fok_do_not_rest() -> None:
    ex = funded(depth=DepthModel(D("2"), D("40000"), D("10"), 4))
    best_ask = ex.book(PERP).asks[0]
    ioc = ex.submit("a", limit_order(PERP, Side.BUY, "5", str(best_ask.price), TimeInForce.IOC), T0)
    fok = ex.submit("a", limit_order(PERP, Side.BUY, "5", str(best_ask.price), TimeInForce.FOK), T0)
    assert ioc.status is OrderStatus.EXPIRED and ioc.filled == best_ask.quantity
    assert fok.status is OrderStatus.EXPIRED and fok.filled == 0
    assert ex.open_orders("a") == []


def test_post_only_that_would_cross_is_refused() -> None:
    ex = funded()
    ask = ex.book(PERP).asks[0].price
    with pytest.raises(RejectedError, match="post-only") as info:
        ex.submit("a", limit_order(PERP, Side.BUY, "0.1", str(ask), TimeInForce.POST_ONLY), T0)
    assert info.value.code == "post_only_would_cross"
    ok = ex.submit("a", limit_order(PERP, Side.BUY, "0.1", str(ask - 10), TimeInForce.POST_ONLY), T0)
    assert ok.status is OrderStatus.NEW


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        (OrderRequest("x1", PERP, Side.BUY, D("0.0005")), "bad_step"),
        (OrderRequest("x2", PERP, Side.BUY, D("0.1"), OrderType.LIMIT, D("40000.05")), "bad_tick"),
        (OrderRequest("x3", PERP, Side.BUY, D("0.0001") * 0 + D("0.001"), OrderType.LIMIT, D("1000")), "min_notional"),
        (OrderRequest("x4", PERP, Side.BUY, D("0")), "bad_number"),
        (OrderRequest("x5", PERP, Side.BUY, D("-1")), "bad_number"),
        (OrderRequest("x6", PERP, Side.BUY, D("NaN")), "bad_number"),
        (OrderRequest("x7", PERP, Side.BUY, D("0.1"), OrderType.LIMIT, D("0")), "bad_number"),
        (OrderRequest("x8", PERP, Side.BUY, D("0.1"), OrderType.LIMIT, None), "bad_price"),
        (OrderRequest("x9", "DOGE/USDC:USDC", Side.BUY, D("1")), "unknown_market"),
        (OrderRequest("", PERP, Side.BUY, D("0.1")), "missing_client_id"),
        (OrderRequest("x10", PERP, Side.SELL, D("0.1"), reduce_only=True), "reduce_only"),
    ],
)
def test_bad_orders_are_refused_with_a_code_and_change_nothing(request_: OrderRequest, code: str) -> None:
    ex = funded()
    before = dict(ex.accounts["a"].balances)
    with pytest.raises(RejectedError) as info:
        ex.submit("a", request_, T0)
    assert info.value.code == code
    assert ex.accounts["a"].balances == before and not ex.accounts["a"].orders
    assert str(info.value)


def test_duplicate_client_id_is_refused_and_unknown_id_not_found() -> None:
    ex = funded()
    ex.submit("a", OrderRequest("same", PERP, Side.BUY, D("0.01")), T0)
    with pytest.raises(RejectedError, match="duplicate"):
        ex.submit("a", OrderRequest("same", PERP, Side.BUY, D("0.01")), T0)
    with pytest.raises(OrderNotFoundError):
        ex.order("a", "other")
    with pytest.raises(OrderNotFoundError):
        ex.cancel("a", "other", T0)


def test_reduce_only_may_not_exceed_or_flip_the_position() -> None:
    ex = funded()
    ex.submit("a", market_order(PERP, Side.BUY, "0.2"), T0)
    with pytest.raises(RejectedError, match="exceeds"):
        ex.submit("a", market_order(PERP, Side.SELL, "0.3", reduce_only=True), T0)
    with pytest.raises(RejectedError, match="would not reduce"):
        ex.submit("a", market_order(PERP, Side.BUY, "0.1", reduce_only=True), T0)
    done = ex.submit("a", market_order(PERP, Side.SELL, "0.2", reduce_only=True), T0)
    assert done.status is OrderStatus.FILLED and ex.accounts["a"].positions[PERP].size == 0


def test_insufficient_margin_and_spot_funds_are_refused() -> None:
    ex = funded("1000", leverage=D("3"))
    with pytest.raises(InsufficientFundsError, match="insufficient margin") as info:
        ex.submit("a", market_order(PERP, Side.BUY, "0.1"), T0)  # 4000 notional / 3 > 1000
    assert info.value.code == "insufficient_margin"
    ok = ex.submit("a", market_order(PERP, Side.BUY, "0.07"), T0)  # 2800 / 3 = 933
    assert ok.filled == D("0.07")
    with pytest.raises(InsufficientFundsError):
        ex.submit("a", market_order(SPOT, Side.BUY, "0.03"), T0)
    with pytest.raises(InsufficientFundsError):
        ex.submit("a", market_order(SPOT, Side.SELL, "0.01"), T0)


def test_withdrawal_keeps_initial_margin_covered() -> None:
    ex = funded("10000", leverage=D("2"))
    ex.submit("a", market_order(PERP, Side.BUY, "0.2"), T0)  # 8000 notional, IM 4000
    free = ex.free_balance("a", "USDC")
    health = ex.margin_health("a")
    assert health is not None and free == health.equity - health.initial_margin
    with pytest.raises(InsufficientFundsError):
        ex.withdraw("a", "USDC", free + D("0.01"), T0)
    ex.withdraw("a", "USDC", free, T0)


def test_spot_trade_moves_both_assets() -> None:
    ex = funded()
    order = ex.submit("a", market_order(SPOT, Side.BUY, "0.5"), T0)
    acct = ex.accounts["a"]
    assert acct.balance("BTC") == D("0.5")
    assert acct.balance("USDC") == D("100000") - order.average_price * D("0.5") - order.fee  # type: ignore[operator]
    snap = ex.snapshot("a", T0)
    assert snap.balance("BTC").free == D("0.5")


def test_funding_longs_pay_shorts_at_each_markets_interval() -> None:
    ex = SimExchange(
        "v",
        [make_instrument("v", PERP, D("40000"), maker_fee=D(0), taker_fee=D(0)), make_instrument("v", ETH_PERP, D("2000"), maker_fee=D(0), taker_fee=D(0))],
        funding_interval=timedelta(hours=8),
    )
    ex.update_market(PERP, D("40000"), T0)
    ex.update_market(ETH_PERP, D("2000"), T0)
    ex.set_funding(ETH_PERP, D("0.0001"), next_settlement=T0 + timedelta(hours=1), interval=timedelta(hours=1))
    ex.set_funding(PERP, D("0.0002"))
    for name in ("long", "short"):
        ex.open_account(name)
        ex.deposit(name, "USDC", D("100000"), T0)
    ex.submit("long", market_order(PERP, Side.BUY, "1"), T0)
    ex.submit("short", market_order(PERP, Side.SELL, "1"), T0)
    ex.submit("long", market_order(ETH_PERP, Side.BUY, "10"), T0)
    ex.drain_events()

    events = ex.settle_due(T0 + timedelta(hours=8))

    eth = [e for e in events if isinstance(e, FundingPaid) and e.market == ETH_PERP and e.account == "long"]
    btc = {e.account: e.amount for e in events if isinstance(e, FundingPaid) and e.market == PERP}
    assert len(eth) == 8  # hourly
    assert eth[0].amount == D("-10") * D("2000") * D("0.0001")
    assert btc == {"long": D("-8"), "short": D("8")}  # the market account is flat: no payment
    assert ex.next_settlement(PERP) == T0 + timedelta(hours=16)
    assert ex.next_settlement(ETH_PERP) == T0 + timedelta(hours=9)


def test_liquidation_closes_positions_pays_penalty_and_insurance_covers_deficit() -> None:
    ex = funded("2000", leverage=D("25"))
    ex.submit("a", market_order(PERP, Side.BUY, "1"), T0)
    health = ex.margin_health("a")
    assert health is not None and health.liquidation_price is not None
    liq = health.liquidation_price

    ex.update_market(PERP, (liq + 50).quantize(D("0.1")), T0)
    assert ex.check_liquidations(T0) == []
    ex.update_market(PERP, D("37000"), T0)  # far through: equity negative
    events = ex.check_liquidations(T0)

    assert len(events) == 1 and isinstance(events[0], Liquidated)
    event = events[0]
    assert event.deficit > 0 and event.penalty == 0
    assert ex.accounts["a"].balance("USDC") == 0
    assert ex.accounts["a"].positions[PERP].size == 0
    assert ex.accounts[INSURANCE].balance("USDC") == -event.deficit
    assert ex.total_value("USDC") == D("2000")


def test_bad_prices_are_refused() -> None:
    ex = funded()
    for bad in (D("NaN"), D("0"), D("-1"), D("Infinity")):
        with pytest.raises(RejectedError, match="mark price"):
            ex.update_market(PERP, bad, T0)
    with pytest.raises(RejectedError):
        ex.set_funding(PERP, D("NaN"))
    with pytest.raises(RejectedError):
        ex.deposit("a", "USDC", D("-5"), T0)
    assert ex.mark(PERP) == D("40000")


def test_inverse_perps_are_refused_clearly() -> None:
    with pytest.raises(ValueError, match="inverse"):
        SimExchange("v", [make_instrument("v", "BTC/USD:BTC", D("40000"), maker_fee=D(0), taker_fee=D(0))])


def test_snapshot_reports_positions_and_margin() -> None:
    ex = funded(leverage=D("5"))
    ex.submit("a", market_order(PERP, Side.SELL, "1"), T0)
    ex.update_market(PERP, D("41000"), T0)
    snap = ex.snapshot("a", T0, fuse="f")
    pos = snap.position(PERP)
    assert snap.fuse == "f" and pos is not None
    assert pos.unrealised_pnl == -D("41000") + pos.entry_price * 1
    assert snap.margin is not None and snap.margin.initial_margin == D("41000") / 5
    assert snap.margin.maintenance_margin == D("41000") * D("0.005")
    assert pos.liquidation_price == ex.liquidation_price("a", PERP)
