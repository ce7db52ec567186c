"""``decide``: from the portfolio, the signals and the strategy, the target book to hold.

Pure: values in, a ``TargetBook`` out; ``now`` is an argument.

How it chooses:

1. Validate every market snapshot it uses (``MarketSnapshot.validate`` with
   ``config.risk.max_data_age``) and every price; bad data raises ``BadMarketData``.
2. Build candidate hedges per farmed asset (long spot / short perp, cross-venue perp spreads,
   and long perp + synthetic short in a lending fuse), each with its expected holding
   (``expected_holding``: how long what it earns has kept its sign in the trailing history),
   and their expected net carry at the size the caps allow (``carry.expected_carry``, costs
   amortised over the holding). A new hedge is kept when its net carry clears the entry
   threshold; an open one while its expected carry over the holding loses less than closing
   it costs (``carry.worth_holding``: hysteresis sized by cost); a synthetic short, once the
   asset's funding regime is positive again (``Signals.funding_regime``), only while its
   gross carry alone clears the exit threshold.
3. Greedily, best first, give each hedge the largest notional that fits every constraint
   still free: each fuse's capital cap (max_share x NAV), each venue's gross exposure
   (max_venue_exposure x NAV), each asset's hedged notional (risk.max_asset_share x NAV)
   and the NAV above the idle buffer. A market is used by one
   hedge at most. Both legs get the same base quantity. New hedges rank by net APR; an open
   hedge by its gross APR plus its exit cost amortised (``carry.ranking_score``) over its
   holding but at most ``thresholds.holding_period``, so it is only displaced (a venue
   switch) when the challenger's gain pays the switch within that horizon.
4. Every leg is funded with headroom, so that no order is refused by the venue: a spot leg
   ties up its notional; a perp leg the venue's initial margin at its own mark (tiered by
   notional when the instrument carries ``margin_tiers``, else notional / max_leverage; in the
   market's settlement coin, valued in the base asset at the view's prices) plus
   ``margin.initial_cushion`` of it, and at least maintenance / ``margin.target_ratio``; a
   synthetic short its collateral; and every order a leg needs adds ``COST_HEADROOM`` times
   its taker fee + slippage estimated from the book. Hedges are sized from the capital left
   after that headroom, and to ``1 / (1 + pnl.drift_tolerance)`` of the most the caps
   allow, so that price drift within the tolerance never breaks a cap.
5. PnL policy: an open hedge keeps its quantities while its notional stays within
   ``pnl.drift_tolerance`` above and twice that below the target (``constant_notional``), and
   while the positions themselves fit the caps (other hedges' drift allowances never trim it;
   a hedge over a cap is cut by at least the tolerance of its own notional); ``sentiment_hybrid`` lets
   the notional grow while prices rise (up to the caps) and rebalances at half the tolerance
   while they fall. A new hedge smaller than ``rebalance.min_hedge_share`` x NAV is not opened.
6. Capital above the buffer that no hedge needs is supplied to enabled lending fuses.
7. Dead band: a fuse whose capital would move by less than ``rebalance.min_transfer`` or
   ``rebalance.min_capital_share`` of its capital keeps what it has, unless an order of the
   plan needs the money, the fuse is over its cap, or the idle buffer needs it back; a margin
   deficit on an unchanged hedge is left to the margin monitor while leverage is within the
   fuse's maximum and the margin ratio within ``margin.target_ratio``.
8. A margin fuse keeps at least what its venue will not let out (``margin.pinned``: its
   unrealised profit, and the initial margin of the positions it keeps); if that takes idle
   below the buffer, the allocation runs again without that capital in the budget.

Speed, and the reference: ``decide`` sizes only the candidates that could clear their
threshold with no slippage (``carry.may_clear``, ``carry.fee_floor_carry``: both ask
``worth_holding``), ranks them lazily from those upper bounds, drops the ones that would be
passed over wherever they rank, screens each size in floats (``carry.screen_carry``, exact
when too close to tell) and prices exactly only the sizes it keeps. ``reference=True`` runs
the plain algorithm (every candidate sized, every size priced in Decimal); both give the
same ``TargetBook`` (tests/strategy/test_strategy_pruned_decision.py, the golden backtests).
The prune holds as long as a threshold never favours a hedge for costing more or earning less.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal

from alpha.config.schema import FuseConfig, FuseKind, PnlPolicyKind, StrategyConfig, Thresholds
from alpha.domain.account import AccountSnapshot
from alpha.domain.actions import FuseAllocation, HedgeRef, TargetBook, TargetPosition
from alpha.domain.instruments import Instrument, InstrumentKind, Side
from alpha.domain.market import BadMarketData, MarketSnapshot
from alpha.domain.money import ONE, ZERO, ceil_to_step, floor_to_step
from alpha.domain.portfolio import PortfolioView, market_key
from alpha.risk.exposure import base_of, fuse_gross, holdings
from alpha.risk.perp_power import LoopCheck, check_loop
from alpha.strategy.carry import (
    BorrowLeg,
    Candidate,
    Carry,
    HedgeKind,
    TradeLeg,
    expected_carry,
    fee_floor_carry,
    fillable_notional,
    leg_cost,
    may_clear,
    ranking_score,
    screen_carry,
    worth_holding,
)
from alpha.strategy.margin import pinned
from alpha.strategy.signals import Persistence, Regime, Signals

# Collateral of a synthetic short is sized for this multiple of the minimum health factor.
HEALTH_HEADROOM = Decimal("1.25")
# Halvings tried when the full size does not clear the threshold (slippage grows with size).
SIZE_HALVINGS = 8
SIZE_BISECTIONS = 6
# Each order a leg needs is funded with this multiple of its estimated taker fee + slippage.
COST_HEADROOM = Decimal(2)


@dataclass(frozen=True, slots=True)
class _LegRate:
    """Capital a leg ties up, per unit of notional held (``base``) and traded (``cost``, an upper bound)."""

    base: Decimal
    cost: Decimal

    @property
    def total(self) -> Decimal:
        return self.base + COST_HEADROOM * self.cost


@dataclass(slots=True)
class _Room:
    """What is still free while hedges are allocated."""

    fuse: dict[str, Decimal]
    venue: dict[str, Decimal]
    budget: Decimal
    used_markets: set[str] = field(default_factory=set)
    allowance: Decimal = ZERO  # budget held back for hedges' drift; lending may use it meanwhile
    asset: dict[str, Decimal] = field(default_factory=dict)  # hedged notional (one leg) still allowed per asset


@dataclass(frozen=True, slots=True)
class _Chosen:
    candidate: Candidate
    quantity: Decimal  # base units, both legs (and the debt)
    carry: Carry
    is_open: bool
    note: str
    rates: dict[str, _LegRate]


def _check_price(view: PortfolioView, asset: str) -> Decimal:
    if asset == view.base_asset:
        return ONE
    value = view.prices.get(asset)
    if value is None:
        raise BadMarketData(f"price of {asset} is missing from the portfolio view")
    if not isinstance(value, Decimal) or not value.is_finite():
        raise BadMarketData(f"price of {asset} {value!r} is not a finite number")
    if value <= 0:
        raise BadMarketData(f"price of {asset} {value} is not positive")
    return value


def _validated(view: PortfolioView, fuse: str, market: str, now: datetime, config: StrategyConfig, why: str) -> MarketSnapshot:
    snap = view.market(fuse, market)
    if snap is None:
        raise BadMarketData(f"{fuse}:{market}: market data is missing ({why})")
    snap.validate(now, config.risk.max_data_age)
    if snap.instrument.kind.is_perp and snap.funding is None:
        raise BadMarketData(f"{fuse}:{market}: funding rate is missing")
    if snap.book is None:
        raise BadMarketData(f"{fuse}:{market}: order book is missing (slippage cannot be estimated)")
    return snap


def _trading_fuses(config: StrategyConfig) -> list[FuseConfig]:
    return [f for f in config.enabled_fuses if f.kind is not FuseKind.LENDING]


def _lending_fuses(config: StrategyConfig) -> list[FuseConfig]:
    return [f for f in config.enabled_fuses if f.kind is FuseKind.LENDING]


def _leg(snap: MarketSnapshot, fuse: FuseConfig, side: Side) -> TradeLeg:
    lev = fuse.max_leverage if snap.instrument.kind.is_perp else min(fuse.max_leverage, ONE)
    return TradeLeg(snap.fuse, snap.market, market_key(snap.fuse, snap.market), snap.instrument, side, lev)


def expected_holding(p: Persistence | None, thresholds: Thresholds) -> timedelta:
    """Return how long a hedge earning the positive side of a series with persistence ``p`` is expected to be held.

    The mean length of the series' positive runs, estimated as an exponential duration with
    a prior (``thresholds.holding_period``, worth one run): (prior + time positive) / (1 +
    positive runs that ended in the window); bounded to ``[min_holding, max_holding]``. A run
    still going counts as time, not as an end, so a series that never turned gives the longest
    holding its window shows. Without history: the prior.
    """
    prior = thresholds.holding_period
    if p is None:
        return prior
    estimate = (prior + p.positive_time) / (1 + p.positive_runs)
    return min(max(estimate, thresholds.min_holding), thresholds.max_holding)


def _adverse(c: Candidate, signals: Signals) -> bool:
    """Whether the asset's funding regime works against a synthetic short (funding mostly positive again).

    Only the synthetic short, a hedge held for a bear regime, follows the regime out: a cash and
    carry is left on its forecast alone, since funding's long-run mean is what it earns and a few
    negative days inside a positive year do not pay a round trip.
    """
    return c.kind is HedgeKind.SYNTHETIC_SHORT and signals.funding_regime(c.asset) is Regime.BULL


def candidates(
    view: PortfolioView, signals: Signals, config: StrategyConfig, snapshots: dict[str, MarketSnapshot]
) -> list[Candidate]:
    """Return every hedge the enabled fuses allow for the farmed assets.

    Each carries its expected holding (``expected_holding`` of the persistence of what it
    earns: the short perp's funding, the spread, or the negative of the long perp's funding),
    over which its costs are amortised, and its funding forecast (``Signals.forecast``).
    """
    fuses = {f.name: f for f in config.enabled_fuses}
    out: list[Candidate] = []

    def add(c: Candidate) -> None:
        out.append(replace(c, holding=_holding_for(c, signals, config.thresholds)))

    def forecast(snap: MarketSnapshot) -> Decimal:
        value = signals.forecast(market_key(snap.fuse, snap.market))
        if value is not None:
            return value
        assert snap.funding is not None
        return snap.funding.annualised

    for asset in config.assets:
        spots = [s for s in snapshots.values() if s.instrument.base == asset and s.instrument.kind is InstrumentKind.SPOT and s.fuse in fuses]
        perps = [s for s in snapshots.values() if s.instrument.base == asset and s.instrument.kind.is_perp and s.fuse in fuses]
        for s in spots:
            for p in perps:
                add(Candidate(asset, HedgeKind.SPOT_PERP, _leg(s, fuses[s.fuse], Side.BUY), _leg(p, fuses[p.fuse], Side.SELL), None, forecast(p)))
        for lo in perps:
            for hi in perps:
                if lo is hi:
                    continue
                add(
                    Candidate(
                        asset, HedgeKind.PERP_PERP, _leg(lo, fuses[lo.fuse], Side.BUY), _leg(hi, fuses[hi.fuse], Side.SELL), None, forecast(hi) - forecast(lo)
                    )
                )
        for borrow in _borrow_legs(view, config, asset):
            for p in perps:
                add(Candidate(asset, HedgeKind.SYNTHETIC_SHORT, _leg(p, fuses[p.fuse], Side.BUY), None, borrow, -forecast(p)))
    return out


def _loop(view: PortfolioView, config: StrategyConfig, lf: FuseConfig) -> LoopCheck | None:
    """The loop a synthetic short would build on ``lf``, checked against its market (None: it cannot lend)."""
    acct = view.accounts.get(lf.name)
    if view.base_asset not in lf.assets or acct is None or acct.lending is None or acct.lending.liquidation_threshold <= 0:
        return None
    ratio = config.margin.min_health_factor * HEALTH_HEADROOM / acct.lending.liquidation_threshold
    ratio = max(ratio, ONE / lf.max_leverage)
    return check_loop(ratio, acct.lending.liquidation_threshold, config.margin.min_health_factor)


def _loop_refusals(view: PortfolioView, config: StrategyConfig) -> list[str]:
    """Why a lending fuse that could lend a farmed asset builds no loop (its leverage exceeds the market's)."""
    out: list[str] = []
    for lf in _lending_fuses(config):
        loop = _loop(view, config, lf)
        if loop is not None and not loop.ok and any(a in lf.assets for a in config.assets):
            out.append(f"{lf.name}: no synthetic short: {loop.reason}")
    return out


def _borrow_legs(view: PortfolioView, config: StrategyConfig, asset: str) -> list[BorrowLeg]:
    """The lending fuses ``asset`` can be borrowed on (a synthetic short), in the strategy's order.

    The loop (collateral per unit of debt) is checked against the market's minimum ratio
    first (``perp_power.check_loop``): one whose leverage exceeds the market's maximum is not
    built (``_loop_refusals`` says why).
    """
    out: list[BorrowLeg] = []
    for lf in _lending_fuses(config):
        if asset not in lf.assets:
            continue
        loop = _loop(view, config, lf)
        if loop is None or not loop.ok:
            continue
        rates = next((lp for lp in view.accounts[lf.name].lending_positions if lp.asset == asset), None)
        if rates is None:
            continue  # borrow rate unknown: never borrow blind
        out.append(BorrowLeg(lf.name, rates.borrow_apr, loop.collateral_ratio))
    return out


def _pruned_candidates(
    view: PortfolioView,
    signals: Signals,
    config: StrategyConfig,
    snapshots: dict[str, MarketSnapshot],
    held: dict[tuple[str, str], Decimal],
    borrowed: dict[tuple[str, str], Decimal],
) -> tuple[list[Candidate], list[Candidate]]:
    """The candidates worth sizing, and those that hold every leg (the plain ``candidates`` list for ``_book``).

    Worth sizing: every candidate that could clear its threshold at some size (entry, or exit
    for an open hedge): with no costs at all (``carry.may_clear``) and then with its taker
    fees only (``carry.fee_floor_carry``; slippage is never negative). The rest are never
    built or never sized: the forecasts are sorted per asset, and since more gross never
    makes a hedge less worth holding, the scan of each asset's pairs stops at the first that
    cannot clear even with no costs. The
    second list is ``candidates()`` restricted to the candidates whose every leg is held, in
    the same order (the only ones ``_book`` closes).
    """
    fuses = {f.name: f for f in config.enabled_fuses}
    thresholds = config.thresholds
    spots_of: dict[str, list[MarketSnapshot]] = {}
    perps_of: dict[str, list[MarketSnapshot]] = {}
    for snap in snapshots.values():
        if snap.fuse not in fuses:
            continue
        if snap.instrument.kind is InstrumentKind.SPOT:
            spots_of.setdefault(snap.instrument.base, []).append(snap)
        elif snap.instrument.kind.is_perp:
            perps_of.setdefault(snap.instrument.base, []).append(snap)

    def forecast(snap: MarketSnapshot) -> Decimal:
        value = signals.forecast(market_key(snap.fuse, snap.market))
        if value is not None:
            return value
        assert snap.funding is not None
        return snap.funding.annualised

    def is_held(snap: MarketSnapshot) -> bool:
        return (snap.fuse, snap.market) in held

    pool: dict[str, Candidate] = {}
    closing: list[Candidate] = []

    def add(c: Candidate) -> None:
        """Keep ``c`` if it could clear its threshold with its fees only (an open hedge: always, its rule credits costs)."""
        c = replace(c, holding=_holding_for(c, signals, thresholds))
        is_open = _current_quantity(c, held, borrowed) > 0
        gross = c.funding_apr - (c.borrow.borrow_apr if c.borrow is not None else ZERO)
        if not may_clear(gross, thresholds, is_open=is_open):
            return
        if is_open or worth_holding(fee_floor_carry(c, c.holding, is_open=False), thresholds, is_open=False, holding=c.holding):
            pool.setdefault(str(c.hedge_id), c)

    def new_may_clear(gross: Decimal) -> bool:
        return may_clear(gross, thresholds, is_open=False)

    legs: dict[tuple[int, Side], TradeLeg] = {}

    def leg(snap: MarketSnapshot, side: Side) -> TradeLeg:
        key = (id(snap), side)
        if key not in legs:
            legs[key] = _leg(snap, fuses[snap.fuse], side)
        return legs[key]

    for asset in config.assets:
        spots = spots_of.get(asset, [])
        perps = perps_of.get(asset, [])
        fc = {id(p): forecast(p) for p in perps}
        borrows = _borrow_legs(view, config, asset)
        # Open hedges first (judged on the exit threshold), then the scans for new ones (an
        # open hedge met again in a scan is already kept or dropped: add() keeps one of each).
        longs = [x for x in (*spots, *perps) if held.get((x.fuse, x.market), ZERO) > 0]
        shorts = [p for p in perps if held.get((p.fuse, p.market), ZERO) < 0]
        for lo in longs:
            kind = HedgeKind.PERP_PERP if lo.instrument.kind.is_perp else HedgeKind.SPOT_PERP
            for hi in shorts:
                if hi is not lo:
                    gross = fc[id(hi)] - fc[id(lo)] if lo.instrument.kind.is_perp else fc[id(hi)]
                    add(Candidate(asset, kind, leg(lo, Side.BUY), leg(hi, Side.SELL), None, gross))
            if lo.instrument.kind.is_perp:
                for borrow in borrows:
                    if borrowed.get((borrow.fuse, asset), ZERO) > 0:
                        add(Candidate(asset, HedgeKind.SYNTHETIC_SHORT, leg(lo, Side.BUY), None, borrow, -fc[id(lo)]))
        by_forecast = sorted(perps, key=lambda p: fc[id(p)], reverse=True)
        for hi in by_forecast:
            if not spots or not new_may_clear(fc[id(hi)]):
                break
            for x in spots:
                add(Candidate(asset, HedgeKind.SPOT_PERP, leg(x, Side.BUY), leg(hi, Side.SELL), None, fc[id(hi)]))
        for lo in reversed(by_forecast):
            any_hi = False
            for hi in by_forecast:
                if hi is lo:
                    continue
                gross = fc[id(hi)] - fc[id(lo)]
                if not new_may_clear(gross):
                    break
                add(Candidate(asset, HedgeKind.PERP_PERP, leg(lo, Side.BUY), leg(hi, Side.SELL), None, gross))
                any_hi = True
            if not any_hi:
                break
        for borrow in borrows:
            for lo in reversed(by_forecast):
                if not new_may_clear(-fc[id(lo)] - borrow.borrow_apr):
                    break
                add(Candidate(asset, HedgeKind.SYNTHETIC_SHORT, leg(lo, Side.BUY), None, borrow, -fc[id(lo)]))
        # What _book may close: candidates() over the held markets only, in its order.
        spots_h = [x for x in spots if is_held(x)]
        perps_h = [x for x in perps if is_held(x)]
        for x in spots_h:
            for p in perps_h:
                closing.append(Candidate(asset, HedgeKind.SPOT_PERP, _leg(x, fuses[x.fuse], Side.BUY), _leg(p, fuses[p.fuse], Side.SELL), None, fc[id(p)]))
        for lo in perps_h:
            for hi in perps_h:
                if lo is not hi:
                    closing.append(Candidate(asset, HedgeKind.PERP_PERP, _leg(lo, fuses[lo.fuse], Side.BUY), _leg(hi, fuses[hi.fuse], Side.SELL), None, fc[id(hi)] - fc[id(lo)]))
        for borrow in borrows:
            for p in perps_h:
                closing.append(Candidate(asset, HedgeKind.SYNTHETIC_SHORT, _leg(p, fuses[p.fuse], Side.BUY), None, borrow, -fc[id(p)]))
    return list(pool.values()), [replace(c, holding=_holding_for(c, signals, thresholds)) for c in closing]


def _holding_for(c: Candidate, signals: Signals, thresholds: Thresholds) -> timedelta:
    """The expected holding of ``c`` (``expected_holding`` of the persistence of what it earns), on both decision paths."""
    if c.kind is HedgeKind.PERP_PERP:
        assert c.short is not None
        pair = signals.pairs.get((c.long.key, c.short.key))
        return expected_holding(pair, thresholds) if pair is not None else thresholds.holding_period
    key = c.short.key if c.kind is HedgeKind.SPOT_PERP and c.short is not None else c.long.key
    sig = signals.markets.get(key)
    if sig is None:
        return thresholds.holding_period
    return expected_holding(sig.persistence if c.kind is HedgeKind.SPOT_PERP else sig.persistence.flipped(), thresholds)


def _rank_horizon(c: Candidate, config: StrategyConfig, *, is_open: bool) -> timedelta:
    """The horizon ``c`` is ranked over: a switch away from an open hedge must pay within the prior holding at most
    (how long the spread between two venues lasts is not how long funding keeps its sign)."""
    return min(c.holding, config.thresholds.holding_period) if is_open else c.holding


def _maintenance_rate(acct: AccountSnapshot | None) -> Decimal:
    """Maintenance margin per unit of notional a margin account is charged now (0 without positions)."""
    if acct is None or acct.margin is None:
        return ZERO
    notional = sum((abs(p.size) * p.mark_price for p in acct.positions), ZERO)
    return acct.margin.maintenance_margin / notional if notional > 0 else ZERO


def _in_base(view: PortfolioView, amount: Decimal, coin: str) -> Decimal:
    """Value ``amount`` of a market's quote ``coin`` in the base asset (a coin that is not cash: as it is)."""
    return view.convert(amount, coin, view.base_asset) if coin in view.cash else amount


def _perp_margin(leg: TradeLeg, snap: MarketSnapshot, quantity: Decimal, config: StrategyConfig, view: PortfolioView) -> Decimal:
    """Capital a perp leg of ``quantity`` ties up on its venue (see the module docstring, point 4).

    The venue's initial margin at its own mark, tiered by notional when the instrument carries
    the venue's tiers (``Instrument.margin_tiers``), plus ``margin.initial_cushion`` of it; at
    least maintenance / ``margin.target_ratio``. The venue counts it in the market's
    settlement coin; it is returned in the base asset (``PortfolioView.convert``).
    """
    notional = abs(quantity) * snap.mark
    margin = snap.instrument.initial_margin(notional, leg.leverage) * (ONE + config.margin.initial_cushion)
    tiers = snap.instrument.margin_tiers
    if tiers is not None:
        maintenance = tiers.maintenance_margin(notional)
    else:
        maintenance = notional * _maintenance_rate(view.accounts.get(leg.fuse))
    return _in_base(view, max(margin, maintenance / config.margin.target_ratio), snap.instrument.quote)


def _base_rate(leg: TradeLeg, config: StrategyConfig, view: PortfolioView, snap: MarketSnapshot, notional: Decimal) -> Decimal:
    """Capital per unit of notional (valued at the view's price) a leg of ``notional`` ties up while held.

    Tiered margin only grows per unit with size, so the rate at ``notional`` bounds the rate
    of every smaller leg; ``notional`` 0 gives the rate of the smallest tier.
    """
    if not leg.instrument.kind.is_perp:
        return ONE / leg.leverage
    price = view.price(leg.instrument.base)
    notional = notional if notional > 0 else price
    return _perp_margin(leg, snap, notional / price, config, view) / notional


def _cost_bound(snap: MarketSnapshot, side: Side, quantity: Decimal) -> Decimal | None:
    """Taker fee + slippage of trading ``quantity`` either way (the whole book if it is deeper)."""
    worst = ZERO
    for s in (side, side.opposite):
        cost = leg_cost(snap, s, quantity)
        if cost is None and snap.book is not None and snap.book.depth(s) > 0:
            cost = leg_cost(snap, s, snap.book.depth(s))
        if cost is None:
            return None
        worst = max(worst, cost)
    return worst


def _basis(snap: MarketSnapshot, view: PortfolioView) -> Decimal:
    """How far a market trades from the price the view values its asset at (a share of that price).

    Capital is valued at the view's price; orders fill around the market's own mark.
    """
    price = view.prices.get(snap.instrument.base)
    if price is None or price <= 0:
        return ZERO
    return abs(snap.mark - price) / price


def _budget_rate(c: Candidate, rates: dict[str, _LegRate]) -> Decimal:
    total = sum((rates[leg.key].total for leg in c.legs), ZERO)
    if c.borrow is not None:
        total += c.borrow.collateral_ratio
    return total


def _coefficients(
    c: Candidate, venue_of: dict[str, str], rates: dict[str, _LegRate]
) -> tuple[dict[str, Decimal], dict[str, Decimal]]:
    """Per unit of notional: capital per fuse (with headroom) and gross per venue the hedge uses."""
    fuse: dict[str, Decimal] = {}
    venue: dict[str, Decimal] = {}
    for leg in c.legs:
        fuse[leg.fuse] = fuse.get(leg.fuse, ZERO) + rates[leg.key].total
        v = venue_of[leg.fuse]
        venue[v] = venue.get(v, ZERO) + ONE
    if c.borrow is not None:
        fuse[c.borrow.fuse] = fuse.get(c.borrow.fuse, ZERO) + c.borrow.collateral_ratio
        v = venue_of[c.borrow.fuse]
        venue[v] = venue.get(v, ZERO) + ONE
    return fuse, venue


def _max_notional(c: Candidate, room: _Room, venue_of: dict[str, str], rates: dict[str, _LegRate]) -> Decimal:
    fuse_k, venue_k = _coefficients(c, venue_of, rates)
    limits = [room.budget / _budget_rate(c, rates)]
    limits += [room.fuse.get(f, ZERO) / k for f, k in fuse_k.items()]
    limits += [room.venue.get(v, ZERO) / k for v, k in venue_k.items()]
    if c.asset in room.asset:
        limits.append(room.asset[c.asset])
    return max(min(limits), ZERO)


def _below_minimum(inst: Instrument, quantity: Decimal, price: Decimal) -> bool:
    """Return whether a position (or order) of ``quantity`` at ``price`` is under the market's minimum size."""
    return quantity < inst.min_quantity or quantity * price < inst.min_notional


def _round_quantity(c: Candidate, quantity: Decimal, price: Decimal, tolerance: Decimal) -> Decimal | None:
    """Round ``quantity`` to every leg's lot step; None if a leg cannot take it (minimums, steps)."""
    step = max(leg.instrument.lot_step for leg in c.legs)
    q = floor_to_step(quantity, step)
    if q <= 0:
        return None
    for leg in c.legs:
        lq = leg.instrument.round_quantity(q)
        if lq != q and abs(q - lq) > tolerance * q:
            return None
        if _below_minimum(leg.instrument, lq, price):
            return None
        q = min(q, lq)
    return q


def _snap_to_holdings(c: Candidate, quantity: Decimal, held: dict[tuple[str, str], Decimal], price: Decimal) -> Decimal | None:
    """Adjust a hedge's quantity so that no leg needs an order smaller than its market's minimum.

    A leg within one minimum order of its holding keeps the holding when growing, and shrinks
    by at least one minimum order when shrinking (the caps may require it). Return None if no
    quantity works: a shrink that takes a leg below its market's minimum leaves nothing the
    venues would take, so this hedge is not chosen (and ``_book`` closes what it holds unless
    another hedge takes its markets).
    """
    q = quantity
    for _ in range(3):
        changed = False
        for leg in c.legs:
            inst = leg.instrument
            smallest = ceil_to_step(max(inst.min_quantity, inst.min_notional / price) * Decimal("1.001"), inst.lot_step)
            have = held.get((leg.fuse, leg.market), ZERO) * leg.side.sign
            if have <= 0 or q == have or abs(q - have) >= smallest:
                continue
            q = have if have < q else floor_to_step(have - smallest, max(x.instrument.lot_step for x in c.legs))
            changed = True
            if q <= 0 or any(_below_minimum(x.instrument, q, price) for x in c.legs):
                return None
        if not changed:
            return q
    return None


def _current_quantity(c: Candidate, held: dict[tuple[str, str], Decimal], borrowed: dict[tuple[str, str], Decimal]) -> Decimal:
    """Return the hedged quantity a candidate already holds (0 when it is not open)."""
    long_q = held.get((c.long.fuse, c.long.market), ZERO)
    if c.short is not None:
        short_q = -held.get((c.short.fuse, c.short.market), ZERO)
    else:
        assert c.borrow is not None
        short_q = borrowed.get((c.borrow.fuse, c.asset), ZERO)
    if long_q <= 0 or short_q <= 0:
        return ZERO
    return min(long_q, short_q)


def decide(view: PortfolioView, signals: Signals, config: StrategyConfig, now: datetime, *, reference: bool = False) -> TargetBook:
    """Return the target book: hedges sized under every cap, lending supply, idle buffer kept.

    Raise ``BadMarketData`` (before anything is decided) if any snapshot or price it would
    use is missing, non-finite, non-positive or stale; ``ValueError`` for an unusable view.
    """
    if view.base_asset != config.vault.base_asset:
        raise ValueError(f"the view is valued in {view.base_asset} but the vault's base asset is {config.vault.base_asset}")
    if view.cash != config.cash_assets:
        raise ValueError(f"the view counts {sorted(view.cash)} as cash but the strategy's cash is {sorted(config.cash_assets)}")
    for asset in config.assets:
        if asset not in view.cash:
            _check_price(view, asset)
    try:
        nav = view.nav
    except KeyError as exc:
        raise BadMarketData(f"cannot value the portfolio: {exc.args[0]}") from None
    if not nav.is_finite() or nav <= 0:
        raise ValueError(f"NAV {nav} is not positive: nothing can be allocated")
    held = holdings(view)
    snapshots: dict[str, MarketSnapshot] = {}
    for f in _trading_fuses(config):
        for market in f.markets:
            if base_of(market) in config.assets:
                snapshots[market_key(f.name, market)] = _validated(view, f.name, market, now, config, "the strategy trades it")
    notes: list[str] = _loop_refusals(view, config)
    for (fuse, market), qty in sorted(held.items()):
        key = market_key(fuse, market)
        if key in snapshots:
            continue
        if "/" not in market:
            notes.append(f"{fuse} holds {qty} {market} with no market to trade it on; left as is")
            continue
        snapshots[key] = _validated(view, fuse, market, now, config, f"a position of {qty} is held")
    for asset in {*config.assets, *(s.instrument.base for s in snapshots.values())}:
        if asset not in view.cash:
            _check_price(view, asset)

    borrowed: dict[tuple[str, str], Decimal] = {}
    supplied: dict[tuple[str, str], Decimal] = {}
    for name, acct in view.accounts.items():
        for lp in acct.lending_positions:
            if lp.borrowed:
                borrowed[(name, lp.asset)] = lp.borrowed
            if lp.supplied:
                supplied[(name, lp.asset)] = lp.supplied

    venue_of = {f.name: f.venue for f in config.fuses}
    for name in view.accounts:
        venue_of.setdefault(name, name)
    # The pruned path builds only the candidates that could clear their threshold (and those
    # _book may close); the reference builds them all, in allocate, as first written.
    pool, closing = ([], []) if reference else _pruned_candidates(view, signals, config, snapshots, held, borrowed)
    carries: dict[tuple[str, Decimal, bool], Carry | None] = {}  # the pruned path's memo: (hedge, notional, open)
    screens: dict[tuple[str, Decimal, bool], bool] = {}  # and whether that carry clears its threshold

    def allocate(held_back: Decimal) -> tuple[TargetBook, Decimal]:
        """Allocate with ``held_back`` of the budget kept for capital that cannot leave its fuse."""
        reasons = list(notes)

        def fresh_room() -> _Room:
            room = _Room(
                fuse={f.name: f.max_share * nav for f in config.enabled_fuses},
                venue={},
                # Idle is kept a little above the buffer, so that NAV drifting up between rebalances
                # does not call for a small withdrawal every time (the dead band, point 7).
                budget=max(nav * (ONE - config.idle_buffer) - config.rebalance.min_transfer - held_back, ZERO),
            )
            for v in set(venue_of.values()):
                room.venue[v] = config.risk.max_venue_exposure * nav
            room.asset = {a: config.risk.max_asset_share * nav for a in config.assets}
            return room

        room = fresh_room()
        # The same room counting every hedge at its size only, without the drift allowance: an
        # open hedge is over a cap when the positions themselves would be, not when other hedges'
        # allowances squeeze it (which would trim a small hedge beside a large one at every step).
        actual = fresh_room()
        tol = config.delta_tolerance
        drift = config.pnl.drift_tolerance
        all_candidates = candidates(view, signals, config, snapshots) if reference else closing
        chosen: list[_Chosen] = []

        def limit_for(c: Candidate, room: _Room = room) -> tuple[Decimal, dict[str, _LegRate]] | None:
            """The largest notional the room allows with headroom, and the leg rates used (None: a book is empty)."""
            base = {leg.key: _LegRate(_base_rate(leg, config, view, snapshots[leg.key], ZERO), ZERO) for leg in c.legs}
            x0 = _max_notional(c, room, venue_of, base)
            if x0 <= 0:
                return ZERO, base
            rates: dict[str, _LegRate] = {}
            for leg in c.legs:
                snap = snapshots[leg.key]
                # Slippage and tiered margin grow with size: their rates at x0 bound any smaller size.
                cost = _cost_bound(snap, leg.side, x0 / snap.mark)
                if cost is None:
                    return None
                # Spot coins are valued at the view's price but sell at their market: the whole basis
                # counts. A perp's equity is the venue's own; its margin is taken at mark in the base rate.
                basis = ZERO if snap.instrument.kind.is_perp else _basis(snap, view)
                rates[leg.key] = _LegRate(_base_rate(leg, config, view, snap, x0), cost + basis)
            return _max_notional(c, room, venue_of, rates), rates

        def evaluate(c: Candidate, limit: Decimal, *, is_open: bool | None = None) -> tuple[Decimal, Carry] | None:
            """The largest notional up to ``limit`` whose carry clears the threshold (entry, or exit if open)."""
            if is_open is None:
                is_open = _current_quantity(c, held, borrowed) > 0
            if reference or is_open:
                # (an open hedge's rule credits its exit cost: no bound prunes it; always exact)
                return plain_evaluate(c, limit, is_open)
            found = quick_evaluate(c, limit, is_open)
            if found is not None and not worth_holding(found[1], config.thresholds, is_open=is_open, holding=c.holding):
                return plain_evaluate(c, limit, is_open)  # (the screen is sure; never trusted blindly)
            return found

        def plain_evaluate(c: Candidate, limit: Decimal, is_open: bool) -> tuple[Decimal, Carry] | None:
            """``evaluate`` as first written: every size tried is priced exactly."""
            adverse = _adverse(c, signals)

            def passing(x: Decimal) -> Carry | None:
                carry = expected_carry(c, x, snapshots, c.holding, is_open=is_open)
                ok = carry is not None and worth_holding(carry, config.thresholds, is_open=is_open, holding=c.holding, adverse=adverse)
                return carry if ok else None

            if limit <= 0:
                return None
            carry = passing(limit)
            if carry is not None:
                return limit, carry
            # Slippage grows with size: halve until a size clears the threshold, then bisect up.
            high, x = limit, limit / 2
            for _ in range(SIZE_HALVINGS):
                carry = passing(x)
                if carry is not None:
                    break
                high, x = x, x / 2
            else:
                return None
            low, best = x, carry
            for _ in range(SIZE_BISECTIONS):
                mid = (low + high) / 2
                found = passing(mid)
                if found is not None:
                    low, best = mid, found
                else:
                    high = mid
            return low, best

        def quick_evaluate(c: Candidate, limit: Decimal, is_open: bool) -> tuple[Decimal, Carry] | None:
            """``plain_evaluate``'s sizes and answer, with no book walked for a candidate no size clears,
            each size screened in floats (``carry.screen_carry``, exact when too close to tell), and
            only the carry of the size found priced exactly. Everything is memoised per decision."""
            if limit <= 0:
                return None
            if not worth_holding(fee_floor_carry(c, c.holding, is_open=is_open), config.thresholds, is_open=is_open, holding=c.holding):
                return None  # no size clears the threshold, even with no slippage: not one book walk
            hedge = str(c.hedge_id)
            too_big = fillable_notional(c, snapshots) * (1 + 1e-6)  # no book fills more: not worth a screen

            def exact(x: Decimal) -> Carry | None:
                memo = (hedge, x, is_open)
                if memo not in carries:
                    carries[memo] = expected_carry(c, x, snapshots, c.holding, is_open=is_open)
                return carries[memo]

            def passing(x: Decimal) -> bool:
                if float(x) > too_big:
                    return False
                memo = (hedge, x, is_open)
                ok = screens.get(memo)
                if ok is None:
                    ok = screen_carry(c, x, snapshots, c.holding, config.thresholds, is_open=is_open)
                    if ok is None:
                        carry = exact(x)
                        ok = carry is not None and worth_holding(carry, config.thresholds, is_open=is_open, holding=c.holding)
                    screens[memo] = ok
                return ok

            def answer(x: Decimal) -> tuple[Decimal, Carry] | None:
                carry = exact(x)
                return None if carry is None else (x, carry)

            if passing(limit):
                return answer(limit)
            high, x = limit, limit / 2
            for _ in range(SIZE_HALVINGS):
                if passing(x):
                    break
                high, x = x, x / 2
            else:
                return None
            low = x
            for _ in range(SIZE_BISECTIONS):
                mid = (low + high) / 2
                if passing(mid):
                    low = mid
                else:
                    high = mid
            return answer(low)

        reserved: dict[HedgeRef, tuple[dict[str, Decimal], dict[str, Decimal], Decimal, Decimal, dict[str, Decimal]]] = {}
        reserved_bare: dict[HedgeRef, tuple[dict[str, Decimal], dict[str, Decimal], Decimal, Decimal, dict[str, Decimal]]] = {}
        ranked: list[tuple[Decimal, str, Candidate]] = []  # ranked by score, then hedge id text
        rest: Iterable[tuple[Decimal, str, Candidate]] = ()
        if reference:
            for c in all_candidates:
                lim = limit_for(c)
                if lim is None:
                    continue
                found = evaluate(c, lim[0])
                if found is not None:
                    is_open = _current_quantity(c, held, borrowed) > 0
                    ranked.append((ranking_score(found[1], _rank_horizon(c, config, is_open=is_open), is_open=is_open), str(c.hedge_id), c))
            ranked.sort(key=lambda t: (-t[0], t[1]))
        else:
            # The same ranking, produced lazily best first (``_ranked_lazily``): a new candidate
            # enters at its score with no slippage (an upper bound) and is sized against the fresh room (as the reference
            # ranks) only when it reaches the top. Every open hedge is ranked up front, and the
            # ranking is read up to the last of them before reserving, as the reference reads it.
            rank_room = fresh_room()

            def score(c: Candidate) -> Decimal | None:
                lim = limit_for(c, rank_room)
                found = evaluate(c, lim[0]) if lim is not None else None
                is_open = _current_quantity(c, held, borrowed) > 0
                return None if found is None else ranking_score(found[1], _rank_horizon(c, config, is_open=is_open), is_open=is_open)

            def no_op(c: Candidate) -> bool:
                """Whether ``c`` would be passed over wherever it ranks: a market is taken, or the room for it is spent."""
                if _keys(c) & room.used_markets:
                    return True
                if reserved:
                    return False  # a reserved hedge still to come gives its room back
                if room.budget <= 0 or room.asset.get(c.asset, ONE) <= 0:
                    return True
                fuse_k, venue_k = _coefficients(c, venue_of, {leg.key: _LegRate(ONE, ZERO) for leg in c.legs})
                return any(room.fuse.get(f, ZERO) <= 0 for f in fuse_k) or any(room.venue.get(v, ZERO) <= 0 for v in venue_k)

            opened: list[tuple[Decimal, str, Candidate]] = []
            new: list[tuple[Decimal, str, Candidate]] = []
            for c in pool:
                if _current_quantity(c, held, borrowed) > 0:
                    found_score = score(c)
                    if found_score is not None:
                        opened.append((found_score, str(c.hedge_id), c))
                else:
                    bound = ranking_score(fee_floor_carry(c, c.holding, is_open=False), c.holding, is_open=False)
                    new.append((bound, str(c.hedge_id), c))
            order = _ranked_lazily(opened, new, score, no_op)
            to_read = {hid for _, hid, _ in opened}
            while to_read:
                item = next(order)  # every open hedge ranked is in it
                ranked.append(item)
                to_read.discard(item[1])
            order.pruning = True
            rest = order

        # An open hedge that no better-ranked candidate competes with for its markets keeps its
        # capital: it is reserved before anything is allocated, so open hedges never trade
        # capital back and forth between them as their forecasts move.
        claimed: set[str] = set()
        for _, _, c in ranked:
            keys = _keys(c)
            if keys & claimed:
                continue
            claimed |= keys
            current_q = _current_quantity(c, held, borrowed)
            if current_q <= 0:
                continue
            price = view.price(c.asset)
            held_x = current_q * price * (ONE + drift)
            base = {leg.key: _LegRate(_base_rate(leg, config, view, snapshots[leg.key], held_x), ZERO) for leg in c.legs}
            claim = _claim(c, current_q, price, held, base, venue_of, drift, snapshots, config, view)
            bare = _claim(c, current_q, price, held, base, venue_of, ZERO, snapshots, config, view)
            reserved[c.hedge_id] = claim
            reserved_bare[c.hedge_id] = bare
            _take(room, *claim, sign=ONE)
            _take(actual, *bare, sign=ONE)

        min_hedge = config.rebalance.min_hedge_share * nav
        for _, _, c in itertools.chain(ranked, rest):
            keys = _keys(c)
            if keys & room.used_markets:
                continue
            if c.hedge_id in reserved:
                _take(room, *reserved.pop(c.hedge_id), sign=-ONE)
                _take(actual, *reserved_bare.pop(c.hedge_id), sign=-ONE)
            lim = limit_for(c)
            if lim is None:
                continue
            limit, rates = lim
            price = view.price(c.asset)
            current_q = _current_quantity(c, held, borrowed)
            is_open = current_q > 0
            # Sized below the most the caps allow, so that drift within the tolerance keeps within them.
            if is_open:
                current_x = current_q * price
                fits = limit_for(c, actual)
                hard = max(limit, fits[0]) if fits is not None else limit
                kept = evaluate(c, min(current_x, hard), is_open=True)
                if kept is None:
                    reasons.append(f"{c.hedge_id}: no size of it clears the exit threshold within the caps; closed")
                    continue
                carry = kept[1]
                grown = evaluate(c, limit, is_open=False)
                # The smallest resize worth making: a share of the leg's notional and of its fuse's capital.
                step = max(drift * current_x, config.rebalance.min_capital_share * max(view.fuse_equity(leg.fuse) for leg in c.legs))
                if current_x > hard or kept[0] < current_x:
                    # Over a cap, or carry at this size no longer clears the exit threshold: shrink,
                    # by at least the drift tolerance of its notional (so that it does not shrink
                    # again by a sliver next time), never by a step sized on the fuse's capital.
                    target_x = min(kept[0] / (ONE + drift), current_x * (ONE - drift))
                    note = "over a cap or past the exit threshold at this size; reduced"
                    if target_x < min_hedge:
                        target_x, note = ZERO, "reduced below the smallest hedge; closed"
                else:
                    desired = max(grown[0] / (ONE + drift), current_x) if grown is not None else current_x
                    target_x, note = pnl_target(config, signals.regime(c.asset), _trend(signals, c.asset), current_x, desired, limit)
                    if target_x != current_x and abs(target_x - current_x) < step:
                        target_x, note = current_x, f"resize of {target_x - current_x:.2f} is smaller than one step ({step:.2f})"
            else:
                found = evaluate(c, limit)
                if found is None:
                    continue
                carry = found[1]
                target_x, note = found[0] / (ONE + drift), "target notional"
                if target_x < min_hedge:
                    reasons.append(
                        f"{c.hedge_id}: {target_x:.2f} is below the smallest new hedge ({config.rebalance.min_hedge_share} x NAV); not opened"
                    )
                    continue
            quantity = current_q if (is_open and target_x == current_q * price) else _round_quantity(c, target_x / price, price, tol)
            if quantity is not None:
                quantity = _snap_to_holdings(c, quantity, held, price)
            if quantity is None or quantity <= 0:
                continue
            _take(room, *_claim(c, quantity, price, held, rates, venue_of, drift, snapshots, config, view), sign=ONE)
            _take(actual, *_claim(c, quantity, price, held, rates, venue_of, ZERO, snapshots, config, view), sign=ONE)
            room.used_markets |= keys
            chosen.append(_Chosen(c, quantity, carry, is_open, note, rates))

        return _book(view, config, nav, chosen, held, borrowed, supplied, room, all_candidates, reasons, snapshots)

    book, pinned_extra = allocate(ZERO)
    if pinned_extra > 0 and book.idle < config.idle_buffer * nav:
        # Capital that cannot leave a margin fuse (unrealised profit) took idle below the
        # buffer: allocate again without it in the budget.
        book, _ = allocate(pinned_extra)
    return book


class _ranked_lazily:
    """Candidates in the reference's ranking order, ``(score, hedge id text, candidate)``, best first, computed lazily.

    ``exact`` are ranked already. ``bounds`` enter at an upper bound of their score (the
    score with fees only, ``carry.fee_floor_carry``); one that reaches the top is scored (``score``,
    None if it does not rank at all) and goes back in at its score. What comes out is the
    best of the rest, exactly: every bound left is at least the score it bounds. Once
    ``pruning`` is set, a bound that reaches the top is first asked ``no_op``: a candidate
    that would be passed over wherever it ranked is dropped without being scored.
    """

    def __init__(
        self,
        exact: list[tuple[Decimal, str, Candidate]],
        bounds: list[tuple[Decimal, str, Candidate]],
        score: Callable[[Candidate], Decimal | None],
        no_op: Callable[[Candidate], bool],
    ) -> None:
        self._heap: list[tuple[Decimal, str, bool, Candidate]] = [(-s, hid, False, c) for s, hid, c in exact]
        self._heap += [(-s, hid, True, c) for s, hid, c in bounds]
        heapq.heapify(self._heap)
        self._score = score
        self._no_op = no_op
        self.pruning = False

    def __iter__(self) -> Iterator[tuple[Decimal, str, Candidate]]:
        return self

    def __next__(self) -> tuple[Decimal, str, Candidate]:
        heap = self._heap
        while heap:
            neg, hid, bound, c = heapq.heappop(heap)
            if not bound:
                return -neg, hid, c
            if self.pruning and self._no_op(c):
                continue
            found = self._score(c)
            if found is not None:
                heapq.heappush(heap, (-found, hid, False, c))
        raise StopIteration


def _hedge_capital(
    c: Candidate,
    quantity: Decimal,
    price: Decimal,
    held: dict[tuple[str, str], Decimal],
    rates: dict[str, _LegRate],
    snapshots: dict[str, MarketSnapshot],
    config: StrategyConfig,
    view: PortfolioView,
) -> dict[str, Decimal]:
    """Capital per fuse a hedge of ``quantity`` ties up: what it holds plus headroom for the orders it needs.

    A perp leg holds the venue's own margin requirement (``_perp_margin``: tiered, at mark).
    """
    out: dict[str, Decimal] = {}
    notional = quantity * price
    for leg in c.legs:
        rate = rates[leg.key]
        signed = quantity if leg.side is Side.BUY else -quantity
        traded = abs(signed - held.get((leg.fuse, leg.market), ZERO)) * price
        if leg.instrument.kind.is_perp:
            holds = _perp_margin(leg, snapshots[leg.key], quantity, config, view)
        else:
            holds = notional * rate.base
        out[leg.fuse] = out.get(leg.fuse, ZERO) + holds + traded * COST_HEADROOM * rate.cost
    if c.borrow is not None:
        out[c.borrow.fuse] = out.get(c.borrow.fuse, ZERO) + notional * c.borrow.collateral_ratio
    return out


def _closing_headroom(view: PortfolioView, fuse: str, market: str, quantity: Decimal) -> Decimal:
    """Cash a fuse keeps back while it closes ``quantity``: the order's fee and slippage, with headroom."""
    snap = view.market(fuse, market)
    if snap is None or quantity == 0:
        return ZERO
    side = Side.SELL if quantity > 0 else Side.BUY
    cost = _cost_bound(snap, side, abs(quantity))
    if cost is None:
        cost = snap.instrument.taker_fee
    basis = ZERO if snap.instrument.kind.is_perp else _basis(snap, view)
    return _in_base(view, abs(quantity) * snap.mark * COST_HEADROOM * (cost + basis), snap.instrument.quote)


def _growing_fuses(positions: Iterable[TargetPosition], held: dict[tuple[str, str], Decimal]) -> set[str]:
    """Fuses where a target position is larger than (or on the other side of) what is held."""
    out: set[str] = set()
    for tp in positions:
        have = held.get((tp.fuse, tp.market), ZERO)
        if abs(tp.quantity) > abs(have) or (tp.quantity != 0 and have != 0 and (tp.quantity > 0) != (have > 0)):
            out.add(tp.fuse)
    return out


def _dead_band(
    view: PortfolioView,
    config: StrategyConfig,
    nav: Decimal,
    capital: dict[str, Decimal],
    lending: dict[tuple[str, str], Decimal],
    borrowing: dict[tuple[str, str], Decimal],
    borrowed: dict[tuple[str, str], Decimal],
    growing: set[str],
    caps: dict[str, Decimal],
) -> list[str]:
    """Leave a fuse's capital where it is when moving it is not worth a transfer (module docstring, point 7).

    Change ``capital`` and ``lending`` in place; return the reasons.
    """
    rb = config.rebalance
    base = view.base_asset
    # Fuses whose debt changes: their collateral moves with it, never held back by the band.
    with_debt = {f for key, amount in borrowing.items() if amount != borrowed.get(key, ZERO) for f in key[:1]}
    with_debt |= {f for key, amount in borrowed.items() if amount != borrowing.get(key, ZERO) for f in key[:1]}
    banded: dict[str, tuple[Decimal, Decimal | None]] = {}  # fuse -> (target capital, target supply of base)
    gross_of = fuse_gross(view)
    for name in sorted(caps):
        equity = view.fuse_equity(name)
        want = capital.get(name, ZERO)
        diff = want - equity
        if diff == 0 or name in with_debt or equity > caps[name] or (diff > 0 and name in growing):
            continue
        acct = view.accounts.get(name)
        margin = acct.margin if acct is not None else None
        max_lev = config.fuse(name).max_leverage
        if diff > 0 and margin is not None and margin.maintenance_margin > 0:
            # A deficit on an unchanged hedge: the margin monitor tops it up (DOMAIN.md policy)
            # while leverage and margin ratio are still within bounds.
            within = equity > 0 and gross_of.get(name, ZERO) <= equity * max_lev
            if not (within and margin.margin_ratio <= config.margin.target_ratio):
                continue
        elif abs(diff) < max(rb.min_transfer, rb.min_capital_share * max(want, equity)):
            if diff > 0 and gross_of.get(name, ZERO) > equity * max_lev:
                continue
        else:
            continue
        supply: Decimal | None = None
        if (name, base) in lending:
            supply = lending[(name, base)]
            lending[(name, base)] = next((lp.supplied for lp in acct.lending_positions if lp.asset == base), ZERO) if acct else ZERO
        banded[name] = (want, supply)
        capital[name] = equity
    # Idle must stay at the buffer: give back the band of the largest surpluses first.
    floor = config.idle_buffer * nav
    for name in sorted(banded, key=lambda n: capital[n] - banded[n][0], reverse=True):
        if nav - sum(capital.values(), ZERO) >= floor:
            break
        want, supply = banded.pop(name)
        if capital[name] <= want:
            banded[name] = (want, supply)
            continue
        capital[name] = want
        if supply is not None:
            lending[(name, base)] = supply
    reasons = [f"{name}: capital change of {want - capital[name]:.2f} is within the dead band; left as is" for name, (want, _) in sorted(banded.items())]
    # A fuse that must be funded (an order needs the money, or margin is past its limits) gets
    # at least one minimum transfer, never a sliver, when its cap and the idle buffer allow it.
    for name in sorted(caps):
        equity = view.fuse_equity(name)
        want = capital.get(name, ZERO)
        if ZERO < want - equity < rb.min_transfer and name not in with_debt and name not in banded:
            raised = min(equity + rb.min_transfer, caps[name])
            if nav - sum(capital.values(), ZERO) - (raised - want) >= floor:
                capital[name] = raised
                reasons.append(f"{name}: funding of {want - equity:.2f} raised to the minimum transfer")
    return reasons


def _keys(c: Candidate) -> set[str]:
    """The markets (and the debt) a candidate would use; one hedge per market."""
    keys = {leg.key for leg in c.legs}
    if c.borrow is not None:
        keys.add(f"{c.borrow.fuse}:borrow:{c.asset}")
    return keys


def _claim(
    c: Candidate,
    quantity: Decimal,
    price: Decimal,
    held: dict[tuple[str, str], Decimal],
    rates: dict[str, _LegRate],
    venue_of: dict[str, str],
    drift: Decimal,
    snapshots: dict[str, MarketSnapshot],
    config: StrategyConfig,
    view: PortfolioView,
) -> tuple[dict[str, Decimal], dict[str, Decimal], Decimal, Decimal, dict[str, Decimal]]:
    """What a hedge of ``quantity`` takes from the room: its capital plus room to drift by ``drift``.

    Return capital per fuse, gross per venue, budget, the part of the budget that is only
    the drift allowance, and the notional per asset. Later hedges cannot use the allowance, so one hedge's price drift
    never pushes another over a cap.
    """
    used = _hedge_capital(c, quantity, price, held, rates, snapshots, config, view)
    notional = quantity * price
    allowance = ZERO
    for leg in c.legs:
        extra = drift * notional * rates[leg.key].base
        used[leg.fuse] += extra
        allowance += extra
    if c.borrow is not None:
        extra = drift * notional * c.borrow.collateral_ratio
        used[c.borrow.fuse] += extra
        allowance += extra
    _, venue_k = _coefficients(c, venue_of, rates)
    venue = {v: k * notional * (ONE + drift) for v, k in venue_k.items()}
    return used, venue, sum(used.values(), ZERO), allowance, {c.asset: notional * (ONE + drift)}


def _take(
    room: _Room,
    fuse_use: dict[str, Decimal],
    venue_use: dict[str, Decimal],
    budget_use: Decimal,
    allowance: Decimal,
    asset_use: dict[str, Decimal],
    *,
    sign: Decimal,
) -> None:
    """Take capital, venue and asset exposure and budget from the room (``sign`` -1 gives them back)."""
    for asset, amount in asset_use.items():
        if asset in room.asset:
            room.asset[asset] -= sign * amount
    for name, amount in fuse_use.items():
        room.fuse[name] = room.fuse.get(name, ZERO) - sign * amount
    for v, amount in venue_use.items():
        room.venue[v] = room.venue.get(v, ZERO) - sign * amount
    room.budget -= sign * budget_use
    room.allowance += sign * allowance


def _trend(signals: Signals, asset: str) -> Decimal:
    sig = signals.assets.get(asset)
    return sig.price_trend if sig is not None else ZERO


def pnl_target(
    config: StrategyConfig, regime: Regime, trend: Decimal, current: Decimal, desired: Decimal, limit: Decimal
) -> tuple[Decimal, str]:
    """Return the notional to hold for an open hedge and why (``current`` means: do not trade).

    ``desired`` is the notional decide would open now, ``limit`` the most the caps allow.
    """
    tol = config.pnl.drift_tolerance
    drift = (current - desired) / desired if desired > 0 else ZERO
    if current > limit:
        return desired, f"notional {current:.2f} is over what the caps allow; back to {desired:.2f}"
    if config.pnl.policy is PnlPolicyKind.SENTIMENT_HYBRID:
        if trend > 0 and drift >= -tol:
            return current, "rising market: notional left to grow (sentiment hybrid)"
        if trend < 0:
            tol = tol / 2
    # Below target the band is twice as wide: a top-up is undone by the next trim at the cap, so
    # a swing of the price within the band would otherwise pay a round trip on the increment.
    if -2 * tol <= drift <= tol:
        return current, f"notional within {tol * 100:.1f}% (above) / {2 * tol * 100:.1f}% (below) of target"
    return desired, f"notional drifted {drift * 100:.1f}% from target; rebalanced"


def _book(
    view: PortfolioView,
    config: StrategyConfig,
    nav: Decimal,
    chosen: list[_Chosen],
    held: dict[tuple[str, str], Decimal],
    borrowed: dict[tuple[str, str], Decimal],
    supplied: dict[tuple[str, str], Decimal],
    room: _Room,
    all_candidates: Iterable[Candidate],
    reasons: list[str],
    snapshots: dict[str, MarketSnapshot],
) -> tuple[TargetBook, Decimal]:
    """Return the target book and the capital it had to keep in fuses beyond the allocation (pinned)."""
    positions: list[TargetPosition] = []
    capital: dict[str, Decimal] = {}
    gross: dict[str, Decimal] = {}
    lending: dict[tuple[str, str], Decimal] = {}
    borrowing: dict[tuple[str, str], Decimal] = {}
    targeted: set[tuple[str, str]] = set()

    for ch in chosen:
        c = ch.candidate
        price = view.price(c.asset)
        notional = ch.quantity * price
        for fuse_name, amount in _hedge_capital(c, ch.quantity, price, held, ch.rates, snapshots, config, view).items():
            capital[fuse_name] = capital.get(fuse_name, ZERO) + amount
        why = (
            f"{c.kind.value} {c.asset}: forecast {c.funding_apr * 100:.2f}% APR"
            f"{f' - borrow {c.borrow.borrow_apr * 100:.2f}%' if c.borrow else ''}, costs {ch.carry.cost_apr * 100:.2f}%,"
            f" net {ch.carry.net_apr * 100:.2f}% ({'open' if ch.is_open else 'new'}; {ch.note})"
        )
        reasons.append(f"{c.hedge_id}: {why}")
        for leg in c.legs:
            signed = ch.quantity if leg.side is Side.BUY else -ch.quantity
            positions.append(TargetPosition(leg.fuse, leg.market, c.asset, signed, c.hedge_id, why))
            targeted.add((leg.fuse, leg.market))
            gross[leg.fuse] = gross.get(leg.fuse, ZERO) + notional
        if c.borrow is not None:
            f = c.borrow.fuse
            debt = ch.quantity
            have = borrowed.get((f, c.asset), ZERO)
            if ch.is_open and min(held.get((c.long.fuse, c.long.market), ZERO), have) == ch.quantity:
                debt = have  # unchanged hedge: accrued interest stays borrowed (no buy-back of dust each time)
            borrowing[(f, c.asset)] = borrowing.get((f, c.asset), ZERO) + debt
            collateral = notional * c.borrow.collateral_ratio
            lending[(f, view.base_asset)] = lending.get((f, view.base_asset), ZERO) + collateral
            gross[f] = gross.get(f, ZERO) + notional

    # Positions no chosen hedge wants: close them, pairing the legs of a hedge that was open.
    for c in all_candidates:
        # A synthetic short closes its perp leg under its own hedge id (the executor buys back
        # and repays the debt slice by slice with it); the debt goes to zero below.
        pair = [(leg.fuse, leg.market) for leg in c.legs]
        if any(p in targeted or p not in held for p in pair):
            continue
        if _current_quantity(c, held, borrowed) <= 0:
            continue
        reason = f"{c.hedge_id}: carry no longer clears the exit threshold or the capital went to better hedges"
        for fuse, market in pair:
            positions.append(TargetPosition(fuse, market, c.asset, ZERO, c.hedge_id, reason))
            targeted.add((fuse, market))
            headroom = _closing_headroom(view, fuse, market, held[(fuse, market)])
            capital[fuse] = capital.get(fuse, ZERO) + headroom
            room.budget -= headroom
        reasons.append(reason)
    for (fuse, market), qty in sorted(held.items()):
        if (fuse, market) in targeted or "/" not in market:
            continue
        asset = base_of(market)
        snap = view.market(fuse, market)
        if snap is not None:
            asset = snap.instrument.base
        reason = f"unwind {qty} on {fuse}:{market}: not part of any hedge the strategy holds"
        positions.append(TargetPosition(fuse, market, asset, ZERO, HedgeRef.unwind(market_key(fuse, market)), reason))
        headroom = _closing_headroom(view, fuse, market, qty)
        capital[fuse] = capital.get(fuse, ZERO) + headroom
        room.budget -= headroom
        reasons.append(reason)

    # Idle capital above the buffer goes to enabled lending fuses, within their caps.
    for lf in _lending_fuses(config):
        spare = room.budget + room.allowance
        if view.base_asset not in lf.assets or spare <= 0:
            continue
        # Below the cap by the dead band, so that accrued interest does not call for withdrawals.
        amount = min(room.fuse.get(lf.name, ZERO) * (ONE - config.rebalance.min_capital_share), spare)
        if amount <= 0:
            continue
        room.fuse[lf.name] -= amount
        room.budget -= amount
        key = (lf.name, view.base_asset)
        lending[key] = lending.get(key, ZERO) + amount
        capital[lf.name] = capital.get(lf.name, ZERO) + amount
        reasons.append(f"supply {amount:.2f} {view.base_asset} to {lf.name}: capital above the buffer no carry needs")
    for key in {*supplied, *borrowed}:
        if key in supplied:
            lending.setdefault(key, ZERO)
        if key in borrowed:
            borrowing.setdefault(key, ZERO)

    caps = {f.name: f.max_share * nav for f in config.enabled_fuses}
    for name in list(capital):
        # Headroom for closing orders never takes a fuse over its cap.
        capital[name] = min(capital[name], max(caps.get(name, ZERO), ZERO))
    growing = _growing_fuses(positions, held)
    reasons += _dead_band(view, config, nav, capital, lending, borrowing, borrowed, growing, caps)
    pinned_extra = _keep_pinned(view, config, positions, capital, reasons)

    allocations: list[FuseAllocation] = []
    names = [f.name for f in config.fuses] + sorted(n for n in view.accounts if n not in {f.name for f in config.fuses})
    for name in names:
        fc = next((f for f in config.fuses if f.name == name), None)
        cap = fc.max_share * nav if fc is not None and fc.enabled else ZERO
        max_lev = fc.max_leverage if fc is not None else ONE
        cap_value = capital.get(name, ZERO)
        lev = gross.get(name, ZERO) / cap_value if cap_value > 0 else ZERO
        allocations.append(FuseAllocation(name, cap_value, cap, lev, max_lev))
    idle = nav - sum(capital.values(), ZERO)
    if not chosen:
        reasons.append("no hedge clears the entry threshold after costs")
    book = TargetBook(
        nav=nav,
        positions=tuple(positions),
        allocations=tuple(allocations),
        lending=tuple((f, a, amt) for (f, a), amt in sorted(lending.items())),
        borrowing=tuple((f, a, amt) for (f, a), amt in sorted(borrowing.items())),
        idle=idle,
        reasons=tuple(reasons),
    )
    return book, pinned_extra


def _keep_pinned(
    view: PortfolioView, config: StrategyConfig, positions: Iterable[TargetPosition], capital: dict[str, Decimal], reasons: list[str]
) -> Decimal:
    """Keep in each margin fuse at least what its venue will not let out (``margin.pinned``).

    Change ``capital`` in place; return the capital added above the allocation.
    """
    targets: dict[str, dict[str, Decimal]] = {}
    for tp in positions:
        targets.setdefault(tp.fuse, {})[tp.market] = tp.quantity
    extra = ZERO
    for name, acct in sorted(view.accounts.items()):
        if acct.margin is None:
            continue
        fc = next((f for f in config.fuses if f.name == name), None)
        leverage = fc.max_leverage if fc is not None else ONE
        keep = pinned(view, name, targets.get(name, {}), leverage)
        want = capital.get(name, ZERO)
        if keep > want:
            capital[name] = keep
            extra += keep - want
            reasons.append(f"{name}: keeps {keep:.2f} (target {want:.2f}): the venue lets only its free margin out")
    return extra
