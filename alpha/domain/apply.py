"""``apply``: the portfolio view that planned actions would lead to (pure, ideal execution).

Used by the property tests, the risk gate (to judge each action's effect) and the
backtest. Conventions:

* Orders fill at the market's mark with no fee and no slippage (the carry model accounts
  for costs; the executor's fills carry the real ones).
* A perp trade changes the position's size and average entry; the realised part of a
  reduction moves to the settlement balance, so equity is unchanged by trading.
* A spot trade moves the base coin against the quote asset at mark.
* ``Transfer``/``TopUpMargin`` move cash between the vault (``"vault"``) and a fuse (margin
  equity included). An end that keeps its cash in another coin books it converted at the
  view's prices (``PortfolioView.booked_as``, ``convert``): a margin fuse in its settlement
  coin, the vault in the base asset.
* ``Supply``/``Withdraw`` move a fuse's balance into/out of its lending position. ``Borrow``
  of a non-cash asset is a synthetic short: the debt grows and the borrowed coins are sold
  for the base asset at its price; ``Repay`` buys them back.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime
from decimal import Decimal

from alpha.domain.account import AccountSnapshot, Balance, LendingPosition, Position
from alpha.domain.actions import (
    VAULT,
    Action,
    Borrow,
    CloseHedge,
    Leg,
    LockRate,
    OpenHedge,
    Repay,
    ResizeLeg,
    Supply,
    TopUpMargin,
    TopUpRate,
    Transfer,
    UnlockRate,
    Withdraw,
)
from alpha.domain.instruments import InstrumentKind, Side
from alpha.domain.money import ZERO
from alpha.domain.portfolio import PortfolioView
from alpha.domain.rates import RateAccount, RateBook, YuPosition, unrealised, upfront


class CannotApply(ValueError):
    """An action refers to something the view does not have (unknown market, missing funds)."""


def _account(accounts: dict[str, AccountSnapshot], fuse: str, view: PortfolioView) -> AccountSnapshot:
    return accounts.get(fuse) or AccountSnapshot(fuse=fuse, ts=view.ts)


def _add_balance(acct: AccountSnapshot, asset: str, amount: Decimal) -> AccountSnapshot:
    balances = list(acct.balances)
    for i, b in enumerate(balances):
        if b.asset == asset:
            balances[i] = Balance(asset, b.total + amount, b.free + amount)
            break
    else:
        balances.append(Balance(asset, amount, amount))
    return replace(acct, balances=tuple(balances))


def _add_equity(acct: AccountSnapshot, amount: Decimal) -> AccountSnapshot:
    if acct.margin is None:
        return acct
    return replace(acct, margin=replace(acct.margin, equity=acct.margin.equity + amount))


def _trade(accounts: dict[str, AccountSnapshot], view: PortfolioView, leg: Leg) -> None:
    snap = view.market(leg.fuse, leg.market)
    if snap is None:
        raise CannotApply(f"{leg.fuse}:{leg.market}: no market in the view")
    acct = _account(accounts, leg.fuse, view)
    signed = leg.quantity * leg.side.sign
    mark = snap.mark
    inst = snap.instrument
    if inst.kind is InstrumentKind.SPOT and acct.position(leg.market) is None:
        acct = _add_balance(acct, inst.base, signed)
        acct = _add_balance(acct, inst.quote, -signed * mark)
        accounts[leg.fuse] = acct
        return
    positions = list(acct.positions)
    old = acct.position(leg.market)
    size = old.size if old is not None else ZERO
    entry = old.entry_price if old is not None else mark
    new_size = size + signed
    realised = ZERO
    if size != 0 and (size > 0) != (signed > 0):
        closed = min(abs(signed), abs(size))
        realised = closed * (mark - entry) * (1 if size > 0 else -1)
        if abs(signed) > abs(size):
            entry = mark  # flipped: the remainder opens at mark
    elif new_size != 0:
        entry = (abs(size) * entry + abs(signed) * mark) / abs(new_size)
    pos = Position(
        market=leg.market,
        size=new_size,
        entry_price=entry,
        mark_price=mark,
        unrealised_pnl=new_size * (mark - entry),
        liquidation_price=old.liquidation_price if old is not None else None,
    )
    positions = [p for p in positions if p.market != leg.market]
    if new_size != 0:
        positions.append(pos)
    acct = replace(acct, positions=tuple(positions))
    if realised:
        acct = _add_balance(acct, inst.settle, realised)
    accounts[leg.fuse] = acct


def _lending(acct: AccountSnapshot, asset: str, supplied: Decimal, borrowed: Decimal) -> AccountSnapshot:
    entries = list(acct.lending_positions)
    for i, lp in enumerate(entries):
        if lp.asset == asset:
            entries[i] = replace(lp, supplied=lp.supplied + supplied, borrowed=lp.borrowed + borrowed)
            break
    else:
        entries.append(LendingPosition(asset, supplied, borrowed))
    return replace(acct, lending_positions=tuple(entries))


def apply(view: PortfolioView, actions: Iterable[Action]) -> PortfolioView:
    """Return the view after ``actions``, executed ideally in order."""
    accounts = dict(view.accounts)
    vault = view.vault_cash
    rates = view.rates
    for action in actions:
        if isinstance(action, OpenHedge | CloseHedge):
            for leg in action.legs:
                _trade(accounts, view, leg)
        elif isinstance(action, ResizeLeg):
            _trade(accounts, view, action.leg)
        elif isinstance(action, Transfer | TopUpMargin):
            source = action.source
            destination = action.destination if isinstance(action, Transfer) else action.fuse
            for name, sign in ((source, -1), (destination, 1)):
                coin = view.booked_as(name, action.asset)
                amount = view.convert(action.amount, action.asset, coin) * sign
                if name == VAULT:
                    vault += amount
                else:
                    acct = _add_balance(_account(accounts, name, view), coin, amount)
                    settle = view.settlement(name) or view.base_asset
                    accounts[name] = _add_equity(acct, view.convert(amount, coin, settle))
        elif isinstance(action, Supply | Withdraw):
            sign = 1 if isinstance(action, Supply) else -1
            acct = _add_balance(_account(accounts, action.fuse, view), action.asset, -sign * action.amount)
            accounts[action.fuse] = _lending(acct, action.asset, sign * action.amount, ZERO)
        elif isinstance(action, Borrow | Repay):
            sign = 1 if isinstance(action, Borrow) else -1
            acct = _lending(_account(accounts, action.fuse, view), action.asset, ZERO, sign * action.amount)
            if action.asset in view.cash:
                acct = _add_balance(acct, action.asset, sign * action.amount)
            else:
                acct = _add_balance(acct, view.base_asset, sign * action.amount * view.price(action.asset))
            accounts[action.fuse] = acct
        elif isinstance(action, LockRate | UnlockRate):
            rates, vault = _rate(rates, view, action, vault)
        elif isinstance(action, TopUpRate):
            zone = rates.accounts.get(action.fuse)
            if zone is None:
                raise CannotApply(f"rate fuse {action.fuse} has no zone in the view")
            vault -= action.amount * view.price(action.asset)
            rates = replace(rates, accounts={**rates.accounts, action.fuse: replace(zone, collateral=zone.collateral + action.amount)})
        else:  # pragma: no cover - exhaustive over Action
            raise CannotApply(f"unknown action {action!r}")
    return replace(view, vault_cash=vault, accounts=accounts, rates=rates)


def _rate(rates: RateBook, view: PortfolioView, action: LockRate | UnlockRate, vault: Decimal) -> tuple[RateBook, Decimal]:
    """The rate book and vault cash after a lock (collateral bought and posted, YU traded at the limit) or an unlock.

    The swap is taken at its limit APR less the fee: the fixed leg is realised upfront into
    collateral and the position is then worth nothing at a mark equal to its fixed rate.
    """
    key = f"{action.fuse}:{action.market}"
    market = rates.markets.get(key)
    if market is None:
        raise CannotApply(f"rate market {key} is not in the view")
    acct = rates.accounts.get(action.fuse) or RateAccount(action.fuse, market.asset, ZERO, (), ZERO, ZERO)
    held = next((p for p in acct.positions if p.market == action.market), None)
    size = held.size if held is not None else ZERO
    collateral = acct.collateral
    now = view.ts
    years = market.years_left(now)
    if isinstance(action, LockRate):
        deposit = max(action.collateral - collateral, ZERO)
        vault -= deposit * view.price(market.asset)
        collateral += deposit
        trade = action.size if action.side is Side.BUY else -action.size
    elif action.side is Side.BUY:
        trade = min(action.size, -size) if size < 0 else ZERO  # buys back a short
    else:
        trade = -min(action.size, size) if size > 0 else ZERO  # sells back a long
    collateral += upfront(trade, action.limit_apr, years) - market.fee(trade, now)
    if isinstance(action, UnlockRate):
        if action.withdraw > collateral:
            raise CannotApply(f"cannot withdraw {action.withdraw} {market.asset} from {action.fuse}: its zone holds {collateral}")
        collateral -= action.withdraw
        vault += action.withdraw * view.price(market.asset)
    new_size = size + trade
    others = tuple(p for p in acct.positions if p.market != action.market)
    positions = others if new_size == 0 else (*others, YuPosition(action.fuse, action.market, new_size, action.limit_apr, action.limit_apr, unrealised(new_size, action.limit_apr, years)))
    im = sum((_margin(rates, action.fuse, p, now, initial=True) for p in positions), ZERO)
    mm = sum((_margin(rates, action.fuse, p, now, initial=False) for p in positions), ZERO)
    accounts = {**rates.accounts, action.fuse: RateAccount(action.fuse, market.asset, collateral, positions, im, mm)}
    return RateBook(rates.markets, rates.quotes, accounts), vault


def _margin(rates: RateBook, fuse: str, p: YuPosition, now: datetime, *, initial: bool) -> Decimal:
    market = rates.markets[f"{fuse}:{p.market}"]
    if initial:
        return market.initial_margin(p.size, p.mark_apr, now)
    return market.maintenance_margin(p.size, p.mark_apr, now)
