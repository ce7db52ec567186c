"""The rate-lock decision (``alpha.strategy.ratelock``) and its gate: lock a short perp leg when the fixed APR pays, not otherwise.

The views are the simulated world's (``tests.sim.boros_helpers``): a BTC perp on perp-cex and
a Boros market on its funding quoted around its forecast; the strategy's forecast is stated.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

from alpha.config import load_config_text
from alpha.config.schema import StrategyConfig
from alpha.core.pipeline import decision_step, flatten_step, margin_step
from alpha.domain.actions import HedgeRef, LockRate, RefusalCode, TargetBook, TargetPosition, TopUpRate, UnlockRate
from alpha.domain.apply import apply
from alpha.domain.instruments import Side
from alpha.domain.portfolio import PortfolioView
from alpha.risk.gate import RiskState, gate
from alpha.strategy.ratelock import plan_rates
from alpha.strategy.signals import FundingHistory, MarketSignal, Signals, compute_signals
from fuses.sim.world import SimWorld
from tests.sim.boros_helpers import CONFIG, ScriptedFunding, boros_config, boros_world, open_short
from tests.sim.helpers import PERP, T0

D = Decimal
KEY = f"perp-cex:{PERP}"
MARKET = "SIM-BTC-04JAN2024"


def _signals(forecast: str) -> Signals:
    sig = MarketSignal(KEY, "perp-cex", PERP, "BTC", D(forecast), D(forecast), D(forecast), D(forecast), 10)
    return Signals(T0, markets={KEY: sig})


def _target(short: str) -> TargetBook:
    ref = HedgeRef.carry("BTC", "spot:BTC/USDC", short=KEY)
    return TargetBook(D("1000000"), (TargetPosition("perp-cex", PERP, "BTC", -D(short), ref),), ())


def _held(short: str = "2.003") -> tuple[SimWorld, PortfolioView, StrategyConfig]:
    world, _, _ = boros_world()
    open_short(world, short)
    return world, world.portfolio_view(T0), boros_config()


def test_a_lock_is_decided_when_the_fixed_rate_after_the_fee_beats_the_forecast() -> None:
    _, view, config = _held()
    quote = view.rates.quotes[f"boros:{MARKET}"]

    plan = plan_rates(view, _signals("0.05"), config, _target("2.003"), T0)

    (lock,) = plan.actions
    assert isinstance(lock, LockRate)
    assert lock.size == D("2.00")  # the perp leg's base quantity, rounded down to the size step
    assert lock.underlying == KEY and lock.market == MARKET
    fill = quote.fill_apr(Side.SELL, lock.size)
    assert fill is not None and fill - D("0.001") - D("0.05") >= D("0.01")
    assert lock.limit_apr == quote.bids[1].apr  # the worst level 2.00 takes (levels of 1)
    market = view.rates.markets[f"boros:{MARKET}"]
    want = market.initial_margin(-lock.size, quote.mark_apr, T0) * D("1.5") + market.fee(lock.size, T0)
    assert want <= lock.collateral < want + D("0.00000001")
    assert "beats the forecast to maturity 5.0000%" in lock.reason and "lock_min_edge_apr 1.0000%" in lock.reason


def test_no_lock_when_the_edge_is_under_the_threshold_and_the_note_says_why() -> None:
    _, view, config = _held()
    quote = view.rates.quotes[f"boros:{MARKET}"]
    fill = quote.fill_apr(Side.SELL, D("2.00"))
    assert fill is not None
    just_under = fill - D("0.001") - D("0.0099")  # an edge of 0.99%

    plan = plan_rates(view, _signals(str(just_under)), config, _target("2.003"), T0)

    assert plan.actions == ()
    assert any("under lock_min_edge_apr" in n for n in plan.notes)
    off = config.model_copy(update={"thresholds": config.thresholds.model_copy(update={"lock_min_edge_apr": None})})
    assert plan_rates(view, _signals("0"), off, _target("2.003"), T0).actions == ()


def test_what_is_locked_beyond_the_short_leg_is_bought_back_and_a_bare_zone_returns_its_collateral() -> None:
    world, _, _ = boros_world()
    open_short(world, "2")
    world.rate_deposit("boros", D("0.1"))
    world.rates["boros"].swap(MARKET, Side.SELL, D("2"), D("0"), "l1", T0)
    view = world.portfolio_view(T0)

    plan = plan_rates(view, _signals("0.05"), boros_config(), _target("1.5"), T0)

    (unlock,) = plan.actions
    assert isinstance(unlock, UnlockRate) and unlock.size == D("0.5") and unlock.withdraw == 0
    # After maturity the position is gone: the zone's collateral goes back to the vault.
    world.step_to(T0 + timedelta(days=3, hours=1))
    later = world.portfolio_view()
    (back,) = plan_rates(later, _signals("0.05"), boros_config(), _target("0"), later.ts).actions
    assert isinstance(back, UnlockRate) and back.size == 0 and back.withdraw == later.rates.accounts["boros"].collateral > 0


def test_the_gate_approves_the_lock_and_refuses_one_beyond_the_caps_or_the_leg() -> None:
    _, view, config = _held()
    (lock,) = plan_rates(view, _signals("0.05"), config, _target("2.003"), T0).actions
    assert isinstance(lock, LockRate)

    assert gate([lock], view, config, RiskState()).approved == (lock,)

    def refused(action: LockRate, cfg: StrategyConfig = config, state: RiskState | None = None) -> tuple[RefusalCode, str]:
        result = gate([action], view, cfg, state or RiskState())
        assert result.approved == ()
        return result.refused[0].code, result.refused[0].reason

    assert refused(replace(lock, size=D("2.01")))[0] is RefusalCode.CANNOT_APPLY  # more than the short perp leg
    small = config.model_copy(update={"rates": (config.rates[0].model_copy(update={"max_share": D("0.00001")}),)})
    code, why = refused(lock, small)
    assert code is RefusalCode.VENUE_EXPOSURE and "max_share 0.00001" in why
    tight = config.model_copy(update={"rates": (config.rates[0].model_copy(update={"max_leverage": D("0.01")}),)})
    assert refused(lock, tight)[0] is RefusalCode.LEVERAGE
    assert refused(replace(lock, collateral=D("0")))[0] is RefusalCode.LEVERAGE  # no initial margin
    assert refused(lock, state=RiskState(now=T0 + timedelta(hours=1)))[0] is RefusalCode.BAD_MARKET_DATA  # a stale quote
    assert refused(replace(lock, fuse="nowhere"))[0] is RefusalCode.UNKNOWN_FUSE
    assert refused(lock, state=RiskState(paused=True))[0] is RefusalCode.PAUSED


def test_the_decision_step_locks_the_short_leg_it_opens_and_the_gate_approves_it() -> None:
    base = boros_config()
    # Enter whatever the carry costs (one settlement of history does not pay a week's amortised costs here),
    # on a book deep enough for the whole leg.
    rates = base.rates[0].model_copy(update={"sim": base.rates[0].sim.model_copy(update={"level_size": D("50")})})
    thresholds = base.thresholds.model_copy(update={"entry_min_net_apr": D("-1"), "exit_min_net_apr": D("-1")})
    config = base.model_copy(update={"thresholds": thresholds, "rates": (rates,)})
    world = SimWorld.from_config(config, source=ScriptedFunding(), start=T0)
    view = world.portfolio_view(T0)
    history = FundingHistory()
    history.observe(view)

    step = decision_step(view, compute_signals(history, view, T0), config, RiskState(now=T0), T0)

    locks = [a for a in step.approved if isinstance(a, LockRate)]
    shorts = {leg.quantity for a in step.approved for leg in getattr(a, "legs", ()) if leg.side is Side.SELL and leg.market == PERP}
    assert len(locks) == 1 and shorts and locks[0].size <= max(shorts)
    assert step.approved[-1] == locks[0]  # after the hedge whose short leg it locks
    assert locks[0].reason.startswith(f"lock {KEY} funding to 2024-01-04")


def test_the_margin_step_tops_up_a_zone_that_lost_half_its_cushion_even_while_paused() -> None:
    world, _, _ = boros_world()
    open_short(world, "2")
    boros = world.rates["boros"]
    market = boros.markets[MARKET]
    mark = boros.quote(MARKET, T0).mark_apr
    im = market.initial_margin(D("-2"), mark, T0)
    world.rate_deposit("boros", im * D("1.2") + market.fee(D("2"), T0))  # a thin cushion: 20% over initial margin, under 1 + 0.5 / 2
    boros.swap(MARKET, Side.SELL, D("2"), D("0"), "thin", T0)
    view = world.portfolio_view(T0)
    acct = view.rates.accounts["boros"]
    assert acct.equity < acct.initial_margin * D("1.25")
    instruments = {k: s.instrument for k, s in view.markets.items()}

    step = margin_step(view, boros_config(), instruments, {}, RiskState(paused=True))

    (top,) = [a for a in step.approved if isinstance(a, TopUpRate)]
    assert top.fuse == "boros" and top.asset == "BTC"
    assert acct.equity + top.amount >= acct.initial_margin * D("1.5") > acct.equity + top.amount - D("0.00000001")
    after = apply(view, [top])
    assert after.rates.accounts["boros"].equity >= after.rates.accounts["boros"].initial_margin * D("1.5")
    assert any("top up" in n for n in step.notes)
    # A healthy zone is left alone.
    healthy = margin_step(after, boros_config(), instruments, {}, RiskState())
    assert not [a for a in healthy.planned if isinstance(a, TopUpRate)]


def test_at_maturity_the_leg_is_rolled_onto_the_next_maturity_keeping_the_collateral() -> None:
    line = '      - {market: SIM-BTC-04JAN2024, underlying: "perp-cex:BTC/USDC:USDC", maturity: 2024-01-04T00:00:00Z, size_step: "0.01"}\n'
    assert line in CONFIG
    text = CONFIG.replace(", IMPLIED", "").replace(line, line + line.replace("04JAN", "10JAN").replace("01-04", "01-10"))
    config = load_config_text(text)
    world = SimWorld.from_config(config, source=ScriptedFunding(), start=T0)
    open_short(world, "2")
    world.rate_deposit("boros", D("0.05"))
    world.rates["boros"].swap(MARKET, Side.SELL, D("2"), D("0"), "first", T0)
    world.step_to(T0 + timedelta(days=3, hours=1))  # the first market matured
    view = world.portfolio_view()
    assert view.rates.accounts["boros"].positions == ()

    plan = plan_rates(view, _signals("0"), config, _target("2"), view.ts)

    (roll,) = plan.actions
    assert isinstance(roll, LockRate) and roll.market == "SIM-BTC-10JAN2024" and roll.size == D("2")
    assert roll.collateral == view.rates.accounts["boros"].collateral  # the collateral stays for the roll: none withdrawn


def test_the_operator_flatten_buys_back_the_yu_with_the_legs_it_locked() -> None:
    world, _, _ = boros_world()
    open_short(world, "2")
    world.rate_deposit("boros", D("0.05"))
    world.rates["boros"].swap(MARKET, Side.SELL, D("2"), D("0"), "l1", T0)
    view = world.portfolio_view(T0)
    instruments = {k: s.instrument for k, s in view.markets.items()}

    step = flatten_step(view, boros_config(), instruments, RiskState(paused=True))

    unlocks = [a for a in step.approved if isinstance(a, UnlockRate)]
    assert [(u.market, u.size) for u in unlocks] == [(MARKET, D("2"))]
    assert step.approved[0] == unlocks[0]  # bought back first: the YU is never left without its leg


def test_the_fixed_rate_is_judged_against_funding_expected_to_maturity_not_just_this_week() -> None:
    _, view, config = _held()
    quote = view.rates.quotes[f"boros:{MARKET}"]
    fill = quote.fill_apr(Side.SELL, D("2.00"))
    assert fill is not None
    # Funding is low today (2%) but its long-run mean is far above the fixed rate: it is expected to
    # revert up, so over the term to maturity the floating leg is worth more than the fixed one.
    long_run = fill + D("0.05")
    sig = MarketSignal(KEY, "perp-cex", PERP, "BTC", D("0.02"), D("0.02"), long_run, D("0.02"), 10)
    signals = Signals(T0, markets={KEY: sig}, reversion=timedelta(hours=1))
    term = signals.term_forecast(KEY, view.rates.markets[f"boros:{MARKET}"].maturity - T0)
    assert term is not None and term > fill  # the near forecast (2%) alone would have locked
    plan = plan_rates(view, signals, config, _target("2.003"), T0)
    assert not plan.actions
    assert any("forecast to maturity" in n and "under lock_min_edge_apr" in n for n in plan.notes), plan.notes


def _held_long(quantity: str = "2.003") -> tuple[SimWorld, PortfolioView, StrategyConfig]:
    """The long leg of a spread: perp-cex long ``quantity`` BTC (it pays the funding)."""
    from tests.sim.helpers import market_order

    world, _, _ = boros_world()
    world.transfer("USDC", D("50000"), "vault", "perp-cex")
    world.venues["perp-cex"].submit("perp-cex", market_order(PERP, Side.BUY, quantity), world.now)
    world.flush()
    return world, world.portfolio_view(T0), boros_config()


def _long_target(quantity: str) -> TargetBook:
    ref = HedgeRef.named("spread")
    return TargetBook(D("1000000"), (TargetPosition("perp-cex", PERP, "BTC", D(quantity), ref),), ())


def test_a_long_perp_leg_locks_the_funding_it_pays_by_going_long_yu_when_the_fixed_rate_is_cheaper() -> None:
    _, view, config = _held_long()
    quote = view.rates.quotes[f"boros:{MARKET}"]
    pay = quote.fill_apr(Side.BUY, D("2.00"))
    assert pay is not None
    forecast = pay + D("0.001") + D("0.02")  # funding expected to cost 2% more than the fixed rate and fee

    plan = plan_rates(view, _signals(str(forecast)), config, _long_target("2.003"), T0)

    (lock,) = plan.actions
    assert isinstance(lock, LockRate) and lock.side is Side.BUY and lock.size == D("2.00")
    assert lock.limit_apr == quote.asks[1].apr  # the worst ask 2.00 takes: the most it may pay
    assert "long 2.00 YU" in lock.reason and "the long leg pays" in lock.reason
    assert gate([lock], view, config, RiskState()).approved == (lock,)
    # a long lock is refused on a leg that is not long, and a short lock on a long leg
    _, short_view, _ = _held()
    refused = gate([lock], short_view, config, RiskState()).refused
    assert refused and refused[0].code is RefusalCode.CANNOT_APPLY and "long perp leg 0" in refused[0].reason
    short_lock = replace(lock, side=Side.SELL)
    assert gate([short_lock], view, config, RiskState()).refused[0].code is RefusalCode.CANNOT_APPLY
    # the fixed rate no cheaper than the forecast: no lock, and the note says what was compared
    dear = plan_rates(view, _signals(str(pay)), config, _long_target("2.003"), T0)
    assert dear.actions == () and any("paid vs forecast to maturity" in n for n in dear.notes)


def test_a_long_lock_applies_as_a_long_yu_and_is_sold_back_when_the_leg_goes() -> None:
    world, view, config = _held_long()
    quote = view.rates.quotes[f"boros:{MARKET}"]
    pay = quote.fill_apr(Side.BUY, D("2.00"))
    assert pay is not None
    (lock,) = plan_rates(view, _signals(str(pay + D("0.05"))), config, _long_target("2.003"), T0).actions
    assert isinstance(lock, LockRate)
    after = apply(view, [lock])
    position = after.rates.position(f"boros:{MARKET}")
    assert position is not None and position.size == D("2.00")
    # executed on the simulated market: the zone holds the long YU
    world.rate_deposit("boros", lock.collateral)
    world.rates["boros"].swap(MARKET, Side.BUY, lock.size, lock.limit_apr, "long-1", T0)
    held = world.portfolio_view(T0)
    assert held.rates.position(f"boros:{MARKET}") is not None
    # the spread closes: the long YU is sold back (SELL), at least the worst bid less a tick
    (unlock,) = [a for a in plan_rates(held, _signals("0.05"), config, _long_target("0"), T0).actions if isinstance(a, UnlockRate)]
    assert unlock.side is Side.SELL and unlock.size == D("2.00")
    q = held.rates.quotes[f"boros:{MARKET}"]
    assert unlock.limit_apr == q.bids[1].apr - held.rates.markets[f"boros:{MARKET}"].tick_apr
    closed = apply(held, [unlock]).rates.position(f"boros:{MARKET}")
    assert closed is None
