"""The p-perp view: hand-computed positions, the liquidation distance as a property, the loop check in decide."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st
from strategy_builders import BASE, CASH, NOW, PRICES, config, fresh_view, lending_account, snapshot

from alpha.domain.account import AccountSnapshot, Balance, LendingHealth, LendingPosition, MarginHealth, Position
from alpha.domain.instruments import InstrumentKind
from alpha.domain.portfolio import PortfolioView
from alpha.risk.perp_power import (
    PerpKind,
    PerpPower,
    check_loop,
    liquidation_distance,
    max_loop_leverage,
    perp_power_report,
    perp_powers,
    ratio_at,
)
from alpha.strategy.decide import decide
from alpha.strategy.signals import FundingHistory, compute_signals

D = Decimal
PERP = "BTC/USDC:USDC"
EXACT = D("1e-20")
NOTHING = D(0)


def _view(accounts: dict[str, AccountSnapshot], vault_cash: Decimal = NOTHING, prices: dict[str, Decimal] | None = None) -> PortfolioView:
    px = {**PRICES, BASE: D(1), "USDT": D(1), **(prices or {})}
    return PortfolioView(ts=NOW, base_asset=BASE, vault_cash=vault_cash, accounts=accounts, prices=px, cash=CASH)


def _perp_account(size: Decimal, mark: Decimal, equity: Decimal, maintenance_rate: Decimal) -> AccountSnapshot:
    mm = abs(size) * mark * maintenance_rate
    return AccountSnapshot(
        "perp-cex", NOW, balances=(Balance(BASE, equity, equity),), positions=(Position(PERP, size, mark, mark),),
        margin=MarginHealth(equity, abs(size) * mark / 3, mm),
    )


def _loop_account(supplied: Decimal, borrowed_eth: Decimal, lt: Decimal) -> AccountSnapshot:
    positions = (LendingPosition(BASE, supplied, D(0)), LendingPosition("ETH", D(0), borrowed_eth))
    debt = borrowed_eth * PRICES["ETH"]
    health = LendingHealth(supplied, debt, supplied * D("0.75") - debt, D("0.75"), lt, supplied * lt / debt)
    return AccountSnapshot("lending", NOW, lending=health, lending_positions=positions)


def _only(view: PortfolioView, kind: PerpKind) -> PerpPower:
    rows = [r for r in perp_powers(view) if r.kind is kind]
    assert len(rows) == 1, rows
    return rows[0]


def test_a_short_perp_at_3x_is_a_1_perp_with_a_third_of_its_notional_as_collateral() -> None:
    # 1 BTC short at 3000 on 1000 USDC: c = 1000 / (1 x 3000^1) = 1/3; maintenance 0.5% of notional.
    view = _view({"perp-cex": _perp_account(D(-1), D(3000), D(1000), D("0.005"))})
    row = _only(view, PerpKind.LINEAR_PERP)
    assert (row.power, row.quantity, row.index, row.collateral) == (1, D(-1), D(3000), D(1000))
    assert row.collateral_ratio == D(1) / D(3)
    assert row.min_ratio == D("0.005")
    # Short: liquidated when the index rises to x' with 1000 - (x' - 3000) = 0.005 x', x' = 4000 / 1.005.
    liquidation = D(4000) / D("1.005")
    assert abs(row.liquidation_distance - (liquidation / 3000 - 1)) < EXACT  # type: ignore[operator]
    assert row.as_dict()["direction"] == "up" and row.as_dict()["liquidation_distance"] == "0.326700"
    assert row.max_leverage is None


def test_a_long_perp_at_3x_is_liquidated_after_a_third_of_the_index_less_maintenance() -> None:
    # 1 BTC long at 3000 on 1000: 1000 + (x' - 3000) = 0.005 x' gives x' = 2000 / 0.995.
    view = _view({"perp-cex": _perp_account(D(1), D(3000), D(1000), D("0.005"))})
    row = _only(view, PerpKind.LINEAR_PERP)
    assert abs(row.liquidation_distance - (1 - D(2000) / D("0.995") / 3000)) < EXACT  # type: ignore[operator]
    assert row.as_dict()["direction"] == "down"
    # Without maintenance, a 3x long survives exactly a third of the index.
    assert liquidation_distance(PerpKind.LINEAR_PERP, True, D(1) / 3, D(0)) == D(1) / 3


def test_cross_margin_backs_each_perp_with_the_equity_less_the_others_maintenance() -> None:
    acct = AccountSnapshot(
        "perp-cex", NOW, balances=(Balance(BASE, D(5000), D(5000)),),
        positions=(Position(PERP, D(-1), D(60000), D(60000)), Position("ETH/USDC:USDC", D(-10), D(3000), D(3000))),
        margin=MarginHealth(D(5000), D(0), D(450)),  # 0.5% of 90000 notional
    )
    rows = {r.market: r for r in perp_powers(_view({"perp-cex": acct}))}
    assert rows[PERP].collateral == 5000 - 150  # ETH's maintenance is 0.5% x 30000
    assert rows["ETH/USDC:USDC"].collateral == 5000 - 300


def test_an_inverse_perp_is_a_minus_1_perp_in_its_settlement_coin() -> None:
    # 1 BTC of BTC/USD:BTC long at 40000 (N = 40000 USD, worth N x 40000^-1 = 1 BTC) on 0.5 BTC.
    snap = snapshot("perp-inv", "BTC/USD:BTC", D(40000))
    inverse = replace(snap.instrument, kind=InstrumentKind.INVERSE_PERP, settle="BTC")
    acct = AccountSnapshot(
        "perp-inv", NOW, balances=(Balance("BTC", D("0.5"), D("0.5")),), positions=(Position("BTC/USD:BTC", D(1), D(40000), D(40000)),),
        margin=MarginHealth(D("0.5"), D("0.1"), D("0.005")),  # maintenance 0.5% of 1 BTC
    )
    view = replace(_view({"perp-inv": acct}), markets={"perp-inv:BTC/USD:BTC": replace(snap, instrument=inverse)})
    row = _only(view, PerpKind.INVERSE_PERP)
    assert (row.power, row.quantity, row.index, row.numeraire) == (-1, D(40000), D(40000), "BTC")
    assert row.collateral_ratio == D("0.5") and row.min_ratio == D("0.005")
    # Long: 0.5 + 40000 (1/40000 - 1/x') = 0.005 x 40000 / x' gives x' = 40000 x 1.005 / 1.5 = 26800.
    assert row.liquidation_distance == 1 - D(26800) / D(40000)
    # A short with at least 1x of coin collateral is a synthetic dollar: no rise liquidates it.
    short = replace(view, accounts={"perp-inv": replace(acct, positions=(Position("BTC/USD:BTC", D(-1), D(40000), D(40000)),),
                                                             margin=MarginHealth(D("1.2"), D("0.1"), D("0.005")))})
    assert _only(short, PerpKind.INVERSE_PERP).liquidation_distance is None


def test_spot_is_a_fully_paid_1_perp_and_a_stablecoin_a_0_perp() -> None:
    spot = AccountSnapshot("spot", NOW, balances=(Balance(BASE, D(250), D(250)), Balance("BTC", D(2), D(2))))
    view = _view({"spot": spot}, vault_cash=D(700), prices={"USDT": D("0.98")})
    coin = _only(view, PerpKind.SPOT)
    assert (coin.power, coin.quantity, coin.index, coin.collateral_ratio) == (1, D(2), PRICES["BTC"], D(1))
    assert coin.min_ratio is None and coin.liquidation_distance is None
    stables = [r for r in perp_powers(view) if r.kind is PerpKind.STABLECOIN]
    assert [(r.fuse, r.quantity, r.power, r.index) for r in stables] == [("vault", D(700), 0, D(1)), ("spot", D(250), 0, D(1))]
    assert all(r.exposure == r.quantity and r.liquidation_distance is None for r in stables)


def test_a_lending_loop_at_lt_80_percent_is_a_short_1_perp_with_its_health_factor_less_one_to_go() -> None:
    # Supply 18000 USDC, borrow 4 ETH at 3000: c = 18000 / 12000 = 1.5; minimum 1 / 0.8 = 1.25.
    view = _view({"lending": _loop_account(D(18000), D(4), D("0.8"))}, prices={"ETH": D(3000)})
    loop = _only(view, PerpKind.LENDING_LOOP)
    assert (loop.market, loop.power, loop.quantity, loop.index) == ("borrow:ETH", 1, D(-4), D(3000))
    assert loop.collateral_ratio == D("1.5") and loop.min_ratio == D("1.25")
    # Health factor 18000 x 0.8 / 12000 = 1.2: ETH may rise 20% before it reaches 1.
    assert loop.liquidation_distance == D("0.2")
    assert loop.max_leverage == D(4)  # 1 / (1.25 - 1)
    assert loop.as_dict()["max_leverage"] == "4.000000"


def test_a_borrowed_stablecoin_is_a_short_0_perp_no_index_move_liquidates() -> None:
    # The article's stablecoin: 2000 minted against collateral worth 3000, c = 3000 / (2000 x index^0) = 1.5.
    positions = (LendingPosition("ETH", D(1), D(0)), LendingPosition(BASE, D(0), D(2000)))
    health = LendingHealth(D(3000), D(2000), D(0), D("0.75"), D("0.8"), D("1.2"))
    view = _view({"lending": AccountSnapshot("lending", NOW, lending=health, lending_positions=positions)}, prices={"ETH": D(3000)})
    (debt,) = perp_powers(view)
    assert (debt.kind, debt.power, debt.quantity, debt.index) == (PerpKind.STABLECOIN_DEBT, 0, D(-2000), D(1))
    assert debt.collateral_ratio == D("1.5") and debt.min_ratio == D("1.25") and debt.max_leverage == D(4)
    assert debt.liquidation_distance is None and debt.ratio_at(D(6000)) == D("1.5")


def test_the_articles_loops_reach_2x_at_150_percent_and_10x_at_110_percent() -> None:
    assert max_loop_leverage(D("1.5")) == D(2)
    assert max_loop_leverage(D("1.1")) == D(10)
    assert max_loop_leverage(D(1)) is None


def test_the_loop_check_passes_the_strategys_ratio_and_refuses_one_below_the_minimum() -> None:
    # min health factor 1.5 at LT 0.8: minimum ratio 1.875, at most 1 / 0.875 = 1.14x.
    ok = check_loop(D("2.34375"), D("0.8"), D("1.5"))
    assert ok.ok and ok.min_ratio == D("1.875") and "within" in ok.reason
    low = check_loop(D("1.5"), D("0.8"), D("1.5"))
    assert not low.ok and low.leverage == D(2) and "exceeds" in low.reason and "not built" in low.reason
    unbounded = check_loop(D("1.2"), D("1.6"), D("1.5"))  # a market whose minimum ratio is below 1
    assert not unbounded.ok and unbounded.max_leverage is None


def test_decide_builds_no_synthetic_short_on_a_market_without_a_leverage_bound_and_says_why() -> None:
    rates = {"perp-cex:BTC": "-0.0008", "perp-dex:BTC": "-0.0001", "perp-cex:ETH": "0.00001", "perp-dex:ETH": "0.000001"}
    view = fresh_view(rates=rates)
    cfg = config()
    healthy = decide(view, compute_signals(FundingHistory(), view, NOW), cfg, NOW)
    assert any(asset == "BTC" and amount > 0 for _, asset, amount in healthy.borrowing), healthy.reasons
    assert not any("no synthetic short" in r for r in healthy.reasons)
    # The same market reporting a liquidation threshold of 1.6 (minimum ratio 1.5 / 1.6 < 1).
    acct = lending_account()
    assert acct.lending is not None
    bad = replace(view, accounts={"lending": replace(acct, lending=replace(acct.lending, liquidation_threshold=D("1.6")))})
    book = decide(bad, compute_signals(FundingHistory(), bad, NOW), cfg, NOW)
    assert all(amount == 0 for _, _, amount in book.borrowing), book.borrowing
    assert any(r.startswith("lending: no synthetic short: the market's minimum ratio 0.9375 is not above 1") for r in book.reasons), book.reasons


def test_the_report_is_plain_data() -> None:
    view = _view({"lending": _loop_account(D(18000), D(4), D("0.8"))}, prices={"ETH": D(3000)})
    (row,) = perp_power_report(view)
    assert row["kind"] == "lending_loop" and row["collateral_ratio"] == "1.500000" and row["liquidation_distance"] == "0.200000"


KINDS = st.sampled_from([PerpKind.LINEAR_PERP, PerpKind.INVERSE_PERP, PerpKind.LENDING_LOOP])
RATIOS = st.decimals(min_value=D("0.01"), max_value=D(5), places=4)


@given(kind=KINDS, long=st.booleans(), c=RATIOS, m=st.decimals(min_value=D("0.001"), max_value=D("0.2"), places=4),
       lt=st.decimals(min_value=D("0.5"), max_value=D("0.95"), places=3))
def test_the_liquidation_distance_is_where_the_ratio_reaches_the_minimum(kind: PerpKind, long: bool, c: Decimal, m: Decimal, lt: Decimal) -> None:
    if kind is PerpKind.LENDING_LOOP:
        long, m = False, 1 / lt  # a loop is a short with fixed collateral; its minimum is 1 / LT
    d = liquidation_distance(kind, long, c, m)
    against = -1 if long else 1
    if c <= m:
        assert d == 0
    elif d is None:
        # No move against the position takes it to the minimum: not to 1e-9 of the index, nor a 10^9 rise.
        assert ratio_at(kind, long, c, D("1e-9") if long else D("1e9")) > m
    else:
        assert d > 0 and (d < 1 or not long)
        assert abs(ratio_at(kind, long, c, 1 + against * d) - m) < D("1e-18")
        # Halfway there, the position is still above its minimum.
        assert ratio_at(kind, long, c, 1 + against * d / 2) > m


@given(supplied=st.decimals(min_value=D(1000), max_value=D(100000), places=2), borrowed=st.decimals(min_value=D("0.1"), max_value=D(20), places=3),
       lt=st.decimals(min_value=D("0.5"), max_value=D("0.95"), places=3))
def test_a_loops_distance_recomputed_on_a_moved_view_lands_on_its_minimum(supplied: Decimal, borrowed: Decimal, lt: Decimal) -> None:
    view = _view({"lending": _loop_account(supplied, borrowed, lt)}, prices={"ETH": D(3000)})
    loop = _only(view, PerpKind.LENDING_LOOP)
    d = loop.liquidation_distance
    assert d is not None
    if d == 0:
        assert loop.collateral_ratio <= loop.min_ratio  # type: ignore[operator]
        return
    moved = _only(_view({"lending": _loop_account(supplied, borrowed, lt)}, prices={"ETH": 3000 * (1 + d)}), PerpKind.LENDING_LOOP)
    assert abs(moved.collateral_ratio - loop.min_ratio) < D("1e-18")  # type: ignore[operator]


@given(long=st.booleans(), equity=st.decimals(min_value=D(100), max_value=D(5000), places=2), m=st.decimals(min_value=D("0.001"), max_value=D("0.1"), places=4))
def test_a_perps_distance_recomputed_on_a_moved_account_lands_on_its_maintenance(long: bool, equity: Decimal, m: Decimal) -> None:
    size = D(1) if long else D(-1)
    row = _only(_view({"perp-cex": _perp_account(size, D(3000), equity, m)}), PerpKind.LINEAR_PERP)
    d = row.liquidation_distance
    if d is None or d == 0:
        assert (d is None and long and row.collateral_ratio >= 1) or d == 0  # type: ignore[operator]
        return
    mark = 3000 * (1 + (-d if long else d))
    moved = _only(_view({"perp-cex": _perp_account(size, mark, equity + size * (mark - 3000), m)}), PerpKind.LINEAR_PERP)
    assert abs(moved.collateral_ratio - m) < D("1e-18")  # type: ignore[operator]

