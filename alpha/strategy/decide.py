"""``decide``: from the portfolio, the signals and the strategy, the target book to hold.

Pure: values in, a ``TargetBook`` out; ``now`` is an argument.

How it chooses:

1. Validate every market snapshot it uses (``MarketSnapshot.validate`` with
   ``config.risk.max_data_age``) and every price; bad data raises ``BadMarketData``.
2. Build candidate hedges per farmed asset (long spot / short perp, cross-venue perp spreads,
   and long perp + synthetic short in a lending fuse) and their expected net carry at the
   size the caps allow (``carry.expected_carry``); keep those over the entry threshold (or
   the exit threshold for a hedge that is already open).
3. Greedily, best net carry first, give each hedge the largest notional that fits every
   constraint still free: each fuse's capital cap (max_share x NAV; a perp leg ties up
   notional / max_leverage, a spot leg its notional, a synthetic short its collateral),
   each venue's gross exposure (max_venue_exposure x NAV) and the NAV above the idle
   buffer. A market is used by one hedge at most. Both legs get the same base quantity.
4. PnL policy: an open hedge keeps its quantities while its notional stays within
   ``pnl.drift_tolerance`` of the target (``constant_notional``); ``sentiment_hybrid`` lets
   the notional grow while prices rise (up to the caps) and rebalances at half the tolerance
   while they fall.
5. Capital above the buffer that no hedge needs is supplied to enabled lending fuses.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from alpha.config.schema import FuseConfig, FuseKind, PnlPolicyKind, StrategyConfig
from alpha.domain.actions import FuseAllocation, TargetBook, TargetPosition
from alpha.domain.instruments import InstrumentKind, Side
from alpha.domain.market import BadMarketData, MarketSnapshot
from alpha.domain.money import ONE, ZERO, ceil_to_step, floor_to_step
from alpha.domain.portfolio import PortfolioView, market_key
from alpha.risk.exposure import base_of, holdings
from alpha.strategy.carry import (
    BorrowLeg,
    Candidate,
    Carry,
    HedgeKind,
    TradeLeg,
    expected_carry,
    worth_holding,
)
from alpha.strategy.signals import Regime, Signals

# Collateral of a synthetic short is sized for this multiple of the minimum health factor.
HEALTH_HEADROOM = Decimal("1.25")
# Halvings tried when the full size does not clear the threshold (slippage grows with size).
SIZE_HALVINGS = 8
SIZE_BISECTIONS = 6


@dataclass(slots=True)
class _Room:
    """What is still free while hedges are allocated."""

    fuse: dict[str, Decimal]
    venue: dict[str, Decimal]
    budget: Decimal
    used_markets: set[str] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class _Chosen:
    candidate: Candidate
    quantity: Decimal  # base units, both legs (and the debt)
    carry: Carry
    is_open: bool
    note: str


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


def candidates(
    view: PortfolioView, signals: Signals, config: StrategyConfig, snapshots: dict[str, MarketSnapshot]
) -> list[Candidate]:
    """Return every hedge the enabled fuses allow for the farmed assets."""
    fuses = {f.name: f for f in config.enabled_fuses}
    out: list[Candidate] = []

    def forecast(snap: MarketSnapshot) -> Decimal:
        key = market_key(snap.fuse, snap.market)
        value = signals.forecast(key)
        if value is not None:
            return value
        assert snap.funding is not None
        return snap.funding.annualised

    for asset in config.assets:
        spots = [s for s in snapshots.values() if s.instrument.base == asset and s.instrument.kind is InstrumentKind.SPOT and s.fuse in fuses]
        perps = [s for s in snapshots.values() if s.instrument.base == asset and s.instrument.kind.is_perp and s.fuse in fuses]
        for s in spots:
            for p in perps:
                out.append(
                    Candidate(asset, HedgeKind.SPOT_PERP, _leg(s, fuses[s.fuse], Side.BUY), _leg(p, fuses[p.fuse], Side.SELL), None, forecast(p))
                )
        for lo in perps:
            for hi in perps:
                if lo is hi:
                    continue
                out.append(
                    Candidate(
                        asset, HedgeKind.PERP_PERP, _leg(lo, fuses[lo.fuse], Side.BUY), _leg(hi, fuses[hi.fuse], Side.SELL), None, forecast(hi) - forecast(lo)
                    )
                )
        for lf in _lending_fuses(config):
            if asset not in lf.assets or view.base_asset not in lf.assets:
                continue
            acct = view.accounts.get(lf.name)
            if acct is None or acct.lending is None or acct.lending.liquidation_threshold <= 0:
                continue
            rates = next((lp for lp in acct.lending_positions if lp.asset == asset), None)
            if rates is None:
                continue  # borrow rate unknown: never borrow blind
            ratio = config.margin.min_health_factor * HEALTH_HEADROOM / acct.lending.liquidation_threshold
            ratio = max(ratio, ONE / lf.max_leverage)
            for p in perps:
                out.append(
                    Candidate(
                        asset,
                        HedgeKind.SYNTHETIC_SHORT,
                        _leg(p, fuses[p.fuse], Side.BUY),
                        None,
                        BorrowLeg(lf.name, rates.borrow_apr, ratio),
                        -forecast(p),
                    )
                )
    return out


def _coefficients(c: Candidate, venue_of: dict[str, str]) -> tuple[dict[str, Decimal], dict[str, Decimal]]:
    """Per unit of notional: capital per fuse and gross per venue the hedge uses."""
    fuse: dict[str, Decimal] = {}
    venue: dict[str, Decimal] = {}
    for leg in c.legs:
        fuse[leg.fuse] = fuse.get(leg.fuse, ZERO) + ONE / leg.leverage
        v = venue_of[leg.fuse]
        venue[v] = venue.get(v, ZERO) + ONE
    if c.borrow is not None:
        fuse[c.borrow.fuse] = fuse.get(c.borrow.fuse, ZERO) + c.borrow.collateral_ratio
        v = venue_of[c.borrow.fuse]
        venue[v] = venue.get(v, ZERO) + ONE
    return fuse, venue


def _max_notional(c: Candidate, room: _Room, venue_of: dict[str, str]) -> Decimal:
    fuse_k, venue_k = _coefficients(c, venue_of)
    limits = [room.budget / c.capital_per_notional()]
    limits += [room.fuse.get(f, ZERO) / k for f, k in fuse_k.items()]
    limits += [room.venue.get(v, ZERO) / k for v, k in venue_k.items()]
    return max(min(limits), ZERO)


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
        if lq < leg.instrument.min_quantity or lq * price < leg.instrument.min_notional:
            return None
        q = min(q, lq)
    return q


def _snap_to_holdings(c: Candidate, quantity: Decimal, held: dict[tuple[str, str], Decimal], price: Decimal) -> Decimal | None:
    """Adjust a hedge's quantity so that no leg needs an order smaller than its market's minimum.

    A leg within one minimum order of its holding keeps the holding when growing, and shrinks
    by at least one minimum order when shrinking (the caps may require it). Return None if no
    quantity works.
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
            if q <= 0:
                return None
        if not changed:
            return q
    return None


def _round_down(q: Decimal, step: Decimal) -> Decimal | None:
    r = floor_to_step(q, step)
    return r if r > 0 else None


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


def decide(view: PortfolioView, signals: Signals, config: StrategyConfig, now: datetime) -> TargetBook:
    """Return the target book: hedges sized under every cap, lending supply, idle buffer kept.

    Raise ``BadMarketData`` (before anything is decided) if any snapshot or price it would
    use is missing, non-finite, non-positive or stale; ``ValueError`` for an unusable view.
    """
    if view.base_asset != config.vault.base_asset:
        raise ValueError(f"the view is valued in {view.base_asset} but the vault's base asset is {config.vault.base_asset}")
    cash = (*config.stablecoins, view.base_asset)
    for asset in config.assets:
        if asset not in cash:
            _check_price(view, asset)
    try:
        nav = view.nav
    except KeyError as exc:
        raise BadMarketData(f"cannot value the portfolio: {exc.args[0]}") from None
    if not nav.is_finite() or nav <= 0:
        raise ValueError(f"NAV {nav} is not positive: nothing can be allocated")
    held = holdings(view, config.stablecoins)
    snapshots: dict[str, MarketSnapshot] = {}
    for f in _trading_fuses(config):
        for market in f.markets:
            if base_of(market) in config.assets:
                snapshots[market_key(f.name, market)] = _validated(view, f.name, market, now, config, "the strategy trades it")
    reasons: list[str] = []
    for (fuse, market), qty in sorted(held.items()):
        key = market_key(fuse, market)
        if key in snapshots:
            continue
        if "/" not in market:
            reasons.append(f"{fuse} holds {qty} {market} with no market to trade it on; left as is")
            continue
        snapshots[key] = _validated(view, fuse, market, now, config, f"a position of {qty} is held")
    for asset in {*config.assets, *(s.instrument.base for s in snapshots.values())}:
        if asset not in cash:
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
    room = _Room(
        fuse={f.name: f.max_share * nav for f in config.enabled_fuses},
        venue={},
        budget=nav * (ONE - config.idle_buffer),
    )
    for v in set(venue_of.values()):
        room.venue[v] = config.risk.max_venue_exposure * nav

    tol = config.delta_tolerance
    all_candidates = candidates(view, signals, config, snapshots)
    chosen: list[_Chosen] = []

    def evaluate(c: Candidate, limit: Decimal) -> tuple[Decimal, Carry] | None:
        is_open = _current_quantity(c, held, borrowed) > 0

        def passing(x: Decimal) -> Carry | None:
            carry = expected_carry(c, x, snapshots, config.thresholds.holding_period, is_open=is_open)
            ok = carry is not None and worth_holding(carry, config.thresholds, is_open=is_open)
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

    ranked: list[tuple[Decimal, str, Candidate]] = []
    for c in all_candidates:
        found = evaluate(c, _max_notional(c, room, venue_of))
        if found is not None:
            ranked.append((found[1].net_apr, c.hedge_id, c))
    ranked.sort(key=lambda t: (-t[0], t[1]))

    for _, _, c in ranked:
        keys = {leg.key for leg in c.legs}
        if c.borrow is not None:
            keys.add(f"{c.borrow.fuse}:borrow:{c.asset}")
        if keys & room.used_markets:
            continue
        limit = _max_notional(c, room, venue_of)
        found = evaluate(c, limit)
        if found is None:
            continue
        desired, carry = found
        price = view.price(c.asset)
        current_q = _current_quantity(c, held, borrowed)
        is_open = current_q > 0
        target_x, note = desired, "target notional"
        if is_open:
            current_x = current_q * price
            target_x, note = pnl_target(config, signals.regime(c.asset), _trend(signals, c.asset), current_x, desired, limit)
        quantity = current_q if (is_open and target_x == current_q * price) else _round_quantity(c, target_x / price, price, tol)
        if quantity is not None:
            quantity = _snap_to_holdings(c, quantity, held, price)
        if quantity is None or quantity <= 0:
            continue
        fuse_k, venue_k = _coefficients(c, venue_of)
        notional = quantity * price
        for fuse_name, k in fuse_k.items():
            room.fuse[fuse_name] -= k * notional
        for v, k in venue_k.items():
            room.venue[v] -= k * notional
        room.budget -= c.capital_per_notional() * notional
        room.used_markets |= keys
        chosen.append(_Chosen(c, quantity, carry, is_open, note))

    return _book(view, config, nav, chosen, held, borrowed, supplied, room, all_candidates, reasons)


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
    if abs(drift) <= tol:
        return current, f"notional within {tol * 100:.1f}% of target"
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
) -> TargetBook:
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
            capital[leg.fuse] = capital.get(leg.fuse, ZERO) + notional / leg.leverage
            gross[leg.fuse] = gross.get(leg.fuse, ZERO) + notional
        if c.borrow is not None:
            f = c.borrow.fuse
            borrowing[(f, c.asset)] = borrowing.get((f, c.asset), ZERO) + ch.quantity
            collateral = notional * c.borrow.collateral_ratio
            lending[(f, view.base_asset)] = lending.get((f, view.base_asset), ZERO) + collateral
            capital[f] = capital.get(f, ZERO) + collateral
            gross[f] = gross.get(f, ZERO) + notional

    # Positions no chosen hedge wants: close them, pairing the legs of a hedge that was open.
    for c in all_candidates:
        pair = [(leg.fuse, leg.market) for leg in c.legs]
        if c.short is None or any(p in targeted or p not in held for p in pair):
            continue
        if _current_quantity(c, held, borrowed) <= 0:
            continue
        reason = f"{c.hedge_id}: carry no longer clears the exit threshold or the capital went to better hedges"
        for fuse, market in pair:
            positions.append(TargetPosition(fuse, market, c.asset, ZERO, c.hedge_id, reason))
            targeted.add((fuse, market))
        reasons.append(reason)
    for (fuse, market), qty in sorted(held.items()):
        if (fuse, market) in targeted or "/" not in market:
            continue
        asset = base_of(market)
        snap = view.market(fuse, market)
        if snap is not None:
            asset = snap.instrument.base
        reason = f"unwind {qty} on {fuse}:{market}: not part of any hedge the strategy holds"
        positions.append(TargetPosition(fuse, market, asset, ZERO, f"unwind|{fuse}:{market}", reason))
        reasons.append(reason)

    # Idle capital above the buffer goes to enabled lending fuses, within their caps.
    for lf in _lending_fuses(config):
        if view.base_asset not in lf.assets or room.budget <= 0:
            continue
        amount = min(room.fuse.get(lf.name, ZERO), room.budget)
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
    return TargetBook(
        nav=nav,
        positions=tuple(positions),
        allocations=tuple(allocations),
        lending=tuple((f, a, amt) for (f, a), amt in sorted(lending.items())),
        borrowing=tuple((f, a, amt) for (f, a), amt in sorted(borrowing.items())),
        idle=idle,
        reasons=tuple(reasons),
    )
