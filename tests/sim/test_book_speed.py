"""The inlined book builder builds exactly the book of the plain step-rounding arithmetic."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from alpha.domain.market import BookLevel, OrderBook
from alpha.domain.money import ceil_to_step, floor_to_step
from fuses.sim.book import BPS, DepthModel, build_book
from fuses.sim.markets import make_instrument
from tests.budgets import examples

D = Decimal


def _plain_book(mid: Decimal, tick: Decimal, lot: Decimal, model: DepthModel) -> OrderBook:
    """The builder as first written, with the money helpers."""
    half = mid * model.spread_bps * BPS / 2
    far = max(mid * model.depth_bps * BPS, half)
    per_level = model.depth_notional / model.levels
    bids: list[BookLevel] = []
    asks: list[BookLevel] = []

    def qty(price: Decimal) -> Decimal:
        q = floor_to_step(per_level / price, lot)
        return q if q > 0 else lot

    for i in range(model.levels):
        offset = half if model.levels == 1 else half + (far - half) * i / (model.levels - 1)
        bid = floor_to_step(mid - offset, tick)
        ask = ceil_to_step(mid + offset, tick)
        if bids and bid >= bids[-1].price:
            bid = bids[-1].price - tick
        if asks and ask <= asks[-1].price:
            ask = asks[-1].price + tick
        if bid == ask:
            bid -= tick
        if bid <= 0:
            break
        bids.append(BookLevel(bid, qty(bid)))
        asks.append(BookLevel(ask, qty(ask)))
    return OrderBook(tuple(bids), tuple(asks))


@settings(max_examples=examples(200), deadline=None)
@given(
    mid=st.decimals(min_value=D("0.05"), max_value=D("200000"), places=4),
    spread=st.decimals(min_value=D("0"), max_value=D("30"), places=2),
    depth=st.decimals(min_value=D("1000"), max_value=D("50000000"), places=0),
    depth_bps=st.decimals(min_value=D("1"), max_value=D("300"), places=1),
    levels=st.integers(min_value=1, max_value=40),
)
def test_book_equals_the_plain_builder(mid: Decimal, spread: Decimal, depth: Decimal, depth_bps: Decimal, levels: int) -> None:
    inst = make_instrument("v", "BTC/USDC:USDC", mid, maker_fee=D("0.0002"), taker_fee=D("0.0005"))
    model = DepthModel(spread, depth, depth_bps, levels)
    assert _outcome(lambda: build_book(mid, inst, model)) == _outcome(
        lambda: _plain_book(mid, inst.tick_size, inst.lot_step, model)
    )


def _outcome(build: Callable[[], OrderBook]) -> OrderBook | type[BaseException]:
    """The book, or the kind of error building it raised (a mid of one tick with no spread divides by 0)."""
    try:
        return build()
    except ArithmeticError as exc:
        return type(exc)


def test_a_mark_of_one_tick_with_no_spread_gives_an_empty_book_not_a_division_by_zero() -> None:
    inst = make_instrument("v", "X/USDC:USDC", Decimal("1"), maker_fee=Decimal("0"), taker_fee=Decimal("0"))
    tick = inst.tick_size
    model = DepthModel(spread_bps=Decimal("0"), levels=3)
    assert build_book(tick, inst, model) == OrderBook((), ())  # no room for a bid above zero
    wider = build_book(tick * 5, inst, model)
    assert wider.bids and wider.asks
    assert all(level.price > 0 for level in (*wider.bids, *wider.asks))
    assert wider.bids[0].price < wider.asks[0].price
