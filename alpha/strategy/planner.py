"""``plan``: the actions that take the current portfolio to a target book.

Pure. Every order is rounded (towards zero) to its market's lot step and checked with
``Instrument.order_problems`` at the current mark; an order that cannot be sent as it is
(below the minimum notional or quantity, nothing left after rounding) is dropped with the
reason, never sent malformed. The legs of a hedge are dropped together so that a plan
never opens one side alone.

Order of the actions (the executor performs them in this order):

1. ``CloseHedge`` and the ``ResizeLeg`` orders that reduce a position (a synthetic short's
   perp leg first: the executor buys back and repays its debt slice by slice with it);
2. ``Repay`` (what the reductions left: e.g. accrued interest) and then ``Withdraw``
   (collateral comes out once the debt it backs is repaid; lending reductions free cash);
3. ``Transfer`` of surplus capital from fuses back to the vault (from a margin fuse, never
   more than ``margin.withdrawable``: free margin after the trades, minus a cushion);
4. ``Transfer`` (new capital) and ``TopUpMargin`` (margin drawn down on an unchanged
   hedge) from the vault to fuses, before any leg is opened;
5. ``Supply`` (collateral and idle yield);
6. ``OpenHedge`` and the ``ResizeLeg`` orders that grow a position;
7. ``Borrow`` (a synthetic short: borrow the asset and sell it; the executor does this slice
   by slice with the synthetic short's growing perp leg, so the ``Borrow`` finds it done).

Transfers are in the base asset; one to or from a fuse that settles in another coin is
converted there at the view's prices (``PortfolioView.booked_as``) and its reason says so.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_UP, Decimal

from alpha.domain.actions import (
    VAULT,
    Action,
    Borrow,
    CloseHedge,
    HedgeRef,
    Leg,
    OpenHedge,
    Repay,
    ResizeLeg,
    Supply,
    TargetBook,
    TargetPosition,
    TopUpMargin,
    Transfer,
    Withdraw,
)
from alpha.domain.instruments import Side
from alpha.domain.money import ONE, ZERO
from alpha.domain.portfolio import PortfolioView
from alpha.risk.exposure import holdings
from alpha.strategy.margin import withdrawable

AMOUNT_QUANTUM = Decimal("0.00000001")  # transfers and lending amounts, in the asset's units


@dataclass(frozen=True, slots=True)
class Dropped:
    """An order the planner refused to emit, and why."""

    hedge_id: HedgeRef
    fuse: str
    market: str
    quantity: Decimal
    reason: str


@dataclass(frozen=True, slots=True)
class Plan:
    """The actions to perform, in order, and the orders dropped on the way."""

    actions: tuple[Action, ...]
    dropped: tuple[Dropped, ...] = ()


def plan(target: TargetBook, current: PortfolioView) -> list[Action]:
    """Return the actions, in execution order, that take ``current`` to ``target``."""
    return list(make_plan(target, current).actions)


@dataclass(frozen=True, slots=True)
class _Order:
    leg: Leg
    reducing: bool


def _order(tp: TargetPosition, current: Decimal, view: PortfolioView) -> tuple[list[_Order], str | None]:
    """Return the rounded orders a leg needs or the reason they cannot be sent.

    A position that flips side is two orders: the close (reducing) and the new side (growing).
    """
    if tp.quantity == current:
        return [], None
    snap = view.market(tp.fuse, tp.market)
    if snap is None:
        return [], f"{tp.fuse}:{tp.market}: no market data to price the order"
    if current != 0 and tp.quantity != 0 and (current > 0) != (tp.quantity > 0):
        parts = [(-current, True), (tp.quantity, False)]
    else:
        reducing = abs(tp.quantity) < abs(current)
        parts = [(tp.quantity - current, reducing)]
    orders: list[_Order] = []
    for diff, reducing in parts:
        qty = snap.instrument.round_quantity(abs(diff))
        if qty == 0:
            continue  # less than one lot step away from target: nothing to do
        problems = snap.instrument.order_problems(qty, snap.mark)
        if problems:
            return [], f"{tp.fuse}:{tp.market}: order of {qty} dropped: {'; '.join(problems)}"
        orders.append(_Order(Leg(tp.fuse, tp.market, Side.for_delta(diff), qty), reducing))
    return orders, None


def _groups(positions: Iterable[TargetPosition]) -> dict[HedgeRef, list[TargetPosition]]:
    out: dict[HedgeRef, list[TargetPosition]] = {}
    for tp in positions:
        out.setdefault(tp.hedge_id, []).append(tp)
    return out


def make_plan(target: TargetBook, current: PortfolioView) -> Plan:
    """Return the ``Plan`` (actions and dropped orders) that takes ``current`` to ``target``."""
    held = holdings(current)
    dropped: list[Dropped] = []
    reducing: list[Action] = []
    growing: list[Action] = []
    traded_fuses: set[str] = set()

    computed = []
    for hedge_id, tps in _groups(target.positions).items():
        currents = [held.get((tp.fuse, tp.market), ZERO) for tp in tps]
        orders: list[_Order] = []
        problems: list[tuple[TargetPosition, str]] = []
        for tp, cur in zip(tps, currents, strict=True):
            leg_orders, problem = _order(tp, cur, current)
            if problem is not None:
                problems.append((tp, problem))
            orders.extend(leg_orders)
        computed.append((hedge_id, tps, currents, orders, problems))
    # One asset's orders go together: if an order of a (non-closing) hedge cannot be sent,
    # nothing else in that asset is traded either, so the book stays as neutral as it was.
    frozen = {tps[0].asset for _, tps, _, _, problems in computed if problems and any(tp.quantity for tp in tps)}

    for hedge_id, tps, currents, orders, problems in computed:
        asset = tps[0].asset
        reason = tps[0].reason
        if asset in frozen:
            for tp, problem in problems:
                dropped.append(Dropped(hedge_id, tp.fuse, tp.market, tp.quantity, problem))
            for o in orders:
                dropped.append(
                    Dropped(hedge_id, o.leg.fuse, o.leg.market, o.leg.quantity,
                            f"held back: another order in {asset} cannot be sent, so {asset} is not traded")
                )
            continue
        if all(tp.quantity == 0 for tp in tps):
            # Closing: send what can be sent; a dust leg is reported, never sent malformed.
            for tp, problem in problems:
                dropped.append(Dropped(hedge_id, tp.fuse, tp.market, tp.quantity, problem))
            if orders:
                reducing.append(CloseHedge(hedge_id, asset, tuple(o.leg for o in orders), reason))
                traded_fuses.update(o.leg.fuse for o in orders)
            continue
        if not orders:
            continue
        traded_fuses.update(o.leg.fuse for o in orders)
        if all(c == 0 for c in currents) and len(orders) == 2:
            growing.append(OpenHedge(hedge_id, asset, (orders[0].leg, orders[1].leg), reason))
            continue
        for o in orders:
            action = ResizeLeg(hedge_id, asset, o.leg, reason)
            (reducing if o.reducing else growing).append(action)

    lending_down: list[Action] = []
    repays: list[Action] = []
    lending_supply: list[Action] = []
    borrows: list[Action] = []
    for fuse, asset, amount in target.lending:
        have = _lending_amount(current, fuse, asset, borrowed=False)
        diff = amount - have
        if diff > 0 and (q := diff.quantize(AMOUNT_QUANTUM, ROUND_DOWN)) > 0:
            lending_supply.append(Supply(fuse, asset, q, f"supply to {amount:.2f} {asset} (collateral and idle yield)"))
        elif diff < 0 and (q := (-diff).quantize(AMOUNT_QUANTUM, ROUND_UP)) > 0:
            lending_down.append(Withdraw(fuse, asset, min(q, have), f"withdraw to {amount:.2f} {asset}"))
    for fuse, asset, amount in target.borrowing:
        have = _lending_amount(current, fuse, asset, borrowed=True)
        diff = amount - have
        if diff > 0 and (q := diff.quantize(AMOUNT_QUANTUM, ROUND_DOWN)) > 0:
            borrows.append(Borrow(fuse, asset, q, f"synthetic short: borrow {q} {asset} and sell it"))
        elif diff < 0 and (q := (-diff).quantize(AMOUNT_QUANTUM, ROUND_UP)) > 0:
            repays.append(Repay(fuse, asset, min(q, have), f"buy back and repay {asset} debt to {amount}"))

    transfers_out: list[Action] = []
    transfers_in: list[Action] = []
    base = current.base_asset
    stuck = {d.fuse for d in dropped}
    targets: dict[str, dict[str, Decimal]] = {}
    for tp in target.positions:
        targets.setdefault(tp.fuse, {})[tp.market] = tp.quantity
    for alloc in target.allocations:
        equity = current.fuse_equity(alloc.fuse)
        diff = alloc.capital - equity
        if diff > 0:
            amount = diff.quantize(AMOUNT_QUANTUM, ROUND_UP)
            acct = current.accounts.get(alloc.fuse)
            hedged = acct is not None and acct.margin is not None and any(p.size for p in acct.positions)
            if alloc.fuse in stuck and not hedged:
                continue  # its orders were held back: the capital would sit unused
            note = _conversion(current, alloc.fuse, base)
            if hedged and alloc.fuse not in traded_fuses:
                transfers_in.append(
                    TopUpMargin(alloc.fuse, base, amount, f"margin equity {equity:.2f} below target {alloc.capital:.2f}{note}")
                )
            else:
                transfers_in.append(
                    Transfer(VAULT, alloc.fuse, base, amount, f"fund {alloc.fuse} to {alloc.capital:.2f} before trading{note}")
                )
        elif diff < 0:
            amount = (-diff).quantize(AMOUNT_QUANTUM, ROUND_DOWN)
            if alloc.fuse in stuck:
                continue  # an order there was dropped: its position still needs the capital
            free = withdrawable(current, alloc.fuse, targets.get(alloc.fuse, {}), alloc.max_leverage)
            if free is not None:
                # A margin venue lets out only its free margin after the trades, never unrealised profit.
                amount = min(amount, free.quantize(AMOUNT_QUANTUM, ROUND_DOWN))
            if amount > 0:
                note = _conversion(current, alloc.fuse, base)
                transfers_out.append(
                    Transfer(alloc.fuse, VAULT, base, amount, f"return surplus over target {alloc.capital:.2f} to the vault{note}")
                )

    actions = [*reducing, *repays, *lending_down, *transfers_out, *transfers_in, *lending_supply, *growing, *borrows]
    return Plan(tuple(actions), tuple(dropped))


def _conversion(view: PortfolioView, fuse: str, asset: str) -> str:
    """Say how a transfer of ``asset`` to or from ``fuse`` is converted ("" when the fuse books it as it is)."""
    coin = view.booked_as(fuse, asset)
    if coin == asset:
        return ""
    rate = view.convert(ONE, asset, coin)
    return f"; {fuse} settles in {coin}: converted at {rate} {coin} per {asset}{' (par)' if view.cash_at_par else ''}"


def _lending_amount(view: PortfolioView, fuse: str, asset: str, *, borrowed: bool) -> Decimal:
    acct = view.accounts.get(fuse)
    if acct is None:
        return ZERO
    for lp in acct.lending_positions:
        if lp.asset == asset:
            return lp.borrowed if borrowed else lp.supplied
    return ZERO
