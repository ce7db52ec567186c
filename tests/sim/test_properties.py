"""Property tests of the engine: money is conserved, liquidation fires exactly at the line,
average entry is right under random fills, walking the book gets monotonically worse."""

from __future__ import annotations

from datetime import timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from fractions import Fraction

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alpha.domain.instruments import Side
from fuses.base import RejectedError
from fuses.sim.book import DepthModel, average_price, build_book, walk
from fuses.sim.engine import FEES, MARKET, PositionState, SimExchange
from fuses.sim.events import FundingPaid, Liquidated, OrderFilled
from fuses.sim.markets import make_instrument
from tests.budgets import examples
from tests.sim.helpers import ETH_PERP, PERP, SPOT, T0, market_order, venue

D = Decimal
FAST = settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.too_slow])

trade = st.tuples(
    st.just("trade"),
    st.integers(0, 2),  # account
    st.sampled_from([PERP, ETH_PERP, SPOT]),
    st.sampled_from([Side.BUY, Side.SELL]),
    st.integers(1, 3000),  # lots
)
move = st.tuples(st.just("move"), st.sampled_from([PERP, ETH_PERP, SPOT]), st.integers(-150, 150))  # per mille
funding = st.tuples(st.just("funding"), st.sampled_from([PERP, ETH_PERP]), st.integers(-300, 300))  # 1e-5 units


@FAST
@given(st.lists(st.one_of(trade, move, funding), min_size=1, max_size=40))
def test_money_is_conserved_and_funding_nets_to_zero(ops: list[tuple[object, ...]]) -> None:
    ex = venue(leverage=D("20"))
    accounts = ["a0", "a1", "a2"]
    deposited = D(0)
    for name in accounts:
        ex.open_account(name)
        ex.deposit(name, "USDC", D("200000"), T0)
        ex.deposit(name, "BTC", D("2"), T0)
        deposited += D("200000")
    now = T0
    for op in ops:
        now += timedelta(minutes=1)
        if op[0] == "trade":
            _, who, market, side, lots = op
            inst = ex.instruments[market]  # type: ignore[index]
            acct = ex.accounts[accounts[who]]  # type: ignore[index]
            before = (dict(acct.balances), {m: (p.size, p.cost) for m, p in acct.positions.items()}, len(acct.orders))
            try:
                ex.submit(acct.name, market_order(market, side, inst.lot_step * lots), now)  # type: ignore[arg-type]
            except RejectedError:
                after = (dict(acct.balances), {m: (p.size, p.cost) for m, p in acct.positions.items()}, len(acct.orders))
                assert after == before  # a refused order leaves no trace
        elif op[0] == "move":
            _, market, per_mille = op
            mark = ex.mark(market)  # type: ignore[arg-type]
            new = ex.instruments[market].round_price(mark * (1 + D(per_mille) / 1000))  # type: ignore[index]
            ex.update_market(market, new, now)  # type: ignore[arg-type]
            ex.check_liquidations(now)
        else:
            _, market, rate = op
            events = ex.settle_funding(market, D(rate) / D(100000), now)  # type: ignore[arg-type]
            paid_by_longs = sum((-e.amount for e in events if isinstance(e, FundingPaid) and e.size > 0), D(0))
            got_by_shorts = sum((e.amount for e in events if isinstance(e, FundingPaid) and e.size < 0), D(0))
            assert paid_by_longs == got_by_shorts
        assert ex.total_value("USDC") == deposited
        assert sum((a.balance("BTC") for a in ex.accounts.values()), D(0)) == D(6)
        for market in (PERP, ETH_PERP):
            assert sum((a.positions[market].size for a in ex.accounts.values() if market in a.positions), D(0)) == 0
    fees = sum((e.fill.fee for e in ex.events if isinstance(e, OrderFilled)), D(0))
    assert ex.accounts[FEES].balance("USDC") == fees
    ours = sum((ex.equity(a) for a in accounts), D(0))
    market_side = ex.accounts[MARKET].balance("USDC") + sum(
        (p.unrealised(ex.mark(m)) for m, p in ex.accounts[MARKET].positions.items()), D(0)
    )
    assert ours + market_side + fees + ex.accounts["insurance"].balance("USDC") == deposited


@FAST
@given(
    lots=st.integers(10, 5000),
    side=st.sampled_from([Side.BUY, Side.SELL]),
    leverage=st.integers(5, 50),
    extra=st.integers(0, 2000),
)
def test_liquidation_fires_exactly_at_the_maintenance_line(lots: int, side: Side, leverage: int, extra: int) -> None:
    mark = D("40000")
    ex = venue(mark=mark, leverage=D(leverage), taker_fee=D(0), maker_fee=D(0))
    size = D("0.001") * lots
    notional = size * mark
    ex.open_account("a")
    ex.deposit("a", "USDC", notional / leverage + 40 * size + D(extra), T0)  # enough for IM and the walk
    ex.submit("a", market_order(PERP, side, size), T0)
    fills = [e.fill for e in ex.events if isinstance(e, OrderFilled)]
    cost = sum((f.price * f.quantity for f in fills), D(0)) * side.sign
    balance = ex.accounts["a"].balance("USDC")
    s = size * side.sign
    rate = D("0.005")  # first tier: notional stays under 250,000 here

    def equity(p: Decimal) -> Decimal:
        return balance + s * p - cost

    def maintenance(p: Decimal) -> Decimal:
        return abs(s) * p * rate

    tick = D("0.1")
    if side is Side.BUY:
        exact = (cost - balance) / (s * (1 - rate))
        line = (exact / tick).to_integral_value(ROUND_FLOOR) * tick
        safe = line + tick
    else:
        exact = (balance - cost) / (abs(s) * (1 + rate))
        line = (exact / tick).to_integral_value(ROUND_CEILING) * tick
        safe = line - tick
    assert equity(line) <= maintenance(line)
    assert equity(safe) > maintenance(safe)
    if line <= 0:
        return

    ex.update_market(PERP, safe, T0)
    assert ex.check_liquidations(T0) == []
    ex.update_market(PERP, line, T0)
    events = ex.check_liquidations(T0)
    assert len(events) == 1 and isinstance(events[0], Liquidated)
    assert events[0].equity <= events[0].maintenance_margin


fill = st.tuples(st.sampled_from([1, -1]), st.integers(1, 500), st.integers(30000, 50000))


@FAST
@given(st.lists(fill, min_size=1, max_size=30), st.integers(30000, 50000))
def test_average_entry_is_the_average_cost_of_the_open_size(fills: list[tuple[int, int, int]], last: int) -> None:
    pos = PositionState()
    size = Fraction(0)
    entry = Fraction(0)
    reductions = 0
    for sign, lots, price in fills:
        delta = D(sign) * D(lots) / 1000
        p = D(price) / 10
        pos.apply(delta, p)
        d = Fraction(delta)
        if size == 0 or (size > 0) == (d > 0):
            entry = (abs(size) * entry + abs(d) * Fraction(p)) / (abs(size) + abs(d))
            size += d
        elif abs(d) <= abs(size):
            size += d
            reductions += 1
            if size == 0:
                entry = Fraction(0)
        else:
            size += d
            entry = Fraction(p)
            reductions += 1
    assert Fraction(pos.size) == size
    tolerance = Fraction(reductions, 2 * 10**8) + Fraction(1, 10**20)
    assert abs(Fraction(pos.cost) - size * entry) <= tolerance
    mark = D(last) / 10
    # realised + unrealised = value of the trades at the final mark, exactly
    assert pos.realised + pos.unrealised(mark) == sum((D(sg) * D(lt) / 1000 * (mark - D(pr) / 10) for sg, lt, pr in fills), D(0))


@FAST
@given(
    mid=st.integers(100, 10_000_000),
    spread=st.integers(0, 50),
    depth=st.integers(10_000, 10_000_000),
    depth_bps=st.integers(1, 500),
    levels=st.integers(1, 60),
    q1=st.integers(1, 10_000),
    q2=st.integers(1, 10_000),
)
def test_walking_the_book_gets_monotonically_worse_with_size(
    mid: int, spread: int, depth: int, depth_bps: int, levels: int, q1: int, q2: int
) -> None:
    price = D(mid) / 100
    inst = make_instrument("v", "XYZ/USDC:USDC", price, maker_fee=D(0), taker_fee=D(0))
    book = build_book(price, inst, DepthModel(D(spread), D(depth), D(depth_bps), levels))
    assert all(a.price < b.price for a, b in zip(book.asks, book.asks[1:], strict=False))
    assert all(a.price > b.price for a, b in zip(book.bids, book.bids[1:], strict=False))
    assert book.bids[0].price < book.asks[0].price and all(lv.quantity > 0 for lv in (*book.bids, *book.asks))
    small, big = sorted((inst.lot_step * q1, inst.lot_step * q2))
    for side in (Side.BUY, Side.SELL):
        a, b = walk(book, side, small), walk(book, side, big)
        pa, pb = average_price(a), average_price(b)
        assert pa is not None and pb is not None
        assert (pb - pa) * side.sign >= 0
        executed = sum((q for _, q in b), D(0))
        assert executed <= big


def test_conservation_holds_through_a_liquidation_with_deficit() -> None:
    ex = SimExchange("v", [make_instrument("v", PERP, D("40000"), maker_fee=D("0.0002"), taker_fee=D("0.0005"))], default_leverage=D("50"))
    ex.update_market(PERP, D("40000"), T0)
    ex.open_account("a")
    ex.deposit("a", "USDC", D("1000"), T0)
    ex.submit("a", market_order(PERP, Side.BUY, "1"), T0)
    ex.update_market(PERP, D("30000"), T0)
    events = ex.check_liquidations(T0)
    assert any(isinstance(e, Liquidated) and e.deficit > 0 for e in events)
    assert ex.total_value("USDC") == D("1000")
