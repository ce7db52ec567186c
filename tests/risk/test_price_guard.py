"""The price guard: each check refuses what no real market prints, and a move every venue makes passes."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import pytest
from pydantic import ValidationError
from strategy_builders import CASH, NOW, book, config, fresh_view, snapshot

from alpha.config.schema import RiskLimits
from alpha.domain.funding import FundingRate
from alpha.domain.market import MarketSnapshot, OrderBook
from alpha.risk.prices import GoodPrice, PriceCheck, PriceGuard, without_outliers

D = Decimal
LIMITS = RiskLimits()
BTC = D("40000")
CEX, DEX, SPOT = "perp-cex:BTC/USDC:USDC", "perp-dex:BTC/USDC:USDC", "spot:BTC/USDC"


def _btc(marks: dict[str, Decimal] | None = None, *, ts=NOW) -> dict[str, MarketSnapshot]:
    """BTC on the spot venue and both perp venues, each at its mark (index = mark, book around it)."""
    marks = {SPOT: BTC, CEX: BTC, DEX: BTC, **(marks or {})}
    out = {}
    for key, mark in marks.items():
        fuse, symbol = key.split(":", 1)
        out[key] = snapshot(fuse, symbol, mark, ts=ts)
    return out


def _screen(markets: dict[str, MarketSnapshot], guard: PriceGuard | None = None, limits: RiskLimits = LIMITS):
    return (guard or PriceGuard()).screen(markets, limits, quotes=CASH)


def _checks(screen) -> dict[str, PriceCheck]:
    return {o.key: o.check for o in screen.outliers}


def _history(mark: Decimal = BTC, ago: timedelta = timedelta(hours=1), keys=(SPOT, CEX, DEX)) -> PriceGuard:
    return PriceGuard({k: GoodPrice(NOW - ago, mark) for k in keys})


def test_sane_prices_pass_and_become_the_last_good_values() -> None:
    screen = _screen(_btc())

    assert screen.outliers == ()
    assert screen.guard.last_good == {k: GoodPrice(NOW, BTC) for k in (SPOT, CEX, DEX)}


@pytest.mark.parametrize("mark", [D("NaN"), D("Infinity"), D("0"), D("-1"), D("1e30"), D("1e-20")], ids=str)
def test_a_non_finite_non_positive_or_absurd_mark_is_refused(mark: Decimal) -> None:
    markets = _btc()
    markets[CEX] = replace(markets[CEX], mark=mark, index=BTC)

    screen = _screen(markets)

    assert _checks(screen) == {CEX: PriceCheck.VALUE}, screen.outliers


def test_a_mark_far_from_its_own_index_is_refused() -> None:
    markets = _btc()
    markets[CEX] = replace(markets[CEX], mark=BTC * 10, book=book(BTC * 10))  # the index stays where the market is

    screen = _screen(markets)

    assert _checks(screen) == {CEX: PriceCheck.INDEX}
    assert "10.00%" in screen.outliers[0].detail and str(BTC) in screen.outliers[0].detail


def test_a_mark_within_the_index_gap_passes_and_the_gap_is_configurable() -> None:
    markets = _btc()
    markets[CEX] = replace(markets[CEX], mark=BTC * D("1.15"), book=book(BTC * D("1.15")))

    assert _checks(_screen(markets)) == {CEX: PriceCheck.INDEX}
    assert _screen(markets, limits=RiskLimits(max_mark_index_gap=D("0.20"))).outliers == ()


def test_one_venue_far_from_the_others_is_refused_and_only_that_one() -> None:
    markets = _btc({CEX: BTC * 10})  # its index says the same: only the other venues can tell

    screen = _screen(markets)

    assert _checks(screen) == {CEX: PriceCheck.VENUES}
    assert screen.guard.last_good.keys() == {SPOT, DEX}


def test_one_venue_printing_low_is_refused_and_not_the_two_that_agree() -> None:
    screen = _screen(_btc({DEX: BTC / 10}))

    assert _checks(screen) == {DEX: PriceCheck.VENUES}


def test_two_venues_that_disagree_with_nothing_else_to_go_by_are_both_refused() -> None:
    markets = _btc({CEX: BTC * 10})
    del markets[SPOT]

    assert _checks(_screen(markets)) == {CEX: PriceCheck.VENUES, DEX: PriceCheck.VENUES}


def test_a_venue_refused_on_its_own_does_not_make_the_other_look_wrong() -> None:
    markets = _btc()
    markets[CEX] = replace(markets[CEX], mark=D("1e30"), index=D("1e30"))
    del markets[SPOT]

    assert _checks(_screen(markets)) == {CEX: PriceCheck.VALUE}


def test_a_jump_on_one_venue_is_refused_when_the_others_did_not_move() -> None:
    markets = {CEX: snapshot("perp-cex", "BTC/USDC:USDC", BTC * D("1.6"))}  # alone: no other venue to compare

    screen = _screen(markets, _history(keys=(CEX,)))

    assert _checks(screen) == {CEX: PriceCheck.JUMP}
    assert screen.guard.last_good[CEX] == GoodPrice(NOW - timedelta(hours=1), BTC), "a refused mark is not a last good value"


def test_the_jump_allowance_grows_with_elapsed_time_and_never_drops_below_an_hours() -> None:
    up60 = {CEX: snapshot("perp-cex", "BTC/USDC:USDC", BTC * D("1.6"))}
    up40 = {CEX: snapshot("perp-cex", "BTC/USDC:USDC", BTC * D("1.4"))}

    assert _screen(up60, _history(ago=timedelta(hours=2), keys=(CEX,))).outliers == ()  # 60% in 2h: within 50%/h
    assert _screen(up40, _history(ago=timedelta(seconds=10), keys=(CEX,))).outliers == ()  # 40% in 10s: within one hour's 50%
    assert _checks(_screen(up60, _history(ago=timedelta(minutes=10), keys=(CEX,)))) == {CEX: PriceCheck.JUMP}


def test_a_move_every_venue_makes_is_the_market_and_passes() -> None:
    crash = BTC * D("0.35")  # -65% in one hour, everywhere
    screen = _screen(_btc({SPOT: crash, CEX: crash, DEX: crash}), _history())

    assert screen.outliers == ()
    assert all(g.mark == crash for g in screen.guard.last_good.values())


def test_a_move_half_the_other_venues_make_passes_but_one_alone_does_not() -> None:
    up = BTC * D("1.6")
    half = _btc({CEX: up, DEX: up})  # two of three moved; the spot venue lags
    alone = _btc({CEX: up})

    assert PriceCheck.JUMP not in _checks(_screen(half, _history())).values()
    assert _checks(_screen(alone, _history())) == {CEX: PriceCheck.JUMP}


def test_a_bad_print_never_walks_the_reference_away() -> None:
    guard = _history(keys=(CEX,))
    for _ in range(5):  # the same 10x print, again and again: always judged against the last good value
        screen = _screen({CEX: snapshot("perp-cex", "BTC/USDC:USDC", BTC * 10)}, guard)
        assert _checks(screen) == {CEX: PriceCheck.JUMP}
        guard = screen.guard
    assert guard.last_good[CEX].mark == BTC
    assert _screen({CEX: snapshot("perp-cex", "BTC/USDC:USDC", BTC * D("1.01"))}, guard).outliers == ()


@pytest.mark.parametrize(
    ("bids", "asks"), [(False, False), (True, False), (False, True)], ids=["empty", "no asks", "no bids"]
)
def test_an_empty_or_one_sided_book_is_refused(bids: bool, asks: bool) -> None:
    markets = _btc()
    full = markets[CEX].book
    assert full is not None
    markets[CEX] = replace(markets[CEX], book=OrderBook(full.bids if bids else (), full.asks if asks else ()))

    assert _checks(_screen(markets)) == {CEX: PriceCheck.BOOK}


@pytest.mark.parametrize(
    ("rate", "hours", "refused"),
    [("0.0075", 1, False), ("-0.02", 1, True), ("0.08", 8, False), ("0.0801", 8, True), ("0.05", 4, True)],
)
def test_funding_beyond_the_hourly_bound_is_refused_whatever_its_interval(rate: str, hours: int, refused: bool) -> None:
    markets = _btc()
    interval = timedelta(hours=hours)
    markets[CEX] = replace(markets[CEX], funding=FundingRate(D(rate), interval, NOW + interval))

    assert _checks(_screen(markets)) == ({CEX: PriceCheck.FUNDING} if refused else {})


def test_assets_are_valued_again_without_the_refused_marks() -> None:
    view = fresh_view()
    markets = dict(view.markets)
    markets[CEX] = replace(markets[CEX], mark=D("1e30"))
    view = replace(view, markets=markets, prices={**view.prices, "BTC": D("5e29")})  # the shell's median of every mark
    screen = PriceGuard().screen_view(view, LIMITS)

    sane = without_outliers(view, screen, ("USDC", "USDT"))

    assert sane.prices["BTC"] == BTC and sane.prices["ETH"] == view.prices["ETH"]
    assert sane.markets == view.markets  # the refused market stays: risk-reducing actions still need it


def test_an_asset_with_every_mark_refused_is_valued_at_its_last_good_marks() -> None:
    view = fresh_view()
    markets = {k: (replace(s, mark=D("1e30")) if s.instrument.base == "BTC" else s) for k, s in view.markets.items()}
    view = replace(view, markets=markets, prices={**view.prices, "BTC": D("1e30")})
    screen = _history(D("39000")).screen_view(view, LIMITS)

    assert len(screen.outliers) == 3
    assert without_outliers(view, screen, ("USDC", "USDT")).prices["BTC"] == D("39000")


def test_the_thresholds_are_strategy_keys_checked_at_load() -> None:
    cfg = config(risk={"max_mark_index_gap": "0.05", "max_venue_gap": "0.5", "max_price_jump": "2", "max_funding_rate": "0.002"})
    assert (cfg.risk.max_mark_index_gap, cfg.risk.max_venue_gap, cfg.risk.max_price_jump, cfg.risk.max_funding_rate) == (
        D("0.05"), D("0.5"), D("2"), D("0.002")
    )
    assert (LIMITS.max_mark_index_gap, LIMITS.max_venue_gap, LIMITS.max_price_jump, LIMITS.max_funding_rate) == (
        D("0.10"), D("0.25"), D("0.50"), D("0.01")
    )
    with pytest.raises(ValidationError, match="max_funding_rate"):
        config(risk={"max_funding_rate": "1.5"})
    with pytest.raises(ValidationError, match="max_price_jumps"):
        config(risk={"max_price_jumps": "0.5"})
    with pytest.raises(ValidationError, match="max_venue_gap"):
        config(risk={"max_venue_gap": "a quarter"})
