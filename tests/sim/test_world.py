"""SimWorld: built from a strategy file, stepped in time, viewed as a PortfolioView."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from alpha.domain import events as domain
from alpha.domain.actions import VAULT, Transfer
from alpha.domain.apply import apply
from alpha.domain.instruments import Side
from alpha.domain.portfolio import market_key
from fuses.base import InsufficientFundsError, RejectedError
from fuses.sim.events import Converted, FundingPaid, Liquidated, OrderFilled
from fuses.sim.world import SimWorld
from tests.sim.helpers import T0, StablecoinPriced, demo_config, market_order, usdt_vault


def test_from_config_puts_all_capital_in_the_vault_and_prices_every_market() -> None:
    world = SimWorld.from_config(demo_config())

    view = world.portfolio_view(T0)

    assert view.vault_cash == Decimal("1000000")
    assert view.nav == Decimal("1000000")
    assert set(view.accounts) == {"spot", "perp-cex", "perp-dex", "lending"}
    assert set(view.markets) == {
        market_key(f, m)
        for f, ms in (("spot", ["BTC/USDC", "ETH/USDC"]), ("perp-cex", ["BTC/USDC:USDC", "ETH/USDC:USDC"]), ("perp-dex", ["BTC/USDC:USDC", "ETH/USDC:USDC"]))
        for m in ms
    }
    perp = view.market("perp-dex", "BTC/USDC:USDC")
    assert perp is not None and perp.funding is not None
    assert perp.funding.interval == timedelta(hours=1)
    assert perp.funding.next_settlement == T0 + timedelta(hours=1)
    assert view.market("perp-cex", "BTC/USDC:USDC").funding.interval == timedelta(hours=8)  # type: ignore[union-attr]
    assert view.market("spot", "BTC/USDC").funding is None  # type: ignore[union-attr]
    assert view.prices["BTC"] == Decimal("42000.0")
    for snap in view.markets.values():
        snap.validate(T0, timedelta(minutes=1))
        assert snap.book is not None and snap.book.bids[0].price < snap.mark < snap.book.asks[0].price


def test_subscribers_get_the_domain_event_types_with_their_account() -> None:
    world = SimWorld.from_config(demo_config())
    seen: list[domain.Event] = []
    world.subscribe(seen.append)

    world.transfer("USDC", Decimal("100000"), "vault", "perp-cex")
    world.venues["perp-cex"].submit("perp-cex", market_order("BTC/USDC:USDC", Side.SELL, "1"), world.now)
    world.step_to(T0 + timedelta(hours=8))

    kinds = {type(e) for e in seen}
    assert {domain.Transferred, domain.Deposited, domain.OrderFilled, domain.FundingPaid} <= kinds
    ours = [e for e in seen if isinstance(e, domain.AccountEvent) and e.account == "perp-cex"]
    assert {type(e) for e in ours} == kinds - {domain.Transferred}
    assert world.ledger.fills == sum(isinstance(e, domain.OrderFilled) for e in ours)


def test_start_defaults_to_clock_start_and_must_exist() -> None:
    config = demo_config()
    world = SimWorld.from_config(config)
    assert world.now == config.clock.start
    bare = config.model_copy(update={"clock": config.clock.model_copy(update={"start": None})})
    with pytest.raises(ValueError, match="start time"):
        SimWorld.from_config(bare)


def test_transfer_trade_and_funding_reach_the_view_and_the_ledger() -> None:
    world = SimWorld.from_config(demo_config())
    world.transfer("USDC", Decimal("100000"), "vault", "perp-cex")
    world.transfer("USDC", Decimal("100000"), "vault", "spot")
    cex = world.venues["perp-cex"]
    spot = world.venues["spot"]

    short = cex.submit("perp-cex", market_order("BTC/USDC:USDC", Side.SELL, "1"), world.now)
    long = spot.submit("spot", market_order("BTC/USDC", Side.BUY, "1"), world.now)
    events = world.step_to(T0 + timedelta(hours=8))

    assert short.filled == Decimal("1") and long.filled == Decimal("1")
    paid = [e for e in events if isinstance(e, FundingPaid) and e.account == "perp-cex"]
    assert len(paid) == 1 and paid[0].ts == T0 + timedelta(hours=8)
    assert paid[0].amount == (Decimal(1) * paid[0].mark * paid[0].rate).quantize(Decimal("0.00000001"))
    assert world.ledger.total_funding("perp-cex") == paid[0].amount
    assert world.ledger.total_fees() > 0
    view = world.portfolio_view(world.now)
    assert view.vault_cash == Decimal("800000")
    assert view.accounts["perp-cex"].position("BTC/USDC:USDC").size == Decimal("-1")  # type: ignore[union-attr]
    assert view.accounts["spot"].balance("BTC").total == Decimal("1")


def test_step_to_stops_at_every_hourly_settlement() -> None:
    world = SimWorld.from_config(demo_config())
    world.transfer("USDC", Decimal("50000"), "vault", "perp-dex")
    world.venues["perp-dex"].submit("perp-dex", market_order("ETH/USDC:USDC", Side.BUY, "2"), world.now)

    events = world.step_to(T0 + timedelta(hours=24))

    times = [e.ts for e in events if isinstance(e, FundingPaid) and e.account == "perp-dex"]
    assert times == [T0 + timedelta(hours=h) for h in range(1, 25)]
    assert world.ledger.settlements == 24


def test_transfers_refuse_bad_amounts_and_overdrafts() -> None:
    world = SimWorld.from_config(demo_config())
    for bad in (Decimal("NaN"), Decimal("0"), Decimal("-5")):
        with pytest.raises(RejectedError):
            world.transfer("USDC", bad, "vault", "spot")
    with pytest.raises(InsufficientFundsError):
        world.transfer("USDC", Decimal("2000000"), "vault", "spot")
    with pytest.raises(RejectedError, match="unknown transfer end"):
        world.transfer("USDC", Decimal("1"), "vault", "nowhere")
    assert world.vault["USDC"] == Decimal("1000000")


def test_subscribers_see_fills() -> None:
    world = SimWorld.from_config(demo_config())
    seen: list[object] = []
    world.subscribe(seen.append)
    world.transfer("USDC", Decimal("10000"), "vault", "perp-cex")
    world.venues["perp-cex"].submit("perp-cex", market_order("BTC/USDC:USDC", Side.BUY, "0.1"), world.now)
    world.step_to(T0 + timedelta(minutes=5))
    assert any(isinstance(e, OrderFilled) for e in seen) or world.ledger.fills == 1


def _hedged_world(seed: int = 7, shocks: str = "[]", leverage_capital: str = "100000") -> SimWorld:
    world = SimWorld.from_config(demo_config(seed, shocks))
    world.transfer("USDC", Decimal("300000"), "vault", "spot")
    world.transfer("USDC", Decimal(leverage_capital), "vault", "perp-cex")
    world.venues["spot"].submit("spot", market_order("BTC/USDC", Side.BUY, "6"), world.now)
    world.venues["perp-cex"].submit("perp-cex", market_order("BTC/USDC:USDC", Side.SELL, "6"), world.now)
    world.flush()
    return world


def test_ledger_equals_the_sum_of_our_funding_events_over_days() -> None:
    world = _hedged_world()
    seen: list[FundingPaid] = []
    world.subscribe(lambda e: seen.append(e) if isinstance(e, FundingPaid) and e.account == e.venue else None)

    world.step_to(T0 + timedelta(days=10))

    assert len(seen) == 30  # 8h settlements over 10 days
    assert world.ledger.total_funding("perp-cex") == sum((e.amount for e in seen), Decimal(0))
    assert world.ledger.funding_received[("perp-cex", "BTC/USDC:USDC")] - world.ledger.funding_paid[("perp-cex", "BTC/USDC:USDC")] == world.ledger.total_funding()
    assert all(e.amount == (-e.size * e.mark * e.rate).quantize(Decimal("1e-8")) for e in seen)


def test_same_seed_and_same_actions_give_the_same_world() -> None:
    a, b = _hedged_world(), _hedged_world()
    a.step_to(T0 + timedelta(days=3))
    for h in range(1, 73):
        b.step_to(T0 + timedelta(hours=h))
    assert a.portfolio_view(a.now) == b.portfolio_view(b.now)
    assert a.ledger.total_funding() == b.ledger.total_funding()


def test_a_price_gap_moves_the_legs_apart_but_not_the_hedged_nav() -> None:
    world = _hedged_world(shocks='[{at: 30h, asset: BTC, move: "0.30"}]', leverage_capital="150000")
    start_nav = world.portfolio_view(world.now).nav

    events = world.step_to(T0 + timedelta(hours=31))

    view = world.portfolio_view(world.now)
    perp_equity = view.fuse_equity("perp-cex")
    spot_equity = view.fuse_equity("spot")
    assert perp_equity < Decimal("150000") - Decimal("6") * Decimal("42000") * Decimal("0.3")  # the short lost over 30% of 6 BTC
    assert spot_equity > Decimal("300000")
    assert not any(isinstance(e, Liquidated) for e in events)
    assert abs(view.nav - start_nav) < start_nav * Decimal("0.01")  # delta neutral: funding, fees and basis only


def test_an_overlevered_short_is_liquidated_by_the_gap_inside_step_to() -> None:
    world = _hedged_world(shocks='[{at: 30h, asset: BTC, move: "0.35"}]', leverage_capital="85000")
    world.venues["perp-cex"].set_leverage("perp-cex", "BTC/USDC:USDC", Decimal("3"))

    events = world.step_to(T0 + timedelta(hours=31))

    liquidations = [e for e in events if isinstance(e, Liquidated) and e.account == "perp-cex"]
    assert len(liquidations) == 1 and liquidations[0].ts == T0 + timedelta(hours=30)
    assert world.ledger.liquidations["perp-cex"] == 1
    assert world.portfolio_view(world.now).accounts["perp-cex"].positions == ()


def test_lending_interest_accrues_as_the_world_steps() -> None:
    world = SimWorld.from_config(demo_config())
    world.transfer("USDC", Decimal("100000"), "vault", "lending")
    world.lending["lending"].supply("lending", "USDC", Decimal("100000"))

    world.step_to(T0 + timedelta(days=30))

    view = world.portfolio_view(world.now)
    earned = world.ledger.total_interest("lending")
    assert earned > 0
    assert view.fuse_equity("lending") == Decimal("100000") + earned
    assert view.nav == Decimal("1000000") + earned


def test_money_is_conserved_across_the_whole_world() -> None:
    world = _hedged_world(shocks='[{at: 30h, asset: BTC, move: "-0.30"}]')
    world.step_to(T0 + timedelta(days=4))
    total = world.vault["USDC"]
    for venue in world.venues.values():
        total += venue.total_value("USDC")
    # spot BTC is valued in its own asset: the spot venue's BTC nets to zero across accounts
    assert sum((a.balance("BTC") for a in world.venues["spot"].accounts.values()), Decimal(0)) == 0
    assert total == Decimal("1000000")


def test_portfolio_view_cannot_go_back_in_time() -> None:
    world = SimWorld.from_config(demo_config())
    world.step_to(T0 + timedelta(hours=2))
    with pytest.raises(ValueError, match="earlier"):
        world.portfolio_view(T0)
    with pytest.raises(ValueError, match="back"):
        world.step_to(T0)


def test_lending_fuse_options_override_reserve_parameters() -> None:
    config = demo_config()
    fuses_ = tuple(
        f.model_copy(update={"options": {"USDC.fixed_borrow_rate": "0.05", "BTC.ltv": "0.5"}}) if f.name == "lending" else f
        for f in config.fuses
    )
    world = SimWorld.from_config(config.model_copy(update={"fuses": fuses_}))
    market = world.lending["lending"]
    assert market.borrow_rate("USDC") == Decimal("0.05")
    assert market.reserves["BTC"].ltv == Decimal("0.5")
    bad = tuple(f.model_copy(update={"options": {"USDC.colour": "red"}}) if f.name == "lending" else f for f in config.fuses)
    with pytest.raises(ValueError, match="reserve parameter"):
        SimWorld.from_config(config.model_copy(update={"fuses": bad}))


class ScriptedSource:
    """A hand-written MarketSource: constant marks, a funding interval that changes from 8h to 4h at noon."""

    def __init__(self) -> None:
        self.calls: list[object] = []

    def advance(self, now: object) -> dict[str, dict[str, object]]:
        from datetime import datetime

        from alpha.domain.funding import next_settlement_after
        from fuses.sim.source import MarketState

        assert isinstance(now, datetime)
        self.calls.append(now)
        interval = timedelta(hours=8) if now < T0 + timedelta(hours=12) else timedelta(hours=4)
        rate = Decimal("0.0001") if interval == timedelta(hours=8) else Decimal("0.0002")
        nxt = next_settlement_after(now, interval)
        if interval == timedelta(hours=8) and nxt > T0 + timedelta(hours=16):
            nxt = T0 + timedelta(hours=16)
        return {
            "perp-cex": {
                "BTC/USDC:USDC": MarketState(Decimal("40000"), Decimal("39990"), rate, nxt, interval),
                "ETH/USDC:USDC": MarketState(Decimal("2000"), Decimal("1999"), rate, nxt, interval),
            },
            "perp-dex": {
                "BTC/USDC:USDC": MarketState(Decimal("40010"), Decimal("39990"), rate, next_settlement_after(now, timedelta(hours=1)), timedelta(hours=1)),
                "ETH/USDC:USDC": MarketState(Decimal("2001"), Decimal("1999"), rate, next_settlement_after(now, timedelta(hours=1)), timedelta(hours=1)),
            },
            "spot": {"BTC/USDC": MarketState(Decimal("39995"), Decimal("39990")), "ETH/USDC": MarketState(Decimal("1999.5"), Decimal("1999"))},
        }


def test_a_recorded_style_source_drives_the_world_and_interval_changes_are_followed() -> None:
    source = ScriptedSource()
    world = SimWorld.from_config(demo_config(), source=source, start=T0)  # type: ignore[arg-type]
    world.transfer("USDC", Decimal("100000"), "vault", "perp-cex")
    world.venues["perp-cex"].submit("perp-cex", market_order("BTC/USDC:USDC", Side.SELL, "1"), world.now)

    events = world.step_to(T0 + timedelta(hours=24))

    times = [e.ts for e in events if isinstance(e, FundingPaid) and e.account == "perp-cex"]
    assert times == [T0 + timedelta(hours=h) for h in (8, 16, 20, 24)]
    amounts = [e.amount for e in events if isinstance(e, FundingPaid) and e.account == "perp-cex"]
    assert amounts == [Decimal("4"), Decimal("8"), Decimal("8"), Decimal("8")]  # 40000 x the rate last reported for each settlement
    assert world.prices["BTC"] == Decimal("39990")  # the index, averaged over markets
    assert all(t in source.calls for t in times)  # the source was asked at each settlement instant


def test_cash_moved_to_a_venue_settling_in_another_coin_is_converted_at_par_and_stays_in_nav() -> None:
    world = SimWorld.from_config(usdt_vault())

    event = world.transfer("USDT", Decimal("100000"), "vault", "perp-cex")
    back = world.transfer("USDT", Decimal("40000"), "perp-cex", "vault")

    assert event.conversions == (Converted("perp-cex", "USDC", Decimal("100000"), Decimal(1)),)
    assert back.conversions == (Converted("perp-cex", "USDC", Decimal("40000"), Decimal(1)),)
    perp = world.account_snapshot("perp-cex")
    assert [(b.asset, b.total) for b in perp.balances] == [("USDC", Decimal("60000"))]
    view = world.portfolio_view()
    assert view.vault_cash == Decimal("940000") and view.fuse_equity("perp-cex") == Decimal("60000")
    assert view.nav == Decimal("1000000")


def test_at_market_prices_a_depegged_settlement_coin_is_converted_at_its_price() -> None:
    config = usdt_vault("market")
    world = SimWorld.from_config(config, source=StablecoinPriced(config, {"USDC": Decimal("0.98")}))
    before = world.portfolio_view()

    event = world.transfer("USDT", Decimal("98000"), "vault", "perp-cex")
    back = world.transfer("USDT", Decimal("9800"), "perp-cex", "vault")

    rate = 1 / Decimal("0.98")  # USDC per USDT
    assert event.conversions == (Converted("perp-cex", "USDC", Decimal("100000.00000000"), rate),)
    assert back.conversions == (Converted("perp-cex", "USDC", Decimal("10000.00000000"), rate),)
    view = world.portfolio_view()
    assert view.fuse_equity("perp-cex") == Decimal("90000") * Decimal("0.98")
    assert view.nav == before.nav == Decimal("1000000")
    # apply (the gate's and the planner's arithmetic) books the same conversion.
    planned = apply(before, [Transfer(VAULT, "perp-cex", "USDT", Decimal("98000"), "fund")])
    assert planned.fuse_equity("perp-cex") == Decimal("98000") and planned.nav == before.nav
    assert planned.accounts["perp-cex"].balance("USDC").total == Decimal("100000")


def test_a_conversion_never_creates_money_when_the_rate_does_not_divide_evenly() -> None:
    config = usdt_vault("market")
    world = SimWorld.from_config(config, source=StablecoinPriced(config, {"USDC": Decimal("0.97")}))

    into = world.transfer("USDT", Decimal("100"), "vault", "perp-cex")
    out = world.transfer("USDT", Decimal("50"), "perp-cex", "vault")

    assert into.conversions[0].amount == Decimal("103.09278350")  # 100 / 0.97 = 103.0927835051..., rounded down
    assert out.conversions[0].amount == Decimal("51.54639176")  # 50 / 0.97 = 51.5463917525..., rounded up
    assert world.portfolio_view().nav <= Decimal("1000000")
