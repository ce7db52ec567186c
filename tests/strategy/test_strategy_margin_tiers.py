"""Tiered margin in the core: decide funds the venue's own requirement, plan withdraws only free margin."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest
from strategy_builders import NOW, PRICES, config, fresh_view

from alpha.domain.account import AccountSnapshot, Balance, MarginHealth, Position
from alpha.domain.actions import FuseAllocation, HedgeRef, TargetBook, TargetPosition, Transfer
from alpha.domain.apply import apply
from alpha.domain.instruments import Instrument
from alpha.domain.margin import INFINITE, MarginTier, MarginTiers
from alpha.domain.portfolio import PortfolioView, market_key
from alpha.strategy.decide import decide
from alpha.strategy.margin import WITHDRAW_CUSHION, withdrawable
from alpha.strategy.planner import plan
from alpha.strategy.signals import FundingHistory, compute_signals

D = Decimal
BTC = PRICES["BTC"]
PERP = "BTC/USDC:USDC"
HIGH = {"perp-cex:BTC": "0.0006", "perp-dex:BTC": "0.00001", "perp-dex:ETH": "0.000002", "perp-cex:ETH": "0.00001"}
# 50x up to 20k notional, 2x beyond: a 3x fuse is held to 2x above 20k.
STEEP = MarginTiers((MarginTier(D("20000"), D("50"), D("0.005")), MarginTier(INFINITE, D("2"), D("0.05"))))


def test_tiers_cap_leverage_and_charge_maintenance_tier_by_tier() -> None:
    assert STEEP.max_leverage_at(D("20000")) == 50
    assert STEEP.max_leverage_at(D("20000.01")) == 2
    assert STEEP.initial_margin(D("10000"), D("3")) == D("10000") / 3
    assert STEEP.initial_margin(D("-100000"), D("3")) == D("50000")
    # 20k at 0.5% then 80k at 5%
    assert STEEP.maintenance_margin(D("100000")) == D("100") + D("4000")
    assert MarginTiers.flat(D("5")).initial_margin(D("1000"), D("10")) == D("200")


def test_bad_tiers_are_refused() -> None:
    with pytest.raises(ValueError, match="grow in notional"):
        MarginTiers((MarginTier(D("100"), D("5"), D("0.01")), MarginTier(D("50"), D("2"), D("0.05"))))
    with pytest.raises(ValueError, match="max leverage"):
        MarginTiers((MarginTier(INFINITE, D("0"), D("0.01")),))
    with pytest.raises(ValueError, match="at least one"):
        MarginTiers(())


def test_instrument_without_tiers_charges_notional_over_leverage() -> None:
    inst = fresh_view().markets[market_key("perp-cex", PERP)].instrument
    assert inst.margin_tiers is None
    assert inst.initial_margin(D("90000"), D("3")) == D("30000")
    assert replace(inst, margin_tiers=STEEP).initial_margin(D("90000"), D("3")) == D("45000")


def _with_tiers(view: PortfolioView, fuse: str, market: str, tiers: MarginTiers) -> PortfolioView:
    key = market_key(fuse, market)
    snap = view.markets[key]
    markets = dict(view.markets)
    markets[key] = replace(snap, instrument=replace(snap.instrument, margin_tiers=tiers))
    return replace(view, markets=markets)


def _perp_requirement(book: TargetBook, view: PortfolioView, fuse: str, leverage: Decimal) -> Decimal:
    total = D(0)
    for tp in book.positions:
        if tp.fuse == fuse and tp.quantity:
            snap = view.markets[market_key(fuse, tp.market)]
            total += snap.instrument.initial_margin(abs(tp.quantity) * snap.mark, leverage)
    return total


def test_decide_funds_a_perp_leg_with_its_tiered_margin_not_notional_over_leverage() -> None:
    flat_view = fresh_view(rates=HIGH)
    tiered_view = _with_tiers(flat_view, "perp-cex", PERP, STEEP)
    cfg = config()

    flat = decide(flat_view, compute_signals(FundingHistory(), flat_view, NOW), cfg, NOW)
    tiered = decide(tiered_view, compute_signals(FundingHistory(), tiered_view, NOW), cfg, NOW)

    short = next(tp for tp in tiered.positions if (tp.fuse, tp.market) == ("perp-cex", PERP))
    assert abs(short.quantity) * BTC > D("20000")  # past the first tier: held to 2x
    capital = next(a for a in tiered.allocations if a.fuse == "perp-cex")
    assert capital.capital >= _perp_requirement(tiered, tiered_view, "perp-cex", D("3"))
    assert capital.leverage <= D("2")  # gross / capital: the tier, not the fuse's 3x
    flat_capital = next(a for a in flat.allocations if a.fuse == "perp-cex")
    assert flat_capital.leverage > D("2.5")  # the same fuse without tiers runs near its 3x
    assert tiered.idle >= cfg.idle_buffer * tiered_view.nav
    # Executed with ideal fills, the perp fuse holds at least what the venue asks as initial margin.
    after = apply(tiered_view, plan(tiered, tiered_view))
    assert after.fuse_equity("perp-cex") >= _perp_requirement(tiered, tiered_view, "perp-cex", D("3"))


def _perp_view(
    cash: Decimal, size: Decimal, entry: Decimal, tiers: MarginTiers | None = None, rates: dict[str, str] = HIGH
) -> PortfolioView:
    view = fresh_view(rates=rates)
    if tiers is not None:
        view = _with_tiers(view, "perp-cex", PERP, tiers)
    inst: Instrument = view.markets[market_key("perp-cex", PERP)].instrument
    upnl = size * (BTC - entry)
    equity = cash + upnl
    im = inst.initial_margin(abs(size) * BTC, D("3"))
    free = max(min(cash, equity - im), D(0))
    acct = AccountSnapshot(
        "perp-cex",
        NOW,
        balances=(Balance("USDC", cash, free),),
        positions=(Position(PERP, size, entry, BTC, upnl),),
        margin=MarginHealth(equity, im, im / 10),
    )
    return replace(view, vault_cash=view.vault_cash - equity, accounts={**view.accounts, "perp-cex": acct})


def _hold(capital: Decimal, size: Decimal) -> TargetBook:
    return TargetBook(
        nav=D("1000000"),
        positions=(TargetPosition("perp-cex", PERP, "BTC", size, HedgeRef.named("h"), "carry"),),
        allocations=(FuseAllocation("perp-cex", capital, D("250000"), D("3"), D("3")),),
    )


def test_plan_never_withdraws_unrealised_profit() -> None:
    # Short 1 BTC from 60k, mark 40k: 20k of profit on 10k of cash; margin 40k / 3.
    view = _perp_view(cash=D("10000"), size=D("-1"), entry=D("60000"))
    equity = view.fuse_equity("perp-cex")
    assert equity == D("30000")

    actions = plan(_hold(BTC / 3, D("-1")), view)

    (out,) = [a for a in actions if isinstance(a, Transfer)]
    # equity - capital would be 16,666.67; only the cash (10k) may leave, less the cushion.
    assert out.source == "perp-cex"
    assert out.amount == D("10000") - WITHDRAW_CUSHION * equity


def test_plan_withdraws_only_what_tiered_margin_leaves_free() -> None:
    # 2 BTC short at 40k = 80k notional: the tier holds it to 2x, so 40k of margin, not 26,667.
    view = _perp_view(cash=D("50000"), size=D("-2"), entry=BTC, tiers=STEEP)

    actions = plan(_hold(2 * BTC / 3, D("-2")), view)

    (out,) = [a for a in actions if isinstance(a, Transfer)]
    assert out.amount == D("50000") - D("40000") - WITHDRAW_CUSHION * D("50000")
    assert withdrawable(view, "perp-cex", {PERP: D("-2")}, D("3")) == out.amount


def test_what_a_fuse_settling_in_another_coin_lets_out_is_its_free_margin_valued_in_the_base_asset() -> None:
    usdc_vault = _perp_view(cash=D("50000"), size=D("-1"), entry=BTC)
    in_usdc = withdrawable(usdc_vault, "perp-cex", {}, D("3"))
    # The same account in a USDT vault: the venue still counts its USDC, worth 0.98 USDT each.
    usdt_vault = replace(usdc_vault, base_asset="USDT", cash=frozenset({"USDC"}), cash_at_par=False,
                         prices={**usdc_vault.prices, "USDC": D("0.98")})

    assert in_usdc is not None and in_usdc > 0
    assert withdrawable(usdt_vault, "perp-cex", {}, D("3")) == in_usdc * D("0.98")
    assert withdrawable(replace(usdt_vault, cash_at_par=True), "perp-cex", {}, D("3")) == in_usdc
    assert usdt_vault.fuse_equity("perp-cex") == usdc_vault.fuse_equity("perp-cex") * D("0.98")


def test_plan_withdraws_the_margin_a_reduction_frees_less_its_fees() -> None:
    view = _perp_view(cash=D("50000"), size=D("-2"), entry=BTC, tiers=STEEP)
    fee = D("1") * BTC * D("0.0005") * 2  # one BTC bought back, at twice the taker fee

    actions = plan(_hold(BTC / 3, D("-1")), view)

    (out,) = [a for a in actions if isinstance(a, Transfer)]
    margin_after = BTC / 2  # 40k notional is past the first tier: 2x
    assert out.amount == (D("50000") - margin_after - fee - WITHDRAW_CUSHION * D("50000")).quantize(D("0.00000001"))


def test_decide_keeps_unrealised_profit_in_its_fuse_and_the_idle_buffer_whole() -> None:
    # 60k of profit on 5k of cash, and funding too low to keep the short: it is bought back.
    low = {"perp-cex:BTC": "0.00001", "perp-dex:BTC": "0.000001"}
    view = _perp_view(cash=D("5000"), size=D("-3"), entry=D("60000"), rates=low)
    cfg = config()

    book = decide(view, compute_signals(FundingHistory(), view, NOW), cfg, NOW)

    targets = {tp.market: tp.quantity for tp in book.positions if tp.fuse == "perp-cex"}
    assert targets == {PERP: D(0)}
    free = withdrawable(view, "perp-cex", targets, D("3"))
    assert free is not None
    perp = next(a for a in book.allocations if a.fuse == "perp-cex")
    assert perp.capital >= view.fuse_equity("perp-cex") - free
    assert any("only its free margin" in r for r in book.reasons)
    assert book.idle >= cfg.idle_buffer * view.nav
    for t in plan(book, view):
        if isinstance(t, Transfer) and t.source == "perp-cex":
            assert t.amount <= free
