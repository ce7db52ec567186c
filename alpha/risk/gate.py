"""The risk gate: approve or refuse each planned action, with a code and a reason (pure).

Actions are judged in order, each against the view that the actions approved before it
lead to (``alpha.domain.apply``), so a refusal early in a plan is seen by what follows.

Refused, with a ``RefusalCode`` (in brackets) and a reason naming the numbers:

* everything while the kill switch is engaged [kill_switch];
* anything trading a market with an order of unknown outcome, or acting on a fuse with a
  lending step of unknown outcome (``RiskState.blocked_markets`` / ``blocked_fuses``), risk
  actions too: what that market holds is not known until it is resolved [unresolved_order];
* anything adding exposure on a market whose price the pipeline's ``PriceGuard`` refused
  (``RiskState.price_outliers``: mark vs index, vs the other venues, a jump, an absurd value,
  a one-sided book, an absurd funding rate); risk actions still pass, as when paused [price_outlier];
* while paused, everything except
  risk actions (closing hedges, repaying debt, margin top-ups, and moving cash back to the
  vault: lending withdrawals and transfers into the vault, which fund top-ups) [paused];
* anything adding exposure while a stablecoin is off its peg by more than
  ``risk.depeg_threshold`` [depeg];
* an order or transfer touching a market whose data is missing, non-finite or stale
  [bad_market_data];
* an order whose notional is over ``risk.max_order_notional``, unless
  ``RiskState.executor_slices`` (the daemon's executor slices large orders into pieces of
  at most that notional and ``risk.max_book_share`` of depth: then the limit applies per
  slice and the gate lets the parent order through) [order_notional];
* an action the portfolio cannot carry out (selling what it does not hold, ...) [cannot_apply];
* an action that raises a venue's gross exposure above ``risk.max_venue_exposure`` x NAV
  [venue_exposure];
* an action that raises a fuse's leverage above its ``max_leverage`` [leverage];
* an action that takes idle (the vault's cash) below ``idle_buffer`` x NAV, unless it is a
  stated risk action (``TopUpMargin``, which may draw on the buffer: that is its purpose)
  [idle_buffer]; one that needs more than the vault holds [vault_cash];
* an action on a fuse the strategy does not name [unknown_fuse];
* a lending action on a fuse that is an on-chain vault's market (``RiskState.vault_caps``, the
  vault's state as last read) that the vault would revert: its guardian closed it, the asset is
  not a substrate its atomists granted, or a supply would take the market over its limit
  (counting the supplies approved before it in the same plan) [vault_cap];
* a ``LockRate`` (a YU short on a rate fuse, ``StrategyConfig.rates``) on a rate fuse the
  strategy does not name [unknown_fuse]; on a market whose quote is missing, stale or matured
  [bad_market_data]; larger than the short perp leg it locks less what is locked already: no
  naked rate bet [cannot_apply]; whose zone would hold more than the rate fuse's
  ``max_share`` x NAV [venue_exposure]; whose rate exposure (|size| x years left x |mark
  APR|) would be over its ``max_leverage`` x collateral, or whose equity after the swap
  (collateral and positions at mark) would not cover the zone's initial margin [leverage].
  ``UnlockRate`` and ``TopUpRate`` (more collateral for a zone; it may draw on the idle buffer)
  are risk actions; on a rate fuse the strategy does not name they are refused [unknown_fuse];
* a move out of a fuse that has a withdrawal whitelist (``fuses[].withdrawals``) to a
  destination it does not list: a ``Transfer`` to another fuse, or an operator's
  ``alpha transfer`` (``check_move``, the one check both use) [not_whitelisted]. A fuse
  without a whitelist is not judged here: its cross-venue moves stay an operator's action.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Literal

from alpha.config.schema import StrategyConfig
from alpha.config.whitelist import Destination, same_address
from alpha.domain.actions import (
    VAULT,
    Action,
    Borrow,
    CloseHedge,
    GateResult,
    Leg,
    LockRate,
    OpenHedge,
    Refusal,
    RefusalCode,
    Repay,
    ResizeLeg,
    Supply,
    TopUpMargin,
    TopUpRate,
    Transfer,
    UnlockRate,
    Withdraw,
)
from alpha.domain.apply import CannotApply, apply
from alpha.domain.instruments import Side
from alpha.domain.market import BadMarketData
from alpha.domain.money import ONE, ZERO
from alpha.domain.portfolio import PortfolioView, market_key
from alpha.risk.exposure import fuse_leverage, holdings, venue_gross
from alpha.risk.prices import PriceGuard, PriceOutlier

MatchBy = Literal["any", "fuse", "address"]  # how check_move reads a destination: a fuse or a name, only a fuse, only an address

# Relative slack for comparing computed ratios with limits (exact decimals still divide).
EPSILON = Decimal("1e-9")


@dataclass(frozen=True, slots=True)
class VaultCap:
    """An on-chain vault's caps on one lending fuse, as last read (amounts in the vault's underlying)."""

    vault: str  # the vault's address
    assets: frozenset[str]  # alpha asset names the vault's market may hold (granted substrates)
    market_balance: Decimal  # what the market holds now
    market_limit: Decimal | None = None  # the most the market may hold now; None: no limit active
    closed: bool = False  # closed by the vault's guardian: the vault reverts every restricted call

    def refuses(self, action: Supply | Withdraw | Borrow | Repay, supplied_before: Decimal = ZERO) -> str | None:
        """Why the vault would revert ``action`` (``supplied_before``: net supply approved earlier), or None."""
        if self.closed:
            return f"vault {self.vault} is closed by its guardian"
        if isinstance(action, Borrow | Repay):
            return f"vault {self.vault} has no borrow fuse"
        if action.asset not in self.assets:
            return f"{action.asset} is not a substrate of vault {self.vault}'s market (granted: {', '.join(sorted(self.assets)) or 'none'})"
        after = self.market_balance + supplied_before + action.amount
        if isinstance(action, Supply) and self.market_limit is not None and after > self.market_limit:
            return f"the vault's market would hold {after}, over its limit {self.market_limit}"
        return None


@dataclass(frozen=True, slots=True)
class RiskState:
    """The risk monitor's switches as the gate sees them."""

    kill_switch: bool = False
    paused: bool = False
    pause_reason: str = ""
    executor_slices: bool = True
    now: datetime | None = None  # judge data age at this time (default: the view's time)
    blocked_markets: frozenset[str] = frozenset()  # market keys with an order of unknown outcome
    blocked_fuses: frozenset[str] = frozenset()  # fuses with a lending step of unknown outcome
    prices: PriceGuard = field(default_factory=PriceGuard)  # last good marks the pipeline screens prices against
    price_outliers: tuple[PriceOutlier, ...] = ()  # markets whose prices the screen refused (set by the pipeline)
    vault_caps: Mapping[str, VaultCap] = field(default_factory=dict)  # by fuse: on-chain vaults' caps, as last read


def _legs(action: Action) -> tuple[Leg, ...]:
    if isinstance(action, OpenHedge | CloseHedge):
        return tuple(action.legs)
    if isinstance(action, ResizeLeg):
        return (action.leg,)
    return ()


def _is_risk_action(action: Action, view: PortfolioView) -> bool:
    """Say whether an action only reduces risk (allowed while paused and during a depeg)."""
    if isinstance(action, CloseHedge | TopUpMargin | Repay | Withdraw | UnlockRate | TopUpRate):
        return True
    if isinstance(action, Transfer) and action.destination == VAULT:  # cash back to the vault adds no exposure
        return True
    if isinstance(action, ResizeLeg):
        held = holdings(view).get((action.leg.fuse, action.leg.market), ZERO)
        after = held + action.leg.quantity * action.leg.side.sign
        return abs(after) < abs(held) and (after == 0 or (after > 0) == (held > 0))
    return False


def depegged(view: PortfolioView, config: StrategyConfig) -> list[str]:
    """Return a description of every stablecoin off its peg by more than the threshold."""
    out = []
    for coin in config.stablecoins:
        if coin == view.base_asset or coin not in view.prices:
            continue
        price = view.prices[coin]
        if not price.is_finite() or abs(price - ONE) > config.risk.depeg_threshold:
            out.append(f"{coin} at {price} is off its peg by more than {config.risk.depeg_threshold}")
    return out


def _stale(action: Action, view: PortfolioView, config: StrategyConfig, now: datetime) -> str | None:
    for leg in _legs(action):
        snap = view.market(leg.fuse, leg.market)
        if snap is None:
            return f"{leg.fuse}:{leg.market}: market data is missing"
        try:
            snap.validate(now, config.risk.max_data_age)
        except BadMarketData as exc:
            return str(exc)
    return None


def _blocked(action: Action, state: RiskState) -> str | None:
    """Return what ``action`` touches that an unresolved order or step blocks, or None."""
    for leg in _legs(action):
        key = market_key(leg.fuse, leg.market)
        if key in state.blocked_markets:
            return f"an order on {key} is of unknown outcome"
        if leg.fuse in state.blocked_fuses:
            return f"a lending step on {leg.fuse} is of unknown outcome"
    fuses = {action.source, action.destination} if isinstance(action, Transfer) else {_fuse_of(action)}
    for fuse in sorted(f for f in fuses if f is not None and f in state.blocked_fuses):
        return f"a lending step on {fuse} is of unknown outcome"
    return None


def _outlier(action: Action, state: RiskState) -> PriceOutlier | None:
    """Return the refused price of a market ``action`` trades, or None."""
    refused = {o.key: o for o in state.price_outliers}
    for leg in _legs(action):
        outlier = refused.get(market_key(leg.fuse, leg.market))
        if outlier is not None:
            return outlier
    return None


def _fuse_of(action: Action) -> str | None:
    if isinstance(action, Transfer):
        return action.destination
    if isinstance(action, TopUpMargin | Supply | Withdraw | Borrow | Repay):
        return action.fuse
    return None


def check_move(
    config: StrategyConfig, source: str, destination: str, asset: str, network: str | None = None, *, by: MatchBy = "any"
) -> Destination | str:
    """Resolve ``destination`` through fuse ``source``'s withdrawal whitelist: the entry, or why the move is refused.

    ``destination`` is a fuse (its deposit address), an entry's name or an address; the first
    entry in the file's order that matches it (on ``network``, if given) and may receive
    ``asset`` is the one (``by``: ``destination`` is only a fuse, or only an address). A
    refusal names the whitelist: the fuse and the names it allows.
    """
    try:
        fuse = config.fuse(source)
    except KeyError:
        return f"fuse {source} is not in the strategy (fuses: {', '.join(f.name for f in config.fuses)})"
    if not fuse.withdrawals:
        return f"fuse {source} has no withdrawal whitelist ('withdrawals' in the strategy file): it sends to no destination"
    matches = [
        d for d in fuse.withdrawals
        if network in (None, d.network)
        and (
            (by != "address" and d.fuse == destination)
            or (by == "any" and d.name == destination)
            or (by == "address" and same_address(d.network, d.address, destination))
        )
    ]
    for d in matches:
        if d.allows(asset):
            return d
    allowed = "; ".join(f"{d.describe()}{'' if not d.assets else ' for ' + ', '.join(d.assets)}" for d in fuse.withdrawals)
    on = f" on {network}" if network else ""
    what = f"{destination}{on} may not receive {asset}" if matches else f"{destination}{on} is not on it"
    return f"fuse {source}'s withdrawal whitelist allows only {allowed}: {what}"


def _move_refusal(action: Action, config: StrategyConfig) -> str | None:
    """Why a ``Transfer`` out of a fuse with a whitelist to another fuse is refused by it (None: allowed or not judged)."""
    if not isinstance(action, Transfer) or VAULT in (action.source, action.destination) or action.source == action.destination:
        return None
    source = next((f for f in config.fuses if f.name == action.source), None)
    if source is None or not source.withdrawals:
        return None
    found = check_move(config, action.source, action.destination, action.asset, by="fuse")
    return found if isinstance(found, str) else None


def gate(actions: Iterable[Action], view: PortfolioView, config: StrategyConfig, state: RiskState) -> GateResult:
    """Return which of ``actions`` may go ahead and why the others may not."""
    approved: list[Action] = []
    refused: list[Refusal] = []
    nav = view.nav
    now = state.now or view.ts
    buffer = config.idle_buffer * nav
    venue_of = {f.name: f.venue for f in config.fuses}
    max_lev = {f.name: f.max_leverage for f in config.fuses}
    depeg = depegged(view, config)
    current = view
    # Each action is judged on the portfolio the approved ones before it leave: the exposure
    # measured after one is the exposure before the next, so each view is measured once.
    venues = _Measured(lambda v: venue_gross(v, venue_of))
    leverage = _Measured(fuse_leverage)

    supplied: dict[str, Decimal] = {}  # net supply approved so far, per vault-capped fuse
    for action in actions:
        judged = _judge(action, current, config, state, now, nav, buffer, venue_of, max_lev, depeg, venues, leverage)
        if not isinstance(judged, Refusal) and state.vault_caps and isinstance(action, Supply | Withdraw | Borrow | Repay):
            cap = state.vault_caps.get(action.fuse)
            why = cap.refuses(action, supplied.get(action.fuse, ZERO)) if cap is not None else None
            if why is not None:
                judged = Refusal(action, RefusalCode.VAULT_CAP, why)
            elif cap is not None:
                sign = ONE if isinstance(action, Supply) else -ONE
                supplied[action.fuse] = supplied.get(action.fuse, ZERO) + sign * action.amount
        if isinstance(judged, Refusal):
            refused.append(judged)
            continue
        approved.append(action)
        current = judged
    return GateResult(tuple(approved), tuple(refused))


class _Measured:
    """A measure of a view (gross per venue, leverage per fuse), kept for the last two views measured."""

    def __init__(self, measure: Callable[[PortfolioView], dict[str, Decimal]]) -> None:
        self._measure = measure
        self._last: list[tuple[PortfolioView, dict[str, Decimal]]] = []

    def __call__(self, view: PortfolioView) -> dict[str, Decimal]:
        for seen, value in self._last:
            if seen is view:
                return value
        value = self._measure(view)
        self._last = [*self._last[-1:], (view, value)]
        return value


def _judge(
    action: Action,
    view: PortfolioView,
    config: StrategyConfig,
    state: RiskState,
    now: datetime,
    nav: Decimal,
    buffer: Decimal,
    venue_of: dict[str, str],
    max_lev: dict[str, Decimal],
    depeg: list[str],
    venues: Callable[[PortfolioView], dict[str, Decimal]],
    leverage: Callable[[PortfolioView], dict[str, Decimal]],
) -> Refusal | PortfolioView:
    """Return the refusal of ``action``, or the portfolio after it when it may go ahead."""

    def no(code: RefusalCode, reason: str) -> Refusal:
        return Refusal(action, code, reason)

    if state.kill_switch:
        return no(RefusalCode.KILL_SWITCH, "kill switch engaged: no trading")
    not_listed = _move_refusal(action, config)
    if not_listed is not None:
        return no(RefusalCode.NOT_WHITELISTED, not_listed)
    if state.blocked_markets or state.blocked_fuses:
        blocked = _blocked(action, state)
        if blocked is not None:
            return no(RefusalCode.UNRESOLVED_ORDER, f"{blocked}: nothing trades there until it is resolved")
    risk_action = _is_risk_action(action, view)
    if state.price_outliers and not risk_action:
        outlier = _outlier(action, state)
        if outlier is not None:
            return no(RefusalCode.PRICE_OUTLIER, f"price outlier on {outlier}: no new exposure there until its price is sane")
    if state.paused and not risk_action:
        return no(RefusalCode.PAUSED, f"trading paused{f' ({state.pause_reason})' if state.pause_reason else ''}")
    if depeg and not risk_action and not isinstance(action, Withdraw | Transfer):
        return no(RefusalCode.DEPEG, "stablecoin depeg: " + "; ".join(depeg))
    stale = _stale(action, view, config, now)
    if stale is not None:
        return no(RefusalCode.BAD_MARKET_DATA, f"bad market data: {stale}")
    if isinstance(action, LockRate):
        lock = _lock_refusal(action, view, config, now)
        if lock is not None:
            return no(*lock)
    if isinstance(action, TopUpRate | UnlockRate) and action.fuse not in {r.name for r in config.enabled_rates}:
        return no(RefusalCode.UNKNOWN_FUSE, f"rate fuse {action.fuse} is not in the strategy")
    if not state.executor_slices:
        for leg in _legs(action):
            snap = view.market(leg.fuse, leg.market)
            assert snap is not None
            notional = leg.quantity * snap.mark
            if notional > config.risk.max_order_notional:
                return no(
                    RefusalCode.ORDER_NOTIONAL,
                    f"order notional {notional:.2f} on {leg.fuse}:{leg.market} is over max_order_notional {config.risk.max_order_notional}",
                )
    try:
        after = apply(view, [action])
    except (CannotApply, KeyError) as exc:
        return no(RefusalCode.CANNOT_APPLY, f"cannot be applied to the current portfolio: {exc}")

    limit = config.risk.max_venue_exposure * nav * (ONE + EPSILON)
    before_v = venues(view)
    for venue, value in venues(after).items():
        if value > limit and value > before_v.get(venue, ZERO):
            return no(
                RefusalCode.VENUE_EXPOSURE,
                f"gross exposure on venue {venue} would be {value:.2f}, over max_venue_exposure {config.risk.max_venue_exposure} x NAV",
            )
    before_l = leverage(view)
    for fuse, lev in leverage(after).items():
        cap = max_lev.get(fuse, ONE)
        if lev > cap * (ONE + EPSILON) and lev > before_l.get(fuse, ZERO):
            return no(RefusalCode.LEVERAGE, f"leverage on {fuse} would be {lev:.4f}, over its max_leverage {cap}")
    below = after.vault_cash < buffer * (ONE - EPSILON) and after.vault_cash < view.vault_cash
    if below and not isinstance(action, TopUpMargin | TopUpRate):
        return no(RefusalCode.IDLE_BUFFER, f"idle {after.vault_cash:.2f} would fall below the buffer {buffer:.2f} ({config.idle_buffer} x NAV)")
    if after.vault_cash < 0:
        return no(RefusalCode.VAULT_CASH, f"the vault holds {view.vault_cash:.2f}, not enough for this action")
    target_fuse = _fuse_of(action)
    if target_fuse is not None and target_fuse != VAULT and target_fuse not in max_lev:
        return no(RefusalCode.UNKNOWN_FUSE, f"fuse {target_fuse} is not in the strategy")
    if isinstance(action, LockRate):
        capped = _lock_caps(action, after, config, nav)
        if capped is not None:
            return no(*capped)
    return after


def _lock_refusal(action: LockRate, view: PortfolioView, config: StrategyConfig, now: datetime) -> tuple[RefusalCode, str] | None:
    """Why a rate lock may not go ahead before it is applied (fuse, quote, the perp leg it locks), or None."""
    if action.fuse not in {r.name for r in config.enabled_rates}:
        return RefusalCode.UNKNOWN_FUSE, f"rate fuse {action.fuse} is not in the strategy"
    key = f"{action.fuse}:{action.market}"
    market, quote = view.rates.markets.get(key), view.rates.quotes.get(key)
    if market is None or quote is None:
        return RefusalCode.BAD_MARKET_DATA, f"bad market data: {key}: no quote"
    if now - quote.ts > config.risk.max_data_age:
        return RefusalCode.BAD_MARKET_DATA, f"bad market data: {key}: quote is {now - quote.ts} old, over max_data_age"
    if market.matured(now):
        return RefusalCode.BAD_MARKET_DATA, f"bad market data: {key} matured at {market.maturity.isoformat()}"
    fuse, _, symbol = action.underlying.partition(":")
    sign = ONE if action.side is Side.BUY else -ONE  # a long perp leg is locked long, a short one short
    leg = max(sign * holdings(view).get((fuse, symbol), ZERO), ZERO)
    positions = (view.rates.position(f"{m.fuse}:{m.market}") for m in view.rates.on_underlying(action.underlying))
    locked = sum((max(sign * p.size, ZERO) for p in positions if p is not None), ZERO)
    if locked + action.size > leg:
        which = "long" if action.side is Side.BUY else "short"
        return RefusalCode.CANNOT_APPLY, (
            f"a lock of {action.size} {action.asset} on {key} with {locked} locked already is more than the {which} perp leg {leg} on {action.underlying}"
        )
    return None


def _lock_caps(action: LockRate, after: PortfolioView, config: StrategyConfig, nav: Decimal) -> tuple[RefusalCode, str] | None:
    """Why the zone a lock leaves is over the rate fuse's caps or under its initial margin, or None."""
    rate_fuse = config.rate_fuse(action.fuse)
    acct = after.rates.accounts[action.fuse]
    value = after.rate_equity(action.fuse)
    cap = rate_fuse.max_share * nav
    if value > cap * (ONE + EPSILON):
        return RefusalCode.VENUE_EXPOSURE, f"rate fuse {action.fuse} would hold {value:.2f}, over its max_share {rate_fuse.max_share} x NAV ({cap:.2f})"
    exposure = sum(
        (abs(p.size) * after.rates.markets[f"{action.fuse}:{p.market}"].years_left(after.ts) * abs(p.mark_apr) for p in acct.positions), ZERO
    )
    # Against the zone's equity (collateral and positions at mark), not its collateral alone: the
    # fixed leg is realised upfront, crediting a short's collateral and debiting a long's (below
    # zero, the lite paper's example), and the position's value at mark takes it back.
    if exposure > rate_fuse.max_leverage * acct.equity * (ONE + EPSILON):
        return RefusalCode.LEVERAGE, (
            f"rate exposure on {action.fuse} would be {exposure:.6f} {acct.asset}, over its max_leverage {rate_fuse.max_leverage} x equity {acct.equity:.6f}"
        )
    if acct.equity < acct.initial_margin:
        return RefusalCode.LEVERAGE, (
            f"equity {acct.equity:.6f} {acct.asset} on {action.fuse} (collateral and positions at mark) would not cover the initial margin {acct.initial_margin:.6f}"
        )
    return None
