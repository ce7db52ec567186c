from datetime import timedelta
from decimal import Decimal

import pytest

from alpha.domain.account import Balance, MarginHealth, OrderStatus, Position
from alpha.domain.clock import utc
from alpha.domain.instruments import Instrument, InstrumentKind, Side
from alpha.domain.market import BadMarketData, BookLevel, MarketSnapshot, OrderBook

D = Decimal


def perp(**kw: object) -> Instrument:
    args: dict[str, object] = dict(
        venue="v", symbol="BTC/USDC:USDC", kind=InstrumentKind.LINEAR_PERP, base="BTC", quote="USDC",
        settle="USDC", tick_size=D("0.1"), lot_step=D("0.001"), min_notional=D("5"),
    )
    args.update(kw)
    return Instrument(**args)  # type: ignore[arg-type]


def test_instrument_rounding_and_order_checks() -> None:
    inst = perp()
    assert inst.round_quantity(D("0.12345")) == D("0.123")
    assert inst.round_price(D("42000.17")) == D("42000.1")
    assert inst.order_problems(D("0.001"), D("42000")) == []
    problems = inst.order_problems(D("0.0001"), D("42000"))
    assert any("lot step" in p for p in problems)
    assert any("below minimum" in p for p in problems)
    assert inst.order_problems(D("1"), D("0")) == ["price 0 must be positive"]


@pytest.mark.parametrize("field", ["tick_size", "lot_step", "contract_size"])
@pytest.mark.parametrize("bad", [D("0"), D("-1"), D("NaN")])
def test_instrument_refuses_bad_precision(field: str, bad: Decimal) -> None:
    with pytest.raises(ValueError, match=field):
        perp(**{field: bad})


def test_side_helpers() -> None:
    assert Side.for_delta(D("1")) is Side.BUY
    assert Side.for_delta(D("-1")) is Side.SELL
    assert Side.BUY.opposite is Side.SELL
    assert InstrumentKind.INVERSE_PERP.is_perp and not InstrumentKind.SPOT.is_perp


def test_margin_ratio_follows_venue_convention() -> None:
    healthy = MarginHealth(equity=D("1000"), initial_margin=D("300"), maintenance_margin=D("100"))
    assert healthy.margin_ratio == D("0.1")
    assert healthy.free_margin == D("700")
    assert not healthy.is_liquidatable
    at_line = MarginHealth(equity=D("100"), initial_margin=D("300"), maintenance_margin=D("100"))
    assert at_line.margin_ratio == 1 and at_line.is_liquidatable
    flat = MarginHealth(equity=D("100"), initial_margin=D("0"), maintenance_margin=D("0"))
    assert flat.margin_ratio == 0


def test_position_notional_and_side() -> None:
    p = Position("BTC/USDC:USDC", D("-0.5"), D("40000"), D("42000"), D("-1000"))
    assert p.notional == D("21000")
    assert p.side is Side.SELL
    assert Balance("USDC", D("10"), D("5")).free == D("5")
    assert OrderStatus.FILLED.is_final and not OrderStatus.NEW.is_final


def book() -> OrderBook:
    return OrderBook(
        bids=(BookLevel(D("99"), D("1")), BookLevel(D("98"), D("2"))),
        asks=(BookLevel(D("101"), D("1")), BookLevel(D("102"), D("2"))),
    )


def test_book_walk_and_slippage() -> None:
    b = book()
    assert b.mid == D("100")
    assert b.fill_price(Side.BUY, D("1")) == D("101")
    assert b.fill_price(Side.BUY, D("2")) == D("101.5")
    assert b.fill_price(Side.BUY, D("4")) is None
    assert b.slippage_rate(Side.SELL, D("3")) == (D("100") - (D("99") + D("196")) / 3) / D("100")
    assert b.depth(Side.BUY) == D("3")


def snapshot(**kw: object) -> MarketSnapshot:
    args: dict[str, object] = dict(fuse="f", instrument=perp(), ts=utc(2024, 1, 1), mark=D("100"), index=D("100"), book=book())
    args.update(kw)
    return MarketSnapshot(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"mark": None}, "missing"),
        ({"mark": D("NaN")}, "not a finite"),
        ({"mark": D("0")}, "not positive"),
        ({"mark": D("-5")}, "not positive"),
        ({"index": D("Infinity")}, "not a finite"),
        ({"ts": utc(2023, 12, 31, 23, 0)}, "old"),
        ({"book": OrderBook(bids=(BookLevel(D("102"), D("1")),), asks=(BookLevel(D("101"), D("1")),))}, "crossed"),
        ({"book": OrderBook(bids=(BookLevel(D("-1"), D("1")),), asks=())}, "absurd"),
    ],
)
def test_snapshot_refuses_bad_data(kw: dict[str, object], message: str) -> None:
    with pytest.raises(BadMarketData, match=message):
        snapshot(**kw).validate(utc(2024, 1, 1, 0, 0, 30), timedelta(minutes=5))


def test_snapshot_accepts_fresh_good_data() -> None:
    snapshot().validate(utc(2024, 1, 1, 0, 1), timedelta(minutes=5))
