"""Lock the funding of perp legs on a rate-swap fuse (Pendle Boros), pure.

A carry short the perp receives the floating funding; shorting the same size of YU on a Boros
market of that perp pays the floating and receives a fixed APR, realised upfront: the leg then
earns a known rate to maturity. The long leg of a spread pays the floating funding; going long
the same size of YU receives the floating and pays a fixed APR: the leg then pays a known
rate. A short lock pays when the fixed APR the size gets on the book (``RateQuote.fill_apr``),
less the fee (``taker_fee_apr``), beats the strategy's forecast of
the perp's average funding over the same term, to the market's maturity
(``Signals.term_forecast``; never below the forecast over the signals' own horizon, since a
short history shrinks the long-run mean toward zero), by ``thresholds.lock_min_edge_apr``; a
long lock when the fixed APR plus the fee is under that forecast (never above the near one)
by the same edge.

* **Lock**: for each perp leg of the target book whose market is a rate market's
  underlying, the part not locked yet (on the leg's side) (rounded down to the market's ``size_step``, at least its
  ``min_size``) is locked on the market where the edge is best, when it pays (markets within a
  day of maturity are not locked; one lock per rate fuse per decision). The swap's limit is
  the worst book level the size takes (a book that moved away fills less, never worse); the
  zone's collateral is brought to the initial margin after the swap x (1 + the rate fuse's
  ``cushion``) plus the fee, bought from the vault at the asset's price.
* **Top-up** (the margin step, ``rate_top_ups``): a zone whose equity fell below its initial
  margin x (1 + cushion / 2) is brought back to initial margin x (1 + cushion), as the perp
  margin is topped up: the mark APR moving against a short YU must not reach maintenance.
* **Unlock**: what is locked beyond the target's leg (the hedge closed or shrank, or the leg
  changed side) is traded back; a zone left without positions (all matured, or bought back) returns its collateral to the
  vault, unless the same decision locks again there (a roll onto the next maturity).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_CEILING, Decimal

from alpha.config.schema import StrategyConfig
from alpha.domain.actions import LockRate, TargetBook, TopUpRate, UnlockRate
from alpha.domain.instruments import Side
from alpha.domain.money import ZERO
from alpha.domain.portfolio import PortfolioView, market_key
from alpha.domain.rates import RateMarket, RateQuote, rate_key, round_size
from alpha.strategy.signals import Signals

COLLATERAL_QUANTUM = Decimal("0.00000001")  # collateral is posted in steps of 1e-8 of its asset, rounded up

RateAction = LockRate | UnlockRate


@dataclass(frozen=True, slots=True)
class RatePlan:
    """What the rate-lock decision wants done, and why nothing else (``notes``)."""

    actions: tuple[RateAction, ...] = ()
    notes: tuple[str, ...] = ()


def perp_legs(target: TargetBook, view: PortfolioView) -> dict[str, Decimal]:
    """The target book's perp legs: signed base quantity (negative: short) by market key."""
    out: dict[str, Decimal] = {}
    for pos in target.positions:
        key = market_key(pos.fuse, pos.market)
        snap = view.markets.get(key)
        if pos.quantity != 0 and snap is not None and snap.instrument.kind.is_perp:
            out[key] = out.get(key, ZERO) + pos.quantity
    return {k: v for k, v in out.items() if v != 0}


def locked(view: PortfolioView, underlying: str, now: datetime) -> Decimal:
    """The YU held against ``underlying`` on markets not matured, signed (negative: short YU)."""
    total = ZERO
    for m in view.rates.on_underlying(underlying):
        p = view.rates.position(rate_key(m))
        if p is not None and not m.matured(now):
            total += p.size
    return total


def _side_of(quantity: Decimal) -> Side:
    """The YU side that locks a perp leg of signed ``quantity``: SELL for a short leg, BUY for a long one."""
    return Side.SELL if quantity < 0 else Side.BUY


def plan_rates(view: PortfolioView, signals: Signals, config: StrategyConfig, target: TargetBook, now: datetime) -> RatePlan:
    """Decide the locks and unlocks that keep the target's short perp legs locked when it pays (see the module docstring)."""
    if not view.rates.markets:
        return RatePlan()
    legs = perp_legs(target, view)
    unlocks, notes = rate_unlocks(view, legs, now)
    locks: list[LockRate] = []
    if config.thresholds.lock_min_edge_apr is not None:
        for underlying, quantity in sorted(legs.items()):
            held = locked(view, underlying, now)
            same = held if (held < 0) == (quantity < 0) else ZERO  # a lock of the other side is traded back first
            side = _side_of(quantity)
            lock, why = _lock(view, signals, config, underlying, abs(quantity) - abs(same), side, now, {a.fuse for a in locks})
            if lock is not None:
                locks.append(lock)
            if why:
                notes.append(why)
    unlocks += _withdrawals(view, unlocks, locks)
    return RatePlan((*unlocks, *locks), tuple(notes))


def rate_top_ups(view: PortfolioView, config: StrategyConfig) -> list[TopUpRate]:
    """The collateral each zone with positions needs to be back at initial margin x (1 + cushion) (see the module docstring)."""
    out: list[TopUpRate] = []
    for fuse, acct in sorted(view.rates.accounts.items()):
        if not acct.positions or fuse not in {r.name for r in config.enabled_rates}:
            continue
        cushion = config.rate_fuse(fuse).cushion
        if acct.equity >= acct.initial_margin * (1 + cushion / 2):
            continue
        amount = _round_up(acct.initial_margin * (1 + cushion) - acct.equity, COLLATERAL_QUANTUM)
        why = (
            f"rate zone {fuse}: equity {acct.equity:.6f} {acct.asset} under initial margin {acct.initial_margin:.6f} x (1 + {cushion}/2);"
            f" top up {amount} {acct.asset} to initial margin x (1 + {cushion})"
        )
        out.append(TopUpRate(fuse, acct.asset, amount, why))
    return out


def rate_unlocks(view: PortfolioView, legs: dict[str, Decimal], now: datetime) -> tuple[list[UnlockRate], list[str]]:
    """Trade back what is locked beyond each underlying's leg in ``legs`` (furthest maturity first); notes on what cannot be.

    A lock on the other side of the leg (the leg changed side) is all excess. ``legs`` empty:
    everything locked (the operator's flatten closes the legs it locked).
    """
    out: list[UnlockRate] = []
    notes: list[str] = []
    underlyings = sorted({m.underlying for m in view.rates.markets.values()})
    for underlying in underlyings:
        held, leg = locked(view, underlying, now), legs.get(underlying, ZERO)
        if held == 0:
            continue
        short = held < 0
        excess = abs(held) - (abs(leg) if leg != 0 and (leg < 0) == short else ZERO)
        side = Side.BUY if short else Side.SELL  # the closing trade
        for m in reversed(view.rates.on_underlying(underlying)):
            p = view.rates.position(rate_key(m))
            if excess <= 0 or p is None or p.size == 0 or (p.size < 0) != short or m.matured(now):
                continue
            size = min(abs(p.size), _round_up(excess, m.size_step))
            quote = view.rates.quotes.get(rate_key(m))
            fill = quote.fill_apr(side, size) if quote is not None else None
            if quote is None or fill is None:
                notes.append(f"cannot unlock {size} {m.asset} on {rate_key(m)}: its book is too thin or missing")
                continue
            if side is Side.BUY:
                limit = _worst_level(quote, side, size) + m.tick_apr
                trade = f"buy back at most {limit:.4%}"
            else:
                limit = _worst_level(quote, side, size) - m.tick_apr
                trade = f"sell back at least {limit:.4%}"
            why = f"unlock {underlying}: the perp leg is {leg}, {excess} less than locked; {trade}"
            out.append(UnlockRate(m.fuse, m.market, m.asset, underlying, size, limit, ZERO, why, side))
            excess -= size
    return out, notes


def _lock(
    view: PortfolioView,
    signals: Signals,
    config: StrategyConfig,
    underlying: str,
    open_size: Decimal,
    side: Side,
    now: datetime,
    busy: set[str],
) -> tuple[LockRate | None, str]:
    """The best-paying lock of ``open_size`` of ``underlying``'s leg (``side`` SELL: a short leg; BUY: a long one), or None and why not.

    One lock per rate fuse per decision (``busy``: fuses locking already): its margin is then
    judged on the zone as it is.
    """
    if open_size <= 0 or not view.rates.on_underlying(underlying):
        return None, ""
    near = signals.forecast(underlying)
    if near is None:
        return None, f"no rate lock on {underlying}: no funding forecast yet"
    threshold = config.thresholds.lock_min_edge_apr
    assert threshold is not None
    enabled = {r.name for r in config.enabled_rates}
    best: tuple[Decimal, RateMarket, Decimal, Decimal, Decimal] | None = None
    why = f"no rate lock on {underlying}: no open market with a book deep enough"
    for m in view.rates.on_underlying(underlying):
        quote = view.rates.quotes.get(rate_key(m))
        size = round_size(open_size, m.size_step)
        if m.fuse not in enabled or m.fuse in busy or quote is None or m.matured(now) or m.years_left(now) * 365 < 1 or size < m.min_size:
            continue
        fill = quote.fill_apr(side, size)
        term = signals.term_forecast(underlying, m.maturity - now)
        if fill is None or term is None:
            continue
        # Against the forecasts to maturity and over the next horizon, the one that makes the lock
        # pay less: on a short history the long-run mean is shrunk toward zero, which would make any
        # fixed rate look worth receiving (and a long leg's funding look cheap to keep paying).
        if side is Side.SELL:
            term = max(term, near)
            edge = fill - m.taker_fee_apr - term
        else:
            term = min(term, near)
            edge = term - fill - m.taker_fee_apr
        if best is None or edge > best[0]:
            best = (edge, m, size, fill, term)
    if best is None:
        return None, why
    edge, m, size, fill, forecast = best
    receive = side is Side.SELL
    terms = (
        f"fixed {fill:.4%} - fee {m.taker_fee_apr:.4%} vs forecast to maturity {forecast:.4%}" if receive
        else f"fixed {fill:.4%} + fee {m.taker_fee_apr:.4%} paid vs forecast to maturity {forecast:.4%} received"
    )
    if edge < threshold:
        return None, f"no rate lock on {underlying}: {terms} is an edge of {edge:.4%}, under lock_min_edge_apr {threshold:.4%}"
    quote = view.rates.quotes[rate_key(m)]
    collateral = _collateral(view, config, m, quote, size if side is Side.BUY else -size, now)
    have = view.rates.accounts[m.fuse].collateral if m.fuse in view.rates.accounts else ZERO
    cost = max(collateral - have, ZERO) * view.price(m.asset)
    if receive:
        what = f"fixed {fill:.4%} - fee {m.taker_fee_apr:.4%} beats the forecast to maturity {forecast:.4%}"
    else:
        what = f"paying fixed {fill:.4%} + fee {m.taker_fee_apr:.4%} is under the forecast to maturity {forecast:.4%} the long leg pays"
    reason = (
        f"lock {underlying} funding to {m.maturity.date().isoformat()}: {what} by {edge:.4%} (lock_min_edge_apr {threshold:.4%});"
        f" {'short' if receive else 'long'} {size} YU of {m.market}"
    )
    return LockRate(m.fuse, m.market, m.asset, underlying, size, _worst_level(quote, side, size), collateral, cost, reason, side), ""


def _collateral(view: PortfolioView, config: StrategyConfig, m: RateMarket, quote: RateQuote, trade: Decimal, now: datetime) -> Decimal:
    """The zone collateral to hold before a swap of signed ``trade`` YU: initial margin after it x (1 + cushion) plus the fee (never less than held).

    The upfront fixed leg the swap credits is not counted: the position's value at mark takes it back.
    """
    acct = view.rates.accounts.get(m.fuse)
    im = acct.initial_margin if acct is not None else ZERO
    held = view.rates.position(rate_key(m))
    before = held.size if held is not None else ZERO
    im += m.initial_margin(before + trade, quote.mark_apr, now) - m.initial_margin(before, quote.mark_apr, now)
    want = im * (1 + config.rate_fuse(m.fuse).cushion) + m.fee(trade, now)
    return max(_round_up(want, COLLATERAL_QUANTUM), acct.collateral if acct is not None else ZERO)


def _withdrawals(view: PortfolioView, unlocks: list[UnlockRate], locks: list[LockRate]) -> list[UnlockRate]:
    """Return the collateral of zones without positions (matured, or bought back before) that this decision does not use."""
    out: list[UnlockRate] = []
    busy = {u.fuse for u in unlocks} | {lock.fuse for lock in locks}
    for fuse, acct in sorted(view.rates.accounts.items()):
        if fuse in busy or acct.collateral <= 0 or any(p.size != 0 for p in acct.positions):
            continue
        market = next((m for m in view.rates.markets.values() if m.fuse == fuse), None)
        if market is not None:
            why = f"no YU position left on {fuse}: return its {acct.collateral} {acct.asset} of collateral to the vault"
            out.append(UnlockRate(fuse, market.market, acct.asset, market.underlying, ZERO, ZERO, acct.collateral, why))
    return out


def _worst_level(quote: RateQuote, side: Side, size: Decimal) -> Decimal:
    """The APR of the last book level a market order of ``size`` takes (the book is deep enough)."""
    levels = quote.bids if side is Side.SELL else quote.asks
    left = size
    for level in levels:
        left -= level.size
        if left <= 0:
            return level.apr
    raise ValueError(f"the book of {quote.market} is too thin for {size}")


def _round_up(value: Decimal, step: Decimal) -> Decimal:
    return (value / step).to_integral_value(rounding=ROUND_CEILING) * step
